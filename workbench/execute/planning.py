"""How many worker processes, and how many torch threads each, a set of work units gets on this
machine: never more processes x threads than cores, never more processes than memory holds.

    workers, threads = plan_workers(exec_cfg, units, torch.device("cpu"))
"""

from __future__ import annotations

import logging
import os

from workbench.config import ExecConfig
from workbench.runs.lifecycle import RunSpec

log = logging.getLogger(__name__)


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


