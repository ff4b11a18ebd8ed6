"""Tokens/s of the workbench's pretraining step vs stock `BertForMaskedLM` + HF `Trainer`.

    python benchmarks/pretrain_throughput.py                  # ~10K, ~1M, ~10M on CPU, side by side
    python benchmarks/pretrain_throughput.py --sizes bert-base:12 --steps 20   # on a GPU

Both sides train the same model shape on the same blocks with the same batch, AdamW and LR:
  ours  : workbench.train.loop.train_loop + masked-positions-only MLM head (workbench.train.model.mlm_loss)
  stock : transformers.Trainer + DataCollatorForLanguageModeling + BertForMaskedLM (full-vocab head)
Only update steps after `--warmup` untimed steps are timed, on both sides (Trainer's set-up is
excluded through a callback; ours reads the loop's own training clock). Prints tokens/s of
each, the ratio, the issue's target and, on a GPU, model FLOPs utilisation against --peak-tflops.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from workbench.base.family import model_spec
from workbench.base.runfiles import read_metrics
from workbench.config import DataConfig, PretrainConfig, TrainConfig
from workbench.data.prepared import prepare_data
from workbench.runs.pretrain import setup_pretraining
from workbench.train.device import resolve_device, resolve_precision
from workbench.train.loop import LoopConfig, Setup, train_loop
from workbench.train.model import mlm_loss

TARGETS = {"ar32:1": 3.0, "ar32:4": 1.8, "ar64:6": 1.5}  # ~10K, ~1M, ~10M non-embedding parameters


def ours(cfg: PretrainConfig, data, device, precision: str, steps: int, warmup: int) -> float:
    """Tokens/s over steps warmup+1 .. warmup+steps (from the loop's own per-step clock)."""
    model, optimizer, scheduler, batch_at = setup_pretraining(cfg, data, device)
    total = warmup + steps
    loop = LoopConfig(max_steps=total, eval_interval=1, patience=total + 1, grad_clip=cfg.train.grad_clip)
    with tempfile.TemporaryDirectory() as run_dir:
        setup = Setup(model, optimizer, scheduler, batch_at, mlm_loss, lambda: {"eval_loss": 0.0}, loop, lambda: None)
        train_loop(setup, Path(run_dir), device, precision, progress=False)
        times = {r["step"]: r["time_s"] for r in read_metrics(Path(run_dir))}  # training time only
    return steps * cfg.train.batch_size * cfg.data.seq_len / (times[total] - times[warmup])


def stock(cfg: PretrainConfig, data, device, precision: str, steps: int, warmup: int) -> float:
    from transformers import (
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    spec = model_spec(cfg.family, cfg.n_layers)
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(spec.bert_config(data.vocab_size, cfg.data.seq_len, cfg.train.dropout))
    total = warmup + steps
    rows = np.asarray(data.train[: total * cfg.train.batch_size]).astype(np.int64)
    dataset = [{"input_ids": torch.from_numpy(r)} for r in rows]
    times: list[float] = []

    class Clock(TrainerCallback):  # time from the end of the warm-up steps to the end of the last step
        def on_step_end(self, args, state, control, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            if state.global_step in (warmup, total):
                times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=cfg.train.batch_size, max_steps=total,
            learning_rate=cfg.train.lr, warmup_steps=cfg.train.warmup_steps, weight_decay=cfg.train.weight_decay,
            max_grad_norm=cfg.train.grad_clip, lr_scheduler_type="linear", save_strategy="no", report_to=[],
            logging_steps=10**9, disable_tqdm=True, dataloader_num_workers=0, seed=cfg.seed,
            bf16=precision == "bf16", use_cpu=device.type == "cpu",
        )
        collator = DataCollatorForLanguageModeling(data.tokenizer, mlm_probability=cfg.train.mask_prob)
        Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[Clock()]).train()
    return steps * cfg.train.batch_size * cfg.data.seq_len / (times[1] - times[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="ar32:1,ar32:4,ar64:6", help="family:layers, comma-separated")
    p.add_argument("--steps", type=int, default=0, help="timed steps per side (default: by size)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (both sides)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU (H100 bf16 dense: 989)")
    a = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = resolve_device(a.device)
    precision = resolve_precision(device)
    data = prepare_data(DataConfig(vocab_size=a.vocab_size, seq_len=a.seq_len))
    print(f"device={device} precision={precision} threads={torch.get_num_threads()} batch={a.batch_size} "
          f"seq={a.seq_len} vocab={data.vocab_size}")
    print(f"{'model':<14}{'N':>12}{'ours tok/s':>13}{'stock tok/s':>13}{'ratio':>8}{'target':>8}{'MFU':>8}")
    for item in a.sizes.split(","):
        fam, layers = item.split(":")
        spec = model_spec(fam, int(layers))
        steps = a.steps or (40 if spec.n_params < 1e5 else 16 if spec.n_params < 2e6 else 10)
        train = TrainConfig(batch_size=a.batch_size, lr=1e-3, warmup_steps=2, max_steps=steps + a.warmup)
        cfg = PretrainConfig(fam, int(layers), 0, DataConfig(vocab_size=a.vocab_size, seq_len=a.seq_len), train)
        ours_tps = ours(cfg, data, device, precision, steps, a.warmup)
        stock_tps = stock(cfg, data, device, precision, steps, a.warmup)
        flops = spec.train_flops_per_token(a.seq_len, data.vocab_size, head_fraction=cfg.train.mask_prob)
        mfu = f"{ours_tps * flops / (a.peak_tflops * 1e12):.1%}" if a.peak_tflops else "-"
        target = TARGETS.get(item)
        print(f"{spec.name:<14}{spec.n_params:>12,}{ours_tps:>13,.0f}{stock_tps:>13,.0f}"
              f"{ours_tps / stock_tps:>7.2f}x{f'{target}x' if target else '-':>8}{mfu:>8}", flush=True)


if __name__ == "__main__":
    main()
