"""Pure plotting functions: each takes tables or fits and returns a matplotlib Figure.

    fig = plot_fit(df, held_out=df[df.n_params == df.n_params.max()])
    fig = plot_comparison(df, target_n=85e6)            # two variants, their laws and bands
    fig = plot_convergence(convergence_check(df))
    fig = plot_curves(curves, label="model.name")         # learning curves, plateaus shaded
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter
import pandas as pd
import seaborn as sns

from workbench.bootstrap import bootstrap_power_law
from workbench.fit import PowerLaw


def _per_size(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby("n_params")["value"]
    return pd.DataFrame(dict(mean=g.mean(), std=g.std(ddof=1).fillna(0.0))).reset_index()


def _draw_law(ax, df: pd.DataFrame, n_max: float, color, label: str, B: int, random_state) -> PowerLaw:
    law = PowerLaw().fit(df)
    grid = np.geomspace(df.n_params.min(), n_max, 100)
    band = bootstrap_power_law(df, B=B, random_state=random_state).band(grid)
    ax.fill_between(grid, band.lower, band.upper, color=color, alpha=0.2, lw=0)
    ax.plot(grid, law.predict(grid), color=color,
            label=f"{label}: $y = e^{{{law.beta_:.2f}}} N^{{{law.alpha_:.3f}}}$, $R^2$={law.r2_:.3f}")
    stats = _per_size(df)
    ax.errorbar(stats.n_params, stats["mean"], yerr=stats["std"], fmt="o", color=color, capsize=3, ms=5)
    return law


def plot_fit(df: pd.DataFrame, held_out: pd.DataFrame | None = None, target_n: float | None = None,
             ylabel: str = "eval loss", title: str = "", B: int = 1000, random_state=0):
    """Log-log fit: per-size mean +/- sample std, fitted line, 95% band, held-out points marked."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    n_max = max([df.n_params.max()] + ([held_out.n_params.max()] if held_out is not None else [])
                + ([target_n] if target_n else []))
    color = sns.color_palette()[0]
    _draw_law(ax, df, n_max, color, "fit", B, random_state)
    if held_out is not None and len(held_out):
        stats = _per_size(held_out)
        ax.errorbar(stats.n_params, stats["mean"], yerr=stats["std"], fmt="*", color="crimson", ms=12,
                    capsize=3, label="held out")
    if target_n:
        ax.axvline(target_n, color="gray", ls=":", lw=1)
    _finish(ax, ylabel, title)
    return fig


def plot_comparison(df: pd.DataFrame, target_n: float | None = None, ylabel: str = "eval loss",
                    title: str = "", B: int = 1000, random_state=0):
    """Two (or more) variants on one log-log plot, each with its law and 95% band."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    n_max = max(df.n_params.max(), target_n or 0)
    for color, (name, rows) in zip(sns.color_palette(), df.groupby("variant")):
        _draw_law(ax, rows, n_max, color, str(name), B, random_state)
    if target_n:
        ax.axvline(target_n, color="gray", ls=":", lw=1, label=f"target N = {target_n:.3g}")
    _finish(ax, ylabel, title)
    return fig


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
