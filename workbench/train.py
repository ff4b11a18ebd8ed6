"""The training loop shared by pretraining and finetuning: steps, evaluation, early stopping,
best checkpoint, resume after interruption, divergence detection.

    result = train_loop(model, optimizer, scheduler, batch_at, loss_fn, evaluate, loop, run_dir, ...)

The caller supplies `batch_at(step)` (deterministic in the step, so a resumed run sees the same
data), `loss_fn(model, batch)` and `evaluate() -> {"eval_loss": ...}`. The loop appends one line
per evaluation to `metrics.jsonl`, calls `save_best()` on every improvement of the monitored value,
and writes `resume.pt` (model, optimizer, scheduler, stopper, RNG) so a killed run continues from
its last checkpoint instead of starting over.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from workbench.config import WorkbenchError
from workbench.device import autocast
from workbench.runs import append_metrics, truncate_metrics

log = logging.getLogger(__name__)
RESUME = "resume.pt"


@dataclass
class EarlyStopping:
    """Stop once `patience` steps pass without an improvement of more than `min_delta`.

    `mode="min"` for losses, `"max"` for metrics. The best value and its step are kept."""

    patience: int
    min_delta: float = 0.0
    mode: str = "min"
    best: float = math.nan
    best_step: int = -1

    def update(self, step: int, value: float) -> bool:
        """Record an evaluation; True if it is a new best."""
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best_step < 0 or sign * (self.best - value) > self.min_delta:
            self.best, self.best_step = value, step
            return True
        return False

    def should_stop(self, step: int) -> bool:
        return self.best_step >= 0 and step - self.best_step >= self.patience


def replay_early_stopping(steps, values, patience: int, min_delta: float = 0.0, mode: str = "min") -> dict:
    """Replay the stopping rule on a logged curve: where it would have stopped and what it kept."""
    stopper = EarlyStopping(patience, min_delta, mode)
    stop_step = None
    for step, value in zip(steps, values):
        stopper.update(int(step), float(value))
        if stopper.should_stop(int(step)):
            stop_step = int(step)
            break
    return dict(stop_step=stop_step, best_step=stopper.best_step, best=stopper.best)


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


@dataclass
class LoopResult:
    status: str  # "completed" | "diverged"
    stop_reason: str  # "early_stopped" | "horizon" | "diverged"
    steps: int
    best: float
    best_step: int
    train_time_s: float
    diverged_step: int | None = None


def train_loop(model, optimizer, scheduler, batch_at: Callable[[int], Any], loss_fn: Callable,
               evaluate: Callable[[], dict], loop: LoopConfig, run_dir: Path, save_best: Callable[[], None],
               device: torch.device, precision: str = "fp32", progress: bool = True, desc: str = "") -> LoopResult:
    from tqdm.auto import tqdm

    stopper = EarlyStopping(loop.patience, loop.min_delta, loop.mode)
    state = _load_resume(run_dir, model, optimizer, scheduler, stopper)
    step, elapsed = state.get("step", 0), state.get("train_time_s", 0.0)
    if step:
        truncate_metrics(run_dir, step)
        log.info("%s: resumed at step %d (best %s=%.4f at %d)", desc, step, loop.monitor, stopper.best,
                 stopper.best_step)
    ckpt_every = loop.checkpoint_interval or loop.eval_interval
    loss_sum, loss_n, t0 = torch.zeros((), device=device), 0, time.perf_counter()
    bar = tqdm(total=loop.max_steps, initial=step, desc=desc, disable=not progress, leave=False,
               dynamic_ncols=True)
    model.train()
    result = None
    while step < loop.max_steps:
        loss = _forward_backward(model, loss_fn, batch_at(step), loop.micro_batch_size, device, precision)
        if not torch.isfinite(loss):
            result = LoopResult("diverged", "diverged", step, stopper.best, stopper.best_step,
                                elapsed + time.perf_counter() - t0, diverged_step=step)
            log.warning("%s: loss is %s at step %d: recorded as diverged", desc, loss.item(), step)
            optimizer.zero_grad(set_to_none=True)
            break
        if loop.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        loss_n += 1
        step += 1
        bar.update(1)
        if step % loop.eval_interval and step < loop.max_steps:
            continue
        elapsed += time.perf_counter() - t0
        row = _evaluate_and_log(model, evaluate, loop, step, loss_sum.item() / loss_n, elapsed, scheduler,
                                run_dir, device, precision)
        improved = stopper.update(step, row[loop.monitor])
        if improved:
            save_best()
        bar.set_postfix({loop.monitor: f"{row[loop.monitor]:.4f}", "best": f"{stopper.best:.4f}"})
        stop = stopper.should_stop(step)
        if step % ckpt_every == 0 and not stop and step < loop.max_steps:
            _save_resume(run_dir, model, optimizer, scheduler, stopper, step, elapsed)
        loss_sum, loss_n, t0 = torch.zeros((), device=device), 0, time.perf_counter()
        if stop:
            result = LoopResult("completed", "early_stopped", step, stopper.best, stopper.best_step, elapsed)
            break
        model.train()
    bar.close()
    return result or LoopResult("completed", "horizon", step, stopper.best, stopper.best_step, elapsed)


def split_batch(batch, micro_batch_size: int) -> list[tuple[Any, float]]:
    """(micro-batch, weight) pairs whose weighted mean losses equal the whole batch's mean loss:
    a masked-LM batch is weighted by its share of predicted tokens, a dict of tensors by rows."""
    from workbench.masking import MaskedBatch

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
                 elapsed: float) -> None:
    tmp = Path(run_dir) / f".{RESUME}.tmp"
    torch.save(dict(step=step, train_time_s=elapsed, model=model.state_dict(), optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), stopper=asdict(stopper), rng=torch.get_rng_state()), tmp)
    os.replace(tmp, Path(run_dir) / RESUME)


def _load_resume(run_dir: Path, model, optimizer, scheduler, stopper: EarlyStopping) -> dict:
    path = Path(run_dir) / RESUME
    if not path.exists():
        return {}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except Exception as e:  # noqa: BLE001 - any failure to read means the file is unusable
        raise CorruptCheckpointError(f"resume checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None
    for k, v in state["stopper"].items():
        setattr(stopper, k, v)
    torch.set_rng_state(state["rng"])
    return state


class CorruptCheckpointError(WorkbenchError):
    """A resume checkpoint that cannot be loaded; the caller restarts the run from scratch."""


def remove_resume(run_dir: Path) -> None:
    (Path(run_dir) / RESUME).unlink(missing_ok=True)


def save_best_checkpoint(run_dir: Path, model, tokenizer) -> None:
    """Write `best/` (model + tokenizer, `from_pretrained`-ready) through a temp folder and a rename."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per improvement is noise
    tmp = Path(run_dir) / "best.tmp"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(Path(run_dir) / "best", ignore_errors=True)
    tmp.rename(Path(run_dir) / "best")


def reset_run(run_dir: Path, keep: tuple[str, ...] = ("config.json", "claim.json", "attempts.jsonl")) -> None:
    """Empty a run folder (but its config, claim and attempt log) so the run restarts from scratch."""
    for p in Path(run_dir).iterdir():
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
