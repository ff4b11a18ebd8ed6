"""Finetune one pretrained checkpoint on one task with one (lr, epochs, seed), as a run spec.

    summary = finetune(FinetuneConfig(task="movie-sentiment", pretrain_run="runs/pretrain-ar32-L2-...",
                                      lr=1e-3, epochs=3), root="runs")

The paper's recipe: constant LR after 10% warm-up, dropout 0.1, batch 64, evaluation after every
epoch on the task's official metric, the whole epoch budget trained and the best epoch kept post
hoc. The head, encoding and metric come from the task's kind (`workbench.tasks.kinds`); the loop is
`workbench.train.loop.train_loop`, shared with pretraining; the run's life (skip, claim, resume,
config, summary) is `workbench.runs.lifecycle.run_once`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from workbench.base.errors import WorkbenchError
from workbench.base.files import read_json, write_json_atomic
from workbench.base.runfiles import BEST, CONFIG, SUMMARY, read_metrics
from workbench.base.seeds import epoch_seed
from workbench.config import ExecConfig, FinetuneConfig, config_hash, to_dict
from workbench.runs.lifecycle import SpecBase, run_once
from workbench.runs.store import RunBusy, RunStore
from workbench.tasks.catalogue import get_task
from workbench.tasks.kinds import collate, task_kind
from workbench.train.device import place
from workbench.train.loop import LoopConfig, LoopResult, Setup, make_schedule, save_best_checkpoint
from workbench.train.model import adamw

log = logging.getLogger(__name__)


def checkpoint_of(pretrain_run: str | Path) -> Path:
    best = Path(pretrain_run) / BEST
    if not (best / "config.json").exists():
        raise WorkbenchError(f"no pretrained checkpoint at {best}: give the folder of a finished "
                             f"pretraining run (run `workbench sweep` first)")
    if not (Path(pretrain_run) / CONFIG).is_file():
        raise WorkbenchError(f"{pretrain_run} has a checkpoint but no {CONFIG}: it is not a run folder "
                             f"the workbench wrote; give the folder of a finished pretraining run")
    return best


def run_id(cfg: FinetuneConfig) -> str:
    return f"finetune-{cfg.task}-{Path(cfg.pretrain_run).name}-lr{cfg.lr:g}-ep{cfg.epochs}-s{cfg.seed}-{config_hash(cfg)}"


@dataclass(frozen=True)
class Inputs:
    """What a finetuning run loads before its folder exists."""

    task: object
    ckpt: Path
    pretrain: dict  # the pretraining run's config.json
    tokenizer: object
    seq_len: int
    train_rows: list
    eval_rows: list


def _subset(rows: list[dict], n: int, seed: int) -> list[dict]:
    if not n or n >= len(rows):
        return rows
    idx = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(idx)]


@dataclass(frozen=True)
class FinetuneSpec(SpecBase):
    """One finetuning run for `workbench.runs.lifecycle.run_once` (and the executors)."""

    cfg: FinetuneConfig
    kind: ClassVar[str] = "finetune"
    make_id = staticmethod(run_id)

    @property
    def n_params(self) -> int:
        try:
            return int(read_json(Path(self.cfg.pretrain_run) / CONFIG)["model"]["n_params"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0  # unknown: scheduled last; prepare() then says what is wrong with the folder

    def prepare(self) -> Inputs:
        from transformers import AutoTokenizer

        cfg = self.cfg
        ckpt = checkpoint_of(cfg.pretrain_run)
        task = get_task(cfg.task)
        data = task.load(cfg.source or None)
        positions = read_json(ckpt / "config.json")["max_position_embeddings"]
        seq_len = cfg.seq_len or positions
        if seq_len > positions:
            raise WorkbenchError(f"seq_len {seq_len} exceeds the {positions} positions the checkpoint was pretrained "
                                 f"with; use seq_len <= {positions} (0 takes {positions})")
        return Inputs(task, ckpt, read_json(Path(cfg.pretrain_run) / CONFIG), AutoTokenizer.from_pretrained(ckpt),
                      seq_len, _subset(data.train, cfg.max_train, 0), _subset(data.eval, cfg.max_eval, 1))

    def record(self, x: Inputs) -> dict:
        t = x.task
        return dict(config=to_dict(self.cfg), model=x.pretrain["model"],
                    pretrain=dict(run_id=x.pretrain["run_id"], config=x.pretrain["config"]),
                    task=dict(name=t.name, kind=t.kind, metric=t.metric, labels=list(t.labels), eval_split=t.eval_split,
                              origin=t.origin, n_train=len(x.train_rows), n_eval=len(x.eval_rows)))

    def ensemble_key(self):
        """The grid of one size and task (LR x epochs x seeds x warm-up) trains together."""
        c = self.cfg
        return ("finetune", str(Path(c.pretrain_run).resolve()), c.task, c.source, c.batch_size, c.seq_len,
                c.max_train, c.max_eval, c.dropout)

    def setup(self, x: Inputs, run_dir: Path, ctx) -> Setup:
        from transformers.utils import logging as hf_logging

        cfg, kind = self.cfg, task_kind(x.task)
        train = kind.encode(x.task, x.train_rows, x.tokenizer, x.seq_len, for_training=True)  # same subset for every
        evalset = kind.encode(x.task, x.eval_rows, x.tokenizer, x.seq_len, for_training=False)  # seed and size
        steps_per_epoch = max(1, -(-len(train["input_ids"]) // cfg.batch_size))
        max_steps = cfg.epochs * steps_per_epoch
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # "newly initialized head weights" is expected here
        hf_logging.disable_progress_bar()  # and one "Loading weights" bar per run is noise
        try:
            model = place(kind.load_head(x.task, x.ckpt, cfg.dropout), ctx.device)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        optimizer = adamw(model, ctx.device, cfg.lr, cfg.weight_decay)
        scheduler = make_schedule(optimizer, "constant", int(cfg.warmup_fraction * max_steps), max_steps)
        loop = LoopConfig(max_steps=max_steps, eval_interval=steps_per_epoch, patience=max_steps + 1, mode="max",
                          monitor=x.task.metric, grad_clip=1.0, checkpoint_interval=ctx.exec.checkpoint_interval,
                          micro_batch_size=ctx.exec.micro_batch_size)
        return Setup(model, optimizer, scheduler, _batches(train, cfg, steps_per_epoch, ctx.device),
                     lambda m, b: m(**b).loss,
                     lambda: kind.evaluate(x.task, model, evalset, x.eval_rows, cfg.batch_size * 2, ctx.device),
                     loop, lambda: save_best_checkpoint(run_dir, model, x.tokenizer),
                     desc=f"{x.task.name} {x.pretrain['model']['name']}", run_dir=Path(run_dir))

    def summarize(self, x: Inputs, s: Setup, res: LoopResult, ctx, wall_time_s: float) -> dict:
        cfg, steps_per_epoch = self.cfg, s.loop.eval_interval
        at_best = [r for r in read_metrics(s.run_dir) if r["step"] == res.best_step]
        task_loss = at_best[-1].get("eval_loss") if at_best else None  # the kept epoch's task loss
        return dict(status=res.status, stop_reason=res.stop_reason, task=x.task.name, metric=x.task.metric,
                    value=res.best, one_minus=1 - res.best if res.best == res.best else None, task_loss=task_loss,
                    best_epoch=res.best_step // steps_per_epoch if res.best_step > 0 else None,
                    steps=res.steps, epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed,
                    n_params=x.pretrain["model"]["n_params"], tokens=int(res.steps * cfg.batch_size * x.seq_len),
                    train_time_s=round(res.train_time_s, 2), wall_time_s=round(wall_time_s, 2),
                    diverged_step=res.diverged_step)


def backfill_task_loss(cfg: FinetuneConfig, root: str | Path, summary: dict) -> dict:
    """`summary` of the finished run of `cfg` with its task loss. A run finished before every
    evaluation logged one is evaluated once more from `best/` (the kept epoch, on the same eval
    rows), and the value is written into its summary.json under the run's claim (like every write
    to a run folder), so the next study reads it; a run another process holds is left as it is."""
    if summary.get("task_loss") is not None or summary.get("status") != "completed":
        return summary
    import torch

    store, rid = RunStore(root), run_id(cfg)
    x = FinetuneSpec(cfg).prepare()
    try:
        with store.claim(rid, attempt=False) as run_dir:  # bookkeeping, not a training attempt
            summary = store.summary(rid) or summary  # as it is now, under the claim
            if summary.get("task_loss") is not None:
                return summary
            kind = task_kind(x.task)
            model = kind.load_head(x.task, run_dir / BEST, cfg.dropout).eval()
            enc = kind.encode(x.task, x.eval_rows, x.tokenizer, x.seq_len, for_training=False)
            with torch.no_grad():
                loss = kind.evaluate(x.task, model, enc, x.eval_rows, cfg.batch_size * 2, torch.device("cpu"))["eval_loss"]
            summary = dict(summary, task_loss=loss)
            write_json_atomic(run_dir / SUMMARY, summary)
    except RunBusy:
        log.warning("%s is held by another process: its task loss is left for later", rid)
        return summary
    log.info("%s: task loss %.4f evaluated from %s (the run finished before task losses were logged)", rid, loss, BEST)
    return summary


def finetune(cfg: FinetuneConfig, root: str | Path, exec_cfg: ExecConfig = ExecConfig()) -> dict:
    """Finetune (or resume, or skip if finished) the run of `cfg` under `root`; returns its summary."""
    return run_once(FinetuneSpec(cfg), root, exec_cfg)


def _batches(enc: dict, cfg: FinetuneConfig, steps_per_epoch: int, device):
    """`batch_at(step)`: the step's rows of a per-epoch permutation seeded by (seed, epoch), padded."""
    n = len(enc["input_ids"])

    @functools.lru_cache(maxsize=2)
    def order(epoch: int) -> np.ndarray:
        return np.random.default_rng(epoch_seed(cfg.seed, epoch)).permutation(n)

    def batch_at(step: int) -> dict:
        epoch, k = divmod(step, steps_per_epoch)
        idx = order(epoch)[k * cfg.batch_size:(k + 1) * cfg.batch_size]
        return {key: t.to(device) for key, t in collate(enc, idx).items()}

    return batch_at
