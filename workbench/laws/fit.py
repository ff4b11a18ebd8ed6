"""Laws of loss (or 1 - metric) against model size N, and the paper's measures of a fit.

    law = get_law("power")().fit(n, y)     # ln y = alpha ln N + beta, OLS over every (size, seed) point
    law.params_, law.r2_                   # {"alpha": ..., "beta": ...}; R^2 in linear y space
    law.predict([1e8])

A law follows the `Law` protocol: `fit(n, y, sample_weight=None, **covariates)` returning itself,
`predict(n, **covariates)`, `params_` (a dict), `r2_`, `formula(params)` (its LaTeX, for figures),
and for the bootstrap `curve(params, n, **covariates)` (predictions of a (B, k) matrix of parameter
rows) and `min_sizes`. A law may also name `given` columns: known constants it is fitted with, not
variables of its curve (the floored law's `floor`), passed to `fit` like covariates. `covariates`
names the table columns a law reads beside N: none for a law of N alone; `tokens` for the joint law
L(N, D) (`workbench.laws.joint`), whose `predict(n)` without tokens is its limit of unlimited tokens.
`PowerLaw` is the paper's; `SaturatingPowerLaw` (`workbench.laws.saturating`) adds an irreducible floor.
`registry.LAWS` names them; a new form is one file plus one line there, and every report, plot,
selection and check takes it through `law=` (`covariates_of` and `run_units` read a table for it).

Every function takes arrays or a tidy DataFrame with columns `n_params` and `value`. Definitions
follow the paper (Ivgi, Carmon and Berant 2022, on fitting and judging laws): R^2 = 1 - SS_res / SS_tot in
linear y space; RE = (pred - actual) / actual and MRE = mean |RE| over held-out sizes, both on the
metric itself.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from workbench.base import registry
from workbench.base.errors import FitError


class Law(Protocol):
    name: str
    param_names: tuple[str, ...]
    min_sizes: int  # distinct sizes needed to fit it
    covariates: tuple[str, ...]  # table columns read beside n_params and value, passed by name

    def fit(self, n, y=None, sample_weight=None, **covariates) -> "Law": ...

    def predict(self, n, **covariates) -> np.ndarray: ...

    @classmethod
    def curve(cls, params: np.ndarray, n, **covariates) -> np.ndarray: ...

    @classmethod
    def formula(cls, params: dict) -> str: ...  # the fitted law as LaTeX math, for figures and text


def interval(values, level: float, axis=None) -> np.ndarray:
    """The central percentile interval holding `level` of `values` (along `axis`): [low, high]."""
    q = 100 * (1 - level) / 2
    return np.percentile(values, [q, 100 - q], axis=axis)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """The Huber loss of residuals `r`: quadratic within `delta`, linear beyond (robust fits of the
    saturating and joint laws)."""
    a = np.abs(r)
    m = np.minimum(a, delta)
    return m * (a - 0.5 * m)  # r^2 / 2 within delta, delta (|r| - delta / 2) beyond


def get_law(name: str) -> type:
    """The law class registered as `name` (registry.LAWS)."""
    return registry.get(registry.LAWS, name, "law")


def columns_read(law: str | type) -> tuple[str, ...]:
    """Every table column `law` reads beside n_params and value: its covariates, then its given constants."""
    cls = get_law(law) if isinstance(law, str) else law
    return tuple(getattr(cls, "covariates", ())) + tuple(getattr(cls, "given", ()))


def covariates_of(table, law: str | type) -> dict[str, np.ndarray]:
    """The columns beyond n_params and value that `law` reads (the joint law: tokens), as arrays
    keyed by name; {} for a law of N alone."""
    cls = get_law(law) if isinstance(law, str) else law
    names = columns_read(cls)
    if not names:
        return {}
    if not isinstance(table, pd.DataFrame):
        raise FitError(f"the {cls.name} law also reads {', '.join(names)}: give a table (DataFrame) with "
                       f"those columns")
    missing = [c for c in names if c not in table]
    if missing:
        why = ("the known floor E: the runs of a generated language record it (eval_loss_floor), "
               "`runs.tables.law_table` carries it, and `read_table` reads a table's floor column (--columns "
               "floor=COLUMN)" if "floor" in missing else
               "tokens seen, per run or per checkpoint: `workbench runs --export` writes them")
        raise FitError(f"the {cls.name} law needs column(s) {', '.join(missing)} beside n_params and value ({why}); "
                       f"this table has {', '.join(map(str, table.columns))}")
    return {c: table[c].to_numpy(float) for c in names}


def run_units(table) -> np.ndarray | None:
    """The run each row belongs to, for resampling: with a `step` column the checkpoints of one
    (variant, n_params, seed) are one run and travel together in a bootstrap; None when every row
    is a run of its own."""
    if not isinstance(table, pd.DataFrame) or "step" not in table:
        return None
    key = [c for c in ("variant", "n_params", "seed") if c in table]
    return table.groupby(key, sort=False).ngroup().to_numpy()


def converged_flags(table: pd.DataFrame) -> tuple[bool | None, ...] | None:
    """Each row's convergence verdict (the `converged` column a run store's tables carry): True,
    False, or None where a row does not say; None for a table without the column."""
    if "converged" not in table:
        return None

    def flag(v):
        if isinstance(v, str):
            return {"true": True, "1": True, "false": False, "0": False}.get(v.strip().lower())
        if v is None or pd.isna(v):
            return None
        return bool(v)

    return tuple(flag(v) for v in table["converged"].tolist())


def as_points(n, y=None) -> tuple[np.ndarray, np.ndarray]:
    """(n, y) as validated float arrays; `n` may be a DataFrame with `n_params` and `value`."""
    if isinstance(n, pd.DataFrame):
        missing = {"n_params", "value"} - set(n.columns)
        if missing:
            raise FitError(f"DataFrame needs columns n_params and value; missing {sorted(missing)}")
        n, y = n["n_params"].to_numpy(), n["value"].to_numpy()
    if y is None:
        raise FitError("give n and y, or a DataFrame with n_params and value columns")
    n, y = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    for name, a in (("n", n), ("y", y)):
        if a.ndim != 1:
            raise FitError(f"{name} must be a 1-D array of points, got shape {a.shape}; give one value per "
                           f"(size, seed) point, e.g. a DataFrame column")
    if len(n) != len(y):
        raise FitError(f"n and y have different lengths ({len(n)} vs {len(y)})")
    for name, a in (("n", n), ("y", y)):
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            raise FitError(f"{name} must be positive and finite; {bad.sum()} value(s) are not "
                           f"(first: {a[bad][0]!r}). For metrics fit y = 1 - metric")
    if len(np.unique(n)) < 2:
        raise FitError(f"need at least two distinct sizes to fit a power law, got {len(np.unique(n))}")
    return n, y


def r2_linear(y: np.ndarray, pred: np.ndarray) -> float:
    """R^2 = 1 - SS_res / SS_tot in linear y space (the paper's definition)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    scale = np.abs(y).max() if len(y) and np.isfinite(y).all() else 1.0
    y, pred = y / (scale or 1.0), pred / (scale or 1.0)  # the ratio is scale-free; squares of 1e300 are not
    ss_tot = ((y - y.mean()) ** 2).sum()
    return float(1.0 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def weighted_ols(W: np.ndarray, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes and intercepts of B weighted least-squares fits of z on x, one per row of W (B, P)."""
    W = np.atleast_2d(W).astype(float)
    sw, sx, sz = W.sum(1), W @ x, W @ z
    sxx, sxz = W @ (x * x), W @ (x * z)
    den = sxx - sx * sx / sw
    den = np.where(den > 0, den, np.nan)  # one distinct size: the line is undefined
    alpha = (sxz - sx * sz / sw) / den
    return alpha, (sz - alpha * sx) / sw


class PowerLaw:
    """y = exp(beta) * N^alpha, fitted by (weighted) OLS in log-log space (scikit-learn style)."""

    name = "power"
    param_names = ("alpha", "beta")
    min_sizes = 2
    covariates = ()

    def fit(self, n, y=None, sample_weight=None) -> "PowerLaw":
        n, y = as_points(n, y)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
        (a,), (b,) = weighted_ols(w[None, :], np.log(n), np.log(y))
        self.alpha_, self.beta_ = float(a), float(b)
        self.r2_ = r2_linear(y, self.predict(n))
        self.n_points_, self.sizes_ = len(n), np.unique(n)
        return self

    @property
    def params_(self) -> dict[str, float]:
        return dict(alpha=self.alpha_, beta=self.beta_)

    def predict(self, n) -> np.ndarray:
        return np.exp(self.beta_) * sizes(n) ** self.alpha_

    @classmethod
    def curve(cls, params: np.ndarray, n) -> np.ndarray:
        n = np.atleast_1d(np.asarray(n, dtype=float))
        return np.exp(params[:, 1:2] + params[:, 0:1] * np.log(n)[None, :])

    @classmethod
    def formula(cls, params: dict) -> str:
        return f"y = e^{{{params['beta']:.2f}}} N^{{{params['alpha']:.3f}}}"

    @classmethod
    def fit_many(cls, W: np.ndarray, n: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(B, 2) parameters of B weighted fits at once (the bootstrap's fast path); NaN rows where a
        replicate has one distinct size."""
        alpha, beta = weighted_ols(W, np.log(n), np.log(y))
        return np.stack([alpha, beta], axis=1)

    def __repr__(self) -> str:
        if not hasattr(self, "alpha_"):
            return "PowerLaw()"
        return f"PowerLaw(alpha={self.alpha_:.4f}, beta={self.beta_:.4f}, r2={self.r2_:.4f})"


def sizes(n) -> np.ndarray:
    """`n` as an array of sizes to predict at; zero, negative or non-finite sizes are refused."""
    a = np.asarray(n, dtype=float)
    bad = ~np.isfinite(a) | (a <= 0)
    if bad.any():
        raise FitError(f"a law predicts at positive, finite sizes N; got {a[bad].ravel()[0]!r}")
    return a


def r2_drop_smallest(n, y=None, law: str = "power") -> float:
    """R^2 of the law refitted without the smallest size (the paper's R^2_2:)."""
    cov = covariates_of(n, law)
    n, y = as_points(n, y)
    keep = n > n.min()
    cls = get_law(law)
    if len(np.unique(n[keep])) < cls.min_sizes:
        return float("nan")
    return cls().fit(n[keep], y[keep], **{k: v[keep] for k, v in cov.items()}).r2_


def residuals(n, y=None, law: str = "power") -> pd.DataFrame:
    """Per size: mean y, the law's prediction, mean residual and relative residual."""
    cov = covariates_of(n, law)
    n, y = as_points(n, y)
    pred = get_law(law)().fit(n, y, **cov).predict(n, **cov)
    res = pd.DataFrame(dict(n_params=n, y=y, pred=pred, residual=y - pred)).groupby("n_params", as_index=False).mean()
    res["relative_residual"] = res.residual / res.pred
    return res


def relative_error(pred, actual):
    """RE = (pred - actual) / actual, signed, on the metric itself."""
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    if (actual == 0).any() or not np.isfinite(actual).all():
        raise FitError("relative error needs non-zero, finite actual values; for a metric at 0 or 1, "
                       "compare the absolute difference instead")
    return (pred - actual) / actual


def mean_relative_error(pred, actual) -> float:
    """MRE = mean |pred - actual| / actual over held-out sizes."""
    return float(np.mean(np.abs(relative_error(pred, actual))))


def split_by_size(df: pd.DataFrame, n_held_out: int, min_fit: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit rows, held-out rows): all but the largest `n_held_out` sizes vs those sizes."""
    if df.empty:
        raise FitError("the table has no rows: nothing to fit")
    sizes = np.sort(df["n_params"].unique())
    if n_held_out < 0 or len(sizes) - n_held_out < min_fit:
        raise FitError(f"holding out {n_held_out} of {len(sizes)} sizes leaves fewer than {min_fit} to fit; "
                       f"hold out fewer sizes or add sizes")
    cut = sizes[len(sizes) - n_held_out] if n_held_out else np.inf
    return df[df.n_params < cut], df[df.n_params >= cut]


def target_error(fit_rows: pd.DataFrame, target_rows: pd.DataFrame, metric: bool = False,
                 drop_smallest: bool = False, law: str = "power") -> float:
    """RE at a larger target model (the paper's 'fit L1-8, predict BERT-Base'; RE_2: with
    `drop_smallest`), signed, on the metric itself when `metric` (value = 1 - metric)."""
    if drop_smallest:
        fit_rows = fit_rows[fit_rows.n_params > fit_rows.n_params.min()]
    fitted = get_law(law)().fit(fit_rows, **covariates_of(fit_rows, law))
    actual = target_rows.groupby("n_params")["value"].mean()
    if len(actual) != 1:
        raise FitError(f"target_rows must hold one size, got {len(actual)}")
    pred = float(np.mean(fitted.predict(target_rows.n_params.to_numpy(float), **covariates_of(target_rows, law))))
    act = float(actual.iloc[0])
    return float(relative_error(1 - pred, 1 - act)) if metric else float(relative_error(pred, act))
