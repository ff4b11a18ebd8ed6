"""What the notebooks call: their parameters turned into a validated study, the glue between the
library's steps, the outputs they write, and the closing text filled from their results.

    study = load_study("cpu", overrides=[], layers=[1, 2, 3, 4])   # the cell after the parameters
    out = Outputs("outputs/cpu", "sweep")          # out.figure(fig, "fit"), out.results({...})

A notebook's parameters cell holds the profile, overrides, and the few scientific parameters that
notebook varies (`SCIENTIFIC` maps each to its place in the `StudyConfig`); they are applied on
top of the profile, so a wrong value stops the notebook at that step with a one-line `ConfigError`.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from workbench.base.errors import FitError
from workbench.base.family import family_table
from workbench.base.files import atomic_path, write_atomic, write_json_atomic
from workbench.config import FitConfig, StudyConfig, load
from workbench.laws.twostage import two_stage_report

# notebook parameter -> the StudyConfig key it sets
SCIENTIFIC = {"layers": "sweep.layers", "tasks": "finetune.tasks", "law": "fit.law", "n_held_out": "fit.n_held_out",
              "variant": "compare.variant"}


def load_study(profile: str, overrides=(), **scientific) -> StudyConfig:
    """The study of `profile` with `overrides`, then the notebook's scientific parameters on top.
    `variant` is a mapping of sweep settings ({"family": "ar64"}), stored as override strings."""
    unknown = sorted(set(scientific) - set(SCIENTIFIC))
    if unknown:
        raise TypeError(f"not a scientific parameter: {unknown}")
    if isinstance(scientific.get("variant"), dict):
        scientific["variant"] = [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                                 for k, v in scientific["variant"].items()]
    return load(profile, overrides, {SCIENTIFIC[k]: v for k, v in scientific.items()})


def setup(profile: str, overrides, name: str, out_dir: str, **scientific) -> tuple[StudyConfig, "Outputs"]:
    """What the cell after a notebook's parameters does: figures inline, quiet logging, wide tables,
    the study validated (`load_study`: a wrong value stops here, with one line), and the notebook's
    output folder `<out_dir>/<name>/`."""
    import logging

    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # not in IPython: nothing to set up for figures
        shell = None
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
    logging.basicConfig(level=logging.WARNING)
    pd.set_option("display.width", 160, "display.max_columns", 30)
    study = load_study(profile, overrides, **scientific)
    return study, Outputs(out_dir, name)


def scientific_values(study: StudyConfig, names) -> dict:
    """The values of the named scientific parameters in `study` (what a runner injects)."""
    out = {}
    for name in names:
        node: Any = study
        for part in SCIENTIFIC[name].split("."):
            node = getattr(node, part)
        out[name] = list(node) if isinstance(node, tuple) else node
    if "variant" in out:  # as the selection notebook takes it: {sweep setting: value}
        out["variant"] = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in out["variant"])}
    return out


def size_labels(family: str) -> pd.DataFrame:
    """The family's sizes with N, for pickers: n_layers, n_params, label ("L3  N=331,776")."""
    t = family_table(family)
    return t.assign(label=[f"L{r.n_layers}  N={r.n_params:,}" for r in t.itertuples()])[
        ["n_layers", "n_params", "label"]]


def sweep_table(sweep, root, exec_cfg, on_done=None, law: str = "power") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, fitting table) of a sweep, trained where unfinished; the table is labelled by variant.
    For a law with covariates (the joint law over tokens) the table is the runs' checkpoints."""
    from workbench.execute.sweep import run_sweep
    from workbench.runs.tables import fitting_rows, law_table

    runs = run_sweep(sweep, root, exec_cfg, on_done=on_done)
    return runs, fitting_rows(law_table(runs).assign(variant=sweep.label), root, law)


def study_table(study: StudyConfig, table_file: str = "", variant: str = "",
                on_done=None) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """(runs, fitting table) for a notebook: the sweep's (trained where unfinished), or with
    `table_file` the rows of that CSV / Parquet table (`workbench.laws.tables` schema; its `variant`
    when it holds several) and no runs: their convergence is not known here."""
    if not table_file:
        return sweep_table(study.sweep, study.root, study.exec, on_done, study.fit.law)
    from workbench.base.errors import FitError
    from workbench.laws.tables import law_points, read_table

    table = read_table(table_file)
    names = sorted(table.variant.unique())
    if variant:
        if variant not in names:
            raise FitError(f"table {table_file} has no variant {variant!r}; it has {names}")
        table = table[table.variant == variant].reset_index(drop=True)
    elif len(names) > 1:
        raise FitError(f"table {table_file} holds {len(names)} variants {names}: name one with table_variant")
    return None, law_points(table, study.fit.law)


def selection_inputs(study: StudyConfig, table_file: str = "", table_variants=()) -> tuple:
    """(runs or None, fitting table, (label A, label B), sizes each holds out) for the selection
    notebook: both sweeps of the study (trained where unfinished), or two variants of a table."""
    from workbench.base.errors import FitError

    if not table_file:
        sweep_b = study.variant_sweep()
        label_a, label_b = study.sweep.label, study.variant_label()
        runs_a, table_a = sweep_table(study.sweep, study.root, study.exec, law=study.fit.law)
        runs_b, table_b = sweep_table(sweep_b, study.root, study.exec, law=study.fit.law)
        return (pd.concat([runs_a, runs_b]), pd.concat([table_a, table_b.assign(variant=label_b)]),
                (label_a, label_b), variant_held_out(study))
    from workbench.laws.tables import law_points, read_table

    table = law_points(read_table(table_file), study.fit.law)
    names = sorted(table.variant.unique())
    labels = tuple(table_variants) or tuple(names)
    if len(labels) != 2 or not set(labels) <= set(names):
        raise FitError(f"name two of the table's variants {names} in table_variants, got {list(table_variants)}")
    return None, table[table.variant.isin(labels)].reset_index(drop=True), labels, study.fit.n_held_out


def variant_held_out(study: StudyConfig) -> dict:
    """Sizes each variant holds out in model selection: the baseline `fit.n_held_out`; variant B the
    sizes it has beyond the baseline's fitted ones (its runs there check the prediction)."""
    n_fit = len(study.sweep.layers) - study.fit.n_held_out
    return {study.sweep.label: study.fit.n_held_out,
            study.variant_label(): max(0, len(study.compare.layers) - n_fit)}


def finetune_tables(study: StudyConfig, sweeps: dict, tasks) -> pd.DataFrame:
    """Finetune each labelled sweep's checkpoints on `tasks` with the study's recipe; one fitting
    table (variant = label) of the selected runs. `attrs["unavailable"]`: {task: why} of the tasks
    whose data could not be had (left out)."""
    import dataclasses

    from workbench.execute.finetune_study import finetune_table, run_finetune_study

    cfg = dataclasses.replace(study.finetune, tasks=tuple(tasks))
    parts, unavailable = [], {}
    for label, sw in sweeps.items():
        df = run_finetune_study(cfg, sw, study.root, study.exec)
        unavailable.update(df.attrs.get("unavailable", {}))
        parts.append(finetune_table(df).assign(variant=label))
    table = pd.concat(parts, ignore_index=True)
    table.attrs["unavailable"] = unavailable
    return table


def unavailable_note(unavailable: dict | None) -> str | None:
    """The line(s) a notebook and the summary show for tasks whose data could not be had."""
    if not unavailable:
        return None
    return "  \n".join(f"**Unavailable, left out:** {why}" for why in unavailable.values())


def replay_table(curves: pd.DataFrame, patience_grid, min_delta_grid) -> pd.DataFrame:
    """Early stopping replayed on every logged curve for each (patience, min-delta), with the loss
    given up by stopping there (`loss_cost`) and the patience each run needed."""
    from workbench.base.stopping import replay_early_stopping
    from workbench.laws.diagnostics import patience_needed

    replay = pd.DataFrame([
        dict(run_id=rid, patience=p, min_delta=d, **replay_early_stopping(c.step, c.eval_loss, p, d),
             logged_best=float(c.eval_loss.min()), patience_needed=patience_needed(c.step, c.eval_loss, d))
        for rid, c in curves.groupby("run_id") for p in patience_grid for d in min_delta_grid])
    replay["loss_cost"] = replay.best - replay.logged_best
    return replay


def plateau_table(curves: pd.DataFrame, min_steps: int) -> pd.DataFrame:
    from workbench.laws.diagnostics import plateaus

    parts = [plateaus(c.step, c.eval_loss, min_steps).assign(run_id=rid) for rid, c in curves.groupby("run_id")]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# ------------------------------------------------------------------ closing text, filled from results


def convergence_counts(runs: pd.DataFrame) -> dict:
    """How many runs are converged, and why the others are not: {"converged": n, "horizon": n,
    "decayed LR": n, "diverged": n} (`workbench.base.convergence.verdict`). Runs recorded before the
    verdict existed are judged by their stop reason alone."""
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
        else:
            kinds.append(str(r.stop_reason))
    return pd.Series(kinds).value_counts().to_dict()


def verdict_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per pretraining run: converged, why, best loss, the forecast converged loss with its
    interval, and the steps the forecast says are still needed."""
    cols = ["name", "n_params", "converged", "convergence", "best_eval_loss", "forecast_loss", "forecast_low",
            "forecast_high", "forecast_steps_needed"]
    return runs[[c for c in cols if c in runs]].reset_index(drop=True)


def not_converged(counts: dict | None) -> str | None:
    """The warning every result over runs that are not converged carries, or None when all are.
    `counts` is `convergence_counts(runs)` (older results: the runs' stop reasons)."""
    counts = counts or {}
    bad = {k: v for k, v in counts.items() if k not in ("converged", "early_stopped")}
    if not bad:
        return None
    why = ", ".join(f"{v} {WHY.get(k, k)}" for k, v in bad.items())
    return (f"{sum(bad.values())} run(s) are NOT converged ({why}), and laws over them are not the "
            f"paper's result")


WHY = {"horizon": "stopped at the step horizon", "decayed LR": "had their best step on a decayed LR",
       "diverged": "diverged"}


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


# ------------------------------------------------------------------ outputs


class Outputs:
    """The folder a notebook writes: `<out_dir>/<name>/` with figures (PNG), tables (CSV), results.json."""

    def __init__(self, out_dir: str | Path, name: str):
        self.dir = Path(out_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._results: dict[str, Any] = {}
        self.caveat: str | None = None  # stamped on every figure from `runs_from` on

    def runs_from(self, stop_reasons: dict | None) -> str | None:
        """Say how the runs behind this notebook's results stopped (`convergence_counts`): when any
        is not converged, every figure saved from here on carries the warning; returned too."""
        self.caveat = not_converged(stop_reasons)
        return self.caveat

    def figure(self, fig, name: str) -> Path:
        if self.caveat:  # the figure says it too, not only the text around it
            fig.text(0.5, 0.0, textwrap.fill(self.caveat, 90), ha="center", va="top", color="crimson", fontsize=7.5)
            self._results.setdefault("figure_caveats", {})[name] = self.caveat
        path = self.dir / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        self._results.setdefault("figures", {})[name] = path.name
        self._write()
        return path

    def table(self, df: pd.DataFrame, name: str) -> Path:
        path = self.dir / f"{name}.csv"
        write_atomic(path, df.to_csv(index=False))
        self._results.setdefault("tables", {})[name] = path.name
        self._write()
        return path

    def results(self, values: dict) -> dict:
        """Record values; typed reports (anything with `to_dict`) are written as their dicts."""
        self._results.update(_jsonable(values))
        self._write()
        return self._results

    def _write(self) -> None:
        write_json_atomic(self.dir / "results.json", self._results)


def _jsonable(v):
    if hasattr(v, "to_dict") and not isinstance(v, pd.DataFrame):
        v = v.to_dict()
    if isinstance(v, pd.DataFrame):
        v = v.to_dict("records")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def read_results(out_dir: str | Path, name: str) -> dict:
    path = Path(out_dir) / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def two_stage_by_task(study: pd.DataFrame, fit: FitConfig = FitConfig()) -> tuple[dict, dict]:
    """({task: TwoStageReport}, {task: why not}) of a finetuning study table
    (`workbench.execute.finetune_study.run_finetune_study`): stage 1 and the direct law on the selected runs,
    the sigmoid on every completed run of the task."""
    from workbench.execute.finetune_study import finetune_table

    chosen, every = finetune_table(study), finetune_table(study, selected=False)
    reports, skipped = {}, {}
    for task, rows in chosen.groupby("task"):
        try:
            reports[task] = two_stage_report(rows, fit, points=every[every.task == task], task=task)
        except FitError as e:
            skipped[task] = str(e)
    return reports, skipped


def debug_undertrained(study: StudyConfig, runs: pd.DataFrame, out: "Outputs", plateau_steps: int) -> dict | None:
    """The convergence notebook's worked example: train the size `convergence.undertrain_layer` again
    with too little patience (through the executors, like every run), check it against the law of the
    other sizes (flagged?), put the normal run in its place (back in the band?), replay early stopping
    on the normal run's curve, and draw the three figures. None when the profile asks for none."""
    from workbench.execute.contract import run_jobs
    from workbench.front.plots import plot_convergence, plot_curves
    from workbench.laws.diagnostics import debug_convergence, undertrained_variant
    from workbench.runs.pretrain import PretrainSpec, run_id
    from workbench.runs.tables import law_table, load_curves, load_runs

    cv = study.convergence
    if not cv.undertrain_layer:
        return None
    normal = next(r for r in study.sweep.runs() if r.n_layers == cv.undertrain_layer)
    bad = undertrained_variant(normal, cv.undertrain_patience, cv.undertrain_min_delta)
    run_jobs([PretrainSpec(bad)], study.root, study.exec, desc="under-trained run")
    every = load_runs(study.root)
    every = every[every.run_id.isin(set(runs.run_id) | {run_id(bad)})]
    curves = load_curves(study.root).merge(every[["run_id", "name", "n_params", "train.patience"]], on="run_id")
    curves["label"] = curves.name + " patience " + curves["train.patience"].astype(str)
    debug = debug_convergence(law_table(every), curves, suspect=run_id(bad), rerun=run_id(normal), fit=study.fit,
                              z_threshold=cv.z_threshold, patience_grid=cv.patience_grid)
    layer = f"L{cv.undertrain_layer}"
    out.figure(plot_convergence(debug["before"], title=f"{layer} stopped early: flag {debug['suspect_flag']}"),
               "debug_before")
    out.figure(plot_convergence(debug["after"], title=f"{layer} re-run: flag {debug['rerun_flag']}"), "debug_after")
    pair = curves[curves.run_id.isin([run_id(bad), run_id(normal)])].sort_values("step")
    out.figure(plot_curves(pair, label="label", plateau_steps=plateau_steps, highlight=[run_id(bad)],
                           stops={r.run_id: {"best": r.best_step, "stopped": r.steps} for r in every.itertuples()},
                           title=f"{layer}: early stop vs the re-run"), "debug_curves")
    out.table(debug["replay"], "debug_replay")
    debug["record"] = dict(layer=cv.undertrain_layer, suspect_flag=debug["suspect_flag"], rerun_flag=debug["rerun_flag"],
                           patience_enough=debug["patience_enough"], replay=debug["replay"],
                           z_before=debug["before"].set_index("run_id").z.to_dict(),
                           z_after=debug["after"].set_index("run_id").z.to_dict())  # for results.json
    debug["text"] = (f"Under-trained {layer} (patience {cv.undertrain_patience}, min-delta {cv.undertrain_min_delta}): "
                     f"**{debug['suspect_flag']}**; re-run with patience {study.sweep.train.patience}: "
                     f"**{debug['rerun_flag']}**; smallest replayed patience inside the band: {debug['patience_enough']}")
    return debug
