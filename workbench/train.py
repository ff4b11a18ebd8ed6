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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from workbench.device import autocast
from workbench.errors import CorruptCheckpointError, WorkbenchError
from workbench.files import atomic_path
from workbench.runs import BEST, RESUME, append_metrics, truncate_metrics
from workbench.stopping import EarlyStopping

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
    with atomic_path(Path(run_dir) / RESUME) as tmp:  # a failed save leaves neither a torn file nor a temp one
        torch.save(dict(step=step, train_time_s=elapsed, model=model.state_dict(), optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(), stopper=asdict(stopper), rng=torch.get_rng_state()), tmp)


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
