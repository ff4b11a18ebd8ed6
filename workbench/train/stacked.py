"""Ensembles: runs of the same shape trained side by side as one stacked model.

    units = plan(jobs, exec_cfg)                      # lists of run specs that can train together
    losses = member_losses(models, batches, rngs)     # one stacked forward; each member's loss

The life cycle of an ensemble (claims, resume, summaries) is `workbench.runs.ensemble.run_ensemble`.

A scaling study trains the same shape again and again: the seeds of one size, the finetuning grid
of one size and task (LR x epochs x seeds). Alone, a model under 1M parameters cannot keep a CPU (or
a GPU) busy: every op is too small. Here the members' weights are stacked along a leading axis at
every step and one batched forward/backward (`torch.baddbmm`, batched attention) computes all their
losses at once; each member's gradient lands on its own parameters.

Everything else stays per member, through the same `workbench.train.loop.RunLoop` that trains a run
alone: its own AdamW and LR schedule, data order and masks (`batch_at`), dropout draws (its own
random state, `MemberRNG`, advanced exactly as the run alone would advance torch's), gradient
clipping, evaluation, early stopping, best checkpoint, resume checkpoint and run folder. A member
that stops drops out of the stack and costs nothing more. So a member's folder is the folder of
the run trained alone, and its curve matches that run's to float rounding (tested).

The batched forward re-implements the stock `transformers` BERT classes the workbench trains
(`BertForMaskedLM` with the masked-positions loss, `BertForSequenceClassification`,
`BertForMultipleChoice`, `BertForQuestionAnswering`) in their eager form; `FORWARDS` lists them.
Members may differ in seed, LR, epochs, warm-up, objective and patience; they share the shape, the
data and the batch size (`RunSpec.ensemble_key`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
import torch.nn.functional as F

from workbench.train.fast import ATTENTION, dropout

AUTO_MEMBERS = 8  # exec.ensemble=-1 on a GPU (on a CPU auto is off: no gain measured there)
GPU_MAX_PARAMS = 50_000_000  # above this one model fills a GPU: it trains alone
GPU_MEMORY_SHARE = 0.6  # share of free GPU memory an ensemble may plan for


# ---------------------------------------------------------------- planning


def plan(jobs: list, exec_cfg, device: torch.device | None = None, memory: bool = True) -> list[list]:
    """Split `jobs` into work units: ensembles of up to `members(exec_cfg, device)` runs with the same
    `ensemble_key()` (on a GPU, models up to GPU_MAX_PARAMS and no more members than its free memory
    holds unless `memory=False`), and single runs; largest models first."""
    from workbench.train.device import resolve_device

    device = device or resolve_device(exec_cfg.device)
    most = members(exec_cfg, device)
    if most < 2 or exec_cfg.compile or exec_cfg.micro_batch_size:
        return [[j] for j in sorted(jobs, key=lambda j: -j.n_params)]
    groups: dict[Any, list] = {}
    for j in jobs:
        key = j.ensemble_key() if device.type == "cpu" or j.n_params <= GPU_MAX_PARAMS else None
        groups.setdefault(key if key is not None else ("solo", j.run_id), []).append(j)
    units = []
    for group in groups.values():
        size = max_members(group[0], most, device) if memory else most
        units += [group[i:i + size] for i in range(0, len(group), size)]
    return sorted(units, key=lambda u: (-u[0].n_params, -len(u)))


def members(exec_cfg, device: torch.device) -> int:
    """The most members per ensemble: `exec.ensemble`, or for -1 (auto) 8 on a GPU and none on a
    CPU. On a 2-core CPU the stacked step measured 0.6-1.05x of the runs alone (the work is per
    element there, dropout draws and GEMMs, not per kernel launch; bigger stacked tensors also
    fall out of cache; measured before `workbench.train.fast` made the runs alone faster): the
    workers are the CPU's lever."""
    if exec_cfg.ensemble >= 0:
        return exec_cfg.ensemble
    return 0 if device.type == "cpu" else AUTO_MEMBERS


def max_members(job, most: int, device: torch.device) -> int:
    """`most`, and on a GPU no more than fit in its free memory (a rough per-member estimate:
    weights, gradients and AdamW state in fp32, plus activations)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_member = 16 * max(job.n_params, 1) * 4  # fp32 weights + grads + 2 Adam moments, x4 for activations
        most = min(most, int(free * GPU_MEMORY_SHARE // per_member))
    return max(1, most)


# ---------------------------------------------------------------- random state


class MemberRNG:
    """A member's own random state for dropout: swapped into torch's global generator for the
    member's draws, so they are the draws the run alone would make (CPU and CUDA alike)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def get_state(self) -> torch.Tensor:
        return self.cpu  # what a resume checkpoint holds (as for a run alone)

    def set_state(self, state: torch.Tensor) -> None:
        self.cpu = state

    @contextlib.contextmanager
    def active(self):
        saved = torch.get_rng_state()
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            saved_cuda = torch.cuda.get_rng_state(self.device)
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            yield
        finally:
            self.cpu = torch.get_rng_state()
            torch.set_rng_state(saved)
            if self.cuda is not None:
                self.cuda = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_cuda, self.device)


# ---------------------------------------------------------------- the stacked forward


def _get(module, path: str):
    for part in path.split("."):
        module = getattr(module, part)
    return module


class Stack:
    """The members' parameters stacked along a new leading axis (gradients flow back to each
    member's own parameters), read by module path: `S["bert.embeddings.word_embeddings.weight"]`."""

    def __init__(self, models: list):
        self.models, self.cache = models, {}

    def __getitem__(self, path: str) -> torch.Tensor:
        if path not in self.cache:
            tensors = [_get(m, path) for m in self.models]
            for other, t in self.cache.items():  # tied weights (decoder = word embeddings): stack once
                if _get(self.models[0], other) is tensors[0]:
                    self.cache[path] = t
                    return t
            self.cache[path] = torch.stack(tensors)
        return self.cache[path]


def _bcast(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """(M, H) -> (M, 1, ..., 1, H) for an activation with `ndim` dims."""
    return t.view(t.shape[0], *([1] * (ndim - 2)), t.shape[-1])


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (M, ..., in), w (M, out, in), b (M, out) -> (M, ..., out)."""
    m, shape = x.shape[0], x.shape
    flat = x.reshape(m, -1, shape[-1])
    y = torch.bmm(flat, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2))
    return y.view(*shape[:-1], w.shape[1])


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=eps) * _bcast(w, x.dim()) + _bcast(b, x.dim())


class _Dropout:
    """Dropout with each member's own draws, of the shape the member alone would draw (its own
    sequence length, before the ensemble's padding)."""

    def __init__(self, p: float, rngs: list[MemberRNG] | None, lengths: list[int] | None):
        self.p, self.rngs, self.lengths = p, rngs, lengths

    def __call__(self, x: torch.Tensor, time_dims: tuple[int, ...] = ()) -> torch.Tensor:
        if not self.rngs or self.p == 0:
            return x
        noise = torch.empty_like(x)
        for i, rng in enumerate(self.rngs):
            shape = list(x.shape[1:])
            for d in time_dims:
                shape[d] = self.lengths[i] if self.lengths else shape[d]
            with rng.active():
                if shape == list(x.shape[1:]):
                    _noise(noise[i], self.p)  # a contiguous slice: drawn in place, no copy
                else:  # drawn at the member's own shape, then padded (padding is masked anyway)
                    n = _noise(torch.empty(shape, dtype=x.dtype, device=x.device), self.p)
                    noise[i].fill_(1.0)
                    noise[i][tuple(slice(0, k) for k in shape)] = n
        return x * noise


def _noise(out: torch.Tensor, p: float) -> torch.Tensor:
    """The scaled keep-mask the run alone multiplies by, from the same draws: the run's own dropout
    (`workbench.train.fast.dropout`: `keep_mask` on a CPU, the fused kernel elsewhere) applied to ones."""
    return out.copy_(dropout(torch.ones_like(out), p))


def encoder(S: Stack, config, input_ids, token_type_ids, attention_mask, drop: _Dropout) -> torch.Tensor:
    """`BertModel(...).last_hidden_state` of every member at once: ids (M, B, T) -> (M, B, T, H)."""
    m, b, t = input_ids.shape
    e = "bert.embeddings."
    offsets = torch.arange(m, device=input_ids.device).view(m, 1, 1)
    word, types, pos = S[e + "word_embeddings.weight"], S[e + "token_type_embeddings.weight"], S[e + "position_embeddings.weight"]
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    x = word.reshape(-1, word.shape[-1])[input_ids + offsets * word.shape[1]]
    x = x + types.reshape(-1, types.shape[-1])[token_type_ids + offsets * types.shape[1]]
    x = x + pos[:, :t].unsqueeze(1)
    eps = config.layer_norm_eps
    x = drop(_layer_norm(x, S[e + "LayerNorm.weight"], S[e + "LayerNorm.bias"], eps), time_dims=(1,))
    mask = None
    if attention_mask is not None:
        mask = (1.0 - attention_mask[:, :, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    heads = config.num_attention_heads
    d = x.shape[-1] // heads
    for i in range(config.num_hidden_layers):
        p = f"bert.encoder.layer.{i}."
        a = p + "attention.self."
        q, k, v = (_linear(x, S[a + n + ".weight"], S[a + n + ".bias"]).view(m, b, t, heads, d).transpose(2, 3)
                   for n in ("query", "key", "value"))
        scores = torch.matmul(q, k.transpose(-1, -2)) * d ** -0.5
        if mask is not None:
            scores = scores + mask
        probs = drop(F.softmax(scores, dim=-1), time_dims=(2, 3))
        ctx = torch.matmul(probs, v).transpose(2, 3).reshape(m, b, t, heads * d)
        o = p + "attention.output."
        h = drop(_linear(ctx, S[o + "dense.weight"], S[o + "dense.bias"]), time_dims=(1,))
        x = _layer_norm(h + x, S[o + "LayerNorm.weight"], S[o + "LayerNorm.bias"], eps)
        h = F.gelu(_linear(x, S[p + "intermediate.dense.weight"], S[p + "intermediate.dense.bias"]))
        h = drop(_linear(h, S[p + "output.dense.weight"], S[p + "output.dense.bias"]), time_dims=(1,))
        x = _layer_norm(h + x, S[p + "output.LayerNorm.weight"], S[p + "output.LayerNorm.bias"], eps)
    return x


def _pad_stack(tensors: list[torch.Tensor], value=0) -> torch.Tensor:
    """Stack (B, T_i, ...) tensors padded along dim 1 to the longest T."""
    t = max(x.shape[1] for x in tensors)
    return torch.stack([F.pad(x, [0, 0] * (x.dim() - 2) + [0, t - x.shape[1]], value=value) for x in tensors])


def mlm_losses(S: Stack, config, batches: list, drop: _Dropout) -> list[torch.Tensor]:
    """`workbench.train.model.mlm_loss` of every member: the head on each member's masked positions."""
    ids = torch.stack([b.input_ids for b in batches])
    hidden = encoder(S, config, ids, None, None, drop)  # (M, B, T, H)
    m, k = len(batches), max(len(b.labels) for b in batches)
    flat = hidden.reshape(-1, hidden.shape[-1])
    index = torch.zeros(m, k, dtype=torch.long, device=flat.device)  # each member's masked positions, padded
    labels = torch.full((m, k), -100, dtype=torch.long, device=flat.device)  # padding is ignored by the loss
    per_member = ids[0].numel()
    for i, b in enumerate(batches):
        n = len(b.labels)
        index[i, :n] = b.positions.reshape(-1).nonzero().squeeze(1) + i * per_member
        labels[i, :n] = b.labels
    h = flat[index]  # (M, K, H): the head runs on masked positions only
    p = "cls.predictions."
    h = F.gelu(_linear(h, S[p + "transform.dense.weight"], S[p + "transform.dense.bias"]))
    h = _layer_norm(h, S[p + "transform.LayerNorm.weight"], S[p + "transform.LayerNorm.bias"], config.layer_norm_eps)
    logits = _linear(h, S[p + "decoder.weight"], S[p + "decoder.bias"]).float()
    losses = F.cross_entropy(logits.reshape(m * k, -1), labels.reshape(-1), reduction="none").view(m, k)
    counts = (labels >= 0).sum(1)
    return list((losses.sum(1) / counts).unbind())


def _padded_inputs(batches: list[dict]):
    lengths = [b["input_ids"].shape[-1] for b in batches]
    flat = [{k: v.reshape(-1, v.shape[-1]) for k, v in b.items() if k in ("input_ids", "token_type_ids", "attention_mask")}
            for b in batches]
    return lengths, (_pad_stack([f[k] for f in flat]) for k in ("input_ids", "token_type_ids", "attention_mask"))


def _pooled(S: Stack, config, batches: list[dict], drop: _Dropout) -> torch.Tensor:
    lengths, (ids, types, mask) = _padded_inputs(batches)
    hidden = encoder(S, config, ids, types, mask, drop)
    pooled = torch.tanh(_linear(hidden[:, :, 0], S["bert.pooler.dense.weight"], S["bert.pooler.dense.bias"]))
    return _linear(drop(pooled), S["classifier.weight"], S["classifier.bias"])  # (M, rows, C)


def classification_losses(S: Stack, config, batches: list[dict], drop: _Dropout) -> list[torch.Tensor]:
    """`BertForSequenceClassification(**batch).loss` (single-label) of every member."""
    logits = _pooled(S, config, batches, drop).float()
    return [F.cross_entropy(logits[i], b["labels"].view(-1)) for i, b in enumerate(batches)]


def multiple_choice_losses(S: Stack, config, batches: list[dict], drop: _Dropout) -> list[torch.Tensor]:
    """`BertForMultipleChoice(**batch).loss` of every member (choices flattened into rows)."""
    logits = _pooled(S, config, batches, drop).float()
    choices = batches[0]["input_ids"].shape[1]
    return [F.cross_entropy(logits[i].view(-1, choices), b["labels"]) for i, b in enumerate(batches)]


def span_losses(S: Stack, config, batches: list[dict], drop: _Dropout) -> list[torch.Tensor]:
    """`BertForQuestionAnswering(**batch).loss` of every member: start and end cross-entropy over
    each member's own positions (the ensemble's padding is masked out, answers past them ignored)."""
    lengths, (ids, types, mask) = _padded_inputs(batches)
    hidden = encoder(S, config, ids, types, mask, drop)
    logits = _linear(hidden, S["qa_outputs.weight"], S["qa_outputs.bias"]).float()  # (M, B, T, 2)
    out = []
    for i, b in enumerate(batches):
        t = lengths[i]
        start, end = logits[i, :, :t, 0], logits[i, :, :t, 1]
        s, e = b["start_positions"].clamp(0, t), b["end_positions"].clamp(0, t)
        out.append((F.cross_entropy(start, s, ignore_index=t) + F.cross_entropy(end, e, ignore_index=t)) / 2)
    return out


FORWARDS: dict[str, Callable] = {
    "BertForMaskedLM": mlm_losses,
    "BertForSequenceClassification": classification_losses,
    "BertForMultipleChoice": multiple_choice_losses,
    "BertForQuestionAnswering": span_losses,
}


def member_losses(models: list, batches: list, rngs: list[MemberRNG] | None, training: bool = True) -> list[torch.Tensor]:
    """The loss of each member on its batch, from one stacked forward (`FORWARDS`)."""
    name = type(models[0]).__name__
    config = models[0].config
    if config._attn_implementation not in ("eager", "sdpa", ATTENTION):
        raise NotImplementedError(f"ensembles replicate eager attention, not {config._attn_implementation}")
    p = config.hidden_dropout_prob
    if training and p != config.attention_probs_dropout_prob:
        raise NotImplementedError("ensembles need one dropout rate for hidden states and attention")
    # each member's own sequence length (finetuning batches are padded to a common one; MLM blocks are full)
    lengths = [b["input_ids"].shape[-1] for b in batches] if isinstance(batches[0], dict) else None
    drop = _Dropout(p if training else 0.0, rngs if training else None, lengths)
    return FORWARDS[name](Stack(models), config, batches, drop)


