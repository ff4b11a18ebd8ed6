"""The local executor: work units (runs alone and stacked ensembles, `workbench.train.stacked.plan`),
largest first, in `exec.workers` spawned processes (`planning.plan_workers`), or in this process when
one worker is all that pays; one progress bar per worker under the aggregate bar.

    LocalExecutor(ExecConfig(workers=2)).run(jobs, root, "sweep")     # through `run_jobs`, normally
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace

from workbench.config import ExecConfig
from workbench.execute.contract import POLL_S, Outcome, Tally, execute_unit, failed_or_finished
from workbench.execute.planning import cores, plan_workers
from workbench.runs.lifecycle import RunSpec
from workbench.runs.store import RunStore

log = logging.getLogger(__name__)
# in a worker process, set once by `_worker_init`: the queue its progress bars report to and the
# shared thread budget the driver adjusts (one per pool; module state because a process pool's
# initializer can leave nothing else behind for the tasks it runs)
WORKER = SimpleNamespace(queue=None, budget=None)


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
        queue, tally = deque(units), Tally(sum(map(len, units)), desc, self.cfg.progress, on_done)
        from workbench.train.device import torch_threads

        with torch_threads(self.cfg.cpus_per_run):
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
    WORKER.queue, WORKER.budget = queue, budget

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _follow_budget() -> None:
    """At every training step of a worker: take the thread count the driver allows now (the cores
    split over the units running), so the last runs of a sweep get the cores of idle workers."""
    import torch

    want = WORKER.budget.value
    if want != torch.get_num_threads():
        torch.set_num_threads(want)


def _worker_unit(unit: list[RunSpec], root: str, exec_cfg: ExecConfig, slot: int) -> list[Outcome]:
    from workbench.base import progress

    progress.report_to(WORKER.queue, slot, _follow_budget)
    _follow_budget()
    return execute_unit(unit, root, exec_cfg)


class _Parallel:
    """Work units in `workers` spawned processes (fresh interpreters: torch's thread pools do not
    survive fork), at most one unit per worker at a time, largest first. A worker that dies breaks
    the pool: it is rebuilt and the units in flight resume from their checkpoints (`max_retries`)."""

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
        tally = Tally(sum(map(len, units)), desc, self.cfg.progress, on_done)
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
                        outcomes = [failed_or_finished(j, store, f"worker process died: {e}") for j in unit]
                    for job, o in zip(unit, outcomes):
                        tally.record(job, o)
                budget.value = self._budget(len(running))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bars.close()
        return tally.close()


