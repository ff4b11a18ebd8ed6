"""The Ray executor: one Ray core task per work unit, requesting `exec.cpus_per_run` CPUs and, on
clusters with GPUs, a share of a GPU by the parameters it trains (`gpu_share`), so several tiny
models train side by side on one GPU and large ones get a whole one. Ray is an optional dependency
(`pip install 'scaling-workbench[ray]'`), imported only here and only when used.

    connect_ray("head:6379"); RayExecutor(ExecConfig(executor="ray")).run(jobs, root, "sweep")
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

from workbench.base.errors import WorkbenchError
from workbench.config import ExecConfig
from workbench.execute.contract import POLL_S, Outcome, Tally, execute_unit, failed_or_finished
from workbench.runs.lifecycle import RunSpec
from workbench.runs.store import RunStore

log = logging.getLogger(__name__)


# share of one GPU a run requests on Ray, by non-embedding parameters (first row whose floor N reaches)
GPU_SHARES = ((20_000_000, 1.0), (2_000_000, 0.5), (0, 0.25))
# environment a Ray worker needs to see the same data, task files and offline settings as the driver
FORWARD_ENV = ("WORKBENCH_DATA_DIR", "WORKBENCH_TASKS_DIR", "WORKBENCH_TASK_WHEELS", "WORKBENCH_SOURCES_DIR",
               "WORKBENCH_CORPUS_ARCHIVES", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def gpu_share(n_params: int) -> float:
    return next(share for floor, share in GPU_SHARES if n_params >= floor)


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
        _reachable(address)
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


PROBE_S = 5.0  # how long the address check waits for a TCP connection before it says nothing listens


def _reachable(address: str) -> None:
    """Fail in seconds, naming the address, when nothing listens there: `ray.init` itself retries an
    unreachable GCS for many minutes. `auto` (find the local cluster) is left to Ray."""
    import socket
    from urllib.parse import urlsplit

    if address in ("auto", "local"):
        return
    target = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = target.hostname, target.port
    except ValueError:
        raise WorkbenchError(f"Ray address {address!r} has no valid port: give host:port, e.g. 10.0.0.1:6379 "
                             f"or ray://10.0.0.1:10001") from None
    if not host or not port:
        raise WorkbenchError(f"Ray address {address!r} is not host:port: give e.g. 10.0.0.1:6379, "
                             f"ray://10.0.0.1:10001 or auto")
    try:
        socket.create_connection((host, port), timeout=PROBE_S).close()
    except OSError as e:
        raise WorkbenchError(f"nothing answers at the Ray address {address} ({e.strerror or type(e).__name__}"
                             f"{'' if e.strerror else f' after {PROBE_S:g} s'}): start the cluster (`ray start "
                             f"--head`) or check --ray-address / $RAY_ADDRESS") from None


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
        tally = Tally(len(jobs), desc, self.cfg.progress, on_done)

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
                    outcomes = [failed_or_finished(j, store, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
                                for j in unit]
                for job, o in zip(unit, outcomes):
                    tally.record(job, o)
        return tally.close()


