"""Typed reports of a law: fitted once, with intervals, so tables, text and figures agree.

    report = law_report(table, FitConfig(n_held_out=1))    # R^2, parameters with CIs, held-out error
    report.alpha, report.alpha_ci, report.held_out[0].re
    report.curve                                           # the fitted line and its band (what plots draw)
    report.to_dict(); LawReport.from_dict(d)               # results.json and the study summary

Tables are tidy: n_params, value (loss, or 1 - metric), optionally seed and variant. `curve` is the
law fitted on `fit_sizes` (all sizes when nothing is held out) with its bootstrap band on a grid
that includes the held-out sizes: the band a figure draws is the interval the report states.

A law with covariates (the joint law L(N, D): a `tokens` column) is fitted on every row, e.g. the
checkpoints of `workbench.laws.tables.law_points`, with the runs resampled together; its curve over N is
read at `fit.tokens` (0: unlimited tokens), and each held-out run is predicted at its own tokens.
The report says how many points came from how many runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.base.errors import FitError
from workbench.config import FitConfig
from workbench.laws.bootstrap import bootstrap_law
from workbench.laws.fit import (
    as_points,
    converged_flags,
    covariates_of,
    get_law,
    interval,
    mean_relative_error,
    r2_drop_smallest,
    relative_error,
    run_units,
    split_by_size,
)
from workbench.laws.tables import final_points


@dataclass(frozen=True)
class LawCurve:
    """A fitted law, its bootstrap band on a grid of N, and the points it was fitted on."""

    law: str
    params: dict
    r2: float
    n: tuple[float, ...]
    pred: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    points: tuple[tuple[float, float], ...]  # (n_params, value) of every fitted point
    converged: tuple[bool | None, ...] = ()  # each point's run: converged or not (None: not known); () none known

    def interval(self, n: float) -> tuple[float, float]:
        """The band at a grid size `n` (held-out and target sizes are on the grid)."""
        i = int(np.argmin(np.abs(np.log(self.n) - np.log(n))))
        if not np.isclose(self.n[i], n, rtol=1e-9):
            raise FitError(f"N={n:g} is not on the curve's grid")
        return self.lower[i], self.upper[i]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LawCurve":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(tuple(p) for p in v) if k == "points" else tuple(v) if isinstance(v, list) else v
                      for k, v in d.items() if k in names})


def _fit(table: pd.DataFrame, fit: FitConfig, extra_n=(), n_grid: int = 80):
    """(fitted law, bootstrap, LawCurve) of `fit.law` on `table`: one fit, one bootstrap."""
    n, y = as_points(table)
    law = get_law(fit.law)().fit(n, y, **covariates_of(table, fit.law))
    boot = bootstrap_law(table, law=fit.law, B=fit.n_bootstrap, random_state=fit.random_state)
    return law, boot, curve_of(law, boot.params, n, y, fit, extra_n, n_grid, converged=converged_flags(table))


def read_at(fit: FitConfig) -> dict:
    """Where a law with covariates is read as a curve over N: the joint law at `fit.tokens`
    (None, unlimited tokens, when 0); {} for a law of N alone."""
    return {"tokens": fit.tokens or None} if "tokens" in get_law(fit.law).covariates else {}


def curve_of(law, params: np.ndarray, n, y, fit: FitConfig, extra_n=(), n_grid: int = 80,
             converged: tuple | None = None) -> LawCurve:
    """The LawCurve of a fitted law and its bootstrap parameter rows (B, k): the band is their
    pointwise percentile interval at `fit.level`; `converged`, one verdict per point
    (`converged_flags`), lets figures mark the points of runs that are not converged."""
    n = np.asarray(n, float)
    hi = max([n.max(), *extra_n])
    grid = np.unique(np.concatenate([np.geomspace(n.min(), hi, n_grid), n, np.asarray(extra_n, float)]))
    at = read_at(fit)
    lower, upper = interval(get_law(fit.law).curve(params, grid, **at), fit.level, axis=0)
    return LawCurve(fit.law, law.params_, law.r2_, tuple(grid.tolist()), tuple(law.predict(grid, **at).tolist()),
                    tuple(lower.tolist()), tuple(upper.tolist()), tuple(zip(n.tolist(), np.asarray(y, float).tolist())),
                    tuple(converged or ()))


@dataclass(frozen=True)
class HeldOut:
    n_params: float
    pred: float
    actual: float
    re: float  # on the value, or on the metric when the report is about 1 - metric
    lower: float
    upper: float
    inside_band: bool


@dataclass(frozen=True)
class LawReport:
    """One law over a table: quality on every size, and prediction of the held-out largest sizes."""

    law: str
    params: dict  # fitted on every size
    params_ci: dict  # {name: (lo, hi)} hierarchical-bootstrap intervals at `level`
    r2: float  # linear-space R^2 over every point
    r2_drop_smallest: float
    n_sizes: int
    n_points: int
    level: float
    r2_gate: float
    metric: bool  # values are 1 - metric: relative errors are on the metric itself
    fit_sizes: tuple[float, ...]  # sizes the extrapolating fit used
    held_out: tuple[HeldOut, ...]
    mre: float | None
    curve: LawCurve  # fitted on fit_sizes, band reaching the held-out sizes
    held_points: tuple[tuple[float, float], ...]  # (n_params, value) of the held-out runs
    n_runs: int | None = None  # runs the points came from (points of one run are not independent)
    points_per_run: int = 1  # most points from one run (checkpoints)
    tokens: float | None = None  # where a law over N and tokens is read as a curve (None: unlimited)
    held_converged: tuple[bool | None, ...] = ()  # each held-out run: converged or not, as `LawCurve.converged`

    @property
    def alpha(self) -> float:
        return self.params["alpha"]

    @property
    def alpha_ci(self) -> tuple[float, float]:
        return self.params_ci["alpha"]

    @property
    def trusted(self) -> bool:
        """R^2 reaches the gate on at least three sizes (two points always fit exactly)."""
        return bool(self.n_sizes >= 3 and self.r2 >= self.r2_gate)

    def describe(self) -> str:
        ci = self.params_ci["alpha"]
        if not math.isfinite(self.r2):  # nothing to explain: every point the same (a task stuck at its majority class)
            fit = "R^2 undefined: the values do not change with N, so there is no law to fit"
        elif self.trusted:
            fit = f"R^2 = {self.r2:.4f}"
        elif self.n_sizes < 3:
            fit = f"R^2 = {self.r2:.4f} (two sizes: a line through them always fits, so no law is judged)"
        else:
            fit = f"R^2 = {self.r2:.4f} (below the R^2 >= {self.r2_gate} gate)"
        text = (f"{self.n_sizes} sizes, {self.law} law: alpha = {self.alpha:.4f} ({100 * self.level:g}% CI "
                f"{ci[0]:.4f} .. {ci[1]:.4f}), {fit}")
        if self.points_per_run > 1:
            text += (f"; {self.n_points} points from {self.n_runs} runs (up to {self.points_per_run} checkpoints "
                     f"of one run; the bootstrap resamples runs)")
        covariates = ", ".join(get_law(self.law).covariates)
        if covariates:  # a law of N and more: its curve over N is read at one value of the rest
            text += (f"; curve read at unlimited {covariates} ({get_law(self.law).formula(self.params)})"
                     if not self.tokens else f"; curve read at D = {self.tokens:.3g} tokens")
            text += f", held-out runs at their own {covariates}"
        for h in self.held_out:
            text += (f"; held out N = {h.n_params:,.0f}: predicted {h.pred:.4f}, measured {h.actual:.4f}, "
                     f"RE = {100 * h.re:+.2f}% ({'inside' if h.inside_band else 'OUTSIDE'} the band)")
        return text

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(alpha=self.alpha, alpha_ci=list(self.alpha_ci), trusted=self.trusted)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LawReport":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        # JSON has no NaN: a degenerate fit's R^2 (a task where every size scores the same) comes back None
        nan = float("nan")
        for key in ("r2", "r2_drop_smallest"):
            kw[key] = nan if kw.get(key) is None else kw[key]
        kw["params"] = {k: nan if v is None else v for k, v in kw["params"].items()}
        kw["params_ci"] = {k: tuple(nan if x is None else x for x in v) for k, v in kw["params_ci"].items()}
        kw["fit_sizes"] = tuple(kw["fit_sizes"])
        kw["held_out"] = tuple(HeldOut(**{k: nan if v is None else v for k, v in h.items()}) for h in kw["held_out"])
        kw["curve"] = LawCurve.from_dict(kw["curve"])
        kw["held_points"] = tuple(tuple(p) for p in kw["held_points"])
        kw["held_converged"] = tuple(kw.get("held_converged", ()))
        return cls(**kw)


def law_report(table: pd.DataFrame, fit: FitConfig = FitConfig(), metric: bool = False) -> LawReport:
    """Fit `fit.law` on every size (R^2, R^2 without the smallest, parameters and their
    hierarchical-bootstrap CIs); then fit without the `fit.n_held_out` largest sizes and predict
    them (relative error per size, on the metric when `metric`; MRE; inside the band or not)."""
    cls = get_law(fit.law)
    fit_rows, held = split_by_size(table, fit.n_held_out, cls.min_sizes)
    full, boot, curve = _fit(table, fit)
    small, small_boot = full, boot
    if len(held):  # the extrapolating law: fitted (and bootstrapped) on the smaller sizes only
        small, small_boot, curve = _fit(fit_rows, fit, extra_n=np.sort(held.n_params.unique()))
    held = final_points(held)  # each held-out run's best checkpoint (a table of final points: as it is)
    out = []
    for n, rows in held.groupby("n_params"):
        cov = covariates_of(rows, cls)  # the joint law: each run at its own tokens
        sizes = rows.n_params.to_numpy(float) if cov else np.array([n], float)
        pred, actual = float(np.mean(small.predict(sizes, **cov))), float(rows.value.mean())
        lo, hi = interval(cls.curve(small_boot.params, sizes, **cov).mean(1), fit.level)
        re = relative_error(1 - pred, 1 - actual) if metric else relative_error(pred, actual)
        out.append(HeldOut(float(n), pred, actual, float(re), float(lo), float(hi), bool(lo <= actual <= hi)))
    mre = None
    if out:
        p, a = np.array([h.pred for h in out]), np.array([h.actual for h in out])
        mre = mean_relative_error(1 - p, 1 - a) if metric else mean_relative_error(p, a)
    units = run_units(table)
    n_runs = len(table) if units is None else int(len(np.unique(units)))
    per_run = 1 if units is None else np.bincount(units).max()
    return LawReport(
        law=fit.law, params=full.params_, params_ci={k: boot.ci(k, fit.level) for k in cls.param_names},
        r2=full.r2_, r2_drop_smallest=r2_drop_smallest(table, law=fit.law), n_sizes=int(table.n_params.nunique()),
        n_points=len(table), level=fit.level, r2_gate=fit.r2_gate, metric=metric,
        fit_sizes=tuple(float(x) for x in np.sort(fit_rows.n_params.unique())), held_out=tuple(out), mre=mre,
        curve=curve, held_points=tuple(zip(held.n_params.astype(float).tolist(), held.value.astype(float).tolist())),
        n_runs=n_runs, points_per_run=int(per_run), tokens=read_at(fit).get("tokens"),
        held_converged=converged_flags(held) or ())
