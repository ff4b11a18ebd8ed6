"""Model selection from small runs: which variant wins at a target size, and how sure are we.

    compare_variants(df, target_n=85e6, variants=("mlm", "pmi"))   # df: variant, n_params, seed, value

Each variant is fitted on its own points. Bootstrap replicates are paired: both variants use the
same draw of size ranks (the i-th smallest size of each; the sizes themselves may differ, as for
AR32 vs AR64 at the same depths), seeds are drawn within each variant. Lower y wins
(y is a loss, or 1 - metric).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.bootstrap import _size_index, hierarchical_weights, weighted_ols
from workbench.fit import PowerLaw, as_points


def _variant_points(df: pd.DataFrame, variant) -> tuple[np.ndarray, np.ndarray]:
    rows = df[df["variant"] == variant]
    if rows.empty:
        raise ValueError(f"variant {variant!r} has no rows; variants present: {sorted(df['variant'].unique())}")
    if rows["n_params"].nunique() < 2:
        raise ValueError(f"variant {variant!r} has fewer than two sizes; a law needs at least two")
    return as_points(rows)


def compare_variants(df: pd.DataFrame, target_n: float, variants: tuple | None = None, B: int = 1000,
                     level: float = 0.95, r2_threshold: float = 0.95, random_state=None) -> dict:
    """Predicted value of each variant at `target_n` with intervals, the gap A - B with its interval,
    P(A beats B), the crossover N (if the fitted lines cross between the smallest size and the
    target), and whether the decision is trustworthy (both fits R^2 >= `r2_threshold`)."""
    if "variant" not in df:
        raise ValueError("DataFrame needs a 'variant' column")
    variants = tuple(variants or sorted(df["variant"].unique()))
    if len(variants) != 2:
        raise ValueError(f"compare exactly two variants, got {list(variants)}")
    (na, ya), (nb, yb) = (_variant_points(df, v) for v in variants)
    if len(np.unique(na)) != len(np.unique(nb)):
        raise ValueError(f"variants have different numbers of sizes: {len(np.unique(na))} "
                         f"({sorted(int(x) for x in set(na))}) vs {len(np.unique(nb))} "
                         f"({sorted(int(x) for x in set(nb))}); give both the same depths")
    rng = np.random.default_rng(random_state)
    fits, preds = [], []
    size_draws = rng.integers(0, len(np.unique(na)), (B, len(np.unique(na))))
    ok_all = np.ones(B, bool)
    for n, y in ((na, ya), (nb, yb)):
        fits.append(PowerLaw().fit(n, y))
        order, counts, offsets = _size_index(n)
        W = hierarchical_weights(counts, offsets, B, rng, size_draws=size_draws)
        alpha, beta, ok = weighted_ols(W, np.log(n[order]), np.log(y[order]),
                                       np.repeat(np.arange(len(counts)), counts))
        ok_all &= ok
        preds.append(np.exp(beta + alpha * np.log(target_n)))
    pa, pb = preds[0][ok_all], preds[1][ok_all]
    q = 100 * (1 - level) / 2
    gap = pa - pb

    def interval(v):
        return tuple(float(x) for x in np.percentile(v, [q, 100 - q]))

    fa, fb = fits
    cross = None
    if fa.alpha_ != fb.alpha_:
        n_cross = float(np.exp((fb.beta_ - fa.beta_) / (fa.alpha_ - fb.alpha_)))
        if np.unique(na).min() <= n_cross <= target_n:
            cross = n_cross
    return dict(
        variants=variants, target_n=float(target_n),
        pred=dict(zip(variants, (float(fa.predict(target_n)), float(fb.predict(target_n))))),
        pred_interval=dict(zip(variants, (interval(pa), interval(pb)))),
        gap=float(fa.predict(target_n) - fb.predict(target_n)), gap_interval=interval(gap),
        p_a_beats_b=float(np.mean(pa < pb)),
        winner=variants[0] if fa.predict(target_n) < fb.predict(target_n) else variants[1],
        crossover_n=cross, r2=dict(zip(variants, (fa.r2_, fb.r2_))),
        alpha=dict(zip(variants, (fa.alpha_, fb.alpha_))),
        trustworthy=bool(fa.r2_ >= r2_threshold and fb.r2_ >= r2_threshold),
        n_dropped=int((~ok_all).sum()),
    )
