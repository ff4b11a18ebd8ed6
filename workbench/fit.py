"""Power laws of loss (or 1 - metric) against model size N, fitted and judged as in the paper.

    law = PowerLaw().fit(n, y)             # ln y = alpha ln N + beta, OLS over every (size, seed) point
    law.alpha_, law.beta_, law.r2_         # R^2 in linear y space, over all points fitted
    law.predict([1e8])

Every function takes arrays or a tidy DataFrame with columns `n_params` and `value` (plus `seed`,
`variant`, `task` where they matter). Definitions follow the paper (see PAPER.md, "Fitting"):
R^2 = 1 - SS_res / SS_tot in linear y space; RE = (pred - actual) / actual and
MRE = mean |RE| over held-out sizes, both on the metric itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def as_points(n, y=None) -> tuple[np.ndarray, np.ndarray]:
    """(n, y) as validated float arrays; `n` may be a DataFrame with `n_params` and `value`."""
    if isinstance(n, pd.DataFrame):
        missing = {"n_params", "value"} - set(n.columns)
        if missing:
            raise ValueError(f"DataFrame needs columns n_params and value; missing {sorted(missing)}")
        n, y = n["n_params"].to_numpy(), n["value"].to_numpy()
    if y is None:
        raise ValueError("give n and y, or a DataFrame with n_params and value columns")
    n, y = np.asarray(n, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(n) != len(y):
        raise ValueError(f"n and y have different lengths ({len(n)} vs {len(y)})")
    for name, a in (("n", n), ("y", y)):
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            raise ValueError(f"{name} must be positive and finite; {bad.sum()} value(s) are not "
                             f"(first: {a[bad][0]!r}). For metrics fit y = 1 - metric")
    if len(np.unique(n)) < 2:
        raise ValueError(f"need at least two distinct sizes to fit a power law, got {len(np.unique(n))}")
    return n, y


def ols_loglog(n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(alpha, beta) of ln y = alpha ln n + beta by ordinary least squares."""
    x, z = np.log(n), np.log(y)
    xm, zm = x.mean(), z.mean()
    alpha = ((x - xm) * (z - zm)).sum() / ((x - xm) ** 2).sum()
    return float(alpha), float(zm - alpha * xm)


def r2_linear(y: np.ndarray, pred: np.ndarray) -> float:
    """R^2 = 1 - SS_res / SS_tot in linear y space (the paper's definition)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    ss_tot = ((y - y.mean()) ** 2).sum()
    return float(1.0 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


class PowerLaw:
    """y = exp(beta) * N^alpha, fitted by OLS in log-log space (scikit-learn style)."""

    def fit(self, n, y=None) -> "PowerLaw":
        n, y = as_points(n, y)
        self.alpha_, self.beta_ = ols_loglog(n, y)
        self.r2_ = r2_linear(y, self.predict(n))
        self.n_points_, self.sizes_ = len(n), np.unique(n)
        return self

    def predict(self, n) -> np.ndarray:
        return np.exp(self.beta_) * np.asarray(n, dtype=float) ** self.alpha_

    def __repr__(self) -> str:
        if not hasattr(self, "alpha_"):
            return "PowerLaw()"
        return f"PowerLaw(alpha={self.alpha_:.4f}, beta={self.beta_:.4f}, r2={self.r2_:.4f})"


@dataclass(frozen=True)
class Goodness:
    r2: float  # over all points
    r2_drop_smallest: float  # refit without the smallest size (the paper's R^2_2:)
    residuals: pd.DataFrame  # per size: mean y, prediction, mean residual, relative residual


def goodness(n, y=None, law: type = PowerLaw) -> Goodness:
    """R^2, R^2 after dropping the smallest size (refit), and residuals per size."""
    n, y = as_points(n, y)
    fit = law().fit(n, y)
    keep = n > n.min()
    r2_2 = law().fit(n[keep], y[keep]).r2_ if len(np.unique(n[keep])) >= 2 else float("nan")
    pred = fit.predict(n)
    res = (pd.DataFrame(dict(n_params=n, y=y, pred=pred, residual=y - pred))
           .groupby("n_params", as_index=False).mean())
    res["relative_residual"] = res.residual / res.pred
    return Goodness(fit.r2_, r2_2, res)


def relative_error(pred, actual):
    """RE = (pred - actual) / actual, signed, on the metric itself."""
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    return (pred - actual) / actual


def mean_relative_error(pred, actual) -> float:
    """MRE = mean |pred - actual| / actual over held-out sizes."""
    return float(np.mean(np.abs(relative_error(pred, actual))))


def split_by_size(df: pd.DataFrame, n_fit: int | None = None, n_held_out: int | None = None):
    """(fit rows, held-out rows): the smallest `n_fit` sizes vs the largest `n_held_out` sizes."""
    sizes = np.sort(df["n_params"].unique())
    if n_fit is None and n_held_out is None:
        raise ValueError("give n_fit or n_held_out")
    n_fit = len(sizes) - n_held_out if n_fit is None else n_fit
    if not 2 <= n_fit < len(sizes):
        raise ValueError(f"cannot fit {n_fit} of {len(sizes)} sizes and hold out the rest; "
                         f"need at least 2 to fit and 1 held out")
    fit_sizes = sizes[:n_fit]
    return df[df.n_params.isin(fit_sizes)], df[~df.n_params.isin(fit_sizes)]


def extrapolation_error(df: pd.DataFrame, n_held_out: int = 1, metric: bool = False) -> pd.DataFrame:
    """Fit the smaller sizes, predict each held-out size; one row per held-out size with the
    per-size mean actual value, the prediction and RE (on the metric if `metric`, y = 1 - metric).

    `.attrs["mre"]` holds the MRE over the held-out sizes."""
    fit_rows, held = split_by_size(df, n_held_out=n_held_out)
    law = PowerLaw().fit(fit_rows)
    out = held.groupby("n_params", as_index=False)["value"].mean()
    out["pred"] = law.predict(out.n_params)
    if metric:  # errors on the metric itself, not on 1 - metric
        out["actual_metric"], out["pred_metric"] = 1 - out.value, 1 - out.pred
        out["re"] = relative_error(out.pred_metric, out.actual_metric)
    else:
        out["re"] = relative_error(out.pred, out.value)
    out.attrs.update(mre=float(out.re.abs().mean()), alpha=law.alpha_, beta=law.beta_, r2=law.r2_)
    return out


def target_error(fit_rows: pd.DataFrame, target_rows: pd.DataFrame, metric: bool = False,
                 drop_smallest: bool = False) -> float:
    """RE at a larger target model (the paper's 'fit L1-8, predict BERT-Base'; RE_2: with
    `drop_smallest`), signed, on the metric itself when `metric` (value = 1 - metric)."""
    if drop_smallest:
        fit_rows = fit_rows[fit_rows.n_params > fit_rows.n_params.min()]
    law = PowerLaw().fit(fit_rows)
    actual = target_rows.groupby("n_params")["value"].mean()
    if len(actual) != 1:
        raise ValueError(f"target_rows must hold one size, got {len(actual)}")
    pred, act = float(law.predict(actual.index[0])), float(actual.iloc[0])
    return float(relative_error(1 - pred, 1 - act)) if metric else float(relative_error(pred, act))


def runs_table(runs: pd.DataFrame, value: str = "best_eval_loss") -> pd.DataFrame:
    """The fitting table of a run store's `load_runs` output: variant (family/objective), n_params,
    seed, value. Runs that did not complete (diverged, unfinished) are left out with a warning."""
    import logging

    ok = runs["status"] == "completed"
    if (~ok).any():
        bad = runs[~ok]
        why = [f"{r.run_id} ({r.status}" + (f" at step {int(r.diverged_step)})" if r.status == "diverged"
                                            and "diverged_step" in bad and r.diverged_step == r.diverged_step else ")")
               for r in bad.itertuples()]
        logging.getLogger(__name__).warning("leaving out %d run(s) that did not complete: %s", len(bad), ", ".join(why))
    rows = runs[ok]
    variant = rows["family"].astype(str) + "/" + rows["train.objective"].astype(str)
    return pd.DataFrame(dict(variant=variant, n_params=rows["n_params"].astype(float), seed=rows["seed"],
                             value=rows[value].astype(float), run_id=rows["run_id"])).reset_index(drop=True)
