"""The numbers a study reports, as plain dicts: one law's quality, and a two-variant decision.

    law_report(table, n_held_out=1)                      # R^2, alpha with CI, held-out-size error
    selection_report(table, ("ar32/mlm", "ar32/pmi"))    # predicted gap at the held-out size vs actual

Tables are tidy: variant, n_params, seed, value (loss, or 1 - metric).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.bootstrap import bootstrap_power_law
from workbench.fit import PowerLaw, goodness, mean_relative_error, relative_error
from workbench.select import compare_variants


def _split(table: pd.DataFrame, n_held_out: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    sizes = np.sort(table.n_params.unique())
    if n_held_out < 0 or len(sizes) - n_held_out < 2:
        raise ValueError(f"holding out {n_held_out} of {len(sizes)} sizes leaves fewer than two to fit")
    cut = sizes[len(sizes) - n_held_out] if n_held_out else np.inf
    return table[table.n_params < cut], table[table.n_params >= cut]


def law_report(table: pd.DataFrame, n_held_out: int = 1, B: int = 1000, metric: bool = False,
               level: float = 0.95, random_state=0) -> dict:
    """Fit on every size (R^2, R^2 without the smallest, alpha and its hierarchical-bootstrap CI);
    then fit without the `n_held_out` largest sizes and predict them (relative error per size on
    the value, or on the metric when `metric`; MRE; whether the actual lies in the 95% band)."""
    law = PowerLaw().fit(table)
    g = goodness(table)
    boot = bootstrap_power_law(table, B=B, random_state=random_state)
    out = dict(n_sizes=int(table.n_params.nunique()), n_points=len(table), alpha=law.alpha_, beta=law.beta_,
               r2=law.r2_, r2_drop_smallest=g.r2_drop_smallest, alpha_ci=boot.ci(level), held_out=[])
    if n_held_out:
        fit_rows, held = _split(table, n_held_out)
        small = PowerLaw().fit(fit_rows)
        band = bootstrap_power_law(fit_rows, B=B, random_state=random_state).band(np.sort(held.n_params.unique()), level)
        for (n, rows), (_, b) in zip(held.groupby("n_params"), band.iterrows()):
            pred, actual = float(small.predict(n)), float(rows.value.mean())
            re = relative_error(1 - pred, 1 - actual) if metric else relative_error(pred, actual)
            out["held_out"].append(dict(n_params=float(n), pred=pred, actual=actual, re=float(re),
                                        lower=float(b.lower), upper=float(b.upper),
                                        inside_band=bool(b.lower <= actual <= b.upper)))
        preds = np.array([h["pred"] for h in out["held_out"]])
        acts = np.array([h["actual"] for h in out["held_out"]])
        out["mre"] = float(mean_relative_error(1 - preds, 1 - acts) if metric else mean_relative_error(preds, acts))
        out["fit_sizes"] = sorted(float(x) for x in fit_rows.n_params.unique())
    return out


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


def selection_report(table: pd.DataFrame, variants: tuple[str, str], n_held_out: int | dict = 1,
                     target_n: float | None = None, B: int = 1000, r2_threshold: float = 0.95,
                     random_state=0) -> dict:
    """Fit each variant without its `n_held_out` largest sizes (an int, or a dict per variant),
    predict both at `target_n` (default: the first variant's largest held-out size) with the gap's
    interval and P(A beats B), then compare with what the runs measured there (interpolated for a
    variant whose sizes differ).

    `verdict` says in words whether the predicted winner was right and whether the fits make it
    trustworthy: R^2 >= `r2_threshold`, on at least three sizes each."""
    if len(variants) != 2:
        raise ValueError(f"compare exactly two variants, got {list(variants)}")
    parts = {}
    held_n = n_held_out if isinstance(n_held_out, dict) else {v: n_held_out for v in variants}
    for v in variants:
        rows, n_held_out = table[table.variant == v], held_n[v]
        if rows.empty:
            raise ValueError(f"variant {v!r} has no runs; variants present: {sorted(table.variant.unique())}")
        if rows.n_params.nunique() < 2 + n_held_out:
            raise ValueError(f"variant {v!r} has {rows.n_params.nunique()} size(s); it needs at least "
                             f"{2 + n_held_out} (two to fit, {n_held_out} held out)")
        parts[v] = (rows, *_split(rows, n_held_out))
    if target_n is None:
        held_a = parts[variants[0]][2]
        target_n = float(held_a.n_params.max() if len(held_a) else parts[variants[0]][0].n_params.max())
    fit_rows = pd.concat([parts[v][1] for v in variants])
    cmp = compare_variants(fit_rows, target_n, variants, B=B, r2_threshold=r2_threshold, random_state=random_state)
    actual, how = {}, {}
    for v in variants:
        actual[v], how[v] = _actual_at(parts[v][0], target_n)
    a, b = variants
    out = dict(cmp, actual=actual, actual_source=how, n_held_out=held_n)
    if actual[a] is not None and actual[b] is not None:
        out["actual_gap"] = actual[a] - actual[b]
        out["actual_winner"] = a if actual[a] < actual[b] else b
        out["prediction_right"] = out["actual_winner"] == cmp["winner"]
        lo, hi = cmp["gap_interval"]
        out["actual_gap_in_interval"] = bool(lo <= out["actual_gap"] <= hi)
        right = "RIGHT" if out["prediction_right"] else "WRONG"
        measured = f"the runs gave {out['actual_winner']} (gap {out['actual_gap']:+.4g}, {how[b]} for {b})"
    else:
        out["prediction_right"] = None
        right, measured = "UNCHECKED", "no runs at the target to check against"
    fit_sizes = {v: int(parts[v][1].n_params.nunique()) for v in variants}
    out["fit_sizes"] = fit_sizes
    if min(fit_sizes.values()) < 3:  # two points: R^2 = 1 by construction, and the bootstrap has nothing to vary
        out["trustworthy"] = False
        trust = ("NOT trustworthy: a law is fitted on 2 sizes (%s), so its R^2 is 1 by construction and its "
                 "interval has almost no width" % ", ".join(f"{k} {n}" for k, n in fit_sizes.items()))
    elif cmp["trustworthy"]:
        trust = "trustworthy: both fits have R^2 >= %.2f on >= 3 sizes" % r2_threshold
    else:
        trust = "NOT trustworthy: a fit has R^2 < %.2f (%s)" % (
            r2_threshold, ", ".join(f"{k} {v:.3f}" for k, v in cmp["r2"].items()))
    out["verdict"] = (f"At N={target_n:,.0f} the laws fitted on the smaller sizes predict {cmp['winner']} wins "
                      f"(gap {a} - {b} = {cmp['gap']:+.4g}, 95% CI [{cmp['gap_interval'][0]:+.4g}, "
                      f"{cmp['gap_interval'][1]:+.4g}], P({a} beats {b}) = {cmp['p_a_beats_b']:.2f}); "
                      f"{measured}: prediction {right}; {trust}.")
    return out
