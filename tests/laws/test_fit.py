"""The fitting library on synthetic tables with known laws."""

import warnings

import numpy as np
import pandas as pd
import pytest

from workbench.base.errors import ConfigError, FitError
from workbench.config import FitConfig
from workbench.laws.bootstrap import bootstrap_law, bootstrap_power_law, bootstrap_power_law_loop
from workbench.laws.diagnostics import compute_summary, convergence_check
from workbench.laws.fit import (
    PowerLaw,
    mean_relative_error,
    r2_drop_smallest,
    r2_linear,
    relative_error,
    residuals,
    split_by_size,
    target_error,
)
from workbench.laws.report import law_report
from workbench.laws.saturating import SaturatingPowerLaw, compare_forms
from workbench.laws.selection import compare_variants
from workbench.runs.tables import law_table

SIZES = 12 * np.arange(1, 9) * (32 * np.arange(1, 9)) ** 2  # AR32 L1-8


def study(alpha=-0.08, beta=2.5, size_sd=0.02, seed_sd=0.01, seeds=5, rng=None, variant=None, sizes=SIZES):
    """A table like a real study: per-size offsets (pretraining variance) + per-seed noise."""
    rng = np.random.default_rng(rng)
    rows = []
    for n in sizes:
        off = rng.normal(0, size_sd)
        for s in range(seeds):
            y = np.exp(beta + alpha * np.log(n) + off + rng.normal(0, seed_sd))
            rows.append(dict(variant=variant, n_params=n, seed=s, value=y))
    return pd.DataFrame(rows)


def test_recovers_known_law_from_noisy_data():
    df = study(rng=0)
    law = PowerLaw().fit(df)
    assert law is not None and law.alpha_ == pytest.approx(-0.08, abs=0.01)
    assert law.beta_ == pytest.approx(2.5, abs=0.15) and law.r2_ > 0.9
    assert law.predict([SIZES[0]])[0] == pytest.approx(np.exp(law.beta_) * SIZES[0] ** law.alpha_)
    exact = PowerLaw().fit(SIZES, 3.0 * SIZES ** -0.1)
    assert exact.alpha_ == pytest.approx(-0.1) and exact.beta_ == pytest.approx(np.log(3.0)) and exact.r2_ == 1


def test_definitions_by_hand():
    """R^2 (linear space), R^2_2:, RE and MRE computed by hand on a small table."""
    n = np.array([10.0, 10.0, 100.0, 100.0, 1000.0, 1000.0])
    y = np.array([5.0, 5.2, 3.9, 4.1, 3.1, 3.3])
    x, z = np.log(n), np.log(y)
    a = ((x - x.mean()) * (z - z.mean())).sum() / ((x - x.mean()) ** 2).sum()
    b = z.mean() - a * x.mean()
    pred = np.exp(b) * n ** a
    r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    law = PowerLaw().fit(n, y)
    assert (law.alpha_, law.beta_, law.r2_) == pytest.approx((a, b, r2))
    x2, z2, y2 = x[2:], z[2:], y[2:]
    a2 = ((x2 - x2.mean()) * (z2 - z2.mean())).sum() / ((x2 - x2.mean()) ** 2).sum()
    p2 = np.exp(z2.mean() - a2 * x2.mean()) * n[2:] ** a2
    assert r2_drop_smallest(n, y) == pytest.approx(1 - ((y2 - p2) ** 2).sum() / ((y2 - y2.mean()) ** 2).sum())
    assert r2_linear(y, pred) == pytest.approx(r2)
    assert relative_error(1.1, 1.0) == pytest.approx(0.1) and relative_error(0.9, 1.0) == pytest.approx(-0.1)
    assert mean_relative_error([1.1, 0.8], [1.0, 1.0]) == pytest.approx(0.15)
    # metric space: y = 1 - accuracy, errors on the accuracy itself
    df = pd.DataFrame(dict(n_params=n, value=1 - np.array([.5, .52, .61, .59, .7, .7])))
    out = law_report(df, FitConfig(n_held_out=1, n_bootstrap=50), metric=True)
    law = PowerLaw().fit(df[df.n_params < 1000])
    pred_acc = 1 - law.predict(1000.0)
    assert out.held_out[0].re == pytest.approx((pred_acc - 0.7) / 0.7) and out.mre == pytest.approx(abs(out.held_out[0].re))


@pytest.mark.parametrize("n, y, match", [
    ([1, 2, 0], [1, 1, 1], "n must be positive"),
    ([1, 2, 3], [1, -1, 1], "y must be positive"),
    ([1, 2, 3], [1, np.nan, 1], "y must be positive and finite"),
    ([1, 2], [1, 2, 3], "different lengths"),
    ([5, 5, 5], [1, 2, 3], "two distinct sizes"),
])
def test_bad_inputs(n, y, match):
    with pytest.raises(ValueError, match=match):
        PowerLaw().fit(n, y)


def test_dataframe_needs_columns():
    with pytest.raises(ValueError, match="missing"):
        PowerLaw().fit(pd.DataFrame(dict(n=[1, 2], loss=[1, 2])))


def test_splits():
    df = study(rng=1)
    fit, held = split_by_size(df, n_held_out=2)
    assert sorted(held.n_params.unique()) == sorted(SIZES[6:]) and len(fit) == 30
    with pytest.raises(FitError, match="fewer than 2 to fit"):
        split_by_size(df, n_held_out=7)
    out = law_report(df, FitConfig(n_held_out=2, n_bootstrap=200))
    assert len(out.held_out) == 2 and out.mre < 0.1


def test_bootstrap_band_and_intervals():
    df = study(rng=2)
    h = bootstrap_power_law(df, B=1000, random_state=0)
    nv = bootstrap_power_law(df, B=1000, method="naive", random_state=0)
    lo, hi = h.ci()
    assert lo < PowerLaw().fit(df).alpha_ < hi
    assert hi - lo > nv.ci()[1] - nv.ci()[0]  # naive intervals are narrower
    band = h.band([SIZES[0], 1e8])
    assert (band.lower < band["median"]).all() and (band["median"] < band.upper).all()
    # identical seeds: the pooled naive bootstrap and the loop agree on the same law
    loop = bootstrap_power_law_loop(df, B=300, random_state=0)
    assert np.median(loop.alphas) == pytest.approx(np.median(h.alphas), abs=0.005)


def test_single_size_replicates_are_dropped_and_counted():
    df = study(sizes=SIZES[:2], rng=3)  # with 2 sizes, 1/2 of replicates draw one size twice
    h = bootstrap_power_law(df, B=2000, random_state=0)
    assert 800 < h.n_dropped < 1200 and len(h.alphas) == 2000 - h.n_dropped
    assert np.isfinite(h.alphas).all()


def test_hierarchical_ci_coverage():
    """The 95% hierarchical CI covers the true alpha in roughly 95% of 200 simulated studies."""
    hits = 0
    for i in range(200):
        lo, hi = bootstrap_power_law(study(rng=100 + i), B=400, random_state=i).ci()
        hits += lo <= -0.08 <= hi
    assert 0.85 <= hits / 200 <= 1.0, hits


def test_saturating_recovers_a_floor():
    rng = np.random.default_rng(5)
    n = np.repeat(np.geomspace(1e4, 1e9, 10), 3)
    y = (1.7 + 400 * n ** -0.35) * np.exp(rng.normal(0, 0.003, len(n)))
    sat = SaturatingPowerLaw().fit(n, y)
    assert sat.E_ == pytest.approx(1.7, rel=0.05) and sat.alpha_ == pytest.approx(0.35, rel=0.1)
    assert sat.A_ == pytest.approx(400, rel=0.5) and sat.r2_ > 0.99
    lo, hi = bootstrap_law(n, y, law="saturating", B=40, random_state=0).ci("E")
    assert lo <= 1.7 <= hi
    forms = compare_forms(n, y)
    assert forms.choice == "saturating"
    pure_forms = compare_forms(study(rng=6, size_sd=0.0)).table
    assert set(pure_forms.form) == {"power", "saturating"} and np.isfinite(pure_forms.aic).all()
    with pytest.raises(FitError, match="needs at least 3 distinct sizes"):
        SaturatingPowerLaw().fit(n[n < 1e5], y[n < 1e5])


def test_compare_variants_finds_the_winner_and_the_crossover():
    a = study(alpha=-0.10, beta=2.6, rng=7, variant="ar64")  # worse at small N, better at large N
    b = study(alpha=-0.07, beta=2.3, rng=8, variant="ar32")
    res = compare_variants(pd.concat([a, b]), target_n=85e6, variants=("ar64", "ar32"))
    assert res.winner == "ar64" and res.p_a_beats_b > 0.8
    assert res.gap < 0 and res.gap_interval[0] < res.gap < res.gap_interval[1]
    assert res.crossover_n is not None and SIZES[0] < res.crossover_n < 85e6
    assert set(res.pred_interval) == {"ar64", "ar32"} and isinstance(res.trustworthy, bool)
    with pytest.raises(ValueError, match="fewer than two sizes"):
        compare_variants(pd.concat([a, b[b.n_params == SIZES[0]]]), 85e6)
    with pytest.raises(FitError, match="target_n must be a positive size"):
        compare_variants(pd.concat([a, b]), float("nan"))
    sat = compare_variants(pd.concat([a, b]), 85e6, ("ar64", "ar32"), FitConfig(law="saturating", n_bootstrap=30))
    assert sat.law == "saturating" and sat.winner in ("ar64", "ar32")  # the law seam reaches selection


def test_convergence_check_flags_an_undertrained_size():
    df = study(rng=9, size_sd=0.005)
    df.loc[df.n_params == SIZES[5], "value"] *= 1.15  # L6 stopped too early: 15% above the law
    check = convergence_check(df, FitConfig(n_bootstrap=300))
    flagged = check[check.flag == "above"].n_params.unique()
    assert list(flagged) == [SIZES[5]] and (check[check.n_params != SIZES[5]].flag == "ok").all()
    assert check.equals(convergence_check(df, FitConfig(n_bootstrap=300)))  # seeded: the same flags every time
    with pytest.raises(ValueError, match=">= 3 sizes"):
        convergence_check(df[df.n_params <= SIZES[1]])


def test_compute_summary():
    runs = pd.DataFrame(dict(n_params=[100, 100, 1000], tokens=[10, 10, 20]))
    s = compute_summary(runs, target_n=10_000, target_tokens=100)
    assert s["small_flops"] == 6 * (100 * 10 * 2 + 1000 * 20) and s["target_flops"] == 6e6
    assert s["ratio"] == pytest.approx(6e6 / s["small_flops"]) and s["param_ratio"] == pytest.approx(10_000 / 1100)


def test_plots_return_figures_and_no_warning_spam():
    from matplotlib.figure import Figure

    from workbench.front.plots import plot_comparison, plot_convergence, plot_fit

    df = study(rng=10)
    fit = FitConfig(n_bootstrap=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figs = [plot_fit(law_report(df, fit)),
                plot_comparison(compare_variants(pd.concat([study(rng=11, variant="a"),
                                                            study(rng=12, variant="b", beta=2.4)]), 1e8, fit=fit)),
                plot_convergence(convergence_check(df, fit))]
        compare_forms(df)
        residuals(df)
        bootstrap_law(df, law="saturating", B=10)
        compare_variants(pd.concat([study(rng=14, variant="a"), study(rng=15, variant="b")]), 1e8, fit=fit)
    assert all(isinstance(f, Figure) for f in figs)
    assert len(figs[0].axes[0].lines) >= 1 and figs[0].axes[0].get_xscale() == "log"


def test_target_error_and_drop_smallest():
    df = study(rng=13, size_sd=0.0, seed_sd=0.0)
    target = pd.DataFrame(dict(n_params=[85e6], value=[np.exp(2.5 - 0.08 * np.log(85e6)) * 1.1]))
    assert target_error(df, target) == pytest.approx(1 / 1.1 - 1, abs=1e-9)
    assert target_error(df, target, drop_smallest=True) == pytest.approx(1 / 1.1 - 1, abs=1e-9)


@pytest.mark.parametrize("law", ["power", "saturating"])
def test_the_band_drawn_is_the_interval_reported(law):
    """The figure's shaded band is the report's curve, and the held-out interval is read off it."""
    from matplotlib.collections import PolyCollection

    from workbench.front.plots import plot_fit

    rng = np.random.default_rng(16)
    n = np.repeat(SIZES, 3)
    df = pd.DataFrame(dict(n_params=n, value=(1.7 + 400 * n ** -0.35) * np.exp(rng.normal(0, 0.003, len(n)))))
    report = law_report(df, FitConfig(law=law, n_held_out=1, n_bootstrap=60))
    held = report.held_out[0]
    assert report.law == law and held.n_params == SIZES[-1]
    assert (held.lower, held.upper) == report.curve.interval(SIZES[-1])
    fig = plot_fit(report)
    (band,) = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    verts = band.get_paths()[0].vertices
    drawn = sorted(set(verts[verts[:, 0] == SIZES[-1], 1]))  # the band's edges at the held-out N
    assert drawn == pytest.approx(sorted({held.lower, held.upper}), rel=1e-12)
    assert held.lower < held.upper
    assert set(report.params) == set(report.params_ci) and report.to_dict()["law"] == law


def test_runs_table_leaves_out_failed_runs(caplog):
    runs = pd.DataFrame(dict(run_id=["a", "b", "c"], status=["completed", "diverged", "completed"],
                             family="ar32", **{"train.objective": "mlm"}, n_params=[10, 20, 30], seed=0,
                             best_eval_loss=[3.0, np.nan, 2.0]))
    table = law_table(runs)
    assert list(table.n_params) == [10, 30] and list(table.variant) == ["ar32/mlm"] * 2
    assert "leaving out 1 run" in caplog.text and "b" in caplog.text


AR64 = 12 * np.arange(1, 6) * (64 * np.arange(1, 6)) ** 2  # AR64 L1-5


def test_compare_variants_on_the_papers_different_size_sets():
    """AR32 L1-8 against AR64 L1-5 (the paper's case study): each law on its own sizes. The laws are
    made to cross at N = 3.3e6 (the paper's MLM crossover): AR64 worse below, better above."""
    cross, a32 = 3.3e6, -0.07
    a64 = -0.10
    b32 = 2.3
    b64 = b32 + (a32 - a64) * np.log(cross)  # equal at the crossover
    ar32 = study(alpha=a32, beta=b32, size_sd=0.004, seed_sd=0.004, seeds=3, rng=11, variant="ar32")
    ar64 = study(alpha=a64, beta=b64, size_sd=0.004, seed_sd=0.004, seeds=3, rng=12, variant="ar64", sizes=AR64)
    res = compare_variants(pd.concat([ar32, ar64]), 85e6, ("ar64", "ar32"), FitConfig(n_bootstrap=500))
    assert res.fit_sizes == {"ar64": 5, "ar32": 8}
    assert res.winner == "ar64" and res.p_a_beats_b > 0.9
    assert res.crossover_n == pytest.approx(cross, rel=0.35)
    small = compare_variants(pd.concat([ar32, ar64]), 2e5, ("ar64", "ar32"), FitConfig(n_bootstrap=500))
    assert small.winner == "ar32"  # below the crossover the other way round
    assert np.isfinite(res.gap_interval).all() and res.gap_interval[0] < res.gap < res.gap_interval[1]


def test_the_r2_gate_can_follow_the_paper_baseline_rule():
    good = study(rng=3, size_sd=0.002, seed_sd=0.002, variant="mlm")
    bad = study(alpha=-0.09, rng=4, size_sd=0.08, seed_sd=0.002, variant="pmi")
    both = compare_variants(pd.concat([good, bad]), 85e6, ("mlm", "pmi"), FitConfig(n_bootstrap=100))
    paper = compare_variants(pd.concat([good, bad]), 85e6, ("mlm", "pmi"),
                             FitConfig(n_bootstrap=100, r2_gate_on="baseline"))
    assert both.r2["mlm"] >= 0.95 > both.r2["pmi"]
    assert not both.trustworthy and paper.trustworthy
    with pytest.raises(ConfigError, match="r2_gate_on"):
        FitConfig(r2_gate_on="either")


@pytest.mark.parametrize("call, says", [
    (lambda: compare_variants(study(variant="a"), 1e7, ("a", "a")), "both variants are 'a'"),
    (lambda: bootstrap_power_law([1e4, 1e5], [1.0, 2.0], B=1).ci(), "none of the 1 bootstrap replicates"),
    (lambda: bootstrap_law([1e4, 1e5, 1e4, 1e5], [2, 1, 2.1, 1.1], law="saturating", B=20), "needs at least 3"),
    (lambda: PowerLaw().fit(np.ones((3, 2)) * [[1e4], [1e5], [1e6]], np.ones((3, 2))), "1-D array"),
    (lambda: PowerLaw().fit([1e4, 1e5], [2.0, 1.0]).predict(0), "positive, finite sizes"),
    (lambda: SaturatingPowerLaw().fit([1e4, 1e5, 1e6], [3.0, 2.0, 1.5]).predict(-1), "positive, finite sizes"),
    (lambda: relative_error(1.0, 0.0), "non-zero, finite actual"),
    (lambda: compare_variants(pd.concat([study(variant="a"), study(variant="b")]), 0), "target_n must be a positive"),
    (lambda: bootstrap_law(study(), B=0), "B must be >= 1"),
])
def test_bad_fit_inputs_are_one_line_errors(call, says):
    with pytest.raises(FitError, match=says):
        call()


def test_r2_survives_huge_values():
    y = np.array([1e300, 2e300, 3e300])
    assert r2_linear(y, y * 1.01) == pytest.approx(r2_linear(y / 1e300, y / 1e300 * 1.01))


def _floor_study(rng, E=1.0, alpha=0.25, size_sd=0.02, seed_sd=0.01, seeds=5):
    rng = np.random.default_rng(rng)
    A = 3.0 * SIZES[0] ** alpha  # the power term is three times the floor at the smallest size
    rows = []
    for n in SIZES:
        off = rng.normal(0, size_sd)
        rows += [dict(n_params=n, seed=s, value=(E + A * n ** -alpha) * np.exp(off + rng.normal(0, seed_sd)))
                 for s in range(seeds)]
    return pd.DataFrame(rows)


def test_the_form_choice_uses_every_size_and_says_how_sure():
    """30 floorless and 30 floored synthetic studies (8 sizes x 5 seeds, per-size offsets): BIC over
    every point picks the right form far more often than one held-out size did (16 of 30 floorless)."""
    pure_right = sum(compare_forms(study(rng=100 + i)).choice == "power" for i in range(30))
    floor_right = sum(compare_forms(_floor_study(200 + i)).choice == "saturating" for i in range(30))
    assert pure_right >= 23 and floor_right >= 28, (pure_right, floor_right)
    forms = compare_forms(_floor_study(7))
    assert 0.5 <= forms.confidence <= 1 and isinstance(forms.loso_agrees, bool)
    assert set(forms.table.columns) >= {"loso_mre", "held_out_re", "aic", "bic"}
    assert forms.choice in forms.describe() and "BIC weight" in forms.describe()
