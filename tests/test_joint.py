"""The joint law L(N, D) = E + A N^-alpha + B D^-beta on synthetic surfaces with known parameters."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

from workbench.errors import FitError
from workbench.joint import JointLaw, bootstrap_joint, optimal_split

TRUTH = dict(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)  # Chinchilla-like


def surface(rng, sizes=np.geomspace(1e5, 1e8, 6), tokens=np.geomspace(1e8, 1e11, 6), noise=0.005, truth=TRUTH):
    rng = np.random.default_rng(rng)
    n, d = (a.ravel() for a in np.meshgrid(sizes, tokens))
    y = (truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"]) \
        * np.exp(rng.normal(0, noise, len(n)))
    return pd.DataFrame(dict(n_params=n, tokens=d, value=y, seed=np.arange(len(n))))


def test_recovers_a_known_surface():
    df = surface(0)
    law = JointLaw().fit(df.n_params, df.tokens, df.value)
    p = law.params_
    assert p["alpha"] == pytest.approx(0.34, abs=0.01) and p["beta"] == pytest.approx(0.28, abs=0.015)
    assert p["E"] == pytest.approx(1.7, rel=0.05) and p["A"] == pytest.approx(400, rel=0.3)
    assert p["B"] == pytest.approx(410, rel=0.5) and law.r2_ > 0.99


def test_intervals_cover_the_truth_and_the_optimal_split_is_the_minimum():
    boot = bootstrap_joint(surface(1), B=80)
    for name, value in TRUTH.items():
        lo, hi = boot.ci(name)
        assert lo <= value <= hi, (name, lo, hi)
    budget = 1e21
    opt = boot.optimal(budget)
    law = boot.law
    best = minimize_scalar(lambda ln: float(law.predict(np.exp(ln), budget / (6 * np.exp(ln)))),
                           bounds=(np.log(1e6), np.log(1e12)), method="bounded")
    assert opt["n_opt"] == pytest.approx(np.exp(best.x), rel=1e-3)
    assert opt["n_low"] <= opt["n_opt"] <= opt["n_high"] and opt["d_opt"] * opt["n_opt"] * 6 == pytest.approx(budget)
    true_n, _ = optimal_split(np.array([[TRUTH[k] for k in ("E", "A", "alpha", "B", "beta")]]), budget)
    assert opt["n_low"] <= true_n[0, 0] <= opt["n_high"]


def test_collinear_sizes_and_tokens_are_refused():
    n = np.geomspace(1e5, 1e8, 8)
    with pytest.raises(FitError, match="N and D move together"):
        JointLaw().fit(n, 20 * n, 2 + n ** -0.3)  # the compute-optimal ladder alone: D = 20 N
    with pytest.raises(FitError, match="at least two sizes and two token counts"):
        JointLaw().fit(n, np.full(8, 1e9), 2 + n ** -0.3)


def test_an_ill_conditioned_design_gives_wide_but_honest_intervals():
    """Two token counts per size, close to D = 20 N: the terms are hard to separate. The intervals
    widen (compared with a full grid) and still cover the truth."""
    rng = np.random.default_rng(3)
    sizes = np.geomspace(1e5, 1e8, 8)
    n = np.repeat(sizes, 2)
    d = np.repeat(20 * sizes, 2) * np.tile([1.0, 3.0], 8)
    y = (1.7 + 400 * n ** -0.34 + 410 * d ** -0.28) * np.exp(rng.normal(0, 0.005, len(n)))
    narrow = bootstrap_joint(pd.DataFrame(dict(n_params=n, tokens=d, value=y, seed=np.arange(len(n)))), B=60)
    full = bootstrap_joint(surface(4), B=60)
    width = {k: np.diff(narrow.ci(k))[0] / np.diff(full.ci(k))[0] for k in ("alpha", "beta")}
    assert min(width.values()) > 2, width
    assert narrow.ci("alpha")[0] <= 0.34 <= narrow.ci("alpha")[1]


def test_the_bootstrap_resamples_runs_not_checkpoints():
    df = surface(5, sizes=np.geomspace(1e5, 1e8, 5), tokens=np.geomspace(1e8, 1e11, 5))
    df["seed"] = 0  # one run per size: its checkpoints (token counts) travel together
    df["step"] = df.groupby("n_params").cumcount()
    boot = bootstrap_joint(df, B=30)
    assert boot.n_runs == 5 and boot.n_points == 25


@pytest.mark.slow
def test_intervals_cover_the_truth_in_about_95_percent_of_200_studies():
    hits = {k: 0 for k in TRUTH}
    for seed in range(200):
        boot = bootstrap_joint(surface(1000 + seed, noise=0.01), B=100, random_state=seed)
        for k, v in TRUTH.items():
            lo, hi = boot.ci(k)
            hits[k] += lo <= v <= hi
    assert all(150 <= h <= 200 for h in hits.values()), hits  # 95% intervals, loosely
