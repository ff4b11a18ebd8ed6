"""BERT-style encoders from the family table, and the MLM loss on masked positions only.

    model = build_mlm_model(model_spec("ar32", 2), vocab_size=8192, seq_len=128, dropout=0.1, seed=0)
    loss = mlm_loss(model, batch)            # head runs on the ~15% masked positions only

Models are stock `transformers.BertForMaskedLM`, so checkpoints load with `from_pretrained` and
finetune with the matching HF heads. Only the loss is ours: the encoder runs on every position, the
vocabulary-sized head (the dominant cost of small models) on the masked ones.
"""

from __future__ import annotations

import torch

from workbench.base.family import ModelSpec
from workbench.data.masking import MaskedBatch
from workbench.train.fast import cross_entropy


def build_mlm_model(spec: ModelSpec, vocab_size: int, seq_len: int, dropout: float, seed: int):
    """A freshly initialised `BertForMaskedLM` (init range 0.02) seeded by `seed`."""
    from transformers import BertForMaskedLM

    from workbench.train.device import seeded

    with seeded(seed):  # the caller's random state is left as it was
        return BertForMaskedLM(spec.bert_config(vocab_size, seq_len, dropout))


def mlm_loss(model, batch: MaskedBatch) -> torch.Tensor:
    """Mean cross-entropy over masked positions; no attention mask (blocks are full, no padding)."""
    hidden = model.bert(input_ids=batch.input_ids).last_hidden_state  # (B, T, H)
    logits = model.cls(hidden[batch.positions])  # (M, V): head on masked positions only
    return cross_entropy(logits.float(), batch.labels)  # F.cross_entropy, cheaper on a CPU


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on biases and LayerNorm weights (BERT's recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def adamw(model, device: torch.device, lr: float, weight_decay: float, **kwargs) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused (one kernel for all parameters) on a CPU or GPU: on a CPU
    4x faster than the per-tensor loop (0.52 ms against 2.3 ms a step at AR16 L4), the same update
    to float rounding."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, fused=device.type in ("cpu", "cuda"), **kwargs)
