"""Many runs at once: parallel workers and ensembles against one run at a time, side by side.

    python benchmarks/parallel_speed.py                 # all three parts (~30 min on 2 idle cores)
    python benchmarks/parallel_speed.py --part ensemble --sizes ar32:1,ar32:2,ar64:3

Every side trains real runs through the workbench's executors into a fresh temporary run store,
with the default study's recipe (`cpu` profile: vocabulary 4096, 64 tokens, batch 32) and a fixed
number of steps (no early stop), and is timed by the wall clock around the whole call (start-up of
worker processes, set-up, evaluation and checkpoints included):

  workers  : two runs of each default-sweep size (ar32 L1-4), 2 worker processes x 1 thread vs one
             at a time with all threads; then the whole 4-size sweep both ways.
  ensemble : 8 seeds of one size as one ensemble vs the 8 runs one at a time (12K, 98K, 1.3M).
  finetune : the finetuning grid of one size (2 LRs x 2 epochs x 2 seeds on TREC) as one ensemble vs
             one at a time.

Prints aggregate tokens/s (or examples/s) of each side, the ratio and the target, and the model
FLOP/s as a share of this CPU's measured fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import torch

from workbench.base.family import model_spec
from workbench.config import ExecConfig, PretrainConfig, load
from workbench.execute.contract import run_jobs
from workbench.runs.pretrain import PretrainSpec

TARGETS = dict(workers=1.7, ensemble_small=3.0, ensemble_1m=1.5, finetune=2.0)


def matmul_peak(threads: int, n: int = 2048, reps: int = 10) -> float:
    """fp32 FLOP/s of a large square matmul with `threads` threads (the CPU's practical peak)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.set_num_threads(before)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def recipe(steps: int):
    study = load("cpu")
    train = replace(study.sweep.train, max_steps=steps, eval_interval=steps, patience=steps + 1, warmup_steps=5)
    return study, replace(study.sweep, train=train)


def timed(jobs, exec_cfg) -> tuple[float, list[dict]]:
    """Wall seconds of the whole call, and the runs' summaries (their training clocks)."""
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        outcomes = run_jobs(jobs, root, exec_cfg, desc="bench")
        wall = time.perf_counter() - t
    bad = [o for o in outcomes if o.status != "completed"]
    if bad:
        raise SystemExit(f"benchmark runs failed: {bad[0].error}")
    return wall, [o.summary for o in outcomes]


def flops_per_token(family: str, layers: int, sweep) -> float:
    return model_spec(family, layers).train_flops_per_token(sweep.data.seq_len, sweep.data.vocab_size,
                                                            head_fraction=sweep.train.mask_prob)


def part_workers(a, peak: float) -> None:
    study, sweep = recipe(a.steps or 400)
    tokens = sweep.train.max_steps * sweep.train.batch_size * sweep.data.seq_len
    one = ExecConfig(device="cpu", progress=False, workers=1, ensemble=0)
    par = replace(one, workers=2)
    print(f"\n## workers: 2 processes x 1 thread vs one run at a time x {torch.get_num_threads()} threads "
          f"({sweep.train.max_steps} steps per run, wall clock incl. start-up)")
    print(f"{'runs':<20}{'alone tok/s':>13}{'2 workers tok/s':>17}{'ratio':>8}{'steady ratio':>14}{'target':>8}"
          f"{'peak share':>12}")
    for layers in sweep.layers:
        jobs = [PretrainSpec(PretrainConfig(sweep.family, layers, s, sweep.data, sweep.train)) for s in (0, 1)]
        (t1, s1), (t2, s2) = timed(jobs, one), timed(jobs, par)
        # steady state: tokens/s of the training clocks, one after another (mean) vs side by side (sum)
        steady = sum(x["tokens_per_s"] for x in s2) / (sum(x["tokens_per_s"] for x in s1) / len(s1))
        share = 2 * tokens * flops_per_token(sweep.family, layers, sweep) / t2 / peak
        print(f"{f'2 x ar32-L{layers}':<20}{2 * tokens / t1:>13,.0f}{2 * tokens / t2:>17,.0f}{t1 / t2:>7.2f}x"
              f"{steady:>13.2f}x{TARGETS['workers']:>7}x{share:>12.1%}", flush=True)
    jobs = [PretrainSpec(c) for c in sweep.runs()]
    (t1, _), (t2, _) = timed(jobs, one), timed(jobs, par)
    n = len(jobs) * tokens
    print(f"{'sweep L' + '-'.join(map(str, sweep.layers)):<20}{n / t1:>13,.0f}{n / t2:>17,.0f}{t1 / t2:>7.2f}x"
          f"{'':>14}{TARGETS['workers']:>7}x", flush=True)


def part_ensemble(a, peak: float) -> None:
    print(f"\n## ensemble: 8 seeds as one ensemble vs 8 runs one at a time ({torch.get_num_threads()} threads)")
    print(f"{'size':<12}{'N':>11}{'steps':>7}{'alone tok/s':>13}{'ensemble tok/s':>16}{'ratio':>8}{'target':>8}"
          f"{'alone peak':>12}{'ens. peak':>11}")
    for item in a.sizes.split(","):
        fam, layers = item.split(":")
        n_params = model_spec(fam, int(layers)).n_params
        study, sweep = recipe(a.steps or (100 if n_params < 200_000 else 30))
        sweep = replace(sweep, family=fam)
        jobs = [PretrainSpec(PretrainConfig(fam, int(layers), s, sweep.data, sweep.train)) for s in range(8)]
        alone, _ = timed(jobs, ExecConfig(device="cpu", progress=False, workers=1, ensemble=0))
        together, _ = timed(jobs, ExecConfig(device="cpu", progress=False, workers=1, ensemble=8))
        tokens = 8 * sweep.train.max_steps * sweep.train.batch_size * sweep.data.seq_len
        fpt = flops_per_token(fam, int(layers), sweep)
        target = TARGETS["ensemble_small"] if n_params <= 100_000 else TARGETS["ensemble_1m"]
        print(f"{f'{fam}-L{layers}':<12}{n_params:>11,}{sweep.train.max_steps:>7}{tokens / alone:>13,.0f}"
              f"{tokens / together:>16,.0f}{alone / together:>7.2f}x{target:>7}x"
              f"{tokens / alone * fpt / peak:>12.1%}{tokens / together * fpt / peak:>11.1%}", flush=True)


def part_finetune(a, peak: float) -> None:
    from workbench.execute.finetune_study import pretrained_runs
    from workbench.execute.sweep import run_sweep
    from workbench.runs.finetune import FinetuneSpec

    study, sweep = recipe(100)
    layers = int(a.finetune_layers)
    sweep = replace(sweep, layers=(layers,))
    ft = study.finetune
    with tempfile.TemporaryDirectory() as root:
        run_sweep(sweep, root, ExecConfig(device="cpu", progress=False, workers=1))
        ckpt = pretrained_runs(sweep, root)[layers]
        jobs = [FinetuneSpec(ft.run("trec", ckpt, lr, ep, seed)) for lr in (3e-4, 1e-3) for ep in (2, 3)
                for seed in (0, 1)]
        alone, _ = timed(jobs, ExecConfig(device="cpu", progress=False, workers=1, ensemble=0))
        together, _ = timed(jobs, ExecConfig(device="cpu", progress=False, workers=1, ensemble=8))
    examples = sum(j.cfg.epochs for j in jobs) * ft.max_train
    print(f"\n## finetune: TREC grid of ar32-L{layers} (2 LRs x 2 epochs x 2 seeds, {ft.max_train} examples)")
    print(f"{'':<12}{'alone ex/s':>12}{'ensemble ex/s':>15}{'ratio':>8}{'target':>8}")
    print(f"{'grid of 8':<12}{examples / alone:>12,.0f}{examples / together:>15,.0f}{alone / together:>7.2f}x"
          f"{TARGETS['finetune']:>7}x", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("all", "workers", "ensemble", "finetune"), default="all")
    p.add_argument("--sizes", default="ar32:1,ar32:2,ar64:3", help="ensemble sizes, family:layers")
    p.add_argument("--steps", type=int, default=0, help="steps per run (default: by part and size)")
    p.add_argument("--finetune-layers", default="2")
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    threads = torch.get_num_threads()
    peak = matmul_peak(threads)
    print(f"cores={os.cpu_count()} torch threads={threads} fp32 matmul peak={peak / 1e9:.1f} GFLOP/s "
          f"(2048^2, {threads} threads)")
    for name in ("workers", "ensemble", "finetune"):
        if a.part in ("all", name):
            globals()[f"part_{name}"](a, peak)


if __name__ == "__main__":
    main()
