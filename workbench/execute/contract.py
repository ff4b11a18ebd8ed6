"""The executor contract: where the runs of a sweep or study execute, and what every executor
shares (one retry policy, the driver's tally, the checks no retry can fix).

    outcomes = run_jobs([PretrainSpec(c) for c in sweep.runs()], "runs", ExecConfig(executor="ray"))
    counts(outcomes)     # runs, completed, diverged, failed, retried, ...

A job is a run spec (`workbench.runs.lifecycle.RunSpec`: pretraining or finetuning). Every executor
hands each work unit (a run alone, or runs of one shape stacked as an ensemble:
`workbench.train.stacked.plan`) to `execute_unit`, which calls `run_once` or `run_ensemble` on the
shared run store, then each finished run's `after` (a pretraining run's certificate, when its sweep
asks for one: `workbench.runs.certify.CertifyAfter`) in the same worker. Exactly-once comes from
the store, not from the executor: a run is claimed (a kernel lock, released when its holder dies)
before work starts, re-checked for a summary under the claim, and resumed from its last checkpoint
when an earlier attempt died. So a killed worker's run is retried (`exec.max_retries`) and
continues where it stopped, and two sweeps on one store share the work: a run held by the other
sweep is left to it and collected when it finishes (or taken over if its holder dies).

An executor (`Executor`) is built from the ExecConfig; `run(jobs, root, desc, on_done)` executes
the unfinished jobs it is given, calls `on_done(outcome)` as each one ends (widgets redraw there),
and returns {run_id: Outcome}; it never raises for a failed run. `local` (`execute.local`) runs
units in worker processes, `ray` (`execute.raycluster`) as Ray tasks. A new executor is one class
with that method plus one line in `registry.EXECUTORS`.
"""

from __future__ import annotations

import errno
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from workbench.base import registry
from workbench.base.errors import WorkbenchError
from workbench.config import ExecConfig
from workbench.runs.lifecycle import RunSpec, run_once
from workbench.runs.store import RunBusy, RunStore

log = logging.getLogger(__name__)
POLL_S = 2.0  # how often a run held by another process is checked again


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str  # completed | diverged | failed (| busy, internal: held by another process)
    summary: dict | None = None
    error: str | None = None
    attempts: int = 0  # attempts recorded in the run folder, over all sweeps that touched it
    skipped: bool = False  # finished before this call


class Executor(Protocol):
    def __init__(self, exec_cfg: ExecConfig): ...

    def run(self, jobs: list[RunSpec], root: Path, desc: str,
            on_done: Callable[[Outcome], None] | None = None) -> dict[str, Outcome]: ...


def execute(job: RunSpec, root: str | Path, exec_cfg: ExecConfig) -> Outcome:
    """Run one job here, retrying a crash from its checkpoint; never raises for a failed run."""
    store = RunStore(root)
    try:
        s, error = with_retries(job.run_id, exec_cfg, lambda: run_once(job, root, exec_cfg))
    except RunBusy:
        return Outcome(job.run_id, "busy")
    if s is None:
        return Outcome(job.run_id, "failed", error=error, attempts=len(store.attempts(job.run_id)))
    return Outcome(job.run_id, s["status"], after(job, root, exec_cfg, s), attempts=len(store.attempts(job.run_id)))


def after(job: RunSpec, root: str | Path, exec_cfg: ExecConfig, summary: dict) -> dict:
    """`job.after(...)` on a finished run (a pretraining run's certificate, in the worker that trained
    it); what fails there is logged and leaves the run's own summary: the run itself is done."""
    try:
        return job.after(root, exec_cfg, summary)
    except RunBusy:  # another process certifies it: the sweep's certification pass collects it
        return summary
    except Exception as e:  # noqa: BLE001 - a failed follow-up must not fail a finished run
        log.warning("%s: finished, but what follows it failed: %s: %s", job.run_id, type(e).__name__, e)
        return summary


T = TypeVar("T")


def with_retries(what: str, exec_cfg: ExecConfig, attempt: Callable[[], T]) -> tuple[T | None, str | None]:
    """(result, None) of `attempt()`, tried up to 1 + `exec.max_retries` times (each retry resumes from
    the checkpoints the last attempt left), or (None, the last error). A wrong input or unusable data
    (`WorkbenchError`) and an OSError that would recur (no permission, read-only, not a folder) end
    it at once; `RunBusy` (another process holds the run) is raised to the caller."""
    error = None
    for i in range(exec_cfg.max_retries + 1):
        try:
            return attempt(), None
        except RunBusy:
            raise
        except WorkbenchError as e:  # another attempt cannot help
            return None, str(e)
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
            if e.errno in PERMANENT_ERRNOS:
                return None, error
        except Exception as e:  # noqa: BLE001 - a crashed run must not stop the sweep
            error = f"{type(e).__name__}: {e}"
        log.warning("%s: attempt %d of %d failed: %s", what, i + 1, exec_cfg.max_retries + 1, error)
    return None, error


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


class Tally:
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
    """Run one work unit here: a run alone (`execute`) or an ensemble (`workbench.runs.ensemble`),
    retrying a crashed ensemble from its members' checkpoints (`with_retries`); one outcome per run,
    never raises."""
    if len(unit) == 1:
        return [execute(unit[0], root, exec_cfg)]
    from workbench.runs.ensemble import run_ensemble

    store = RunStore(root)
    try:
        out, error = with_retries(f"ensemble of {len(unit)} ({unit[0].run_id} ...)", exec_cfg,
                                  lambda: run_ensemble(unit, root, exec_cfg))
    except RunBusy:
        return [Outcome(j.run_id, "busy") for j in unit]
    if out is None:
        return [failed_or_finished(j, store, error) for j in unit]
    return [Outcome(j.run_id, "busy") if out[j.run_id] is None else
            Outcome(j.run_id, out[j.run_id]["status"], after(j, root, exec_cfg, out[j.run_id]),
                    attempts=len(store.attempts(j.run_id)))
            for j in unit]


def failed_or_finished(job: RunSpec, store: RunStore, error: str | None) -> Outcome:
    """A member that finished before its ensemble failed keeps its result."""
    n = len(store.attempts(job.run_id))
    if store.is_finished(job.run_id):
        s = store.summary(job.run_id)
        return Outcome(job.run_id, s["status"], s, attempts=n)
    return Outcome(job.run_id, "failed", error=error, attempts=n)


