"""A finetuning study: every pretrained size x task, a per-size grid of lr x epochs, then seeds.

    df = run_finetune_study(FinetuneStudyConfig(tasks=("movie-sentiment", "sms-spam")), root="runs")
    table = finetune_table(df)      # selected setting per (task, size), fit-ready: value = 1 - metric

The study table is also written to `<root>/finetune-study-<config hash>.csv`.

With `tune=True` (the paper's protocol) each (size, task) runs the whole grid with seed 0, the
setting with the best metric is selected, and seeds 1..seeds-1 run at that setting. With
`tune=False` every size uses one fixed recipe (the paper's "without HPT" baseline). Finished runs
are skipped, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.config import ConfigError, ExecConfig, WorkbenchError, config_hash
from workbench.finetune import FinetuneConfig, run_id
from workbench.runs import load_runs
from workbench.tasks import get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneStudyConfig:
    tasks: tuple[str, ...] = ("movie-sentiment", "sms-spam")
    pretrain_root: str = "runs"  # where the pretraining sweep wrote its runs
    family: str = "ar32"
    layers: tuple[int, ...] = (1, 2, 3, 4)
    pretrain_seed: int = 0
    objective: str = "mlm"
    lrs: tuple[float, ...] = (1e-4, 3e-4)  # nuisance: tuned per (size, task)
    epochs: tuple[int, ...] = (2, 4)  # nuisance: tuned per (size, task)
    seeds: int = 5
    tune: bool = True
    fixed_lr: float = 1e-4  # used when tune=False
    fixed_epochs: int = 3
    batch_size: int = 64
    seq_len: int = 0  # 0 = each checkpoint's pretraining block length
    max_train: int = 0
    max_eval: int = 0
    pretrain_ids: tuple[str, ...] = ()  # exact pretraining run ids, one per depth in `layers` order; () = by family/objective

    def __post_init__(self) -> None:
        for t in self.tasks:
            get_task(t)
        if not self.tasks or not self.layers:
            raise ConfigError("a study needs at least one task and one size")
        if self.tune and (not self.lrs or not self.epochs):
            raise ConfigError(f"the tuning grid is empty (lrs={list(self.lrs)}, epochs={list(self.epochs)}): "
                              f"give at least one learning rate and one epoch budget")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")

    def grid(self) -> list[tuple[float, int]]:
        return [(lr, ep) for lr in self.lrs for ep in self.epochs] if self.tune else [(self.fixed_lr, self.fixed_epochs)]


def pretrained_runs(cfg: FinetuneStudyConfig) -> dict[int, Path]:
    """The finished pretraining run folder of each requested depth; one per depth or an error."""
    if cfg.pretrain_ids:
        if len(cfg.pretrain_ids) != len(cfg.layers):
            raise ConfigError(f"pretrain_ids has {len(cfg.pretrain_ids)} ids for {len(cfg.layers)} layers")
        found = {n: Path(cfg.pretrain_root) / rid for n, rid in zip(cfg.layers, cfg.pretrain_ids)}
        missing = [str(p) for p in found.values() if not (p / "summary.json").exists()]
        if missing:
            raise WorkbenchError(f"pretraining run(s) not finished: {', '.join(missing)}; run the sweep first")
        return found
    df = load_runs(cfg.pretrain_root)
    if not df.empty:
        df = df[(df.kind == "pretrain") & (df.family == cfg.family) & (df.seed == cfg.pretrain_seed)
                & (df["train.objective"] == cfg.objective) & (df.status == "completed")]
    found = {}
    for n in cfg.layers:
        rows = df[df.n_layers == n] if not df.empty else df
        if len(rows) != 1:
            what = "no finished" if rows.empty else f"{len(rows)} finished"
            raise WorkbenchError(f"{what} pretraining run(s) of {cfg.family}-L{n} (seed {cfg.pretrain_seed}, "
                                 f"{cfg.objective}) under {cfg.pretrain_root}; run `workbench sweep` first"
                                 + ("" if rows.empty else ", or keep one run per size in that folder"))
        found[n] = Path(cfg.pretrain_root) / rows.run_id.iloc[0]
    return found


def _config(cfg: FinetuneStudyConfig, task: str, run: Path, lr: float, epochs: int, seed: int) -> FinetuneConfig:
    return FinetuneConfig(task=task, pretrain_run=str(run), lr=lr, epochs=epochs, seed=seed,
                          batch_size=cfg.batch_size, seq_len=cfg.seq_len, max_train=cfg.max_train,
                          max_eval=cfg.max_eval)


def run_finetune_study(cfg: FinetuneStudyConfig, root: str | Path = "runs",
                       exec_cfg: ExecConfig = ExecConfig()) -> pd.DataFrame:
    """Run (or resume) the study on `exec_cfg.executor`; one row per finished finetuning run with a
    `selected` column. Two rounds: the grid (seed 0) of every (task, size), then the other seeds at
    each selected setting. Failed runs are reported and left out; selection uses the others."""
    from workbench.executors import finetune_job, run_jobs

    runs = pretrained_runs(cfg)
    cells = [(task, n, run) for task in cfg.tasks for n, run in runs.items()]
    trials = {(task, n): [_config(cfg, task, run, lr, ep, 0) for lr, ep in cfg.grid()] for task, n, run in cells}
    grid_jobs = [finetune_job(fc) for fcs in trials.values() for fc in fcs]
    summaries = {o.run_id: o.summary for o in run_jobs(grid_jobs, root, exec_cfg, desc="finetune grid") if o.summary}
    rows, seed_jobs = [], []
    for (task, n), fcs in trials.items():
        done = [(fc, summaries[run_id(fc)]) for fc in fcs if run_id(fc) in summaries]
        if not done:
            continue
        best_cfg, _ = max(done, key=lambda t: (t[1]["value"], -t[0].lr, -t[0].epochs))
        rows += [_row(fc, s, n, fc == best_cfg) for fc, s in done]
        seed_jobs += [(n, _config(cfg, task, runs[n], best_cfg.lr, best_cfg.epochs, seed))
                      for seed in range(1, cfg.seeds)]
    if seed_jobs:
        outcomes = run_jobs([finetune_job(fc) for _, fc in seed_jobs], root, exec_cfg, desc="finetune seeds")
        rows += [_row(fc, o.summary, n, True) for (n, fc), o in zip(seed_jobs, outcomes) if o.summary]
    study = pd.DataFrame(rows)
    if rows:
        study = study.sort_values(["task", "n_layers", "seed"], kind="stable").reset_index(drop=True)
    _write_table(study, Path(root) / f"finetune-study-{config_hash(cfg)}.csv")
    return study


def _write_table(df: pd.DataFrame, path: Path) -> None:
    """The study table (every run, `selected` marking the chosen settings) beside its runs."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # unique: studies may run side by side
    with os.fdopen(fd, "w") as f:
        df.to_csv(f, index=False)
    os.replace(tmp, path)


def _row(fc: FinetuneConfig, s: dict, n_layers: int, selected: bool) -> dict:
    return dict(run_id=run_id(fc), task=fc.task, n_layers=n_layers, n_params=s["n_params"], seed=fc.seed,
                lr=fc.lr, epochs=fc.epochs, metric=s["metric"], value=s["value"], one_minus=s["one_minus"],
                best_epoch=s["best_epoch"], status=s["status"], selected=selected)


def finetune_table(study: pd.DataFrame) -> pd.DataFrame:
    """The selected runs as a fitting table: variant = task, value = 1 - metric (to minimise)."""
    sel = study[study.selected & (study.status == "completed")]
    return pd.DataFrame(dict(variant=sel.task, task=sel.task, n_params=sel.n_params.astype(float), seed=sel.seed,
                             metric=sel.value, value=sel.one_minus)).reset_index(drop=True)
