"""Where the runs of a sweep or study execute: in this process, or as Ray tasks on a cluster.

    outcomes = run_jobs([PretrainSpec(c) for c in sweep.runs()], "runs", ExecConfig(executor="ray"))
    counts(outcomes)     # runs, completed, diverged, failed, retried, ...

A job is a run spec (`workbench.runs.lifecycle.RunSpec`: pretraining or finetuning). Every executor hands
each job to `execute`, which calls `workbench.runs.lifecycle.run_once` on the shared run store. Exactly-once comes from the store, not from the executor: a run is claimed (a kernel lock,
released when its holder dies) before work starts, re-checked for a summary under the claim, and
resumed from its last checkpoint when an earlier attempt died. So a killed worker's run is retried
(`exec.max_retries`) and continues where it stopped, and two sweeps on one store share the work:
a run held by the other sweep is left to it and collected when it finishes (or taken over if its
holder dies).

Jobs are first grouped into work units (`workbench.train.stacked.plan`): runs of one shape train as
one stacked ensemble, the rest alone. `local` runs the units, largest first, in `exec.workers`
spawned processes (`plan_workers`: never more processes x threads than cores), or in this process
when one worker is all that pays; one bar per worker under the aggregate bar. `ray` submits one Ray
core task per unit, requesting `exec.cpus_per_run` CPUs and, on clusters with GPUs, a share of a
GPU by the parameters it trains (`gpu_share`), so several tiny models train side by side on one
GPU and large ones get a whole one. Ray is an
optional dependency (`pip install 'scaling-workbench[ray]'`), imported only here and only when used.

The executor contract (`Executor`): built from the ExecConfig, `run(jobs, root, desc, on_done)`
executes the unfinished jobs it is given, calls `on_done(outcome)` as each one ends (widgets redraw
there), and returns {run_id: Outcome}; it never raises for a failed run. A new executor is one
class with that method plus one line in `registry.EXECUTORS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import tempfile
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from workbench.base import registry
from workbench.base.errors import WorkbenchError
from workbench.config import ExecConfig
from workbench.runs.lifecycle import RunSpec, run_once
from workbench.runs.store import RunBusy, RunStore

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
    from workbench.runs.pretrain import PretrainSpec

    return PretrainSpec(cfg)


def finetune_job(cfg) -> RunSpec:
    from workbench.runs.finetune import FinetuneSpec

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
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
            if e.errno in PERMANENT_ERRNOS:  # no permission, not a folder, read-only: the same next time
                break
            log.warning("%s: attempt %d of %d failed: %s", job.run_id, attempt + 1, exec_cfg.max_retries + 1, error)
        except Exception as e:  # noqa: BLE001 - a crashed run must not stop the sweep
            error = f"{type(e).__name__}: {e}"
            log.warning("%s: attempt %d of %d failed: %s", job.run_id, attempt + 1, exec_cfg.max_retries + 1, error)
    return Outcome(job.run_id, "failed", error=error, attempts=len(store.attempts(job.run_id)))


PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


def check_environment(root: Path, exec_cfg: ExecConfig) -> None:
    """What no retry can fix, said in one line before any run starts: a store root that cannot be a
    writable folder, and (locally) a device this machine does not have."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as e:
        raise WorkbenchError(f"run store {root} is not a writable folder ({e.strerror or type(e).__name__}); "
                             f"give --root a folder you can write to") from None
    if exec_cfg.executor == "local":
        from workbench.train.device import resolve_device

        resolve_device(exec_cfg.device)


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
    if todo:
        check_environment(root, exec_cfg)
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


def execute_unit(unit: list[RunSpec], root: str | Path, exec_cfg: ExecConfig) -> list[Outcome]:
    """Run one work unit here: a run alone (`execute`) or an ensemble (`workbench.train.stacked`), retrying
    a crashed ensemble from its members' checkpoints; one outcome per run, never raises."""
    if len(unit) == 1:
        return [execute(unit[0], root, exec_cfg)]
    from workbench.runs.ensemble import run_ensemble

    store, error = RunStore(root), None
    for attempt in range(exec_cfg.max_retries + 1):
        try:
            out = run_ensemble(unit, root, exec_cfg)
            return [Outcome(j.run_id, "busy") if out[j.run_id] is None else
                    Outcome(j.run_id, out[j.run_id]["status"], out[j.run_id], attempts=len(store.attempts(j.run_id)))
                    for j in unit]
        except WorkbenchError as e:
            error = str(e)
            break
        except Exception as e:  # noqa: BLE001 - a crashed ensemble must not stop the sweep
            error = f"{type(e).__name__}: {e}"
            log.warning("ensemble of %d (%s ...): attempt %d of %d failed: %s", len(unit), unit[0].run_id,
                        attempt + 1, exec_cfg.max_retries + 1, error)
    return [_failed_or_finished(j, store, error) for j in unit]


def _failed_or_finished(job: RunSpec, store: RunStore, error: str | None) -> Outcome:
    """A member that finished before its ensemble failed keeps its result."""
    n = len(store.attempts(job.run_id))
    if store.is_finished(job.run_id):
        s = store.summary(job.run_id)
        return Outcome(job.run_id, s["status"], s, attempts=n)
    return Outcome(job.run_id, "failed", error=error, attempts=n)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_workers(exec_cfg: ExecConfig, units: list[list[RunSpec]], device) -> tuple[int, int]:
    """(processes, torch threads each) for `units` on `device`: `exec.workers` (auto: one process
    per core on a CPU, bounded by memory; one on a GPU, where ensembles fill the device), never
    more processes than units, and processes x threads never above the cores (oversubscribed
    torch threads spin and slow everything down many times over)."""
    n_cores = cores()
    per_run = exec_cfg.cpus_per_run or 0
    if exec_cfg.workers:
        workers = exec_cfg.workers
    elif device.type == "cpu":
        workers = max(1, n_cores // max(1, per_run))
        workers = min(workers, _memory_bound(units))
    else:
        workers = 1
    workers = max(1, min(workers, len(units)))
    if device.type == "cpu" and workers > n_cores:
        log.warning("exec.workers=%d is more than the %d cores: using %d", workers, n_cores, n_cores)
        workers = n_cores
    threads = per_run or max(1, n_cores // workers)
    if device.type == "cpu" and workers * threads > n_cores:
        log.warning("exec.cpus_per_run=%d x %d workers is more than the %d cores: %d thread(s) each",
                    per_run, workers, n_cores, max(1, n_cores // workers))
        threads = max(1, n_cores // workers)
    return workers, threads


def _memory_bound(units: list[list[RunSpec]]) -> int:
    """How many of the largest units fit in the available memory at once (rough: 64 bytes per
    parameter and member, weights, gradients, AdamW state and activations)."""
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 30
    largest = max((sum(64 * max(j.n_params, 1_000_000) for j in u) for u in units), default=1)
    return max(1, int(0.5 * pages // largest))


class LocalExecutor:
    """Runs on this machine: work units (single runs and ensembles, `workbench.train.stacked.plan`),
    largest first, in `exec.workers` processes at once (`plan_workers`), or in this process when
    one is all that pays. Each worker process shows its own bar under the aggregate one."""

    def __init__(self, exec_cfg: ExecConfig):
        self.cfg = exec_cfg

    def run(self, jobs: list[RunSpec], root: Path, desc: str, on_done=None) -> dict[str, Outcome]:
        from workbench.train.device import resolve_device
        from workbench.train.stacked import plan

        device = resolve_device(self.cfg.device)
        units = plan(jobs, self.cfg, device)
        workers, threads = plan_workers(self.cfg, units, device)
        log.info("%s: %d runs in %d work units on %d worker(s) x %d thread(s)", desc, len(jobs), len(units), workers,
                 threads)
        if workers == 1:
            return self._here(units, root, desc, on_done)
        return _Parallel(self.cfg, workers, threads).run(units, root, desc, on_done)

    def _here(self, units, root, desc, on_done) -> dict[str, Outcome]:
        queue, tally = deque(units), _Tally(sum(map(len, units)), desc, self.cfg.progress, on_done)
        with _torch_threads(self.cfg.cpus_per_run):
            while queue or tally.held:
                queue.extend([job] for job in tally.due())
                if not queue:  # everything left is held by another process: wait, then look again
                    time.sleep(POLL_S / 4)
                    continue
                unit = queue.popleft()
                for job, o in zip(unit, execute_unit(unit, root, self.cfg)):
                    tally.record(job, o)
        return tally.close()


def _worker_init(queue, budget, parent: int) -> None:
    """Set up a worker process: its progress reports, its thread budget, and an end with its parent
    (a killed driver must not leave runs training and holding their claims)."""
    import threading

    import torch

    torch.set_num_threads(budget.value)
    _Parallel.queue, _Parallel.budget = queue, budget

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _follow_budget() -> None:
    """At every training step of a worker: take the thread count the driver allows now (the cores
    split over the units running), so the last runs of a sweep get the cores of idle workers."""
    import torch

    want = _Parallel.budget.value
    if want != torch.get_num_threads():
        torch.set_num_threads(want)


def _worker_unit(unit: list[RunSpec], root: str, exec_cfg: ExecConfig, slot: int) -> list[Outcome]:
    from workbench.base import progress

    progress.report_to(_Parallel.queue, slot, _follow_budget)
    _follow_budget()
    return execute_unit(unit, root, exec_cfg)


class _Parallel:
    """Work units in `workers` spawned processes (fresh interpreters: torch's thread pools do not
    survive fork), at most one unit per worker at a time, largest first. A worker that dies breaks
    the pool: it is rebuilt and the units in flight resume from their checkpoints (`max_retries`)."""

    queue = budget = None  # in a worker: where its bars report, and its thread budget

    def __init__(self, exec_cfg: ExecConfig, workers: int, threads: int):
        self.cfg, self.workers, self.threads = exec_cfg, workers, threads

    def _pool(self, ctx, queue, budget):
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(queue, budget, os.getpid()))

    def _budget(self, running: int) -> int:
        """Threads per worker with `running` units in flight: `exec.cpus_per_run` when set, else the
        cores split over them (one each when all workers are busy)."""
        if self.cfg.cpus_per_run:
            return self.threads
        return max(self.threads, cores() // max(1, running))

    def run(self, units: list[list[RunSpec]], root: Path, desc: str, on_done=None) -> dict[str, Outcome]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        from workbench.base.progress import WorkerBars

        ctx = multiprocessing.get_context("spawn")
        queue, budget = ctx.Queue(), ctx.Value("i", self.threads, lock=False)
        tally = _Tally(sum(map(len, units)), desc, self.cfg.progress, on_done)
        bars = WorkerBars(queue, self.workers, self.cfg.progress)
        pending, running, free = deque(units), {}, list(range(self.workers))
        crashes: dict[str, int] = {}
        pool, broken = self._pool(ctx, queue, budget), False
        try:
            while pending or running or tally.held:
                pending.extend([job] for job in tally.due())
                if broken and not running:  # every unit of the broken pool is back: start fresh workers
                    log.warning("a worker process died; restarting the workers (runs resume from their checkpoints)")
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool, broken = self._pool(ctx, queue, budget), False
                while pending and free and not broken:
                    unit, slot = pending.popleft(), free.pop(0)
                    running[pool.submit(_worker_unit, unit, str(root), self.cfg, slot)] = (unit, slot)
                budget.value = self._budget(len(running))
                if not running:
                    time.sleep(POLL_S / 4)
                    continue
                done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
                bars.drain()
                for fut in done:
                    unit, slot = running.pop(fut)
                    free.append(slot)
                    try:
                        outcomes = fut.result()
                    except BrokenProcessPool as e:  # a worker died (killed, out of memory)
                        broken = True
                        key = unit[0].run_id
                        crashes[key] = crashes.get(key, 0) + 1
                        if crashes[key] <= self.cfg.max_retries:
                            pending.appendleft(unit)
                            continue
                        store = RunStore(root)
                        outcomes = [_failed_or_finished(j, store, f"worker process died: {e}") for j in unit]
                    for job, o in zip(unit, outcomes):
                        tally.record(job, o)
                budget.value = self._budget(len(running))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bars.close()
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


def _remote_execute(unit: list[RunSpec], root: str, exec_cfg: ExecConfig, threads: int) -> list[Outcome]:
    """The body of a Ray task: the same `execute_unit`, with the thread count Ray gave the task."""
    import torch

    torch.set_num_threads(threads)
    return execute_unit(unit, root, exec_cfg)


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

    def resources(self, unit: list[RunSpec] | RunSpec, cluster_gpus: float) -> dict[str, float]:
        """CPUs and GPU share of a task: by the parameters it trains (an ensemble counts all members)."""
        unit = unit if isinstance(unit, list) else [unit]
        gpus = 0.0
        if cluster_gpus > 0 and self.cfg.device != "cpu":
            gpus = self.cfg.gpus_per_run or gpu_share(sum(j.n_params for j in unit))
        return dict(num_cpus=self.cfg.cpus_per_run or 1, num_gpus=gpus)

    def run(self, jobs: list[RunSpec], root: Path, desc: str, on_done=None) -> dict[str, Outcome]:
        import torch

        from workbench.train.stacked import plan

        ray = connect_ray(self.cfg.ray_address)
        task = ray.remote(_remote_execute)
        cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
        # ensembles of cluster GPUs are sized by exec.ensemble (the driver cannot see their memory)
        units = plan(jobs, self.cfg, torch.device("cuda" if cluster_gpus and self.cfg.device != "cpu" else "cpu"),
                     memory=False)
        worker_cfg = dataclasses.replace(self.cfg, progress=False)  # the driver's bar is the progress
        pending: dict[Any, list[RunSpec]] = {}
        tally = _Tally(len(jobs), desc, self.cfg.progress, on_done)

        def submit(unit: list[RunSpec]) -> None:
            res = self.resources(unit, cluster_gpus)
            name = f"{unit[0].kind} {unit[0].run_id}" + (f" +{len(unit) - 1}" if len(unit) > 1 else "")
            ref = task.options(**res, max_retries=self.cfg.max_retries, retry_exceptions=False,
                               name=name).remote(unit, str(root), worker_cfg, int(res["num_cpus"]))
            pending[ref] = unit

        for unit in units:
            submit(unit)
        while pending or tally.held:
            for job in tally.due():
                submit([job])
            if not pending:
                time.sleep(POLL_S / 4)
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                unit = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died more often than max_retries
                    store = RunStore(root)
                    outcomes = [_failed_or_finished(j, store, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
                                for j in unit]
                for job, o in zip(unit, outcomes):
                    tally.record(job, o)
        return tally.close()
