"""MLM / PMI-masking pretraining of one model to convergence, as a run spec.

    summary = pretrain(PretrainConfig(family="ar32", n_layers=2), root="runs")
    spec = PretrainSpec(cfg)          # what executors run: run_once(spec, root, exec_cfg)

Same recipe at every size: AdamW, linear warm-up then linear decay to the step horizon (or
constant), evaluation every `eval_interval` steps on a fixed held-out subset with fixed masks
(identical for every size and seed, so losses are paired), early stopping on eval loss with
patience (steps) and min-delta, best checkpoint kept in `best/`. The run's life (skip, claim,
resume, config, summary) is `workbench.runs.lifecycle.run_once`; this module supplies the training.

How one step reads: `batch_at(step)` picks the rows of the step's per-epoch permutation and masks
them with the objective's masker seeded by (seed, step) -> `train_loop` does forward/backward on the
masked positions only (`model.mlm_loss`) -> every `eval_interval` steps `evaluate()` measures the fixed
held-out masks and early stopping decides.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch

from workbench.base import registry
from workbench.base.convergence import summarize_run
from workbench.base.errors import WorkbenchError
from workbench.base.family import model_spec
from workbench.base.runfiles import read_metrics
from workbench.base.seeds import epoch_seed
from workbench.config import ExecConfig, PretrainConfig, config_hash, to_dict
from workbench.data.corpus import fingerprint
from workbench.data.floor import eval_loss_floor
from workbench.data.masking import MaskedBatch, mlm_mask, step_generator
from workbench.data.objectives import special_ids
from workbench.data.prepared import PreparedData, prepare_data
from workbench.runs.lifecycle import SpecBase, run_once
from workbench.train.device import place
from workbench.train.loop import LoopConfig, LoopResult, Setup, make_schedule, save_best_checkpoint
from workbench.train.model import adamw, build_mlm_model, mlm_loss

EVAL_MASK_SEED = 20220213  # one fixed set of eval masks for every run: losses are paired across sizes


def run_id(cfg: PretrainConfig) -> str:
    """Readable, unique id: what it is, then a hash of everything that defines it: the config and
    the corpus content (`corpus.fingerprint`), so editing a `files:` corpus makes new runs."""
    ident = (cfg, fingerprint(cfg.data.corpus, cfg.data.max_documents))
    return f"pretrain-{cfg.family}-L{cfg.n_layers}-{cfg.train.objective}-s{cfg.seed}-{config_hash(ident)}"


@dataclass(frozen=True)
class PretrainSpec(SpecBase):
    """One pretraining run for `workbench.runs.lifecycle.run_once` (and the executors)."""

    cfg: PretrainConfig
    data: PreparedData | None = field(default=None, compare=False, repr=False)  # already prepared, to reuse
    tokenizer_sha256: str | None = field(default=None, compare=False)  # the sweep's tokenizer: others are refused
    then: Callable[..., dict] | None = field(default=None, compare=False)  # done where it trained (`after`)
    kind: ClassVar[str] = "pretrain"
    make_id = staticmethod(run_id)

    @property
    def n_params(self) -> int:
        return model_spec(self.cfg.family, self.cfg.n_layers).n_params

    def prepare(self) -> PreparedData:
        """The prepared data, checked against the tokenizer the sweep started with: a data cache
        deleted or rebuilt under a running sweep must not put runs of two tokenizers in one study."""
        data = self.data or prepare_data(self.cfg.data)
        found = data.meta.get("tokenizer_sha256")
        if self.tokenizer_sha256 and found != self.tokenizer_sha256:
            raise WorkbenchError(f"the prepared data at {data.path} has tokenizer {str(found)[:12]}, the sweep "
                                 f"started on {self.tokenizer_sha256[:12]} (the data cache was rebuilt under the "
                                 f"sweep, or this host prepared its own: give every node one WORKBENCH_DATA_DIR); "
                                 f"{self.run_id} is not trained on it. Restore the cache, or move the sweep's runs out "
                                 f"of the store and start again")
        return data

    def record(self, data: PreparedData) -> dict:
        cfg, spec = self.cfg, model_spec(self.cfg.family, self.cfg.n_layers)
        vocab, seq = data.vocab_size, cfg.data.seq_len
        model = dict(name=spec.name, n_layers=spec.n_layers, hidden=spec.hidden, n_heads=spec.n_heads,
                     n_params=spec.n_params, n_params_encoder=spec.n_params_encoder(),
                     n_params_total=spec.n_params_total(vocab, seq), vocab_size=vocab,
                     train_flops_per_token=spec.train_flops_per_token(seq, vocab, head_fraction=cfg.train.mask_prob))
        return dict(config=to_dict(cfg), model=model, data=data.meta)

    def after(self, root, exec_cfg: ExecConfig, summary: dict) -> dict:
        """`then(root, run_id, exec_cfg, summary)` when set (a certificate:
        `workbench.runs.certify.CertifyAfter`), in the worker that trained the run; else the summary."""
        return self.then(root, self.run_id, exec_cfg, summary) if self.then else summary

    def ensemble_key(self):
        """Seeds (and LRs, objectives, schedules) of one size on one corpus train together."""
        c = self.cfg
        return ("pretrain", c.family, c.n_layers, config_hash(c.data), c.train.batch_size, c.train.dropout)

    def setup(self, data: PreparedData, run_dir: Path, ctx) -> Setup:
        cfg, t, d = self.cfg, self.cfg.train, self.cfg.data
        spec = model_spec(cfg.family, cfg.n_layers)
        tokens_per_step = t.batch_size * d.seq_len
        flops_per_token = spec.train_flops_per_token(d.seq_len, data.vocab_size, head_fraction=t.mask_prob)
        model, optimizer, scheduler, batch_at = setup_pretraining(cfg, data, ctx.device)
        if ctx.exec.compile:
            # a worker trains run after run: past dynamo's recompile limit a new model would run eager, unseen
            torch._dynamo.reset()
            model.bert.compile()  # in place: state_dict keys and save_pretrained stay as they are
        loop = LoopConfig(max_steps=t.max_steps, eval_interval=t.eval_interval, patience=t.patience,
                          min_delta=t.min_delta, grad_clip=t.grad_clip, monitor="eval_loss",
                          checkpoint_interval=ctx.exec.checkpoint_interval, tokens_per_step=tokens_per_step,
                          flops_per_step=flops_per_token * tokens_per_step, peak_flops=ctx.peak_flops,
                          micro_batch_size=ctx.exec.micro_batch_size, keep_stop_state=True)
        return Setup(model, optimizer, scheduler, batch_at, mlm_loss, _evaluator(data, cfg, model, ctx.device), loop,
                     lambda: save_best_checkpoint(run_dir, model, data.tokenizer), desc=spec.name, run_dir=Path(run_dir))

    def summarize(self, data: PreparedData, s: Setup, res: LoopResult, ctx, wall_time_s: float) -> dict:
        cfg, t = self.cfg, self.cfg.train
        spec = model_spec(cfg.family, cfg.n_layers)
        tokens_per_step = s.loop.tokens_per_step
        flops_per_token = s.loop.flops_per_step / tokens_per_step
        tokens = res.steps * tokens_per_step
        train_tokens = int(np.prod(data.train.shape))  # blocks x block length: one pass over the training data
        return dict(
            status=res.status, stop_reason=res.stop_reason, best_eval_loss=res.best, best_step=res.best_step,
            steps=res.steps, diverged_step=res.diverged_step, tokens=tokens,
            tokens_at_best=max(res.best_step, 0) * tokens_per_step,
            # passes over the training data, in all and up to the best step: a run that needs many
            # repeats its data, and its law is of this corpus's size as much as of N
            train_tokens=train_tokens, passes=round(tokens / train_tokens, 3),
            passes_at_best=round(max(res.best_step, 0) * tokens_per_step / train_tokens, 3),
            flops=6 * spec.n_params * tokens,  # C = 6 N D (paper)
            flops_model=flops_per_token * tokens,  # with attention and MLM head
            train_time_s=round(res.train_time_s, 2), wall_time_s=round(wall_time_s, 2),
            tokens_per_s=round(tokens / res.train_time_s, 1) if res.train_time_s else None,
            mfu=(round(flops_per_token * tokens / res.train_time_s / ctx.peak_flops, 5)
                 if res.train_time_s and ctx.peak_flops else None),
            micro_batch_size=ctx.exec.micro_batch_size or t.batch_size,
            n_params=spec.n_params, device=str(ctx.device), precision=ctx.precision,
            # the Bayes eval_loss, no model beats it in expectation, where the corpus knows it (a generated language)
            eval_loss_floor=eval_loss_floor(data, eval_batch(data, cfg)[2], t.mask_prob),
            # converged (bool) and why, the LR at the best step, and a forecast of the converged loss
            **summarize_run(read_metrics(s.run_dir), res.stop_reason, res.best_step, res.steps, t.lr, res.status),
        )


def pretrain(cfg: PretrainConfig, root: str | Path, exec_cfg: ExecConfig = ExecConfig(),
             data: PreparedData | None = None) -> dict:
    """Pretrain (or resume, or skip if finished) the run of `cfg` under `root`; returns its summary."""
    return run_once(PretrainSpec(cfg, data), root, exec_cfg)


def setup_pretraining(cfg: PretrainConfig, data: PreparedData, device: torch.device):
    """(model, optimizer, scheduler, batch_at) of a run: the pieces the loop (and benchmark) drive."""
    spec, t = model_spec(cfg.family, cfg.n_layers), cfg.train
    model = place(build_mlm_model(spec, data.vocab_size, cfg.data.seq_len, t.dropout, cfg.seed), device)
    optimizer = adamw(model, device, t.lr, t.weight_decay, betas=t.adam_betas)
    scheduler = make_schedule(optimizer, t.schedule, t.warmup_steps, t.max_steps)
    return model, optimizer, scheduler, _batches(data, cfg, device)


def _batches(data: PreparedData, cfg: PretrainConfig, device: torch.device):
    """`batch_at(step)`: blocks in a per-epoch permutation seeded by (seed, epoch), masks by (seed, step)."""
    train = torch.from_numpy(np.asarray(data.train).astype(np.int64))
    n, bs = len(train), cfg.train.batch_size
    mask = registry.get(registry.OBJECTIVES, cfg.train.objective)().train_masker(data, cfg.train)

    @functools.lru_cache(maxsize=2)
    def order(epoch: int) -> torch.Tensor:
        return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch)))

    def batch_at(step: int) -> MaskedBatch:
        idx = torch.arange(step * bs, (step + 1) * bs)  # global sample indices of this step
        epochs = idx // n
        rows = torch.cat([order(int(e))[idx[epochs == e] % n] for e in epochs.unique()])
        return mask(train[rows], rows, step_generator(cfg.seed, step)).to(device)

    return batch_at


def eval_batch(data: PreparedData, cfg: PretrainConfig) -> tuple[np.ndarray, torch.Tensor, MaskedBatch]:
    """(indices, blocks, masked batch) of the fixed held-out subset `eval_loss` is measured on."""
    idx = data.eval_subset_index(cfg.data.eval_blocks)
    blocks = torch.from_numpy(np.asarray(data.eval[idx]).astype(np.int64))
    specials, mask_id = special_ids(data)
    return idx, blocks, mlm_mask(blocks, cfg.train.mask_prob, data.vocab_size, specials, mask_id,
                                 torch.Generator().manual_seed(EVAL_MASK_SEED))


def _evaluator(data: PreparedData, cfg: PretrainConfig, model, device: torch.device):
    """Mean masked-token loss on the fixed held-out subset with fixed masks.

    `eval_loss` (early stopping, fits) always uses random-token MLM masks, so every objective is
    measured on the same task and losses compare across objectives; an objective may add its own
    (PMI runs log `eval_pmi_loss` on fixed PMI-unit masks of the same blocks)."""
    t = cfg.train
    idx, blocks, fixed = eval_batch(data, cfg)
    masks = dict(eval_loss=fixed)
    objective = registry.get(registry.OBJECTIVES, t.objective)()
    masks.update(objective.eval_masks(data, t, idx, blocks, EVAL_MASK_SEED))
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
