"""The study summary: `summary.md` and `summary.json` from the typed reports the notebooks wrote.

    write_summary(Path("outputs/cpu"), "cpu", timings, failures=[], names=["sweep", ...])

Each notebook writes its typed results (`front.results`: `SweepResults`, ...) into
`<out>/<notebook>/results.json`; this module reads them back with the same types (reports as
`LawReport` / `SelectionReport`), so the summary states exactly what the notebooks computed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from workbench.base.files import write_atomic
from workbench.config import NOTEBOOKS
from workbench.front.closing import counts_text, not_converged, unavailable_note
from workbench.front.outputs import read_results
from workbench.front.results import (
    RESULTS,
    ConvergenceResults,
    ExtrapolationResults,
    FinetuneResults,
    SelectionResults,
    SweepResults,
)
from workbench.laws.forecasts import forecast_lines

# the default study's bar: a law over >= 4 sizes with R^2 >= 0.98, and the held-out size within 5%
BAR = dict(min_sizes=4, min_r2=0.98, max_abs_re=0.05)


def _n(n) -> str:
    return f"{float(n):,.0f}"


def _not_converged(results) -> list[str]:
    """The warning line every section over runs that are not converged carries."""
    warning = not_converged(results.stop_reasons)
    return [f"- **{warning}**"] if warning else []


def _sweep(sw: SweepResults) -> tuple[list[str], dict]:
    law = sw.law
    max_re = max((abs(h.re) for h in law.held_out), default=None)
    checks = dict(sizes=law.n_sizes >= BAR["min_sizes"], r2=law.r2 >= BAR["min_r2"],
                  held_out=max_re is not None and max_re <= BAR["max_abs_re"],
                  converged=not_converged(sw.stop_reasons) is None)
    lines = ["## Pretraining sweep", "",
             f"{sw.label}, {law.n_sizes} sizes, runs in `{sw.root}` ({counts_text(sw.stop_reasons)}).", "",
             "| N | best eval loss |", "|---|---|"]
    lines += [f"| {_n(n)} | {v:.4f} |" for n, v in sorted(sw.losses.items(), key=lambda kv: float(kv[0]))]
    lines += ["", f"- {law.describe()}"] + _not_converged(sw) + _floor(sw)
    lines += [f"- {line}" for line in forecast_lines(sw.root, sw.losses, sw.label)] if sw.root else []
    lines += [f"- bar (>= {BAR['min_sizes']} sizes, R^2 >= {BAR['min_r2']}, held-out |RE| <= "
              f"{100 * BAR['max_abs_re']:.0f}%, converged runs): "
              + ", ".join(f"{k} {'ok' if v else 'NOT MET'}" for k, v in checks.items()),
              "", "![fit](sweep/fit.png) ![curves](sweep/curves.png)", ""]
    return lines, checks


def _floor(sw: SweepResults) -> list[str]:
    """Where the law's floor is known (a generated language, `fit.law=floored`): each size's loss above it."""
    if sw.law.law != "floored":
        return []
    e = sw.law.params["E"]
    above = ", ".join(f"{_n(n)}: {v - e:.4f}" for n, v in sorted(sw.losses.items(), key=lambda kv: float(kv[0])))
    return [f"- known floor E = {e:.4f}: the Bayes loss of the process that generated the corpus, on the same "
            f"held-out masks (no model beats it in expectation); loss above it by N: {above}"]


def _unavailable(results) -> list[str]:
    """One line per task left out because its data could not be had."""
    note = unavailable_note(results.unavailable)
    return [f"- {line}" for line in note.split("  \n")] if note else []


def _finetune(ft: FinetuneResults) -> list[str]:
    lines = ["## Finetuning", "", f"{ft.completed}/{ft.n_runs} runs completed.", "", *_unavailable(ft)]
    for t, law in ft.laws.items():
        by = ", ".join(f"{_n(n)}: {v:.3f}" for n, v in sorted(ft.metric_by_size[t].items(), key=lambda kv: float(kv[0])))
        lines.append(f"- {t}: metric by N {by}; {law.describe()}")
    lines += _not_converged(ft)
    if ft.tuning:
        lines += ["", "Hyperparameter sensitivity (per-size tuning against one fixed recipe):"]
        lines += [f"- {name}: {law.describe()}" for name, law in ft.tuning.items()]
    lines += _two_stage(ft)
    figures = " ".join(f"![{name}](finetune/{file})" for name, file in ft.figures.items())
    return lines + ["", figures, ""]


def _two_stage(ft: FinetuneResults) -> list[str]:
    """The metric of the held-out sizes by the direct law and by the two-stage route (task loss, then a sigmoid)."""
    reports, skipped = ft.two_stage or {}, ft.two_stage_skipped or {}
    if not reports and not skipped:
        return []
    lines = ["", "Held-out metric, direct law of 1 - metric vs the two-stage route (task loss, then a sigmoid):", ""]
    if reports:
        lines += ["| task | N | measured | direct [interval] | two-stage [interval] | better |", "|---|---|---|---|---|---|"]
    for t, r in reports.items():
        for h in r["held_out"]:
            lines.append(f"| {t} | {_n(h['n_params'])} | {h['actual']:.4f} | {h['direct']:.4f} [{h['direct_low']:.4f}, "
                         f"{h['direct_high']:.4f}] | {h['two_stage']:.4f} [{h['two_stage_low']:.4f}, "
                         f"{h['two_stage_high']:.4f}] | {r['better']} |")
    lines += [f"- {t}: two-stage route not fitted: {why}" for t, why in skipped.items()]
    return lines


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


FAR = 10  # a forecast asking for more than this many times the steps a run trained reads past its curve


def _forecast(v: dict) -> str:
    """'; forecast converged loss L (lo .. hi), K more steps to within 0.5%', with how far past the run's
    own curve that reaches when it asks for more than FAR x the steps it trained."""
    if not (_finite(v.get("forecast_loss")) and _finite(v.get("forecast_steps_needed"))):
        return ""
    need, ran = int(v["forecast_steps_needed"]), v.get("steps")
    far = (f" ({need / ran:,.0f}x the {int(ran):,} it trained: far past what its curve can tell)"
           if _finite(ran) and ran > 0 and need > FAR * ran else "")
    return (f"; forecast converged loss {v['forecast_loss']:.4f} ({v['forecast_low']:.4f} .. "
            f"{v['forecast_high']:.4f}), {need:,} more steps to within 0.5%{far}")


def _convergence(cv: ConvergenceResults) -> list[str]:
    verdicts = [f"- {'converged' if v['converged'] else '**NOT converged**'}: {v['name']}: {v['convergence']}"
                + _forecast(v) for v in cv.verdicts if v.get("convergence")]
    return ["## Convergence check", "", *verdicts, *([""] if verdicts else []),
            f"{cv.n_runs} runs ({counts_text(cv.stop_reasons)}); flagged: {', '.join(_flagged(cv)) or 'none'}.",
            *_flagged_yet_certified(cv),
            "Patience each run needed (longest wait between improvements): "
            + ", ".join(f"{cv.names[k]} {v:.0f}" for k, v in cv.patience_needed.items()), "",
            "![check](convergence/check.png) ![curves](convergence/curves.png)", ""]


def _flagged(cv: ConvergenceResults) -> list[str]:
    """Each flagged run by name, with its side of the law: 'ar16-L2 (above)'."""
    return [cv.names.get(r, r) + (f" ({cv.flags[r]})" if cv.flags.get(r) in ("above", "below") else "")
            for r in cv.flagged]


def _flagged_yet_certified(cv: ConvergenceResults) -> list[str]:
    """A run above the law of the other sizes whose certificate passed: the two checks disagree, and
    only re-training with more patience settles it (a plateau can outlast even 3x the patience). A run
    below the law is no sign of under-training, so it is not one of them."""
    certified = {v.get("name") for v in cv.verdicts if str(v.get("certificate") or "").startswith("certified")}
    above = [r for r in cv.flagged if cv.flags.get(r, "above") == "above"]  # results without flags: as before
    both = [cv.names.get(r, r) for r in above if cv.names.get(r, r) in certified]
    if not both:
        return []
    return ["", f"**{', '.join(both)}: above the law of the other sizes, yet certified.** Its certificate is the "
            "paper's test (the run continued as with 3x the patience gained less than 1%), so the two checks disagree: "
            "a plateau longer than 3x the patience may hide the rest of its descent, or the law of the other sizes may "
            "not hold here. Re-training it with more patience (`--set sweep.train.patience=...`) tells which. Until "
            "then, a law over it is not the paper's result."]


def _extrapolation(ex: ExtrapolationResults) -> list[str]:
    law = ex.law
    held = f"MRE on held-out sizes {100 * law.mre:.2f}%" if law.mre is not None else "no size held out"
    sizes = ", ".join(_n(n) for n in law.fit_sizes)
    return ["## Extrapolation", "", f"- fit on N = {sizes} with the {law.law} law: {held}",
            f"- {law.describe()}", *_not_converged(ex),
            *_backtest(ex.backtest or []), "", "![extrapolation](extrapolation/extrapolation.png)", ""]


def _backtest(rows: list[dict]) -> list[str]:
    """The backtest table: the largest size predicted by the law and by two naive baselines."""
    rows = [r for r in rows if r.get("law_are") == r.get("law_are") and "law_are" in r]
    if not rows:
        return []
    out = ["", "Backtest (largest size predicted from the smaller ones; absolute relative error):", "",
           "| variant | N | law | best smaller model | largest smaller size, flat | seed-to-seed spread |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        spread = r.get("seed_spread")
        out.append(f"| {r['variant']} | {_n(r['target_n'])} | {100 * r['law_are']:.2f}% | {100 * r['best_small_are']:.2f}% "
                   f"| {100 * r['last_point_are']:.2f}% | "
                   + (f"{100 * spread:.2f}% |" if spread == spread and spread is not None else "one seed |"))
    return out


def _selection(se: SelectionResults) -> list[str]:
    lines = ["## Model selection", "", f"- pretraining loss: {se.selection.verdict}"]
    lines += [f"- {task} (1 - metric): {sel.verdict}" for task, sel in se.downstream.items()]
    lines += _unavailable(se)
    lines += _not_converged(se)
    dec = se.decision_backtest or {}
    if dec.get("n_pairs"):
        lines.append(f"- decision backtest over {dec['n_pairs']} pair(s) at their largest size: the extrapolated winner "
                     f"was right in {100 * dec['law_accuracy']:.0f}%, ranking by the largest smaller size in "
                     f"{100 * dec['largest_small_accuracy']:.0f}%")
    return lines + ["", "![comparison](selection/comparison.png)", ""]


def write_summary(out: Path, profile: str, timings: dict, failures: list[dict], names=NOTEBOOKS,
                  pretraining_error: str = "") -> dict:
    """`summary.json` (every notebook's results, the bar checks, the failed notebooks and the tasks
    whose data could not be had) and a readable `summary.md`."""
    res = {nb: read_results(out, nb) if nb in names else {} for nb in NOTEBOOKS}
    typed = {nb: RESULTS[nb].from_dict(res[nb]) for nb in NOTEBOOKS}  # None: the notebook did not run
    unavailable = {t: why for nb in ("finetune", "selection") if typed[nb] for t, why in typed[nb].unavailable.items()}
    lines, checks = [f"# Study summary (`{profile}` profile)", ""], {}
    lines += [f"**FAILED** in `{f['notebook']}.ipynb`: {f['error']}" for f in failures] + ([""] if failures else [])
    if unavailable:
        lines += [f"**{len(unavailable)} task(s) unavailable** and left out: {', '.join(unavailable)} "
                  f"(see Finetuning).", ""]
    writers = dict(finetune=_finetune, convergence=_convergence, extrapolation=_extrapolation, selection=_selection)
    for nb in NOTEBOOKS:
        if typed[nb] is None:
            continue
        if nb == "sweep":
            part, checks = _sweep(typed[nb])
        else:
            part = writers[nb](typed[nb])
        lines += part
    lines += ["## Files", ""] + [f"- [{nb}.ipynb]({nb}.ipynb) ({timings[nb]:.0f} s)" if nb != "pretraining" else
                                 f"- pretraining, before the notebooks ({timings[nb]:.0f} s): the study's pretraining "
                                 f"runs on one pool of workers" + (f"; it failed ({pretraining_error}) and the "
                                                                   f"notebooks trained what was left"
                                                                   if pretraining_error else "")
                                 for nb in timings]
    lines += [f"- total {sum(timings.values()):.0f} s"]
    write_atomic(out / "summary.md", "\n".join(lines) + "\n")
    summary = dict(profile=profile, timings_s=timings, pretraining_error=pretraining_error or None,
                   failure=failures[0] if failures else None, failures=failures,
                   unavailable=unavailable, bar=BAR, bar_checks=checks, results=res)
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary
