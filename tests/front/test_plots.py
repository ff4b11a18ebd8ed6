"""Figures read cleanly: count axes labelled 10K / 20K / 50K with no two tick labels overlapping."""

import itertools

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from workbench.config import FitConfig  # noqa: E402
from workbench.front.plots import count_label, plot_fit  # noqa: E402
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
