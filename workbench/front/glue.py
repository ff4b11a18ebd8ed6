"""The glue between the library's steps that the notebooks call: the store's runs as fitting
tables, a table of anyone's runs in their place, the finetuning tables of several sweeps, the
two-stage route per task, replays of early stopping, and the convergence notebook's worked example
of an under-trained run.

    runs, table = sweep_table(study.sweep, study.root, study.exec)      # trains what is missing
    runs, table = sweep_table(..., convergence=study.convergence)       # and certifies the largest size
"""

from __future__ import annotations

import pandas as pd

from workbench.base.errors import FitError
from workbench.config import ConvergenceConfig, FitConfig, StudyConfig
from workbench.front.outputs import Outputs
from workbench.laws.twostage import two_stage_report
from workbench.runs.store import RunStore


def sweep_table(sweep, root, exec_cfg, on_done=None, law: str = "power",
                convergence: ConvergenceConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, fitting table) of a sweep, trained where unfinished; the table is labelled by variant.
    For a law with covariates (the joint law over tokens) the table is the runs' checkpoints. With
    `convergence.certify` ("largest" or "all"), the early-stopped runs are then certified
    (`workbench.runs.certify`): their verdicts in `runs` are the certified ones, and `certificate`
    holds each certificate's line."""
    from workbench.execute.sweep import run_sweep
    from workbench.runs.tables import fitting_rows, law_table

    certify = convergence.certify if convergence is not None else "none"
    runs = run_sweep(sweep, root, exec_cfg, on_done=on_done, certify=certify,  # certified where each trained
                     certify_factor=convergence.certify_factor if convergence is not None else 2.0)
    if convergence is not None and convergence.certify != "none" and not runs.empty:
        runs = certified(runs, root, convergence, exec_cfg)
    return runs, fitting_rows(law_table(runs).assign(variant=sweep.label), root, law)


def certified(runs: pd.DataFrame, root, convergence: ConvergenceConfig, exec_cfg) -> pd.DataFrame:
    """`runs` after certifying those `convergence.certify` names: converged, convergence and the
    certificate's line from each certified summary."""
    from workbench.runs.certify import certificate_line, certify_store

    done = runs[runs.status == "completed"] if "status" in runs else runs
    rows = certify_store(root, convergence.certify, convergence.certify_factor, exec_cfg=exec_cfg,
                         within=done.run_id) if len(done) else []
    runs, store = runs.copy(), RunStore(root)
    runs["certificate"] = runs.get("certificate", pd.Series("", index=runs.index)).map(certificate_line)
    for row in rows:
        at = runs.run_id == row["run_id"]
        if row["certificate"] is None:
            runs.loc[at, "certificate"] = f"not certified: {row['skipped']}"
            continue
        summary = store.summary(row["run_id"])
        runs.loc[at, "converged"] = summary["converged"]
        runs.loc[at, "convergence"] = summary["convergence"]
        runs.loc[at, "certificate"] = row["certificate"]["line"]
    return runs


def study_table(study: StudyConfig, table_file: str = "", variant: str = "",
                on_done=None) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """(runs, fitting table) for a notebook: the sweep's (trained where unfinished), or with
    `table_file` the rows of that CSV / Parquet table (`workbench.laws.tables` schema; its `variant`
    when it holds several) and no runs: their convergence is not known here."""
    if not table_file:
        return sweep_table(study.sweep, study.root, study.exec, on_done, study.fit.law)
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
    if not table_file:
        sweep_b = study.variant_sweep()
        label_a, label_b = study.sweep.label, study.variant_label()
        # both variants' runs certified as `convergence.certify` says (a certificate already made is read back)
        runs_a, table_a = sweep_table(study.sweep, study.root, study.exec, law=study.fit.law,
                                      convergence=study.convergence)
        runs_b, table_b = sweep_table(sweep_b, study.root, study.exec, law=study.fit.law,
                                      convergence=study.convergence)
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
    debug["record"] = dict(layer=cv.undertrain_layer, suspect_flag=debug["suspect_flag"],
                           rerun_flag=debug["rerun_flag"], patience_enough=debug["patience_enough"], replay=debug["replay"],
                           z_before=debug["before"].set_index("run_id").z.to_dict(),
                           z_after=debug["after"].set_index("run_id").z.to_dict())  # for results.json
    debug["text"] = (f"Under-trained {layer} (patience {cv.undertrain_patience}, min-delta {cv.undertrain_min_delta}): "
                     f"**{debug['suspect_flag']}**; re-run with patience {study.sweep.train.patience}: "
                     f"**{debug['rerun_flag']}**; smallest replayed patience inside the band: "
                     f"{debug['patience_enough']}")
    return debug
