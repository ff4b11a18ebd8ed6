"""Figures read cleanly: count axes labelled 10K / 20K / 50K with no two tick labels overlapping; points
of runs that are not converged drawn hollow, with the legend saying so."""

import itertools

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from workbench.config import FitConfig  # noqa: E402
from workbench.front.plots import NOT_CONVERGED, count_label, plot_fit, plot_joint  # noqa: E402
from workbench.laws.joint import bootstrap_joint  # noqa: E402
from workbench.laws.report import law_report  # noqa: E402


@pytest.mark.parametrize("v, text", [(12_288, "12.3K"), (30_000, "30K"), (1_200_000, "1.2M"), (3e9, "3B"), (500, "500"),
                                     (999_999, "1M")])
def test_counts_are_short(v, text):
    assert count_label(v) == text


@pytest.mark.parametrize("sizes", [(12_288, 98_304, 331_776), (30_000, 40_000, 60_000), (1e4, 1e6, 1e8)])
def test_the_fit_figure_has_no_overlapping_tick_labels(sizes):
    """The smoke ladder spans 1.4 decades; matplotlib alone wrote 3x10^4 over 4x10^4 there."""
    rows = [dict(n_params=n, value=6.5 * n ** -0.02 * (1 + 0.001 * s), seed=s) for n in sizes for s in range(2)]
    fig = plot_fit(law_report(pd.DataFrame(rows), FitConfig(n_bootstrap=50, n_held_out=1)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.get_xticklabels(which="both") if t.get_text() and t.get_visible()
              and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    assert len(labels) >= 2
    boxes = [t.get_window_extent(renderer) for t in labels]
    for (a, ta), (b, tb) in itertools.combinations(zip(boxes, labels), 2):
        assert not a.overlaps(b), (ta.get_text(), tb.get_text())


def _markers(ax):
    """(x, filled) of every errorbar marker drawn on `ax`."""
    out = []
    for line in ax.get_lines():
        if line.get_marker() in ("o", "*") and len(line.get_xdata()):
            filled = line.get_markerfacecolor() != "none"
            out += [(float(x), filled) for x in line.get_xdata()]
    return sorted(out)


@pytest.mark.parametrize("converged, filled", [([True, True, False], [True, True, False]),
                                               (["true", "True", "false"], [True, True, False]),
                                               ([1, 1, 0], [True, True, False]),
                                               ([False, True, True], [False, True, True])])
def test_sizes_whose_runs_are_not_converged_are_hollow_and_the_legend_says_so(converged, filled):
    sizes = (1e4, 1e5, 1e6)
    rows = [dict(n_params=n, value=6.5 * n ** -0.05 * (1 + 0.001 * s), seed=s, converged=c)
            for n, c in zip(sizes, converged) for s in range(2)]
    fig = plot_fit(law_report(pd.DataFrame(rows), FitConfig(n_bootstrap=50, n_held_out=1)))
    ax = fig.axes[0]
    assert _markers(ax) == list(zip(sizes, filled))  # the last size is held out
    assert NOT_CONVERGED in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "held out" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_converged_or_unknown_runs_are_filled_and_the_legend_is_silent():
    sizes = (1e4, 1e5, 1e6)
    for converged in ([True] * 3, [None] * 3, None):
        rows = [dict(n_params=n, value=6.5 * n ** -0.05 * (1 + 0.001 * s), seed=s) for n in sizes for s in range(2)]
        table = pd.DataFrame(rows)
        if converged is not None:
            table["converged"] = [c for c in converged for _ in range(2)]
        ax = plot_fit(law_report(table, FitConfig(n_bootstrap=50, n_held_out=1))).axes[0]
        assert all(filled for _, filled in _markers(ax))
        assert NOT_CONVERGED not in [t.get_text() for t in ax.get_legend().get_texts()]


def test_checkpoints_of_runs_that_are_not_converged_are_hollow_in_the_joint_figure():
    import numpy as np

    rng = np.random.default_rng(0)
    n, d = (a.ravel() for a in np.meshgrid(np.geomspace(1e5, 1e7, 4), np.geomspace(1e8, 1e10, 6)))
    y = (1.7 + 400 * n ** -0.34 + 410 * d ** -0.28) * np.exp(rng.normal(0, 0.003, len(n)))
    table = pd.DataFrame(dict(n_params=n, tokens=d, value=y, seed=0, converged=n < 1e7))
    fig = plot_joint(table, bootstrap_joint(table, B=20))
    left = fig.axes[0]
    hollow = [c for c in left.collections if len(c.get_offsets()) and len(c.get_facecolors()) == 0]
    assert sum(len(c.get_offsets()) for c in hollow) == 6  # the largest size's 6 checkpoints
    assert NOT_CONVERGED in [t.get_text() for t in left.get_legend().get_texts()]


@pytest.mark.parametrize("converged, hollow_n", [([True, True, True, False], [4e5]), ([False, True, True, False], [1e3, 4e5]),
                                                 (None, [])])
def test_the_convergence_check_draws_runs_that_are_not_converged_hollow(converged, hollow_n):
    """The check's figure travels without the summary too: a flagged or ok point of a run that did not
    converge is hollow (in its flag's colour), and the legend says so."""
    from workbench.front.plots import plot_convergence
    from workbench.laws.diagnostics import convergence_check

    sizes = (1e3, 1e4, 1e5, 4e5)
    table = pd.DataFrame([dict(n_params=n, value=6.5 * n ** -0.05 * (1 + 0.001 * s), seed=s) for n in sizes for s in range(2)])
    table.loc[table.n_params == 1e3, "value"] *= 1.05  # flagged above the law of the others
    if converged is not None:
        table["converged"] = [c for c in converged for _ in range(2)]
    check = convergence_check(table, FitConfig(n_bootstrap=50))
    assert (check.flag == "above").sum() == 2
    check = pd.concat([check.iloc[:4], check.iloc[4:]])  # two checks' rows, as one table: labels repeat
    check.index = [0, 1, 2, 3] * 2
    ax = plot_convergence(check).axes[0]
    hollow = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors()) == 0]
    assert sorted({float(x) for c in hollow for x, _ in c.get_offsets()}) == hollow_n
    if 1e3 in hollow_n:  # the flag's colour on the hollow point's edge
        edge = next(c for c in hollow if 1e3 in c.get_offsets()[:, 0]).get_edgecolors()[0]
        assert tuple(edge[:3]) == pytest.approx(matplotlib.colors.to_rgb("crimson"))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert (NOT_CONVERGED in texts) == bool(hollow_n)
    flags = check.flag.value_counts()
    assert sorted(t for t in texts if t not in (NOT_CONVERGED, "leave-one-size-out band")) == sorted(f"{f} ({k})" for f, k in flags.items())  # once each
