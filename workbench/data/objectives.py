"""Pretraining objectives: how training batches are masked, and which extra losses are evaluated.

    objective = get(OBJECTIVES, "mlm")()        # registry.OBJECTIVES names every objective
    mask = objective.train_masker(data, train_cfg)
    batch = mask(blocks, rows, generator)        # a MaskedBatch for blocks = data.train[rows]

`eval_loss` (early stopping, every fit) is always the random-token MLM loss on one fixed set of
masks, so losses compare across objectives; an objective may add its own eval losses
(`eval_masks`, e.g. PMI-masking's `eval_pmi_loss`). A new objective is one file with a class like
`MLM` plus one line in `registry.OBJECTIVES`.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from workbench.data.masking import MaskedBatch, mlm_mask

Masker = Callable[[torch.Tensor, torch.Tensor, torch.Generator], MaskedBatch]


class Objective(Protocol):
    name: str

    def train_masker(self, data, train_cfg) -> Masker:
        """`mask(blocks, rows, generator)`: the masked batch of `blocks` (rows `rows` of data.train)."""

    def eval_masks(self, data, train_cfg, index, blocks: torch.Tensor, seed: int) -> dict[str, MaskedBatch]:
        """Extra fixed eval masks {loss name: batch} of the held-out `blocks` (rows `index` of data.eval)."""


def special_ids(data) -> tuple[list[int], int]:
    """(ids never masked, the [MASK] id) of prepared data."""
    return list(data.special_ids.values()), data.special_ids["[MASK]"]


class MLM:
    """BERT's masked language modelling: random tokens, 80% [MASK] / 10% random / 10% kept."""

    name = "mlm"

    def train_masker(self, data, train_cfg) -> Masker:
        specials, mask_id = special_ids(data)
        return lambda blocks, rows, gen: mlm_mask(blocks, train_cfg.mask_prob, data.vocab_size, specials, mask_id, gen)

    def eval_masks(self, data, train_cfg, index, blocks, seed) -> dict[str, MaskedBatch]:
        return {}  # eval_loss is already the MLM loss
