"""The joint law L(N, D) = E + A N^-alpha + B D^-beta on synthetic surfaces with known parameters."""

import numpy as np
import pandas as pd
import pytest
from helpers import EXAMPLE_LADDER
from scipy.optimize import minimize_scalar

from workbench.base.errors import FitError
from workbench.laws.joint import JointLaw, bootstrap_joint, compute_optimal, optimal_split

TRUTH = dict(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)  # Chinchilla-like


def surface(rng, sizes=np.geomspace(1e5, 1e8, 6), tokens=np.geomspace(1e8, 1e11, 6), noise=0.005, truth=TRUTH):
    rng = np.random.default_rng(rng)
    n, d = (a.ravel() for a in np.meshgrid(sizes, tokens))
    y = (truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"]) \
        * np.exp(rng.normal(0, noise, len(n)))
    return pd.DataFrame(dict(n_params=n, tokens=d, value=y, seed=np.arange(len(n))))


def test_recovers_a_known_surface():
    df = surface(0)
    law = JointLaw().fit(df.n_params, df.value, tokens=df.tokens)
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
    opt = compute_optimal(boot, budget)
    law = boot.fitted
    best = minimize_scalar(lambda ln: float(law.predict(np.exp(ln), tokens=budget / (6 * np.exp(ln)))),
                           bounds=(np.log(1e6), np.log(1e12)), method="bounded")
    assert opt["n_opt"] == pytest.approx(np.exp(best.x), rel=1e-3)
    assert opt["n_low"] <= opt["n_opt"] <= opt["n_high"] and opt["d_opt"] * opt["n_opt"] * 6 == pytest.approx(budget)
    true_n, _ = optimal_split(np.array([[TRUTH[k] for k in ("E", "A", "alpha", "B", "beta")]]), budget)
    assert opt["n_low"] <= true_n[0, 0] <= opt["n_high"]


def test_collinear_sizes_and_tokens_are_refused():
    n = np.geomspace(1e5, 1e8, 8)
    with pytest.raises(FitError, match="N and D move together"):
        JointLaw().fit(n, 2 + n ** -0.3, tokens=20 * n)  # the compute-optimal ladder alone: D = 20 N
    with pytest.raises(FitError, match="at least two sizes and two token counts"):
        JointLaw().fit(n, 2 + n ** -0.3, tokens=np.full(8, 1e9))


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
    assert all(175 <= h <= 200 for h in hits.values()), hits  # 95% intervals, loosely


# ------------------------------------------------------------------ through the Law protocol


def ladder(rng=0, variants=None, sizes=np.geomspace(1e5, 1e8, 5), seeds=2, steps=12, noise=0.003):
    """Checkpoints of a model ladder: every size trained for `steps` evaluations of 5e8 tokens."""
    rng = np.random.default_rng(rng)
    variants = variants or {"a": TRUTH}
    rows = [dict(variant=v, n_params=n, seed=s, step=k, tokens=k * 5e8,
                 value=(t["E"] + t["A"] * n ** -t["alpha"] + t["B"] * (k * 5e8) ** -t["beta"])
                 * np.exp(rng.normal(0, noise)))
            for v, t in variants.items() for n in sizes for s in range(seeds) for k in range(1, steps + 1)]
    return pd.DataFrame(rows)


def test_without_tokens_the_joint_law_is_its_limit_of_unlimited_tokens():
    df = surface(0)
    law = JointLaw().fit(df)  # a table with n_params, tokens and value
    n = np.array([1e6, 1e9])
    assert law.predict(n) == pytest.approx(law.E_ + law.A_ * n ** -law.alpha_, rel=1e-12)
    assert law.predict(n, tokens=np.inf) == pytest.approx(law.predict(n), rel=1e-12)
    assert law.predict(n, tokens=1e10) == pytest.approx(law.predict(n) + law.B_ * 1e10 ** -law.beta_, rel=1e-12)
    with pytest.raises(FitError, match="needs column"):
        JointLaw().fit(df.drop(columns="tokens"))


def test_the_bootstrap_draws_whole_runs_within_sizes():
    from workbench.laws.bootstrap import SizeGroups
    from workbench.laws.fit import run_units

    df = ladder(1, steps=5)
    runs = run_units(df)
    groups = SizeGroups.of(df.n_params.to_numpy(), runs)
    W = groups.weights(200, np.random.default_rng(0))
    sorted_runs = runs[groups.order]
    for r in np.unique(runs):  # every checkpoint of a run carries the run's count
        cols = W[:, sorted_runs == r]
        assert (cols == cols[:, :1]).all()
    per_size = W.reshape(200, -1, 5)[:, :, 0].reshape(200, 5, 2).sum(2)  # runs drawn per size slot
    assert (W.sum(1) == len(df)).all() and per_size.sum(1).tolist() == [10] * 200


def test_the_joint_law_goes_through_reports_plots_backtests_and_selection():
    """`fit.law=joint`: the same report, figure, backtest and selection as any law, on checkpoints,
    with held-out runs predicted at their own tokens."""
    from workbench.config import FitConfig
    from workbench.front.plots import plot_fit
    from workbench.laws.report import law_report
    from workbench.laws.selection import selection_report
    from workbench.laws.tables import backtest, law_points

    better = dict(TRUTH, E=1.6, A=600.0, alpha=0.36)  # wins at 1e8 (2.91 vs 3.05 at its tokens)
    df = ladder(2, variants={"a": TRUTH, "b": better})
    fit = FitConfig(law="joint", n_bootstrap=40)
    points = law_points(df[df.variant == "a"], "joint")
    assert points.step.min() == 3  # the first 10% of each run dropped
    report = law_report(points, fit)
    assert report.params["alpha"] == pytest.approx(0.34, abs=0.02)
    for name in ("alpha", "beta", "E"):  # tokens span less than a decade here: beta is loose, but covered
        lo, hi = report.params_ci[name]
        assert lo <= TRUTH[name] <= hi, (name, lo, hi)
    assert report.n_runs == 10 and report.points_per_run == 10 and report.n_points == 100
    held = report.held_out[0]
    assert abs(held.re) < 0.01 and held.lower < held.pred < held.upper
    text = report.describe()
    assert "100 points from 10 runs" in text and "at their own tokens" in text
    fig = plot_fit(report)
    assert "predicted at its tokens" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    bt = backtest(df, fit).set_index("variant")
    assert bt.law_beats_baselines.all() and (bt.law_are < 0.01).all()
    sel = selection_report(law_points(df, "joint"), ("a", "b"), fit)
    assert sel.winner == "b" and sel.prediction_right and "where the runs at the target stopped" in sel.verdict


def test_fit_law_joint_on_the_command_line_matches_python(capsys):

    from workbench.config import load
    from workbench.front.cli import main
    from workbench.laws.report import law_report
    from workbench.laws.tables import law_points, read_table

    example = EXAMPLE_LADDER
    sets = ["--set", "fit.law=joint", "--set", "fit.n_bootstrap=30"]
    assert main(["fit", "--table", str(example), "--profile", "smoke", *sets]) == 0
    out = capsys.readouterr().out
    fit = load("smoke", ["fit.law=joint", "fit.n_bootstrap=30"]).fit
    for variant, rows in law_points(read_table(example), "joint").groupby("variant"):
        assert f"{variant}: {law_report(rows, fit).describe()}" in out
        assert "compute-optimal at C" in out and "joint law L(N, D) = E" not in out  # reported once, above


def test_a_long_bootstrap_shows_progress_and_stops_cleanly_on_ctrl_c(monkeypatch, capsys):
    """Refits one by one: a bar once it takes long (here: at once), and Ctrl-C between two refits ends
    the fit with KeyboardInterrupt (the CLI's `interrupted`, exit 130), the bar closed."""
    from workbench.base import progress

    monkeypatch.setattr(progress, "REFITS_AFTER_S", 0.0)
    df = surface(0)
    bootstrap_joint(df, B=12)
    assert "joint law: bootstrap refits" in capsys.readouterr().err

    calls = {"n": 0}
    real = JointLaw.fit

    def interrupted(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(JointLaw, "fit", interrupted)
    from tqdm.auto import tqdm

    with pytest.raises(KeyboardInterrupt):
        bootstrap_joint(df, B=12)
    assert calls["n"] == 5
    assert not [b for b in getattr(tqdm, "_instances", ()) if "bootstrap refits" in str(b.desc)]  # closed


def test_ctrl_c_during_a_table_fit_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    from workbench.front.cli import main

    surface(0).to_csv(tmp_path / "grid.csv", index=False)

    def interrupted(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(JointLaw, "fit", interrupted)
    rc = main(["fit", "--profile", "smoke", "--law", "joint", "--table", str(tmp_path / "grid.csv")])
    assert rc == 130 and capsys.readouterr().err.strip().splitlines()[-1] == "interrupted"


def checkpoints(kind: str, seed: int):
    """Checkpoint tables of 8 sizes x 40 checkpoints: the law itself, one bent by a learning-rate
    schedule, and one of another form (loss in powers of log N and log D)."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(1e7, 2e9, 8), 40)
    frac = np.tile(np.geomspace(0.02, 1, 40), 8)
    d = frac * 20 * n
    y = 1.69 + 406.4 * n ** -0.34 + 410.7 * d ** -0.28
    if kind == "schedule":
        y = y * (1 + 0.04 * np.sin(np.pi * frac) ** 2 - 0.02 * frac)
    elif kind == "misspecified":
        y = 1.5 + 30 * np.log(n) ** -1.5 + 5 / np.log(d)
    return n, d, y * np.exp(rng.normal(0, 0.005, len(n)))


@pytest.mark.parametrize("kind", ["law", "schedule", "misspecified"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_screened_starts_reach_the_optimum_of_the_27_fixed_ones(kind, seed):
    n, d, y = checkpoints(kind, seed)
    screen, grid = (JointLaw(search=s).fit(n, y, tokens=d) for s in ("screen", "grid"))
    assert screen.loss_ <= grid.loss_ * (1 + 1e-9)
    a, b = (np.array(list(law.params_.values())) for law in (screen, grid))
    assert np.allclose(a, b, rtol=1e-5), (a, b)


def test_the_screen_takes_sample_weights_and_names_its_searches():
    n, d, y = checkpoints("law", 2)
    w = np.random.default_rng(0).integers(0, 3, len(y)).astype(float)  # a bootstrap draw: zeros drop points
    keep = np.repeat(np.arange(len(y)), w.astype(int))
    weighted = JointLaw().fit(n, y, tokens=d, sample_weight=w)
    repeated = JointLaw().fit(n[keep], y[keep], tokens=d[keep])
    assert np.allclose(list(weighted.params_.values()), list(repeated.params_.values()), rtol=1e-5)
    with pytest.raises(FitError, match="search must be one of screen, grid, got 'random'"):
        JointLaw(search="random")


def test_the_screen_spends_a_fraction_of_the_evaluations_of_the_fixed_starts(monkeypatch):
    """Speed is a benchmark's (benchmarks/joint_fit_speed.py); what makes it is counted here: the
    loss evaluations of L-BFGS-B from the screened starts against those from the 27 fixed ones."""
    import workbench.laws.joint as joint

    calls = []

    def counting(fun, x0, **kwargs):
        calls.append(0)
        return minimize(lambda p: (calls.__setitem__(-1, calls[-1] + 1), fun(p))[1], x0, **kwargs)

    from scipy.optimize import minimize
    monkeypatch.setattr(joint, "minimize", counting)
    n, d, y = checkpoints("law", 0)
    JointLaw(search="grid").fit(n, y, tokens=d)
    grid, calls[:] = sum(calls), []
    JointLaw().fit(n, y, tokens=d)
    assert 2 <= len(calls) <= 3 and sum(calls) * 8 < grid, (calls, grid)  # one or two starts and the polish


def test_the_screen_solves_the_amplitudes_in_closed_form():
    """On noise-free points whose floor and exponents lie on the screen's grid, its best start is
    the truth itself (in the fit's centred coordinates), before any L-BFGS-B."""
    from workbench.laws.joint import SCREEN_EXPONENTS, _screen

    alpha, beta = SCREEN_EXPONENTS[12], SCREEN_EXPONENTS[10]
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e8, 6), np.geomspace(1e8, 1e11, 7)))
    y = 300.0 * n ** -alpha + 80.0 * d ** -beta  # E = 0, a floor on the grid
    c1, c2 = np.median(np.log(n)), np.median(np.log(d))
    x1, x2 = np.log(n) - c1, np.log(d) - c2
    bounds = [(0.0, y.min() * (1 - 1e-9)), (-30.0, 30.0), (1e-3, 3.0), (-30.0, 30.0), (1e-3, 3.0)]
    best = _screen(x1, x2, y, np.log(y), np.ones_like(y), y.min(), bounds, 1e-3)[0]
    E, la, a, lb, b = best
    assert E == 0 and a == alpha and b == beta
    assert np.exp(la + a * c1) == pytest.approx(300.0, rel=1e-8) and np.exp(lb + b * c2) == pytest.approx(80.0, rel=1e-8)
