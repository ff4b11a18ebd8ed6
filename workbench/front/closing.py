"""The text that closes a notebook and heads the summary, filled from the results: how the runs
stopped, the not-converged warning every result over such runs carries, and what a law, a
selection or a convergence check shows and does not.

    display(Markdown(law_conclusion(report, "ar32 (power law)", convergence_counts(runs))))
"""

from __future__ import annotations

import pandas as pd


def unavailable_note(unavailable: dict | None) -> str | None:
    """The line(s) a notebook and the summary show for tasks whose data could not be had."""
    if not unavailable:
        return None
    return "  \n".join(f"**Unavailable, left out:** {why}" for why in unavailable.values())


def convergence_counts(runs: pd.DataFrame) -> dict:
    """How many runs are converged, and why the others are not: {"converged": n, "horizon": n,
    "decayed LR": n, "diverged": n, "certificate": n} (`workbench.base.convergence.verdict`; a
    certificate that found a drop, `workbench.runs.certify`). Runs recorded before the verdict
    existed are judged by their stop reason alone."""
    if runs is None or runs.empty:
        return {}
    if "converged" not in runs:
        runs = runs.assign(converged=runs.stop_reason.eq("early_stopped"), convergence="")
    kinds = []
    for r in runs.itertuples():
        if r.converged is True or r.converged == 1:
            kinds.append("converged")
        elif r.status == "diverged":
            kinds.append("diverged")
        elif r.stop_reason == "horizon":
            kinds.append("horizon")
        elif "decayed LR" in str(r.convergence):
            kinds.append("decayed LR")
        elif str(r.convergence).startswith("NOT converged: continuing"):  # its certificate found a drop
            kinds.append("certificate")
        else:
            kinds.append(str(r.stop_reason))
    return pd.Series(kinds).value_counts().to_dict()


def verdict_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per pretraining run: converged, why, best loss, the passes over the training data up
    to its best step, the forecast converged loss with its interval, the steps the forecast says are still needed, and the convergence certificate's line
    where the run was certified (`workbench.runs.certify`: it decides where the forecast disagrees)."""
    cols = ["name", "n_params", "converged", "convergence", "best_eval_loss", "passes_at_best", "forecast_loss",
            "forecast_low", "forecast_high", "forecast_steps_needed", "steps", "certificate"]
    out = runs[[c for c in cols if c in runs]].reset_index(drop=True)
    if "certificate" in out:
        out["certificate"] = out.certificate.map(lambda c: c.get("line", "") if isinstance(c, dict)
                                                 else c if isinstance(c, str) else "")
    return out


CONVERGED = ("converged", "early_stopped")  # kinds of `convergence_counts` (older results: stop reasons) that converged


def _not_converged_counts(counts: dict | None) -> dict:
    """The kinds of `counts` that are not converged, with their counts."""
    return {k: v for k, v in (counts or {}).items() if k not in CONVERGED}


def counts_text(counts: dict | None) -> str:
    """`convergence_counts` in words: '2 converged, 2 NOT converged (failed the certificate)'."""
    counts = counts or {}
    bad = _not_converged_counts(counts)
    ok = sum(counts.values()) - sum(bad.values())
    short = {"horizon": "stopped at the horizon", "decayed LR": "best step on a decayed LR", "diverged": "diverged",
             "certificate": "failed the certificate"}
    parts = [f"{ok} converged"] if ok or not bad else []
    if bad:
        parts.append(f"{sum(bad.values())} NOT converged ("
                     + ", ".join(f"{v} {short.get(k, k)}" if len(bad) > 1 else short.get(k, k) for k, v in bad.items())
                     + ")")
    return ", ".join(parts) if counts else "no runs"


def not_converged(counts: dict | None) -> str | None:
    """The warning every result over runs that are not converged carries, or None when all are.
    `counts` is `convergence_counts(runs)` (older results: the runs' stop reasons)."""
    bad = _not_converged_counts(counts)
    if not bad:
        return None
    why = ", ".join(f"{v} {WHY.get(k, k)}" for k, v in bad.items())
    return (f"{sum(bad.values())} run(s) are NOT converged ({why}), and laws over them are not the "
            f"paper's result")


WHY = {"horizon": "stopped at the step horizon", "decayed LR": "had their best step on a decayed LR",
       "diverged": "diverged",
       "certificate": "stopped early but failed the certificate (continued as if retrained with 3x the patience: "
                      "1% lower or more, at the step guard, or diverged)"}


def law_conclusion(report, what: str, stop_reasons: dict | None = None) -> str:
    """'What this shows, and its caveats' for one law."""
    lines = [f"**What this shows.** {what}: {report.describe()}."]
    caveats = []
    if not report.trusted:
        caveats.append(f"the fit does not reach R^2 >= {report.r2_gate} on >= 3 sizes, so it is not a law in "
                       f"the paper's sense")
    if not_converged(stop_reasons):
        caveats.append(not_converged(stop_reasons))
    if stop_reasons is None:
        caveats.append("the points come from a table, so whether its runs converged is not known here; the "
                       "paper's laws hold only over converged runs")
    if report.n_sizes < 4:
        caveats.append(f"only {report.n_sizes} sizes: the slope's interval is wide and one size moves it")
    if any(not h.inside_band for h in report.held_out):
        caveats.append("a held-out size falls outside the band: the law under-states its own uncertainty there")
    lines.append("**Caveats.** " + ("; ".join(caveats) + "." if caveats else
                                    "none beyond the usual: a small-scale fit says nothing of sizes far beyond it."))
    return "\n\n".join(lines)


def selection_conclusion(sel, stop_reasons: dict | None = None) -> str:
    lines = [f"**What this shows.** {sel.verdict}"]
    if sel.crossover_n:
        lines.append(f"The fitted laws cross at N = {sel.crossover_n:,.0f}: below it the order is the other way round.")
    caveats = ["the decision rests on laws that are not trustworthy; treat the winner as a guess"
               if not sel.trustworthy else "a trustworthy decision is still only as good as the runs' convergence"]
    if not_converged(stop_reasons):
        caveats.insert(0, not_converged(stop_reasons))
    if stop_reasons is None:
        caveats.insert(0, "the points come from a table, so whether its runs converged is not known here")
    lines.append("**Caveats.** " + "; ".join(caveats) + ".")
    return "\n\n".join(lines)


def convergence_conclusion(check: pd.DataFrame, stop_reasons: dict) -> str:
    flagged = list(check.run_id[check.flag != "ok"])
    lines = [f"**What this shows.** {len(flagged)} of {len(check)} runs sit off the law of the other sizes"
             + (f": {', '.join(flagged)}." if flagged else ".")]
    caveats = ["being inside the band is necessary, not sufficient: a whole sweep under-trained alike still fits a line"]
    if not_converged(stop_reasons):
        caveats.insert(0, not_converged(stop_reasons) + ", whatever their flag")
    lines.append("**Caveats.** " + "; ".join(caveats) + ".")
    return "\n\n".join(lines)


