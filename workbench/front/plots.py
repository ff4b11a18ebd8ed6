"""Pure plotting functions: each takes fitted reports or tables and returns a matplotlib Figure.

    fig = plot_fit(law_report(table, fit))             # the law, its band, held-out sizes marked
    fig = plot_laws({"mlm": curve_a, "pmi": curve_b}, target_n=85e6)   # several fitted laws
    fig = plot_comparison(selection_report(...))        # two variants, their laws and bands
    fig = plot_convergence(convergence_check(df))
    fig = plot_curves(curves, label="name")             # learning curves, plateaus shaded
    fig = plot_joint(points, bootstrap_joint(points))   # L(N, D): loss over tokens per size, compute-optimal N
    fig = plot_two_stage(two_stage_report(...))         # task loss -> metric, and both routes at the held-out N

Plots never fit: they draw the curves and bands the reports hold, so a figure's band is exactly
the interval its report states. Points of runs that are not converged (the `converged` column of a
run store's tables, carried by the reports) are drawn hollow and the legend says so: a figure
travels without the text around it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter

from workbench.laws.fit import converged_flags, get_law
from workbench.laws.joint import compute_optimal
from workbench.laws.report import LawCurve, LawReport


def count_label(v: float) -> str:
    """A count for a tick: 30K, 1.2M, 3B (short, so neighbouring ticks never overlap)."""
    v = float(f"{v:.3g}")  # rounded first: 999,999 is 1M, not 1e+03K
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def counts_axis(axis) -> None:
    """A log axis of counts (N, tokens, FLOPs) labelled 10K, 20K, 50K, ...: every decade; the 2x and
    5x minor ticks too while the axis spans under two decades, and every minor tick under half a
    decade (matplotlib would write 3x10^4 beside 4x10^4, overlapping)."""
    import math

    def minor(v, _):
        lo, hi = axis.get_view_interval()  # at drawing time: the limits the figure ends with
        span = math.log10(hi / lo) if lo > 0 and hi > lo else float("inf")
        if span >= 2 or v <= 0:
            return ""
        lead = round(v / 10 ** math.floor(math.log10(v)), 6)
        return count_label(v) if span < 0.5 or lead in (2, 5) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: count_label(v)))
    axis.set_minor_formatter(FuncFormatter(minor))


NOT_CONVERGED = "hollow: not converged"  # the legend's words for points of runs that are not converged


def _unconverged(flags, count: int) -> np.ndarray:
    """Which of `count` points come from runs that are not converged: a per-point verdict of False
    (`converged_flags`); none when the verdicts are unknown (no flags, or not one per point)."""
    flags = flags or ()
    return np.array([c is False for c in flags], bool) if len(flags) == count else np.zeros(count, bool)


def _checkpoints(ax, x, y, unconverged: np.ndarray, color, s: float, alpha: float) -> None:
    """Every point, filled; those of runs that are not converged hollow, with the legend's entry."""
    x, y = np.asarray(x), np.asarray(y)
    ax.scatter(x[~unconverged], y[~unconverged], color=color, s=s, alpha=alpha, lw=0)
    if unconverged.any():
        ax.scatter(x[unconverged], y[unconverged], s=s + 2, alpha=min(1.0, alpha + 0.1), facecolors="none",
                   edgecolors=color, lw=0.7)
        _not_converged_legend(ax)


def _per_size(points, converged=()) -> pd.DataFrame:
    """Mean and sample std per size; `unconverged`: some run at that size is not converged."""
    df = pd.DataFrame(list(points), columns=["n_params", "value"])
    df["unconverged"] = _unconverged(converged, len(df))
    g = df.groupby("n_params")
    return pd.DataFrame(dict(mean=g.value.mean(), std=g.value.std(ddof=1).fillna(0.0),
                             unconverged=g.unconverged.any())).reset_index()


def _sizes(ax, stats: pd.DataFrame, color, fmt: str, ms: float, label: str | None = None) -> None:
    """Per-size mean +/- std markers: filled where every run converged (or nothing is known), hollow
    where some run did not; the legend names the hollow ones once."""
    for hollow, rows in stats.groupby("unconverged", sort=True):  # filled first: the label goes to one group
        ax.errorbar(rows.n_params, rows["mean"], yerr=rows["std"], fmt=fmt, color=color, capsize=3, ms=ms,
                    mfc="none" if hollow else color, label=label)
        label = None
        if hollow:
            _not_converged_legend(ax, fmt)


def _not_converged_legend(ax, fmt: str = "o") -> None:
    if NOT_CONVERGED not in [t.get_label() for t in ax.get_lines() + ax.collections]:
        ax.plot([], [], fmt[0], mfc="none", color="black", label=NOT_CONVERGED)


def _label(curve: LawCurve, name: str) -> str:
    return f"{name}: ${get_law(curve.law).formula(curve.params)}$, $R^2$={curve.r2:.3f}"


def _draw(ax, curve: LawCurve, color, name: str) -> None:
    ax.fill_between(curve.n, curve.lower, curve.upper, color=color, alpha=0.2, lw=0)
    ax.plot(curve.n, curve.pred, color=color, label=_label(curve, name))
    if get_law(curve.law).covariates:  # points at many token counts (checkpoints): each one, not a mean
        n, v = zip(*curve.points)
        _checkpoints(ax, n, v, _unconverged(curve.converged, len(n)), color, s=8, alpha=0.35)
        return
    _sizes(ax, _per_size(curve.points, curve.converged), color, "o", 5)


def plot_fit(report: LawReport, target_n: float | None = None, ylabel: str = "eval loss", title: str = ""):
    """Log-log fit: per-size mean +/- sample std, the law fitted on `report.fit_sizes`, its band,
    and the held-out sizes marked."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    _draw(ax, report.curve, sns.color_palette()[0], "fit")
    if report.held_points:
        _sizes(ax, _per_size(report.held_points, report.held_converged), "crimson", "*", 12, "held out")
    if get_law(report.law).covariates and report.held_out:  # predicted at the held-out runs' own tokens, off the curve
        h = report.held_out
        ax.errorbar([x.n_params for x in h], [x.pred for x in h],
                    yerr=[[max(x.pred - x.lower, 0) for x in h], [max(x.upper - x.pred, 0) for x in h]], fmt="D", mfc="none",
                    color="crimson", ms=7, capsize=3, label="predicted at its tokens")
    if target_n:
        ax.axvline(target_n, color="gray", ls=":", lw=1)
    _finish(ax, ylabel, title)
    return fig


def plot_laws(curves: dict[str, LawCurve], target_n: float | None = None, ylabel: str = "eval loss",
              title: str = ""):
    """Several fitted laws on one log-log plot, each with its band and points."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for color, (name, curve) in zip(sns.color_palette(), curves.items()):
        _draw(ax, curve, color, str(name))
    if target_n:
        ax.axvline(target_n, color="gray", ls=":", lw=1, label=f"target N = {target_n:.3g}")
    _finish(ax, ylabel, title)
    return fig


def plot_comparison(selection, ylabel: str = "eval loss", title: str = ""):
    """The two variants of a `SelectionReport`, their laws and bands up to the target size."""
    return plot_laws(selection.curves, selection.target_n, ylabel, title)


def plot_convergence(check: pd.DataFrame, ylabel: str = "eval loss", title: str = "convergence check"):
    """Each size's runs against the law fitted on the other sizes (band: the leave-one-size-out interval at the
    check's level), coloured by flag; runs that are not converged (its `converged` column) hollow."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    by = check.groupby("n_params").first().reset_index()
    ax.fill_between(by.n_params, by.lower, by.upper, color="gray", alpha=0.25, lw=0,
                    label="leave-one-size-out band")
    ax.plot(by.n_params, by.pred, color="gray", ls="--", lw=1)
    colors = {"ok": "tab:blue", "above": "crimson", "below": "darkorange"}
    hollow = _unconverged(converged_flags(check), len(check))
    check = check.reset_index(drop=True)  # by position: a check concatenated from several may repeat labels
    for flag, rows in check.groupby("flag"):
        color, out = colors.get(flag, "k"), hollow[rows.index.to_numpy()]
        label = f"{flag} ({len(rows)})"  # once per flag, on its filled points if it has any
        if (~out).any():
            ax.scatter(rows.n_params[~out], rows.value[~out], color=color, zorder=3, label=label)
        if out.any():
            ax.scatter(rows.n_params[out], rows.value[out], facecolors="none", edgecolors=color, lw=1.5, s=40,
                       zorder=3, label=None if (~out).any() else label)
    if hollow.any():
        _not_converged_legend(ax)
    _finish(ax, ylabel, title)
    return fig


def plot_curves(curves: pd.DataFrame, label: str = "run_id", y: str = "eval_loss", plateau_steps: int = 0,
                highlight=(), stops: dict | None = None, title: str = "learning curves"):
    """Eval curves (y vs step), one line per run labelled by column `label`.

    `plateau_steps` > 0 shades stretches without improvement that long on the `highlight`ed runs
    (all runs if none are given); `stops` maps run_id -> {name: step} and marks those steps."""
    from workbench.laws.diagnostics import plateaus

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ids = list(dict.fromkeys(curves.run_id))
    palette = dict(zip(ids, sns.color_palette("viridis", len(ids))))
    for rid, rows in curves.groupby("run_id", sort=False):
        rows = rows.sort_values("step")
        hl = rid in highlight
        name = rows[label].iloc[0] if label in rows else rid
        ax.plot(rows.step, rows[y], color=palette[rid], lw=2.6 if hl else 1.3, alpha=1.0 if hl or not highlight else 0.6,
                label=f"{name}" + (" (flagged)" if hl else ""))
        if plateau_steps and (hl or not highlight):
            for p in plateaus(rows.step, rows[y], plateau_steps).itertuples():
                ax.axvspan(p.start, p.end, color=palette[rid], alpha=0.12, lw=0)
        if hl or not highlight:
            for what, step in ((stops or {}).get(rid) or {}).items():
                if step is not None:
                    ax.axvline(step, color=palette[rid], ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.grid(True, alpha=0.2)
    fig.tight_layout()
    return fig


def _finish(ax, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 6.2, not 6.2x10^0
    ax.yaxis.set_major_formatter(plain)
    lo, hi = ax.get_ylim()
    if hi / lo < 10:  # less than a decade: label the minor ticks too, or the axis has no numbers
        ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("non-embedding parameters N")
    counts_axis(ax.xaxis)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, which="both", alpha=0.2)
    ax.figure.tight_layout()


def plot_joint(points: pd.DataFrame, boot, flops=None, title: str = ""):
    """The joint law L(N, D) of a `bootstrap_joint`: left, each size's checkpoints over tokens with
    the law at that size; right, the compute-optimal N over FLOP budgets C = 6 N D with its band
    (default budgets: from the smallest to 100x the largest in the points)."""
    law = boot.fitted
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = np.sort(points.n_params.unique())
    palette = sns.color_palette("viridis", len(sizes))
    for color, n in zip(palette, sizes):
        rows = points[points.n_params == n].sort_values("tokens")
        _checkpoints(left, rows.tokens, rows.value, _unconverged(converged_flags(rows), len(rows)), color, s=10,
                     alpha=0.6)
        d = np.geomspace(rows.tokens.min(), rows.tokens.max(), 50)
        left.plot(d, law.predict(np.full_like(d, n), tokens=d), color=color, lw=1.5, label=f"N = {n:,.0f}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.set_xlabel("tokens D")
    counts_axis(left.xaxis)
    left.set_ylabel("eval loss")
    left.set_title(f"$L = {law.E_:.3g} + {law.A_:.3g} N^{{-{law.alpha_:.3f}}} + {law.B_:.3g} D^{{-{law.beta_:.3f}}}$",
                   fontsize=9)
    left.legend(fontsize=7, frameon=False)
    left.grid(True, which="both", alpha=0.2)
    c = 6 * points.n_params * points.tokens
    budgets = np.geomspace(c.min(), 100 * c.max(), 40) if flops is None else np.asarray(flops, float)
    opt = pd.DataFrame([compute_optimal(boot, b) for b in budgets])
    right.fill_between(opt.flops, opt.n_low, opt.n_high, color="C0", alpha=0.2, lw=0,
                       label=f"{int(100 * boot.level)}% interval")
    right.plot(opt.flops, opt.n_opt, color="C0", label="compute-optimal N")
    right.scatter(c, points.n_params, color="gray", s=6, alpha=0.3, lw=0, label="checkpoints")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("FLOPs C = 6 N D")
    right.set_ylabel("N")
    counts_axis(right.xaxis)
    counts_axis(right.yaxis)
    right.legend(fontsize=8, frameon=False)
    right.grid(True, which="both", alpha=0.2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_two_stage(report, title: str = ""):
    """A `TwoStageReport`: left, stage 2 (every run's task loss and metric, the fitted sigmoid, the
    held-out sizes' predicted task loss); right, the metric over N with both routes' predictions
    and intervals at the held-out sizes."""
    import numpy as np

    from workbench.laws.twostage import Sigmoid

    pts = pd.DataFrame(list(report.points), columns=["n_params", "task_loss", "metric"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = np.sort(pts.n_params.unique())
    for color, n in zip(sns.color_palette("viridis", len(sizes)), sizes):
        rows = pts[pts.n_params == n]
        left.scatter(rows.task_loss, rows.metric, color=color, s=14, label=f"N = {n:,.0f}")
    held = report.held_out
    lo = min([pts.task_loss.min(), *[h.task_loss_pred for h in held], *[h.task_loss_actual for h in held]])
    grid = np.linspace(lo * 0.95, pts.task_loss.max() * 1.05, 200)
    s = report.sigmoid
    params = np.array([[s["floor"], s["ceiling"], s["slope"], s["midpoint"]]])
    left.plot(grid, Sigmoid.curve(params, grid)[0], color="k", lw=1.5, label="sigmoid (stage 2)")
    for h in held:
        left.scatter([h.task_loss_actual], [h.actual], marker="*", s=160, color="crimson", zorder=3)
        left.axvline(h.task_loss_pred, color="crimson", ls=":", lw=1)
    left.set_xlabel("task loss (eval cross-entropy)")
    left.set_ylabel("metric")
    left.legend(fontsize=7, frameon=False)
    left.grid(True, alpha=0.2)
    means = pts.groupby("n_params").metric.max()  # the best run per size: what tuning selects
    right.plot(means.index, means.values, "o", color="gray", label="best run per size (fitted sizes)")
    for h in held:
        right.plot([h.n_params], [h.actual], "*", color="crimson", ms=14)
        for shift, mid, lo, hi, fmt, color in ((1 / 1.15, h.direct, h.direct_low, h.direct_high, "s", "C0"),
                                               (1.15, h.two_stage, h.two_stage_low, h.two_stage_high, "D", "C1")):
            # a percentile interval need not hold the point fit: the bars never go negative
            right.errorbar([h.n_params * shift], [mid], yerr=[[max(mid - lo, 0)], [max(hi - mid, 0)]], fmt=fmt,
                           color=color, capsize=3)
    right.plot([], [], "*", color="crimson", ms=14, label="held out (measured)")
    right.plot([], [], "s", color="C0", label=f"direct law (MRE {100 * report.direct_mre:.1f}%)")
    right.plot([], [], "D", color="C1", label=f"two-stage (MRE {100 * report.two_stage_mre:.1f}%)")
    right.set_xscale("log")
    right.set_xlabel("non-embedding parameters N")
    counts_axis(right.xaxis)
    right.set_ylabel("metric")
    right.legend(fontsize=8, frameon=False)
    right.grid(True, which="both", alpha=0.2)
    fig.suptitle(title or f"{report.task}: the metric from the task loss")
    fig.tight_layout()
    return fig
