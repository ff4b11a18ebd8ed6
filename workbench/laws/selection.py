"""Model selection from small runs: which variant wins at a target size, and how sure are we.

    sel = compare_variants(df, target_n=85e6, variants=("mlm", "pmi"))   # df: variant, n_params, seed, value
    sel = selection_report(table, ("ar32/mlm", "ar32/pmi"), FitConfig(n_held_out=1))  # + checked against runs
    sel.winner, sel.gap_interval, sel.verdict, sel.to_dict()

Each variant is fitted on its own points with `fit.law`, on its own sizes. Bootstrap replicates
are paired by draw: replicate i of one variant goes with replicate i of the other. With the same
number of sizes both use the same draw of size ranks (the i-th smallest size of each; the sizes
themselves may differ, as for AR32 vs AR64 at the same depths); with different numbers (the paper's
AR32 L1-8 vs AR64 L1-5) each variant draws its own sizes. Seeds are drawn within each variant.
Lower y wins (y is a loss, or 1 - metric).

Trust: `fit.r2_gate_on="both"` (default) trusts a decision only when both laws reach
`fit.r2_gate`; `"baseline"` is the paper's rule, gating on the first (baseline) variant's fit only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.base.errors import FitError
from workbench.config import FitConfig
from workbench.laws.bootstrap import SizeGroups, fit_replicates
from workbench.laws.fit import as_points, converged_flags, covariates_of, get_law, interval, run_units, split_by_size
from workbench.laws.report import LawCurve, curve_of, read_at
from workbench.laws.tables import final_points


@dataclass(frozen=True)
class SelectionReport:
    variants: tuple[str, str]
    target_n: float
    law: str
    pred: dict  # {variant: predicted value at target_n}
    pred_interval: dict  # {variant: (lo, hi)}
    gap: float  # pred A - pred B (negative: A wins)
    gap_interval: tuple[float, float]
    p_a_beats_b: float
    winner: str
    crossover_n: float | None  # where the fitted laws cross, between the smallest size and the target
    r2: dict
    alpha: dict
    trustworthy: bool
    n_dropped: int
    curves: dict  # {variant: LawCurve} fitted on the sizes used, band reaching the target
    fit_sizes: dict = field(default_factory=dict)  # {variant: number of sizes fitted}
    n_held_out: dict = field(default_factory=dict)
    actual: dict = field(default_factory=dict)  # {variant: measured value at target_n, or None}
    actual_source: dict = field(default_factory=dict)
    actual_gap: float | None = None
    actual_winner: str | None = None
    prediction_right: bool | None = None
    actual_gap_in_interval: bool | None = None
    verdict: str = ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["curves"] = {k: c.to_dict() for k, c in self.curves.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SelectionReport":
        kw = dict(d, curves={k: LawCurve.from_dict(c) for k, c in d["curves"].items()})
        kw["variants"], kw["gap_interval"] = tuple(d["variants"]), tuple(d["gap_interval"])
        kw["pred_interval"] = {k: tuple(v) for k, v in d["pred_interval"].items()}
        return cls(**kw)


def _variant_rows(df: pd.DataFrame, variant) -> pd.DataFrame:
    rows = df[df["variant"] == variant]
    if rows.empty:
        raise FitError(f"variant {variant!r} has no rows; variants present: {sorted(df['variant'].unique())}")
    if rows["n_params"].nunique() < 2:
        raise FitError(f"variant {variant!r} has fewer than two sizes; a law needs at least two")
    return rows


def compare_variants(df: pd.DataFrame, target_n: float, variants: tuple | None = None,
                     fit: FitConfig = FitConfig()) -> SelectionReport:
    """Predicted value of each variant at `target_n` with intervals, the gap A - B with its interval,
    P(A beats B), the crossover N (if the fitted laws cross between the smallest size and the
    target), and whether the decision is trustworthy (both fits R^2 >= `fit.r2_gate`)."""
    if "variant" not in df:
        raise FitError("DataFrame needs a 'variant' column")
    variants = tuple(variants or sorted(df["variant"].unique()))
    if len(variants) != 2:
        raise FitError(f"compare exactly two variants, got {list(variants)}")
    if variants[0] == variants[1]:
        raise FitError(f"both variants are {variants[0]!r}: compare two different variants")
    if not (isinstance(target_n, (int, float, np.number)) and np.isfinite(target_n) and target_n > 0):
        raise FitError(f"target_n must be a positive size, got {target_n!r}")
    parts = [_variant_rows(df, v) for v in variants]
    m = [p.n_params.nunique() for p in parts]
    cls = get_law(fit.law)
    for v, k in zip(variants, m):
        if k < cls.min_sizes:
            raise FitError(f"variant {v!r} has {k} size(s); the {fit.law} law needs at least {cls.min_sizes}")
    rng = np.random.default_rng(fit.random_state)
    shared = rng.integers(0, m[0], (fit.n_bootstrap, m[0])) if m[0] == m[1] else None  # rank-paired draws
    fits, points, replicates, ok_all = [], [], [], np.ones(fit.n_bootstrap, bool)
    for rows in parts:
        n, y = as_points(rows)
        cov = covariates_of(rows, cls)
        fits.append(cls().fit(n, y, **cov))
        points.append((n, y, converged_flags(rows)))
        groups = SizeGroups.of(n, run_units(rows))  # checkpoints of one run travel together
        W = groups.weights(fit.n_bootstrap, rng, size_draws=shared)  # None: this variant draws its own sizes
        params = fit_replicates(fit.law, W, n[groups.order], y[groups.order], groups, groups.sort(cov))
        ok_all &= np.isfinite(params).all(1)
        replicates.append(params)
    if not ok_all.any():
        raise FitError("no bootstrap replicate could fit both laws; raise fit.n_bootstrap or add sizes")
    replicates = [params[ok_all] for params in replicates]  # paired draws where both laws could be fitted
    at = read_at(fit)  # the joint law: at fit.tokens (unlimited when 0)
    pa, pb = (cls.curve(params, [target_n], **at)[:, 0] for params in replicates)

    def interval_of(v):
        return tuple(float(x) for x in interval(v, fit.level))

    fa, fb = fits
    point = (float(fa.predict(target_n, **at)), float(fb.predict(target_n, **at)))
    grid = np.geomspace(min(p.n_params.min() for p in parts), target_n, 200)
    diff = np.sign(fa.predict(grid, **at) - fb.predict(grid, **at))
    cross = np.flatnonzero(diff[1:] != diff[:-1])
    return SelectionReport(
        variants=variants, target_n=float(target_n), law=fit.law, pred=dict(zip(variants, point)),
        pred_interval=dict(zip(variants, (interval_of(pa), interval_of(pb)))),
        gap=point[0] - point[1], gap_interval=interval_of(pa - pb), p_a_beats_b=float(np.mean(pa < pb)),
        winner=variants[0] if point[0] < point[1] else variants[1],
        crossover_n=float(np.sqrt(grid[cross[0]] * grid[cross[0] + 1])) if len(cross) else None,
        r2=dict(zip(variants, (fa.r2_, fb.r2_))),
        alpha=dict(zip(variants, (fa.params_["alpha"], fb.params_["alpha"]))),
        trustworthy=bool(fa.r2_ >= fit.r2_gate and (fit.r2_gate_on == "baseline" or fb.r2_ >= fit.r2_gate)),
        n_dropped=int((~ok_all).sum()),
        # the curves' bands come from the same paired replicates as the intervals at the target
        curves={v: curve_of(f, params, n, y, fit, extra_n=[target_n], converged=flags)
                for v, f, params, (n, y, flags) in zip(variants, fits, replicates, points)},
        fit_sizes=dict(zip(variants, (int(x) for x in m))))


def _actual_at(rows: pd.DataFrame, n: float) -> tuple[float | None, str]:
    """The measured value at N: the runs there, else log-log interpolation between the two bracketing sizes."""
    per = rows.groupby("n_params").value.mean()
    if np.isclose(per.index, n, rtol=1e-9).any():
        return float(per[np.isclose(per.index, n, rtol=1e-9)].iloc[0]), "measured"
    lo, hi = per.index[per.index < n], per.index[per.index > n]
    if len(lo) and len(hi):
        a, b = lo.max(), hi.min()
        w = (np.log(n) - np.log(a)) / (np.log(b) - np.log(a))
        return float(np.exp((1 - w) * np.log(per[a]) + w * np.log(per[b]))), \
            f"interpolated between its runs at N={a:,.0f} and N={b:,.0f}"
    return None, "not measured"


def selection_report(table: pd.DataFrame, variants: tuple[str, str], fit: FitConfig = FitConfig(),
                     n_held_out: int | dict | None = None, target_n: float | None = None) -> SelectionReport:
    """Fit each variant without its `n_held_out` largest sizes (an int, or a dict per variant;
    default `fit.n_held_out`), predict both at `target_n` (default: the first variant's largest
    held-out size) with the gap's interval and P(A beats B), then compare with what the runs
    measured there (interpolated for a variant whose sizes differ).

    `verdict` says in words whether the predicted winner was right and whether the fits make it
    trustworthy: R^2 >= `fit.r2_gate`, on at least three sizes each."""
    if len(variants) != 2:
        raise FitError(f"compare exactly two variants, got {list(variants)}")
    n_held_out = fit.n_held_out if n_held_out is None else n_held_out
    held_n = n_held_out if isinstance(n_held_out, dict) else {v: n_held_out for v in variants}
    parts = {}
    for v in variants:
        rows, k = table[table.variant == v], held_n[v]
        if rows.empty:
            raise FitError(f"variant {v!r} has no runs; variants present: {sorted(table.variant.unique())}")
        if rows.n_params.nunique() < 2 + k:
            raise FitError(f"variant {v!r} has {rows.n_params.nunique()} size(s); it needs at least "
                           f"{2 + k} (two to fit, {k} held out)")
        parts[v] = (rows, *split_by_size(rows, k))
    if target_n is None:
        held_a = parts[variants[0]][2]
        target_n = float(held_a.n_params.max() if len(held_a) else parts[variants[0]][0].n_params.max())
    at_runs = ""
    if get_law(fit.law).covariates and not fit.tokens:  # the joint law: read where the target runs were measured
        target_rows = final_points(pd.concat([parts[v][0] for v in variants]))
        target_rows = target_rows[np.isclose(target_rows.n_params, target_n, rtol=1e-9)]
        if len(target_rows) and "tokens" in target_rows:
            fit = dataclasses.replace(fit, tokens=float(target_rows.tokens.mean()))
            at_runs = f" (laws read at D = {fit.tokens:.3g} tokens, where the runs at the target stopped)"
    cmp = compare_variants(pd.concat([parts[v][1] for v in variants]), target_n, variants, fit)
    actual, how = {}, {}
    for v in variants:
        actual[v], how[v] = _actual_at(final_points(parts[v][0]), target_n)  # each run's best checkpoint
    a, b = variants
    extra = dict(actual=actual, actual_source=how, n_held_out=held_n)
    if actual[a] is not None and actual[b] is not None:
        gap = actual[a] - actual[b]
        winner = a if actual[a] < actual[b] else b
        lo, hi = cmp.gap_interval
        extra.update(actual_gap=gap, actual_winner=winner, prediction_right=winner == cmp.winner,
                     actual_gap_in_interval=bool(lo <= gap <= hi))
        right = "RIGHT" if winner == cmp.winner else "WRONG"
        measured = f"the runs gave {winner} (gap {gap:+.4g}, {how[b]} for {b})"
    else:
        right, measured = "UNCHECKED", "no runs at the target to check against"
    trustworthy = cmp.trustworthy
    if min(cmp.fit_sizes.values()) < 3:  # two points: R^2 = 1 by construction, and the bootstrap has nothing to vary
        trustworthy = False
        trust = ("NOT trustworthy: a law is fitted on 2 sizes (%s), so its R^2 is 1 by construction and its "
                 "interval has almost no width" % ", ".join(f"{k} {n}" for k, n in cmp.fit_sizes.items()))
    elif cmp.trustworthy:
        trust = ("trustworthy: both fits have R^2 >= %.2f on >= 3 sizes" % fit.r2_gate if fit.r2_gate_on == "both"
                 else "trustworthy by the paper's rule: the baseline %s has R^2 >= %.2f on >= 3 sizes (%s)" % (
                     a, fit.r2_gate, ", ".join(f"{k} {v:.3f}" for k, v in cmp.r2.items())))
    else:
        trust = "NOT trustworthy: %s R^2 < %.2f (%s)" % (
            "a fit has" if fit.r2_gate_on == "both" else f"the baseline {a} has", fit.r2_gate,
            ", ".join(f"{k} {v:.3f}" for k, v in cmp.r2.items()))
    lo, hi = cmp.gap_interval
    verdict = (f"At N={target_n:,.0f}{at_runs} the laws fitted on the smaller sizes predict {cmp.winner} wins "
               f"(gap {a} - {b} = {cmp.gap:+.4g}, {100 * fit.level:.0f}% CI [{lo:+.4g}, {hi:+.4g}], "
               f"P({a} beats {b}) = {cmp.p_a_beats_b:.2f}); {measured}: prediction {right}; {trust}.")
    return dataclasses.replace(cmp, trustworthy=trustworthy, verdict=verdict, **extra)
