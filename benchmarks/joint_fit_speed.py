"""The joint law's fit on 1,000 points: the screened starts (search="screen", the default) against
L-BFGS-B from each of the 27 fixed starts (search="grid", how every fit ran before).

    python benchmarks/joint_fit_speed.py [--repeats 5]

Six families of checkpoint tables (8-10 sizes x 100-166 checkpoints), three noise draws each:
  chinchilla   the law itself, Hoffmann et al.'s parameters, 1% noise
  schedule     the law bent by a learning-rate schedule (a bump mid-run, a dip at the end)
  misspecified loss = c + a / log(N)^1.5 + b / log(D): not a power law at all
  warmup       OPT-like sizes, a fast early drop the law cannot follow, 2% noise
  no-floor     a pure product of powers: E = 0 at the optimum (a bound)
  multi-epoch  loss rising again late in training, growing with size

Prints, per family, the median time of each search over `repeats` fits, the ratio, the largest
relative difference of the five parameters (E, A, alpha, B, beta) and the ratio of the Huber
losses reached. Target: >= 10x on every family, parameters equal to 1e-6 relative.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from workbench.laws.joint import JointLaw


def family(kind: str, seed: int, points: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = np.geomspace(1.25e8, 1.75e11, 8) if kind == "warmup" else np.geomspace(1e7, 2e9, 8)
    k = points // len(sizes)
    n = np.repeat(sizes, k)
    frac = np.tile(np.geomspace(0.02, 1, k), len(sizes))  # checkpoints over each run
    d = frac * 3e11 if kind == "warmup" else frac * 20 * n
    law = 1.69 + 406.4 * n ** -0.34 + 410.7 * d ** -0.28
    if kind == "chinchilla":
        y = law * np.exp(rng.normal(0, 0.01, len(n)))
    elif kind == "schedule":
        y = law * (1 + 0.04 * np.sin(np.pi * frac) ** 2 - 0.02 * frac) * np.exp(rng.normal(0, 0.005, len(n)))
    elif kind == "misspecified":
        y = (1.5 + 30 * np.log(n) ** -1.5 + 5 / np.log(d)) * np.exp(rng.normal(0, 0.003, len(n)))
    elif kind == "warmup":
        y = (1.8 + 50 * n ** -0.2 + 2000 * d ** -0.4 + 3 * np.exp(-frac * 200)) * np.exp(rng.normal(0, 0.02, len(n)))
    elif kind == "no-floor":
        y = 30 * n ** -0.1 * (1 + 1e3 * d ** -0.3) * np.exp(rng.normal(0, 0.01, len(n)))
    elif kind == "multi-epoch":
        y = (law + 0.3 * np.maximum(frac - 0.5, 0) ** 2 * np.log10(n)) * np.exp(rng.normal(0, 0.005, len(n)))
    else:
        raise ValueError(kind)
    return n, d, y


FAMILIES = ("chinchilla", "schedule", "misspecified", "warmup", "no-floor", "multi-epoch")


def timed(search: str, n, d, y, repeats: int) -> tuple[float, JointLaw]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        law = JointLaw(search=search).fit(n, y, tokens=d)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), law


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    print(f"joint law L(N, D), 1,000 points, median of {args.repeats} fits, {args.seeds} noise draws per family")
    print(f"{'family':14s} {'seed':>4s} {'grid ms':>9s} {'screen ms':>9s} {'ratio':>7s} {'max rel diff':>12s} "
          f"{'loss ratio':>13s}")
    ratios, diffs = [], []
    for kind in FAMILIES:
        for seed in range(args.seeds):
            n, d, y = family(kind, seed)
            t_grid, grid = timed("grid", n, d, y, max(1, args.repeats // 2))
            t_screen, screen = timed("screen", n, d, y, args.repeats)
            a, b = (np.array(list(law.params_.values())) for law in (screen, grid))
            diff = float((np.abs(a - b) / np.maximum(np.abs(b), 1e-12)).max())
            ratios.append(t_grid / t_screen)
            diffs.append(diff)
            print(f"{kind:14s} {seed:4d} {t_grid * 1e3:9.1f} {t_screen * 1e3:9.1f} {t_grid / t_screen:6.1f}x "
                  f"{diff:12.1e} {screen.loss_ / grid.loss_:13.10f}")
    print(f"ratio: min {min(ratios):.1f}x, median {np.median(ratios):.1f}x (target >= 10x); "
          f"largest parameter difference {max(diffs):.1e} (target <= 1e-6)")


if __name__ == "__main__":
    main()
