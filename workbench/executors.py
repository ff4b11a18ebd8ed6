"""Where the runs of a sweep or study execute: in this process, or as Ray tasks on a cluster.

    outcomes = run_jobs([PretrainSpec(c) for c in sweep.runs()], "runs", ExecConfig(executor="ray"))
    counts(outcomes)     # runs, completed, diverged, failed, retried, ...

A job is a run spec (`workbench.runs.RunSpec`: pretraining or finetuning). Every executor hands
each job to `execute`, which calls `workbench.runs.run_once` on the shared run store. Exactly-once comes from the store, not from the executor: a run is claimed (a kernel lock,
released when its holder dies) before work starts, re-checked for a summary under the claim, and
resumed from its last checkpoint when an earlier attempt died. So a killed worker's run is retried
(`exec.max_retries`) and continues where it stopped, and two sweeps on one store share the work:
a run held by the other sweep is left to it and collected when it finishes (or taken over if its
holder dies).

`local` runs one run after another with a progress bar. `ray` submits Ray core tasks that request
`exec.cpus_per_run` CPUs and, on clusters with GPUs, a share of a GPU by model size (`gpu_share`),
so several tiny models train side by side on one GPU and large ones get a whole one. Ray is an
optional dependency (`pip install 'scaling-workbench[ray]'`), imported only here and only when used.

The executor contract (`Executor`): built from the ExecConfig, `run(jobs, root, desc, on_done)`
executes the unfinished jobs it is given, calls `on_done(outcome)` as each one ends (widgets redraw
there), and returns {run_id: Outcome}; it never raises for a failed run. A new executor is one
class with that method plus one line in `registry.EXECUTORS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from workbench import registry
from workbench.config import ExecConfig
from workbench.errors import WorkbenchError
from workbench.runs import RunBusy, RunSpec, RunStore, run_once

log = logging.getLogger(__name__)
POLL_S = 2.0  # how often a run held by another process is checked again
# share of one GPU a run requests on Ray, by non-embedding parameters (first row whose floor N reaches)
GPU_SHARES = ((20_000_000, 1.0), (2_000_000, 0.5), (0, 0.25))
# environment a Ray worker needs to see the same data and offline settings as the driver
FORWARD_ENV = ("WORKBENCH_DATA_DIR", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str  # completed | diverged | failed (| busy, internal: held by another process)
    summary: dict | None = None
    error: str | None = None
    attempts: int = 0  # attempts recorded in the run folder, over all sweeps that touched it
    skipped: bool = False  # finished before this call


def pretrain_job(cfg) -> RunSpec:
    from workbench.pretrain import PretrainSpec

    return PretrainSpec(cfg)


def finetune_job(cfg) -> RunSpec:
    from workbench.finetune import FinetuneSpec

    return FinetuneSpec(cfg)


class Executor(Protocol):
    def __init__(self, exec_cfg: ExecConfig): ...

    def run(self, jobs: list[RunSpec], root: Path, desc: str,
            on_done: Callable[[Outcome], None] | None = None) -> dict[str, Outcome]: ...


def gpu_share(n_params: int) -> float:
    return next(share for floor, share in GPU_SHARES if n_params >= floor)


def execute(job: RunSpec, root: str | Path, exec_cfg: ExecConfig) -> Outcome:
    """Run one job here, retrying a crash from its checkpoint; never raises for a failed run."""
    store, error = RunStore(root), None
    for attempt in range(exec_cfg.max_retries + 1):
        try:
            s = run_once(job, root, exec_cfg)
            return Outcome(job.run_id, s["status"], s, attempts=len(store.attempts(job.run_id)))
        except RunBusy:
            return Outcome(job.run_id, "busy")
        except WorkbenchError as e:  # a wrong input or unusable data: another attempt cannot help
            error = str(e)
            break
        except Exception as e:  # noqa: BLE001 - a crashed run must not stop the sweep
            error = f"{type(e).__name__}: {e}"
            log.warning("%s: attempt %d of %d failed: %s", job.run_id, attempt + 1, exec_cfg.max_retries + 1, error)
    return Outcome(job.run_id, "failed", error=error, attempts=len(store.attempts(job.run_id)))


def run_jobs(jobs: list[RunSpec], root: str | Path, exec_cfg: ExecConfig = ExecConfig(), desc: str = "runs",
             on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Execute every unfinished job with `exec_cfg.executor`; one outcome per job, in order.
    `on_done(outcome)` is called as each run ends (finished ones first, at once).

    Failed runs do not stop the others: they are collected and reported in one warning."""
    root = Path(root).resolve()  # workers may start elsewhere
    store = RunStore(root)
    unique = list({j.run_id: j for j in jobs}.values())
    outcomes = {}
    for j in unique:
        if store.is_finished(j.run_id):
            s = store.summary(j.run_id)
            outcomes[j.run_id] = Outcome(j.run_id, s["status"], s, attempts=len(store.attempts(j.run_id)), skipped=True)
            if on_done:
                on_done(outcomes[j.run_id])
    todo = [j for j in unique if j.run_id not in outcomes]
    log.info("%s: %d runs, %d finished, %d to run on %s", desc, len(unique), len(outcomes), len(todo),
             exec_cfg.executor)
    if todo:
        executor: Executor = registry.get(registry.EXECUTORS, exec_cfg.executor, "exec.executor")(exec_cfg)
        outcomes.update(executor.run(todo, root, desc, on_done))
    failed = [o for o in outcomes.values() if o.status == "failed"]
    if failed:
        warnings.warn(f"{len(failed)} of {len(unique)} runs failed and were left out: "
                      + "; ".join(f"{o.run_id}: {o.error}" for o in failed), stacklevel=2)
    return [outcomes[j.run_id] for j in jobs]


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """Runs, skipped (finished before), completed, diverged, failed, retried (more than one attempt),
    attempts (this call's and earlier ones') and lost (neither finished nor reported failed: must be 0)."""
    by = {o.run_id: o for o in outcomes}.values()
    return dict(runs=len(by), skipped=sum(o.skipped for o in by),
                completed=sum(o.status == "completed" for o in by), diverged=sum(o.status == "diverged" for o in by),
                failed=sum(o.status == "failed" for o in by), retried=sum(o.attempts > 1 for o in by),
                attempts=sum(o.attempts for o in by),
                lost=sum(o.status not in ("completed", "diverged", "failed") for o in by))


class _Tally:
    """The driver's bookkeeping: outcomes of finished runs, runs held by another process (with when to
    look at them again), and one aggregate bar (finished, with failed / retried / held counts)."""

    def __init__(self, total: int, desc: str, enabled: bool, on_done: Callable[[Outcome], None] | None = None):
        from tqdm.auto import tqdm

        self.on_done = on_done
        self.bar = tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)
        self.done: dict[str, Outcome] = {}
        self.held: list[tuple[float, RunSpec]] = []
        self.failed = self.retried = 0

    def record(self, job: RunSpec, o: Outcome) -> None:
        if o.status == "busy":
            self.held.append((time.time() + POLL_S, job))
        else:
            self.done[job.run_id] = o
            self.failed += o.status == "failed"
            self.retried += o.attempts > 1
            self.bar.update(1)
            if self.on_done:
                self.on_done(o)
        self.bar.set_postfix(failed=self.failed, retried=self.retried, elsewhere=len(self.held), refresh=True)

    def due(self) -> list[RunSpec]:
        """Held runs whose time to look again has come (removed from `held`)."""
        now = time.time()
        ready = [job for t, job in self.held if t <= now]
        self.held = [(t, job) for t, job in self.held if t > now]
        return ready

    def close(self) -> dict[str, Outcome]:
        self.bar.close()
        return self.done


class LocalExecutor:
    """Runs in this process, one after another (a run's own progress bar shows inside)."""

    def __init__(self, exec_cfg: ExecConfig):
        self.cfg = exec_cfg

    def run(self, jobs: list[RunSpec], root: Path, desc: str, on_done=None) -> dict[str, Outcome]:
        queue, tally = deque(jobs), _Tally(len(jobs), desc, self.cfg.progress, on_done)
        with _torch_threads(self.cfg.cpus_per_run):
            while queue or tally.held:
                queue.extend(tally.due())
                if not queue:  # everything left is held by another process: wait, then look again
                    time.sleep(POLL_S / 4)
                    continue
                job = queue.popleft()
                tally.record(job, execute(job, root, self.cfg))
        return tally.close()


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _remote_execute(job: RunSpec, root: str, exec_cfg: ExecConfig, threads: int) -> Outcome:
    """The body of a Ray task: the same `execute`, with the thread count Ray gave the task."""
    import torch

    torch.set_num_threads(threads)
    return execute(job, root, exec_cfg)


def import_ray():
    try:
        import ray
    except ImportError:
        raise WorkbenchError("exec.executor=ray needs Ray: pip install 'scaling-workbench[ray]' "
                             "(or use exec.executor=local)") from None
    return ray


def connect_ray(address: str = "", num_cpus: int | None = None):
    """Connect to the Ray cluster at `address` (or $RAY_ADDRESS); without either, start a local Ray
    on this machine (with `num_cpus`, default all) that ends with this process. An already
    connected Ray is reused."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
    kw = dict(logging_level=logging.WARNING, runtime_env={"env_vars": env} if env else None)
    address = address or os.environ.get("RAY_ADDRESS", "")
    if address:
        try:
            ray.init(address=address, **kw)
        except ConnectionError as e:
            raise WorkbenchError(
                f"cannot connect to the Ray cluster at {address} ({str(e).splitlines()[-1]}): check the address; "
                f"a cluster with token authentication (the default of `ray start` since Ray 2.59) needs "
                f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH here, as on its nodes") from None
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kw)
    return ray


class RayExecutor:
    """Ray core tasks, one per run, each requesting its CPUs and GPU share; retried by Ray when a
    worker dies (`max_retries`), resuming from the run's checkpoint."""

    def __init__(self, exec_cfg: ExecConfig):
        self.cfg = exec_cfg

    def resources(self, job: RunSpec, cluster_gpus: float) -> dict[str, float]:
        gpus = 0.0
        if cluster_gpus > 0 and self.cfg.device != "cpu":
            gpus = self.cfg.gpus_per_run or gpu_share(job.n_params)
        return dict(num_cpus=self.cfg.cpus_per_run or 1, num_gpus=gpus)

    def run(self, jobs: list[RunSpec], root: Path, desc: str, on_done=None) -> dict[str, Outcome]:
        ray = connect_ray(self.cfg.ray_address)
        task = ray.remote(_remote_execute)
        cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
        worker_cfg = dataclasses.replace(self.cfg, progress=False)  # the driver's bar is the progress
        pending: dict[Any, RunSpec] = {}
        tally = _Tally(len(jobs), desc, self.cfg.progress, on_done)

        def submit(job: RunSpec) -> None:
            res = self.resources(job, cluster_gpus)
            ref = task.options(**res, max_retries=self.cfg.max_retries, retry_exceptions=False,
                               name=f"{job.kind} {job.run_id}").remote(job, str(root), worker_cfg, int(res["num_cpus"]))
            pending[ref] = job

        for job in jobs:
            submit(job)
        while pending or tally.held:
            for job in tally.due():
                submit(job)
            if not pending:
                time.sleep(POLL_S / 4)
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    o = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died more often than max_retries
                    o = Outcome(job.run_id, "failed", error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                                attempts=len(RunStore(root).attempts(job.run_id)))
                tally.record(job, o)
        return tally.close()
