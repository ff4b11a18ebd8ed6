"""Uncertainty of any law's fit: hierarchical (sizes, then seeds) and naive pooled bootstrap.

    boot = bootstrap_law(df, law="power", B=1000, random_state=0)     # hierarchical, the paper's
    boot.ci("alpha")               # 95% percentile interval of a parameter
    boot.band([1e5, 1e6, 1e8])     # pointwise 2.5/50/97.5% of the fitted curve at each N

Each replicate draws M sizes with replacement from the M sizes, then for each drawn size T seed
results with replacement from that size's T results, and refits the law on the pooled points.
Resampling sizes stands in for pretraining-seed variance. A result is a run: given `runs` (a table
of checkpoints: `workbench.laws.fit.run_units`), all checkpoints of a drawn run travel together, since
they are not independent. Replicates are integer weights over the
original points (`SizeGroups.weights`), so a law with a `fit_many` (the power law: a handful of
matrix products) fits all B at once, and any other law is refitted per replicate with
`sample_weight`. Replicates with fewer distinct sizes than the law needs are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from workbench.base.errors import FitError
from workbench.laws.fit import as_points, covariates_of, get_law, interval, run_units


@dataclass(frozen=True)
class SizeGroups:
    """Points grouped by size, and within a size by run: the one bootstrap set-up every analysis
    shares. Without runs every point is a run of its own."""

    order: np.ndarray  # permutation that sorts the points by size (then run)
    counts: np.ndarray  # runs per size (M,)
    offsets: np.ndarray  # first sorted run of each size (M,)
    size_of: np.ndarray  # size index of each sorted point (P,)
    run_of: np.ndarray  # sorted run index of each sorted point (P,)

    @classmethod
    def of(cls, n: np.ndarray, runs: np.ndarray | None = None) -> "SizeGroups":
        runs = np.arange(len(n)) if runs is None else np.asarray(runs)
        order = np.lexsort((runs, n))
        ns, rs = n[order], runs[order]
        first = np.concatenate([[True], (ns[1:] != ns[:-1]) | (rs[1:] != rs[:-1])])  # a run's first point
        run_of = np.cumsum(first) - 1
        _, counts = np.unique(ns[first], return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(order, counts, offsets, np.repeat(np.arange(len(counts)), counts)[run_of], run_of)

    def weights(self, B: int, rng: np.random.Generator, method: str = "hierarchical",
                size_draws: np.ndarray | None = None) -> np.ndarray:
        """(B, P) resampling counts of the sorted points (a run's count on each of its points).
        `size_draws` (B, M) shares the size draws between paired analyses."""
        M, R = len(self.counts), int(self.counts.sum())
        if method == "naive":
            idx = rng.integers(0, R, (B, R))
            W = np.bincount((np.arange(B)[:, None] * R + idx).ravel(), minlength=B * R).reshape(B, R)
            return W[:, self.run_of]
        S = rng.integers(0, M, (B, M)) if size_draws is None else size_draws
        T = self.counts[S]  # (B, M): runs available at each drawn size
        r = np.floor(rng.random((B, M, self.counts.max())) * T[..., None]).astype(np.int64)
        valid = np.arange(self.counts.max())[None, None, :] < T[..., None]
        idx = self.offsets[S][..., None] + r  # (B, M, Tmax) run indices
        rows = np.broadcast_to(np.arange(B)[:, None, None], idx.shape)
        W = np.bincount((rows * R + idx)[valid], minlength=B * R).reshape(B, R)
        return W[:, self.run_of]

    def sort(self, covariates: dict) -> dict:
        """A law's covariates ({name: one value per point}) in the groups' sorted order of the points."""
        return {k: np.asarray(v, float)[self.order] for k, v in covariates.items()}

    def distinct_sizes(self, W: np.ndarray) -> np.ndarray:
        """(B,) number of distinct sizes each replicate drew."""
        onehot = np.eye(len(self.counts))[self.size_of]  # (P, M)
        return ((W @ onehot) > 0).sum(1)


@dataclass(frozen=True)
class BootstrapResult:
    """B refits of one law: one row of parameters per replicate, with the fit on every point when the
    caller made one (`fitted`) and the level its intervals default to. Every bootstrap returns this."""

    law: str  # registry.LAWS name
    param_names: tuple[str, ...]
    params: np.ndarray  # (B_valid, k) one row of parameters per replicate
    n_dropped: int  # replicates with too few distinct sizes for the law
    method: str  # "hierarchical" | "naive"
    fitted: Any = None  # the law fitted on every point (`bootstrap_joint` sets it)
    level: float = 0.95  # of `ci` and `band` unless they are given another
    n_runs: int | None = None  # resampling units (runs), when the points are checkpoints
    n_points: int | None = None

    def param(self, name: str) -> np.ndarray:
        return self.params[:, self.param_names.index(name)]

    @property
    def alphas(self) -> np.ndarray:
        return self.param("alpha")

    def ci(self, name: str = "alpha", level: float | None = None) -> tuple[float, float]:
        """Percentile interval of a parameter (at `level`, else the result's own)."""
        lo, hi = interval(self.param(name), self.level if level is None else level)
        return float(lo), float(hi)

    def table(self) -> pd.DataFrame:
        """Every parameter: its fitted value (when there is a fit on every point) and its interval."""
        value = self.fitted.params_ if self.fitted is not None else {}
        return pd.DataFrame([dict(param=k, value=value.get(k, float("nan")), low=self.ci(k)[0], high=self.ci(k)[1])
                             for k in self.param_names])

    def predictions(self, n, **covariates) -> np.ndarray:
        """(B_valid, len(n)) curve values of every replicate at sizes `n` (and covariates: the
        joint law's `tokens`; without them its limit of unlimited tokens)."""
        return get_law(self.law).curve(self.params, n, **covariates)

    def band(self, n, level: float | None = None, **covariates) -> pd.DataFrame:
        """Pointwise percentile band of the fitted curve at each N: lower, median, upper."""
        preds = self.predictions(n, **covariates)
        (lo, hi), med = interval(preds, self.level if level is None else level, axis=0), np.median(preds, axis=0)
        return pd.DataFrame(dict(n_params=np.atleast_1d(n).astype(float), lower=lo, median=med, upper=hi))


def fit_replicates(law: str, W: np.ndarray, n: np.ndarray, y: np.ndarray, groups: SizeGroups,
                   covariates: dict | None = None) -> np.ndarray:
    """(B, k) parameters of the law refitted under each weight row (points and `covariates` in the
    groups' sorted order); NaN rows where it cannot be fitted."""
    cls, cov = get_law(law), covariates or {}
    ok = groups.distinct_sizes(W) >= cls.min_sizes
    if hasattr(cls, "fit_many"):
        params = cls.fit_many(W, n, y, **cov)
    else:
        from workbench.base.progress import refits

        params = np.full((len(W), len(cls.param_names)), np.nan)
        todo = np.flatnonzero(ok)
        with refits(len(todo), f"{law} law: bootstrap refits") as progress:
            for i in todo:  # Ctrl-C stops here, between two refits, and the bar is closed
                fitted = cls().fit(n, y, sample_weight=W[i], **cov)
                params[i] = [fitted.params_[k] for k in cls.param_names]
                progress.update(1)
    params[~ok] = np.nan
    return params


def bootstrap_law(n, y=None, law: str = "power", B: int = 1000, method: str = "hierarchical",
                  random_state: int | np.random.Generator | None = 0, runs: np.ndarray | None = None,
                  covariates: dict | None = None) -> BootstrapResult:
    """B bootstrap refits of `law`; see the module docstring. From a table, the law's covariates
    (`tokens` for the joint law) and the runs of its checkpoints are read from its columns."""
    if method not in ("hierarchical", "naive"):
        raise FitError(f"method must be 'hierarchical' or 'naive', got {method!r}")
    if B < 1:
        raise FitError(f"B must be >= 1, got {B}")
    cls = get_law(law)
    if covariates is None:
        covariates = covariates_of(n, cls)
    if runs is None:
        runs = run_units(n)
    n, y = as_points(n, y)
    if len(np.unique(n)) < cls.min_sizes:
        raise FitError(f"the {law} law needs at least {cls.min_sizes} distinct sizes, got {len(np.unique(n))}; "
                       f"add sizes or use a law with fewer parameters")
    groups = SizeGroups.of(n, runs)
    n, y = n[groups.order], y[groups.order]
    W = groups.weights(B, np.random.default_rng(random_state), method)
    params = fit_replicates(law, W, n, y, groups, groups.sort(covariates))
    ok = np.isfinite(params).all(1)
    if not ok.any():
        raise FitError(f"none of the {B} bootstrap replicates drew the {cls.min_sizes} distinct sizes the {law} law "
                       f"needs; raise B (fit.n_bootstrap) or add sizes")
    return BootstrapResult(law, cls.param_names, params[ok], int((~ok).sum()), method)


def bootstrap_power_law(n, y=None, B: int = 1000, method: str = "hierarchical", random_state=0) -> BootstrapResult:
    """`bootstrap_law` of the paper's power law."""
    return bootstrap_law(n, y, "power", B, method, random_state)


def bootstrap_power_law_loop(n, y=None, B: int = 1000, random_state=None) -> BootstrapResult:
    """The same hierarchical bootstrap as a plain Python loop (the benchmark's baseline)."""
    n, y = as_points(n, y)
    rng = np.random.default_rng(random_state)
    sizes = np.unique(n)
    groups = [np.flatnonzero(n == s) for s in sizes]
    rows, dropped = [], 0
    for _ in range(B):
        idx = np.concatenate([rng.choice(groups[s], len(groups[s])) for s in rng.integers(0, len(sizes), len(sizes))])
        if len(np.unique(n[idx])) < 2:
            dropped += 1
            continue
        rows.append(np.polyfit(np.log(n[idx]), np.log(y[idx]), 1))
    return BootstrapResult("power", ("alpha", "beta"), np.array(rows).reshape(-1, 2), dropped, "hierarchical")
