"""Vectorised hierarchical bootstrap vs a plain Python loop: B = 1000 on 8 sizes x 5 seeds.

    python benchmarks/bootstrap_speed.py

Prints the median time of each over several repeats and the ratio. Target: the vectorised one
well under 0.1 s.
"""

from __future__ import annotations

import time

import numpy as np

from workbench.laws.bootstrap import bootstrap_power_law, bootstrap_power_law_loop


def timed(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    n = np.repeat(12 * np.arange(1, 9) * (32 * np.arange(1, 9)) ** 2, 5).astype(float)
    y = np.exp(2.5 - 0.08 * np.log(n) + rng.normal(0, 0.02, len(n)))
    vec = timed(lambda i: bootstrap_power_law(n, y, B=1000, random_state=i), 20)
    loop = timed(lambda i: bootstrap_power_law_loop(n, y, B=1000, random_state=i), 3)
    print("hierarchical bootstrap, B=1000, 8 sizes x 5 seeds")
    print(f"  vectorised : {vec * 1e3:8.2f} ms")
    print(f"  python loop: {loop * 1e3:8.2f} ms")
    print(f"  ratio      : {loop / vec:8.1f}x   (target: vectorised well under 100 ms)")


if __name__ == "__main__":
    main()
