"""MLM / PMI-masking pretraining of one model to convergence, recorded as one run folder.

    summary = pretrain(PretrainConfig(family="ar32", n_layers=2), root="runs")

Same recipe at every size: AdamW, linear warm-up then linear decay to the step horizon (or
constant), evaluation every `eval_interval` steps on a fixed held-out subset with fixed masks
(identical for every size and seed, so losses are paired), early stopping on eval loss with
patience (steps) and min-delta, best checkpoint kept in `best/`.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np
import torch

from workbench.config import ExecConfig, PretrainConfig, config_hash, to_dict
from workbench.data import PreparedData, prepare_data
from workbench.device import environment, peak_flops, place, resolve_device, resolve_precision
from workbench.family import model_spec
from workbench.masking import MaskedBatch, mlm_mask, step_generator
from workbench.pmi import pmi_mask
from workbench.model import build_mlm_model, mlm_loss, param_groups
from workbench.runs import CONFIG, ENV, SUMMARY, RunStore, write_json_atomic
from workbench.train import (CorruptCheckpointError, LoopConfig, make_schedule, remove_resume, reset_run,
                             save_best_checkpoint, train_loop)

log = logging.getLogger(__name__)
EVAL_MASK_SEED = 20220213  # one fixed set of eval masks for every run: losses are paired across sizes


def run_id(cfg: PretrainConfig) -> str:
    """Readable, unique id: what it is, then a hash of everything that defines it."""
    return f"pretrain-{cfg.family}-L{cfg.n_layers}-{cfg.train.objective}-s{cfg.seed}-{config_hash(cfg)}"


def pretrain(cfg: PretrainConfig, root: str | Path, exec_cfg: ExecConfig = ExecConfig(),
             data: PreparedData | None = None) -> dict:
    """Pretrain (or resume, or skip if finished) the run of `cfg` under `root`; returns its summary."""
    store, rid = RunStore(root), run_id(cfg)
    if store.is_finished(rid):
        return store.summary(rid)
    data = data or prepare_data(cfg.data)  # errors in the data surface before any folder exists
    device = resolve_device(exec_cfg.device)
    precision = resolve_precision(device, exec_cfg.precision)
    with store.claim(rid) as run_dir:
        if store.is_finished(rid):  # finished by another process between the check above and the claim
            return store.summary(rid)
        try:
            return _run(cfg, exec_cfg, data, run_dir, device, precision)
        except CorruptCheckpointError as e:
            log.warning("%s; restarting %s from scratch", e, rid)
            reset_run(run_dir)
            return _run(cfg, exec_cfg, data, run_dir, device, precision)


def _run(cfg: PretrainConfig, exec_cfg: ExecConfig, data: PreparedData, run_dir: Path,
         device: torch.device, precision: str) -> dict:
    spec, t, d = model_spec(cfg.family, cfg.n_layers), cfg.train, cfg.data
    vocab = data.vocab_size
    tokens_per_step = t.batch_size * d.seq_len
    flops_per_token = spec.train_flops_per_token(d.seq_len, vocab, head_fraction=t.mask_prob)
    model_info = dict(name=spec.name, n_layers=spec.n_layers, hidden=spec.hidden, n_heads=spec.n_heads,
                      n_params=spec.n_params, n_params_encoder=spec.n_params_encoder(),
                      n_params_total=spec.n_params_total(vocab, d.seq_len), vocab_size=vocab,
                      train_flops_per_token=flops_per_token)
    if not (run_dir / CONFIG).exists():
        write_json_atomic(run_dir / CONFIG, dict(kind="pretrain", run_id=run_dir.name, config=to_dict(cfg),
                                                 exec=to_dict(exec_cfg), model=model_info, data=data.meta))
    write_json_atomic(run_dir / ENV, environment(device, precision))

    model, optimizer, scheduler, batch_at = setup_pretraining(cfg, data, device)
    if exec_cfg.compile:
        model.bert.compile()  # in place: state_dict keys and save_pretrained stay as they are
    evaluate = _evaluator(data, cfg, model, device)

    def save_best() -> None:
        save_best_checkpoint(run_dir, model, data.tokenizer)

    peak = exec_cfg.peak_flops or peak_flops(device, precision)
    loop = LoopConfig(max_steps=t.max_steps, eval_interval=t.eval_interval, patience=t.patience,
                      min_delta=t.min_delta, grad_clip=t.grad_clip, monitor="eval_loss",
                      checkpoint_interval=exec_cfg.checkpoint_interval, tokens_per_step=tokens_per_step,
                      flops_per_step=flops_per_token * tokens_per_step, peak_flops=peak,
                      micro_batch_size=exec_cfg.micro_batch_size)
    wall0 = time.time()
    res = train_loop(model, optimizer, scheduler, batch_at, mlm_loss, evaluate, loop, run_dir, save_best,
                     device, precision, exec_cfg.progress, desc=spec.name)
    summary = dict(
        status=res.status, stop_reason=res.stop_reason, best_eval_loss=res.best, best_step=res.best_step,
        steps=res.steps, diverged_step=res.diverged_step, tokens=res.steps * tokens_per_step,
        tokens_at_best=max(res.best_step, 0) * tokens_per_step,
        flops=6 * spec.n_params * res.steps * tokens_per_step,  # C = 6 N D (paper)
        flops_model=flops_per_token * res.steps * tokens_per_step,  # with attention and MLM head
        train_time_s=round(res.train_time_s, 2), wall_time_s=round(time.time() - wall0, 2),
        tokens_per_s=round(res.steps * tokens_per_step / res.train_time_s, 1) if res.train_time_s else None,
        mfu=(round(flops_per_token * res.steps * tokens_per_step / res.train_time_s / peak, 5)
             if res.train_time_s and peak else None),
        micro_batch_size=exec_cfg.micro_batch_size or t.batch_size,
        n_params=spec.n_params, device=str(device), precision=precision,
    )
    write_json_atomic(run_dir / SUMMARY, summary)
    remove_resume(run_dir)
    log.info("%s: %s (%s) best eval loss %.4f at step %d of %d", run_dir.name, res.status, res.stop_reason,
             res.best, res.best_step, res.steps)
    return summary


def setup_pretraining(cfg: PretrainConfig, data: PreparedData, device: torch.device):
    """(model, optimizer, scheduler, batch_at) of a run: the pieces the loop (and benchmark) drive."""
    spec, t = model_spec(cfg.family, cfg.n_layers), cfg.train
    model = place(build_mlm_model(spec, data.vocab_size, cfg.data.seq_len, t.dropout, cfg.seed), device)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=t.adam_betas,
                                  fused=device.type == "cuda")
    scheduler = make_schedule(optimizer, t.schedule, t.warmup_steps, t.max_steps)
    return model, optimizer, scheduler, _batches(data, cfg, device)


def _batches(data: PreparedData, cfg: PretrainConfig, device: torch.device):
    """`batch_at(step)`: blocks in a per-epoch permutation seeded by (seed, epoch), masks by (seed, step)."""
    train = torch.from_numpy(np.asarray(data.train).astype(np.int64))
    n, bs, t = len(train), cfg.train.batch_size, cfg.train
    specials, mask_id = list(data.special_ids.values()), data.special_ids["[MASK]"]
    units = torch.from_numpy(_pmi_units(data, t).train) if t.objective == "pmi" else None

    @functools.lru_cache(maxsize=2)
    def order(epoch: int) -> torch.Tensor:
        return torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))

    def batch_at(step: int) -> MaskedBatch:
        idx = torch.arange(step * bs, (step + 1) * bs)  # global sample indices of this step
        epochs = idx // n
        rows = torch.cat([order(int(e))[idx[epochs == e] % n] for e in epochs.unique()])
        gen = step_generator(cfg.seed, step)
        if units is None:
            b = mlm_mask(train[rows], t.mask_prob, data.vocab_size, specials, mask_id, gen)
        else:
            b = pmi_mask(train[rows], units[rows], t.mask_prob, data.vocab_size, specials, mask_id, gen)
        return b.to(device)

    return batch_at


def _pmi_units(data: PreparedData, t):
    from workbench.pmi import pmi_units

    return pmi_units(data, t.pmi_min_count, t.pmi_ngrams)


def _evaluator(data: PreparedData, cfg: PretrainConfig, model, device: torch.device):
    """Mean masked-token loss on the fixed held-out subset with fixed masks.

    `eval_loss` (early stopping, fits) always uses random-token MLM masks, so every objective is
    measured on the same task and losses compare across objectives; PMI runs also log
    `eval_pmi_loss` on fixed PMI-unit masks of the same blocks."""
    t = cfg.train
    idx = data.eval_subset_index(cfg.data.eval_blocks)
    blocks = torch.from_numpy(np.asarray(data.eval[idx]).astype(np.int64))
    specials, mask_id = list(data.special_ids.values()), data.special_ids["[MASK]"]
    masks = dict(eval_loss=mlm_mask(blocks, t.mask_prob, data.vocab_size, specials, mask_id,
                                    torch.Generator().manual_seed(EVAL_MASK_SEED)))
    if t.objective == "pmi":
        units = torch.from_numpy(_pmi_units(data, t).eval[idx])
        masks["eval_pmi_loss"] = pmi_mask(blocks, units, t.mask_prob, data.vocab_size, specials, mask_id,
                                          torch.Generator().manual_seed(EVAL_MASK_SEED))
    chunk = max(1, t.batch_size * 2)

    def masked_loss(fixed: MaskedBatch) -> float:
        total, count = 0.0, 0
        for i in range(0, len(blocks), chunk):
            b = fixed.rows(i, min(i + chunk, len(blocks)))
            total += float(mlm_loss(model, b.to(device))) * len(b.labels)
            count += len(b.labels)
        return total / count

    def evaluate() -> dict:
        return {name: masked_loss(fixed) for name, fixed in masks.items()}

    return evaluate
