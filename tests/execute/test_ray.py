"""The Ray executor on a real Ray cluster, started here on 127.0.0.1 with 2 CPUs: a sweep runs every
run exactly once with the local executor's results, and a run whose worker is killed mid-way is
retried by Ray and completes from its checkpoint."""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

# Ray >= 2.59 turns token authentication on for clusters started with `ray start`, and a driver reads
# its auth settings when Ray is imported: the head, its workers, this driver and the driver subprocesses
# share one private token, as on a real cluster (README: "Token authentication")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray  # a real local Ray head and drivers

from helpers import QUIET, TINY_DATA, TINY_TRAIN  # noqa: E402

from workbench.base.files import read_json  # noqa: E402
from workbench.base.runfiles import read_metrics  # noqa: E402
from workbench.config import PretrainConfig  # noqa: E402
from workbench.execute.contract import counts, run_jobs  # noqa: E402
from workbench.execute.raycluster import connect_ray  # noqa: E402
from workbench.runs.pretrain import PretrainSpec  # noqa: E402
from workbench.runs.store import RunStore  # noqa: E402

RAY_CLI = Path(sys.executable).parent / "ray"  # the ray script of this environment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_data):
    """`ray start --head --block` on 127.0.0.1 with 2 CPUs, in its own process group (stopped by
    signalling that group, so no other Ray on the machine is touched)."""
    cli = str(RAY_CLI) if RAY_CLI.exists() else shutil.which("ray")
    port = _free_port()
    start = [cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--num-gpus=0", "--object-store-memory=100000000", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={tmp_path_factory.mktemp('ray')}"]
    head = subprocess.Popen(start, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "RAY_ADDRESS": ""})
    log = []
    try:
        for line in head.stdout:  # until the head says it is up (or exits)
            log.append(line)
            if "Ray runtime started" in line:
                break
        assert head.poll() is None, "".join(log)
        connect_ray(f"127.0.0.1:{port}")
        assert ray.cluster_resources()["CPU"] == 2
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # a throw-away cluster: no graceful stop needed
        head.wait(timeout=60)


def _cfg(layers, seed=0, **train):
    return PretrainConfig("ar32", layers, seed, TINY_DATA, replace(TINY_TRAIN, **train))


def test_ray_sweep_runs_each_run_once_with_the_local_results(cluster, tmp_path):
    cfgs = [_cfg(n, s) for n in (1, 2) for s in (0, 1)]
    jobs = [PretrainSpec(c) for c in cfgs]
    on_ray = run_jobs(jobs, tmp_path / "ray", replace(QUIET, executor="ray", ray_address=cluster, cpus_per_run=1))
    here = run_jobs(jobs, tmp_path / "local", replace(QUIET, cpus_per_run=1))
    assert counts(on_ray) == dict(runs=4, skipped=0, completed=4, diverged=0, failed=0, retried=0, attempts=4, lost=0)
    for a, b in zip(on_ray, here):
        assert a.summary["best_eval_loss"] == pytest.approx(b.summary["best_eval_loss"], rel=1e-6)
        assert (a.summary["steps"], a.summary["best_step"]) == (b.summary["steps"], b.summary["best_step"])
    workers = {RunStore(tmp_path / "ray").attempts(j.run_id)[0]["pid"] for j in jobs}
    assert os.getpid() not in workers  # they ran in Ray workers, not here
    again = run_jobs(jobs, tmp_path / "ray", replace(QUIET, executor="ray", ray_address=cluster))
    assert all(o.skipped for o in again)  # finished runs are not resubmitted


def test_killed_ray_worker_run_is_retried_from_its_checkpoint(cluster, tmp_path):
    cfg = _cfg(2, max_steps=400, eval_interval=10, patience=1000)
    job, root = PretrainSpec(cfg), tmp_path / "runs"
    run = root / job.run_id
    result = {}
    driver = threading.Thread(target=lambda: result.update(out=run_jobs(
        [job], root, replace(QUIET, executor="ray", ray_address=cluster, max_retries=2))))
    driver.start()
    deadline = time.time() + 300
    while time.time() < deadline and len(read_metrics(run)) < 3:
        time.sleep(0.1)
    assert len(read_metrics(run)) >= 3, "the run did not start in time"
    victim = read_json(run / "claim.json")["pid"]
    os.kill(victim, signal.SIGKILL)
    driver.join(timeout=600)
    (out,) = result["out"]
    assert out.status == "completed" and out.summary["steps"] == 400
    attempts = RunStore(root).attempts(job.run_id)
    assert len(attempts) == 2 and attempts[0]["pid"] == victim and attempts[1]["resume_checkpoint"]
    steps = [r["step"] for r in read_metrics(run)]
    assert steps == list(range(10, 401, 10))  # resumed: nothing lost, nothing logged twice
    assert counts([out])["retried"] == 1


def test_killed_driver_on_ray_loses_nothing_and_redoes_nothing(cluster, tmp_path):
    """kill -9 the driver while its Ray tasks train; the same command again finishes the sweep."""
    root = tmp_path / "runs"
    args = [sys.executable, "-m", "workbench.front.cli", "sweep", "--profile", "smoke", "--root", str(root),
            "--executor", "ray", "--ray-address", cluster, "--set", "sweep.train.max_steps=300",
            "--set", "sweep.train.patience=1000", "--set", "sweep.layers=[1, 2]"]
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def both_training() -> bool:
        logs = list(root.glob("*/metrics.jsonl"))
        return len(logs) == 2 and all(len(read_metrics(p.parent)) >= 3 for p in logs)

    deadline = time.time() + 300
    while time.time() < deadline and not both_training():
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    runs = sorted(p.parent for p in root.glob("*/metrics.jsonl"))
    assert len(runs) == 2, "the sweep did not start both runs in time"
    finished_before = {r: (r / "summary.json").stat().st_mtime_ns for r in runs if (r / "summary.json").exists()}
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "runs: runs 2" in again.stdout and "lost 0" in again.stdout
    for r in runs:
        assert read_json(r / "summary.json")["steps"] == 300
        assert [m["step"] for m in read_metrics(r)] == list(range(10, 301, 10))  # nothing lost or logged twice
    for r, mtime in finished_before.items():
        assert (r / "summary.json").stat().st_mtime_ns == mtime  # finished runs were not redone
