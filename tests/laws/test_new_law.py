"""A new law is one file plus one registry line: a broken power law, written here and registered by
one line, reaches the report (its text at the fit's level), the figure, the backtest and model
selection, with no other file changed."""

import numpy as np
import pandas as pd
import pytest

from workbench.laws.fit import as_points, r2_linear, sizes


class BrokenPowerLaw:
    """ln y = beta + alpha ln N + delta max(0, ln N - ln N_b): the slope changes by delta at N_b,
    chosen among the midpoints between the fitted sizes (least squares)."""

    name = "broken"
    param_names = ("alpha", "beta", "delta", "log_break")
    min_sizes = 3
    covariates = ()

    def fit(self, n, y=None, sample_weight=None):
        n, y = as_points(n, y)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
        x, z, best = np.log(n), np.log(y), None
        u = np.unique(x[w > 0])
        for xb in (u[:-1] + u[1:]) / 2:
            X = np.stack([np.ones_like(x), x, np.maximum(0.0, x - xb)], 1)
            coef = np.linalg.lstsq(X * np.sqrt(w)[:, None], z * np.sqrt(w), rcond=None)[0]
            sse = float((w * (X @ coef - z) ** 2).sum())
            if best is None or sse < best[0]:
                best = (sse, np.array([coef[1], coef[0], coef[2], xb]))
        self.p_ = best[1]
        self.r2_ = r2_linear(y, self.predict(n))
        return self

    @property
    def params_(self) -> dict:
        return dict(zip(self.param_names, map(float, self.p_)))

    def predict(self, n) -> np.ndarray:
        return self.curve(self.p_[None, :], sizes(n))[0].reshape(np.shape(n))  # the shape of n

    @classmethod
    def curve(cls, params: np.ndarray, n) -> np.ndarray:
        x = np.log(np.atleast_1d(np.asarray(n, float)))[None, :]
        a, b, d, xb = (params[:, i:i + 1] for i in range(4))
        return np.exp(b + a * x + d * np.maximum(0.0, x - xb))

    @classmethod
    def formula(cls, params: dict) -> str:
        return (f"y = e^{{{params['beta']:.2f}}} N^{{{params['alpha']:.3f}}}, "
                f"slope {params['delta']:+.3f} past N = {np.exp(params['log_break']):.3g}")


def _ladder(variant: str, alpha: float, rng: int) -> pd.DataFrame:
    g = np.random.default_rng(rng)
    n = np.repeat([1e4, 3e4, 1e5, 3e5, 1e6, 3e6], 3)
    y = np.exp(2.0 + alpha * np.log(n) - 0.04 * np.maximum(0, np.log(n) - np.log(2e5)) + g.normal(0, 0.005, len(n)))
    return pd.DataFrame(dict(variant=variant, n_params=n, seed=np.tile([0, 1, 2], 6), value=y))


@pytest.fixture
def broken(monkeypatch):
    from workbench.base import registry

    monkeypatch.setitem(registry.LAWS, "broken", "test_new_law:BrokenPowerLaw")  # the one line


def test_a_new_law_reaches_report_figure_backtest_and_selection(broken):
    from workbench.config import FitConfig
    from workbench.front.plots import plot_fit
    from workbench.laws.report import law_report
    from workbench.laws.selection import selection_report
    from workbench.laws.tables import backtest

    fit = FitConfig(law="broken", n_bootstrap=100, n_held_out=1, level=0.9)
    a, b = _ladder("a", -0.05, 0), _ladder("b", -0.06, 1)
    report = law_report(a, fit)
    assert report.law == "broken" and report.r2 > 0.95 and report.params_ci["delta"][0] < report.params["delta"]
    assert "90% CI" in report.describe() and "95%" not in report.describe()
    assert abs(report.held_out[0].re) < 0.02  # the held-out largest size, predicted by the new law
    fig = plot_fit(report)
    label = fig.axes[0].get_legend_handles_labels()[1][0]
    assert "past N =" in label  # the figure prints the law it was given
    bt = backtest(pd.concat([a, b]), fit)
    assert set(bt.variant) == {"a", "b"} and (bt.law_are < 0.02).all()
    sel = selection_report(pd.concat([a, b]), ("a", "b"), fit)
    assert sel.law == "broken" and sel.winner == "b" and sel.gap_interval[0] < sel.gap < sel.gap_interval[1]


def test_the_forms_compared_come_from_the_registry(broken):
    from workbench.laws.saturating import compare_forms

    forms = compare_forms(_ladder("a", -0.05, 2))
    assert set(forms.table.form) == {"power", "saturating", "broken"}
    assert forms.choice == "broken"  # the data bend at 2e5: the broken law pays for its parameters
