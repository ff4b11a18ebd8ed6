"""Beyond the paper: a saturating law y = E + A N^-alpha, and choosing between the two forms.

    sat = SaturatingPowerLaw().fit(n, y)          # E_, A_, alpha_ (alpha > 0 here), r2_
    bootstrap_law(n, y, law="saturating").ci("E") # percentile interval of the floor (workbench.bootstrap)
    compare_forms(df).choice                      # pure vs saturating: held-out error, AIC, BIC

Registered as `saturating` in `registry.LAWS`: choose it with `fit.law=saturating`.

The fit minimises a Huber loss on log residuals (robust, scale-free, as in Hoffmann et al. 2022)
with bounded L-BFGS-B from several starts; E is bounded to [0, min y).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from dataclasses import dataclass

from workbench.errors import FitError
from workbench.fit import PowerLaw, as_points, r2_linear, relative_error


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


class SaturatingPowerLaw:
    """y = E + A * N^-alpha with E >= 0 (irreducible loss), A > 0, alpha > 0."""

    name = "saturating"
    param_names = ("E", "A", "alpha")
    min_sizes = 3  # three parameters need three sizes

    def __init__(self, delta: float = 1e-3, max_alpha: float = 3.0):
        self.delta = delta
        self.max_alpha = max_alpha

    def fit(self, n, y=None, sample_weight=None) -> "SaturatingPowerLaw":
        n, y = as_points(n, y)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
        if len(np.unique(n[w > 0])) < self.min_sizes:
            raise FitError(f"the saturating law has 3 parameters and needs at least 3 distinct sizes, got "
                           f"{len(np.unique(n[w > 0]))}; use the power law (fit.law=power) or add sizes")
        x, ly, ymin = np.log(n), np.log(y), y[w > 0].min()

        def loss(p):  # value and analytic gradient of the mean weighted Huber loss
            E, log_a, alpha = p
            power = np.exp(log_a - alpha * x)
            pred = E + power
            r = np.log(pred) - ly
            g = w * np.clip(r, -self.delta, self.delta) / pred / w.sum()
            grad = [g.sum(), (g * power).sum(), -(g * power * x).sum()]
            return (w * _huber(r, self.delta)).sum() / w.sum(), np.array(grad)

        best = None
        for e_frac in (0.0, 0.5, 0.9):
            for alpha0 in (0.1, 0.3, 0.7):
                E0 = e_frac * ymin
                log_a0 = np.average(np.log(np.maximum(y - E0, 1e-12 * ymin)) + alpha0 * x, weights=w)
                r = minimize(loss, [E0, log_a0, alpha0], method="L-BFGS-B", jac=True,
                             bounds=[(0.0, ymin * (1 - 1e-9)), (-50.0, 50.0), (1e-4, self.max_alpha)])
                if best is None or r.fun < best.fun:
                    best = r
        self.E_, log_a, self.alpha_ = (float(v) for v in best.x)
        self.A_ = float(np.exp(log_a))
        self.loss_ = float(best.fun)
        self.r2_ = r2_linear(y, self.predict(n))
        return self

    @property
    def params_(self) -> dict[str, float]:
        return dict(E=self.E_, A=self.A_, alpha=self.alpha_)

    def predict(self, n) -> np.ndarray:
        return self.E_ + self.A_ * np.asarray(n, dtype=float) ** -self.alpha_

    @classmethod
    def curve(cls, params: np.ndarray, n) -> np.ndarray:
        n = np.atleast_1d(np.asarray(n, dtype=float))
        return params[:, 0:1] + params[:, 1:2] * n[None, :] ** -params[:, 2:3]

    def __repr__(self) -> str:
        if not hasattr(self, "E_"):
            return "SaturatingPowerLaw()"
        return f"SaturatingPowerLaw(E={self.E_:.4g}, A={self.A_:.4g}, alpha={self.alpha_:.4f}, r2={self.r2_:.4f})"


def _information_criteria(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float]:
    """Gaussian AIC and BIC of log residuals with k parameters."""
    n = len(y)
    rss = max(float(((np.log(y) - np.log(pred)) ** 2).sum()), 1e-300)
    ll = n * np.log(rss / n)
    return ll + 2 * k, ll + k * np.log(n)


@dataclass(frozen=True)
class FormComparison:
    table: pd.DataFrame  # one row per form: r2, held-out relative error, aic, bic, n_params_law
    choice: str  # the form with the smaller |held-out error| (AIC breaks near-ties)

    def to_dict(self) -> dict:
        return dict(choice=self.choice, forms=self.table.to_dict("records"))


def compare_forms(n, y=None) -> FormComparison:
    """Pure vs saturating law: R^2, leave-largest-size-out relative error, AIC, BIC, and a choice."""
    n, y = as_points(n, y)
    keep = n < n.max()
    actual = y[~keep].mean()
    rows = []
    for name, law, k in (("power_law", PowerLaw, 2), ("saturating", SaturatingPowerLaw, 3)):
        enough_all = len(np.unique(n)) >= law.min_sizes
        full = law().fit(n, y) if enough_all else None
        enough = len(np.unique(n[keep])) >= law.min_sizes
        held = law().fit(n[keep], y[keep]).predict(n.max()) if enough else np.nan
        aic, bic = _information_criteria(y, full.predict(n), k) if full else (np.nan, np.nan)
        rows.append(dict(form=name, r2=full.r2_ if full else np.nan, held_out_re=float(relative_error(held, actual)),
                         aic=aic, bic=bic, n_params_law=k))
    df = pd.DataFrame(rows)
    err = df.held_out_re.abs().to_numpy()
    if np.isnan(err).any() or abs(err[0] - err[1]) < 1e-3 * max(err.max(), 1e-12):
        choice = df.form[int(df.aic.fillna(np.inf).to_numpy().argmin())]
    else:
        choice = df.form[int(np.argmin(err))]
    return FormComparison(df, str(choice))
