"""The training loop shared by pretraining and finetuning: steps, evaluation, early stopping,
best checkpoint, resume after interruption, divergence detection.

    result = train_loop(setup, run_dir, device, precision)    # setup: a `Setup` from a run spec

The caller's `Setup` supplies `batch_at(step)` (deterministic in the step, so a resumed run sees the
same data), `loss_fn(model, batch)` and `evaluate() -> {"eval_loss": ...}`. The loop appends one line
per evaluation to `metrics.jsonl`, calls `save_best()` on every improvement of the monitored value,
and writes `resume.pt` (model, optimizer, scheduler, stopper, RNG) so a killed run continues from
its last checkpoint instead of starting over.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from workbench.base.errors import CorruptCheckpointError, WorkbenchError
from workbench.base.files import atomic_path
from workbench.base.progress import bar as progress_bar
from workbench.base.runfiles import BEST, METRICS, RESUME, STOP, append_metrics, truncate_metrics
from workbench.base.stopping import EarlyStopping
from workbench.train.device import autocast

log = logging.getLogger(__name__)


def make_schedule(optimizer, kind: str, warmup: int, horizon: int):
    """Linear warm-up, then linear decay to 0 at `horizon` ('linear') or flat ('constant')."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        return max(0.0, (horizon - step) / max(1, horizon - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class LoopConfig:
    max_steps: int
    eval_interval: int
    patience: int
    min_delta: float = 0.0
    grad_clip: float = 1.0
    mode: str = "min"
    monitor: str = "eval_loss"
    checkpoint_interval: int = 0  # 0 = at every evaluation
    tokens_per_step: int = 0  # for the tokens column and throughput
    flops_per_step: float = 0.0  # for the throughput column (model FLOPs / s)
    peak_flops: float = 0.0  # device peak FLOP/s: logs model FLOPs utilisation (mfu) when known
    micro_batch_size: int = 0  # gradient accumulation over micro-batches of this many rows; 0 = none
    keep_stop_state: bool = False  # at an early stop, keep the full state in stop.pt (a certificate continues it)
    stop_at: float | None = None  # stop once the monitor reaches this (as good or better): a decided certificate


@dataclass
class Setup:
    """What a run spec's `setup` returns: everything training needs, alone or in an ensemble."""

    model: Any
    optimizer: Any
    scheduler: Any
    batch_at: Callable[[int], Any]  # deterministic in the step
    loss_fn: Callable  # loss_fn(model, batch) -> scalar loss (training alone)
    evaluate: Callable[[], dict]
    loop: LoopConfig
    save_best: Callable[[], None]
    desc: str = ""
    run_dir: Path | None = None  # where the run logs (its summary reads the curve back)


@dataclass
class LoopResult:
    status: str  # "completed" | "diverged"
    stop_reason: str  # "early_stopped" | "horizon" | "diverged" | "reached" (loop.stop_at)
    steps: int
    best: float
    best_step: int
    train_time_s: float
    diverged_step: int | None = None


class RunLoop:
    """The per-run half of training, driven one optimisation step at a time: apply a step whose
    gradient is in place, log, evaluate, stop early, save the best and resume checkpoints.

    `train_loop` drives one of these on one model; `workbench.train.stacked` drives several, one per
    member of a stacked ensemble, with the same code, so a member's run folder is what training it
    alone writes. `rng` is where the run's dropout draws come from: None = torch's global generator
    (training alone), else a `workbench.train.stacked.MemberRNG` whose state is saved and resumed instead."""

    @classmethod
    def of(cls, setup: Setup, run_dir: Path, device: torch.device, precision: str = "fp32", progress: bool = True,
           rng=None) -> "RunLoop":
        """The loop of a run spec's `Setup` (training alone, or as an ensemble member with its `rng`)."""
        return cls(setup.model, setup.optimizer, setup.scheduler, setup.evaluate, setup.loop, run_dir, setup.save_best,
                   device, precision, progress, setup.desc, rng)

    def __init__(self, model, optimizer, scheduler, evaluate: Callable[[], dict], loop: LoopConfig, run_dir: Path,
                 save_best: Callable[[], None], device: torch.device, precision: str = "fp32",
                 progress: bool = True, desc: str = "", rng=None):
        self.model, self.optimizer, self.scheduler, self.evaluate = model, optimizer, scheduler, evaluate
        self.loop, self.run_dir, self.save_best, self.device, self.precision = loop, Path(run_dir), save_best, device, precision
        self.desc, self.rng = desc, rng
        self.stopper = EarlyStopping(loop.patience, loop.min_delta, loop.mode)
        state = _load_resume(self.run_dir, model, optimizer, scheduler, self.stopper)
        if state:
            if rng is None:
                torch.set_rng_state(state["rng"])
            else:
                rng.set_state(state["rng"])
            if state.get("cuda_rng") is not None and device.type == "cuda":  # dropout draws on the GPU
                if rng is None:
                    torch.cuda.set_rng_state(state["cuda_rng"], device)
                else:
                    rng.cuda = state["cuda_rng"]
        self.step, self.elapsed = state.get("step", 0), state.get("train_time_s", 0.0)
        if (self.run_dir / METRICS).exists():  # evaluations logged after the checkpoint (or before the first
            truncate_metrics(self.run_dir, self.step)  # one, from a killed attempt) are redone: drop them
        if self.step:
            log.info("%s: resumed at step %d (best %s=%.4f at %d)", desc, self.step, loop.monitor, self.stopper.best,
                     self.stopper.best_step)
        self.ckpt_every = loop.checkpoint_interval or loop.eval_interval
        self.loss_sum, self.loss_n = torch.zeros((), device=device), 0
        self.bar = progress_bar(total=loop.max_steps, initial=self.step, desc=desc, enabled=progress)
        self.result: LoopResult | None = None
        model.train()

    @property
    def done(self) -> bool:
        return self.result is not None or self.step >= self.loop.max_steps

    def advance(self, loss: torch.Tensor, seconds: float) -> None:
        """Finish step `self.step` whose loss is `loss` (gradients accumulated in `.grad`);
        `seconds` is the training time to book for it (evaluation is not training time)."""
        loop, t0 = self.loop, time.perf_counter()
        self.elapsed += seconds
        if not torch.isfinite(loss):
            self.result = LoopResult("diverged", "diverged", self.step, self.stopper.best, self.stopper.best_step,
                                     self.elapsed, diverged_step=self.step)
            log.warning("%s: loss is %s at step %d: recorded as diverged", self.desc, loss.item(), self.step)
            self.optimizer.zero_grad(set_to_none=True)
            return
        if loop.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), loop.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.elapsed += time.perf_counter() - t0  # the update is training time too
        self.loss_sum += loss.detach()
        self.loss_n += 1
        self.step += 1
        self.bar.update(1)
        if self.step % loop.eval_interval and self.step < loop.max_steps:
            return
        row = _evaluate_and_log(self.model, self.evaluate, loop, self.step, self.loss_sum.item() / self.loss_n,
                                self.elapsed, self.scheduler, self.run_dir, self.device, self.precision)
        if self.stopper.update(self.step, row[loop.monitor]):
            self.save_best()
        self.bar.set_postfix({loop.monitor: f"{row[loop.monitor]:.4f}", "best": f"{self.stopper.best:.4f}"})
        stop = self.stopper.should_stop(self.step)
        reached = loop.stop_at is not None and (row[loop.monitor] <= loop.stop_at if loop.mode == "min"
                                                else row[loop.monitor] >= loop.stop_at)
        due = self.step % self.ckpt_every == 0 and not (stop or reached) and self.step < loop.max_steps
        if due or (stop and loop.keep_stop_state):  # at an early stop: the state a certificate continues
            cuda_rng = None
            if self.device.type == "cuda":
                cuda_rng = self.rng.cuda if self.rng is not None else torch.cuda.get_rng_state(self.device)
            _save_resume(self.run_dir, self.model, self.optimizer, self.scheduler, self.stopper, self.step,
                         self.elapsed, self.rng.get_state() if self.rng is not None else torch.get_rng_state(),
                         name=STOP if stop else RESUME, cuda_rng=cuda_rng)
        self.loss_sum, self.loss_n = torch.zeros((), device=self.device), 0
        if stop or reached:
            self.result = LoopResult("completed", "early_stopped" if stop else "reached", self.step, self.stopper.best,
                                     self.stopper.best_step, self.elapsed)
        self.model.train()

    def finish(self) -> LoopResult:
        self.bar.close()
        return self.result or LoopResult("completed", "horizon", self.step, self.stopper.best, self.stopper.best_step,
                                         self.elapsed)


def train_loop(setup: Setup, run_dir: Path, device: torch.device, precision: str = "fp32",
               progress: bool = True) -> LoopResult:
    """Train one model alone: forward/backward on `setup.batch_at(step)`, then `RunLoop.advance`."""
    run = RunLoop.of(setup, run_dir, device, precision, progress)
    while not run.done:
        t0 = time.perf_counter()
        loss = _forward_backward(setup.model, setup.loss_fn, setup.batch_at(run.step), setup.loop.micro_batch_size,
                                 device, precision)
        run.advance(loss, time.perf_counter() - t0)
    return run.finish()


def split_batch(batch, micro_batch_size: int) -> list[tuple[Any, float]]:
    """(micro-batch, weight) pairs whose weighted mean losses equal the whole batch's mean loss:
    a masked-LM batch is weighted by its share of predicted tokens, a dict of tensors by rows."""
    from workbench.data.masking import MaskedBatch

    rows = len(batch.input_ids) if isinstance(batch, MaskedBatch) else len(next(iter(batch.values())))
    if not micro_batch_size or micro_batch_size >= rows:
        return [(batch, 1.0)]
    bounds = [(i, min(i + micro_batch_size, rows)) for i in range(0, rows, micro_batch_size)]
    if isinstance(batch, MaskedBatch):
        total = max(1, len(batch.labels))
        return [(part, len(part.labels) / total) for part in (batch.rows(i, j) for i, j in bounds) if len(part.labels)]
    return [({k: v[i:j] for k, v in batch.items()}, (j - i) / rows) for i, j in bounds]


def _forward_backward(model, loss_fn, batch, micro_batch_size: int, device, precision) -> torch.Tensor:
    """Accumulate the gradient of the batch's mean loss over micro-batches; returns that loss
    (non-finite as soon as one micro-batch is, with nothing applied)."""
    total = torch.zeros((), device=device)
    for part, weight in split_batch(batch, micro_batch_size):
        with autocast(device, precision):
            loss = loss_fn(model, part)
        if not torch.isfinite(loss):
            return loss
        (loss * weight).backward()
        total += loss.detach() * weight
    return total


def _evaluate_and_log(model, evaluate, loop: LoopConfig, step: int, train_loss: float, elapsed: float,
                      scheduler, run_dir: Path, device, precision) -> dict:
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        metrics = evaluate()
    if loop.monitor not in metrics:
        raise WorkbenchError(f"evaluate() returned {sorted(metrics)}, not the monitored {loop.monitor!r}")
    row = dict(step=step, train_loss=train_loss, lr=scheduler.get_last_lr()[0], time_s=round(elapsed, 3), **metrics)
    if loop.tokens_per_step:
        row["tokens"] = step * loop.tokens_per_step
    if loop.tokens_per_step and elapsed > 0:
        row["tokens_per_s"] = round(step * loop.tokens_per_step / elapsed, 1)
        row["model_flops_per_s"] = step * loop.flops_per_step / elapsed
        if loop.peak_flops:
            row["mfu"] = round(row["model_flops_per_s"] / loop.peak_flops, 5)
    append_metrics(run_dir, row)
    return row


def _save_resume(run_dir: Path, model, optimizer, scheduler, stopper: EarlyStopping, step: int,
                 elapsed: float, rng: torch.Tensor, name: str = RESUME, cuda_rng: torch.Tensor | None = None) -> None:
    with atomic_path(Path(run_dir) / name) as tmp:  # a failed save leaves neither a torn file nor a temp one
        torch.save(dict(run_id=Path(run_dir).name, step=step, train_time_s=elapsed, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), stopper=asdict(stopper),
                        rng=rng, cuda_rng=cuda_rng), tmp)


def _load_resume(run_dir: Path, model, optimizer, scheduler, stopper: EarlyStopping) -> dict:
    path = Path(run_dir) / RESUME
    if not path.exists():
        return {}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        owner = state.get("run_id")
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is unusable
        raise CorruptCheckpointError(f"resume checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None
    if owner is None:  # written before checkpoints recorded their run: taken as this run's, said once
        log.warning("resume checkpoint %s records no run id (an earlier version wrote it): resuming %s from it",
                    path, Path(run_dir).name)
    elif owner != Path(run_dir).name:  # a copy of another run's state would resume the wrong curve
        raise CorruptCheckpointError(f"resume checkpoint {path} was written by run {owner}, not {Path(run_dir).name}")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # a checkpoint saved unfused keeps its groups' flag: use ours
            if "fused" in group and "fused" in optimizer.defaults:
                group["fused"] = optimizer.defaults["fused"]
        scheduler.load_state_dict(state["scheduler"])
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is unusable
        raise CorruptCheckpointError(f"resume checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None
    for k in ("best", "best_step"):  # where it stands; the rule (patience, min-delta) is the loop config's
        setattr(stopper, k, state["stopper"][k])
    return state


def save_best_checkpoint(run_dir: Path, model, tokenizer) -> None:
    """Write `best/` (model + tokenizer, `from_pretrained`-ready) through a temp folder and a rename."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per improvement is noise
    try:
        with atomic_path(Path(run_dir) / BEST, directory=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
