"""A power law above a known floor: y = E + A N^-alpha, with E given, not fitted.

    law = FlooredPowerLaw().fit(n, y, floor=e)     # A_, alpha_; E_ = e (one value for every point)
    law = FlooredPowerLaw().fit(table)             # a table with a `floor` column (a generated language's runs)

Where the lowest reachable loss is known (a generated language, `workbench.data.sources.hmm`, whose
runs record `eval_loss_floor`), the part of the loss a larger model can still remove, y - E, is what
follows a power law, and fitting it costs two parameters, as the paper's law does, where the
saturating law (`workbench.laws.saturating`) spends a third on guessing E. Registered as `floored` in
`registry.LAWS` (`fit.law=floored`); it reads the given `floor` column of the fitting table, where
`runs.tables.law_table` puts each run's `eval_loss_floor` and `laws.tables.read_table` reads a
table's own (`floor`, `eval_loss_floor`, ...; or give `floor=` to `fit`). The fit is weighted OLS of log(y - E) on
log N, so the bootstrap refits in one vectorised pass. A point at or below the floor is an error:
the floor is the Bayes loss in expectation, so a run can sit a hair below it by chance on a finite eval
set, but a point there leaves no loss above the floor to fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.base.errors import FitError
from workbench.laws.fit import as_points, covariates_of, r2_linear, sizes, weighted_ols


class FlooredPowerLaw:
    """y = E + A * N^-alpha with E known (the given `floor` column), A > 0."""

    name = "floored"
    param_names = ("E", "A", "alpha")  # E is the given floor, the same in every bootstrap replicate
    min_sizes = 2
    covariates = ()  # a law of N alone: one point per run, read as a curve over N like the paper's
    given = ("floor",)  # the table column of the known E (`laws.fit.covariates_of` passes it to fit)

    def fit(self, n, y=None, sample_weight=None, floor=None) -> "FlooredPowerLaw":
        if y is None and floor is None and isinstance(n, pd.DataFrame):
            floor = covariates_of(n, FlooredPowerLaw)["floor"]
        n, y = as_points(n, y)
        e = _one_floor(floor, len(y))
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
        self.E_, self.A_, self.alpha_ = (float(v) for v in self.fit_many(w[None, :], n, y, floor=e)[0])
        self.r2_ = r2_linear(y, self.predict(n))
        return self

    @property
    def params_(self) -> dict[str, float]:
        return dict(E=self.E_, A=self.A_, alpha=self.alpha_)

    def predict(self, n, floor=None) -> np.ndarray:
        return self.E_ + self.A_ * sizes(n) ** -self.alpha_

    @classmethod
    def curve(cls, params: np.ndarray, n, floor=None) -> np.ndarray:
        n = np.atleast_1d(np.asarray(n, dtype=float))
        return params[:, 0:1] + params[:, 1:2] * n[None, :] ** -params[:, 2:3]

    @classmethod
    def formula(cls, params: dict) -> str:
        return f"y = {params['E']:.3g} + {params['A']:.3g} N^{{-{params['alpha']:.3f}}}\\ (E\\ given)"

    @classmethod
    def fit_many(cls, W: np.ndarray, n: np.ndarray, y: np.ndarray, floor=None) -> np.ndarray:
        """(B, 3) rows (E, A, alpha) of B weighted fits at once; NaN rows where a replicate has one size."""
        n, y = np.asarray(n, float), np.asarray(y, float)
        e = _one_floor(floor, len(y))
        above = y - e
        if (above <= 0).any():
            raise FitError(f"a loss at or below the floor E = {e:.4f} (lowest {y.min():.4f}): nothing above the "
                           f"floor to fit; check that the runs and the floor share their eval blocks and masks")
        slope, intercept = weighted_ols(W, np.log(n), np.log(above))
        return np.stack([np.full_like(slope, e), np.exp(intercept), -slope], axis=1)

    def __repr__(self) -> str:
        if not hasattr(self, "alpha_"):
            return "FlooredPowerLaw()"
        return f"FlooredPowerLaw(E={self.E_:.4f}, A={self.A_:.4g}, alpha={self.alpha_:.4f}, r2={self.r2_:.4f})"


def _one_floor(floor, n_points: int) -> float:
    """The one floor of a set of points (every run evaluated on the same held-out masks shares it)."""
    if floor is None:
        raise FitError("the floored law needs the known floor E: give floor=, or a table with a `floor` column "
                       "(runs on a generated language record eval_loss_floor); for real text use fit.law=saturating")
    f = np.atleast_1d(np.asarray(floor, float))
    if f.size not in (1, n_points) or not np.isfinite(f).all():
        raise FitError(f"the floored law needs one finite floor per point or one for all, got {f.size} for "
                       f"{n_points} points (NaN where a run records none: its corpus has no known floor)")
    if np.ptp(f) > 1e-9 * max(1.0, abs(f).max()):
        raise FitError(f"the points have different floors ({f.min():.4f} .. {f.max():.4f}): runs of one law must "
                       f"be evaluated on the same held-out blocks and masks")
    return float(f[0])
