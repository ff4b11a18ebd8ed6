"""A faster training step on a CPU with the same model, the same losses and the same recipe.

    model = place(model, torch.device("cpu"))      # calls fast_cpu(model) on a CPU
    keep = keep_mask((32, 4, 64, 64), 0.1)         # uint8 0/1, 1 where an element is kept
    loss = cross_entropy(logits, labels)           # F.cross_entropy, one (M, V) pass less

A small BERT's step on a CPU spends its time where a GPU's does not (profiled at AR16 L1-4, one
thread; `benchmarks/cpu_step.py` measures the whole step against the stock one):

- **Dropout's draws.** `F.dropout` draws one Bernoulli variate per element (`bernoulli_`, a
  double each): 21-31% of the step, most of it on the attention probabilities (B x heads x T x T).
  `keep_mask` gives four elements their 16-bit uniforms from one 64-bit draw of torch's own
  generator (`random_` over the full int64 range, viewed as int16) and drops an element whose
  uniform falls below `round(p * 2^16)`: P(drop) = p to within 2^-17 (0.1 becomes 0.1000061). The
  draws come from torch's global generator as `F.dropout`'s do, so seeding, resume checkpoints and
  an ensemble member's own random state (`stacked.MemberRNG`) work as before; the streams differ
  from `F.dropout`'s, so a run does not repeat, draw for draw, one trained before this module.
  The mask is uint8: a float tensor times uint8 takes torch's vectorised path, times bool a
  casting loop about 7x slower.
- **Narrow matrix products.** Attention heads of width 4-12 make products whose output is 4-12
  columns wide (probabilities x values; the gradients of queries and keys), which CPU GEMMs run
  at a fraction of their speed: 0.51 ms for (128, 64, 64) x (128, 64, 4) against 0.11 ms for the
  same product computed transposed. `matmul` computes each product, forward and backward, in
  the orientation whose output is the wider one.
- **The attention around them** (`attention`, registered as ATTENTION in transformers'
  `AttentionInterface`): BERT's eager attention with 1/sqrt(d) on the queries and dropout's
  1/(1-p) on the output (B x heads x T x d, not T x T).
- **The MLM loss** (`cross_entropy`): the gradient is softmax minus the one-hot labels, written
  straight into one (M, V) tensor instead of a zero-filled one scattered into and carried through
  `log_softmax`'s backward.

On a GPU nothing changes (`F.dropout`'s fused kernel, SDPA and `F.cross_entropy` are fast there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION = "workbench_cpu"  # the attention implementation `fast_cpu` sets
_LOW = -(2**15)


def keep_mask(shape, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 keep-mask of `shape`: each element 1 with probability 1 - p (to within 2^-17), from
    ceil(n / 4) 64-bit draws of torch's global generator (on `device`)."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = _LOW + min(round(p * 2**16), 2**16 - 1)  # an int16 (p within 2^-17 of 1 drops all but 2^-16)
    return (words.view(torch.int16)[:n].view(shape) >= threshold).view(torch.uint8)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` with `keep_mask`'s draws on a CPU; `F.dropout` elsewhere."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0.0 < p < 1.0 or torch.compiler.is_compiling():
        return F.dropout(x, p, training)  # a compiled model draws with inductor's own generator
    return torch.mul(x, keep_mask(x.shape, p)).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """`nn.Dropout` drawing its masks with `keep_mask` on a CPU (no state: checkpoints are unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


NARROW = 16  # products with fewer columns than this (and than rows) are computed transposed


def _oriented(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b, computed as (b^T a^T)^T when the product has fewer than NARROW columns and fewer
    columns than rows (measured at (128, 64, 64) x (128, 64, d): 4.6x faster at d = 4, 3.7x at 8,
    1.7x at 12, even at 16, where the transposes' copies make it a loss)."""
    if b.shape[-1] < min(a.shape[-2], NARROW):
        return torch.matmul(b.transpose(-1, -2), a.transpose(-1, -2)).transpose(-1, -2)
    return torch.matmul(a, b)


class _Matmul(torch.autograd.Function):
    """`torch.matmul` of same-shaped batches whose three products (forward, both gradients) each run
    in their wider orientation. Under CPU autocast (bf16) the backward runs under the forward's
    autocast state, so its products cast mixed inputs as the forward's did."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _oriented(a, b)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = _oriented(grad, b.transpose(-1, -2)) if ctx.needs_input_grad[0] else None
        grad_b = _oriented(a.transpose(-1, -2), grad) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`torch.matmul(a, b)` for batches of equal batch shape, each product in its faster orientation."""
    return _Matmul.apply(a, b)


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0, **kwargs):
    """transformers' `eager_attention_forward`: (B, heads, T, d) -> ((B, T, heads, d), probabilities),
    with the scaling on the queries, `keep_mask` dropout on the probabilities, its 1/(1-p) on the
    output, and every product in its faster orientation. (`dropout` is the rate: transformers
    passes it by that name. The probabilities returned are those before dropout; transformers
    only returns them for "eager", which a placed model is not.)"""
    if query.device.type != "cpu" or torch.compiler.is_compiling():
        from transformers.models.bert.modeling_bert import eager_attention_forward

        return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = matmul(query * scaling, key.transpose(2, 3))
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1)
    if dropout > 0.0 and module.training:
        out = matmul(probs * keep_mask(probs.shape, dropout), value) * (1.0 / (1.0 - dropout))
    else:
        out = matmul(probs, value)
    return out.transpose(1, 2).contiguous(), probs


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels):
        ctx.save_for_backward(logits, labels)
        return -torch.log_softmax(logits, -1).gather(1, labels[:, None]).mean()

    @staticmethod
    def backward(ctx, grad):
        logits, labels = ctx.saved_tensors
        out = torch.softmax(logits, -1)
        out[torch.arange(len(labels), device=labels.device), labels] -= 1.0
        return out.mul_(grad / len(labels)), None


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`F.cross_entropy(logits, labels)` (mean over rows, every label a class index) with a cheaper
    backward on a CPU; `F.cross_entropy` elsewhere."""
    if logits.device.type != "cpu" or logits.dtype != torch.float32 or not len(labels):
        return F.cross_entropy(logits, labels)
    return _CrossEntropy.apply(logits, labels)


def fast_cpu(model: nn.Module) -> nn.Module:
    """`model` (a transformers BERT) with every `nn.Dropout` a `Dropout` and its attention
    `attention`; in place, and returned. Parameters, state dicts, the config `save_pretrained`
    writes and outputs in eval mode are those of the stock model (to float rounding). The
    attention is set on `model.config`: another model sharing that config object switches too."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import eager_mask

    AttentionInterface.register(ATTENTION, attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)  # unregistered, transformers passes no padding mask
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace).train(child.training))
    model.set_attn_implementation(ATTENTION)
    return model
