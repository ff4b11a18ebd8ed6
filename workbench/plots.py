"""Pure plotting functions: each takes fitted reports or tables and returns a matplotlib Figure.

    fig = plot_fit(law_report(table, fit))             # the law, its band, held-out sizes marked
    fig = plot_laws({"mlm": curve_a, "pmi": curve_b}, target_n=85e6)   # several fitted laws
    fig = plot_comparison(selection_report(...))        # two variants, their laws and bands
    fig = plot_convergence(convergence_check(df))
    fig = plot_curves(curves, label="name")             # learning curves, plateaus shaded

Plots never fit: they draw the curves and bands the reports hold, so a figure's band is exactly
the interval its report states.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter

from workbench.report import LawCurve, LawReport


def _per_size(points) -> pd.DataFrame:
    df = pd.DataFrame(list(points), columns=["n_params", "value"])
    g = df.groupby("n_params")["value"]
    return pd.DataFrame(dict(mean=g.mean(), std=g.std(ddof=1).fillna(0.0))).reset_index()


def _label(curve: LawCurve, name: str) -> str:
    p = curve.params
    if curve.law == "power":
        form = f"$y = e^{{{p['beta']:.2f}}} N^{{{p['alpha']:.3f}}}$"
    else:
        form = f"$y = {p['E']:.3g} + {p['A']:.3g} N^{{-{p['alpha']:.3f}}}$"
    return f"{name}: {form}, $R^2$={curve.r2:.3f}"


def _draw(ax, curve: LawCurve, color, name: str) -> None:
    ax.fill_between(curve.n, curve.lower, curve.upper, color=color, alpha=0.2, lw=0)
    ax.plot(curve.n, curve.pred, color=color, label=_label(curve, name))
    stats = _per_size(curve.points)
    ax.errorbar(stats.n_params, stats["mean"], yerr=stats["std"], fmt="o", color=color, capsize=3, ms=5)


def plot_fit(report: LawReport, target_n: float | None = None, ylabel: str = "eval loss", title: str = ""):
    """Log-log fit: per-size mean +/- sample std, the law fitted on `report.fit_sizes`, its band,
    and the held-out sizes marked."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    _draw(ax, report.curve, sns.color_palette()[0], "fit")
    if report.held_points:
        stats = _per_size(report.held_points)
        ax.errorbar(stats.n_params, stats["mean"], yerr=stats["std"], fmt="*", color="crimson", ms=12,
                    capsize=3, label="held out")
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
    """Each size's runs against the law fitted on the other sizes (band = leave-one-out 95%)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    by = check.groupby("n_params").first().reset_index()
    ax.fill_between(by.n_params, by.lower, by.upper, color="gray", alpha=0.25, lw=0,
                    label="leave-one-size-out band")
    ax.plot(by.n_params, by.pred, color="gray", ls="--", lw=1)
    colors = {"ok": "tab:blue", "above": "crimson", "below": "darkorange"}
    for flag, rows in check.groupby("flag"):
        ax.scatter(rows.n_params, rows.value, color=colors.get(flag, "k"), zorder=3,
                   label=f"{flag} ({len(rows)})")
    _finish(ax, ylabel, title)
    return fig


def plot_curves(curves: pd.DataFrame, label: str = "run_id", y: str = "eval_loss", plateau_steps: int = 0,
                highlight=(), stops: dict | None = None, title: str = "learning curves"):
    """Eval curves (y vs step), one line per run labelled by column `label`.

    `plateau_steps` > 0 shades stretches without improvement that long on the `highlight`ed runs
    (all runs if none are given); `stops` maps run_id -> {name: step} and marks those steps."""
    from workbench.diagnostics import plateaus

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
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, which="both", alpha=0.2)
    ax.figure.tight_layout()
