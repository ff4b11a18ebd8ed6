"""MLM masking: choose positions to predict and corrupt them 80/10/10, vectorised.

    batch = mlm_mask(blocks, mask_prob=0.15, vocab_size=8192, special_ids=[0, 1, 2, 3, 4],
                     mask_id=4, generator=torch.Generator().manual_seed(0))
    batch.input_ids   # (B, T) corrupted input
    batch.positions   # (B, T) bool, True where the loss is taken
    batch.labels      # (M,) original ids at those positions, M = positions.sum()

Returning the positions (not a -100-filled label matrix) lets the model run its vocabulary-sized
head on the M masked positions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.base.errors import WorkbenchError
from workbench.base.seeds import step_seed


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor

    def rows(self, i: int, j: int) -> "MaskedBatch":
        """Sequences i..j-1 with their labels (labels are in row order)."""
        per_row = self.positions.sum(1)
        a, b = int(per_row[:i].sum()), int(per_row[:j].sum())
        return MaskedBatch(self.input_ids[i:j], self.positions[i:j], self.labels[a:b])

    def to(self, device: torch.device) -> "MaskedBatch":
        nb = device.type == "cuda"
        return MaskedBatch(*(t.to(device, non_blocking=nb) for t in (self.input_ids, self.positions, self.labels)))


def mlm_mask(blocks: torch.Tensor, mask_prob: float, vocab_size: int, special_ids, mask_id: int,
             generator: torch.Generator) -> MaskedBatch:
    """Select each non-special token with probability `mask_prob`; of those 80% -> [MASK],
    10% -> a random token, 10% unchanged (BERT). At least one position per batch is selected."""
    ids = blocks.long()
    maskable = ~torch.isin(ids, torch.as_tensor(list(special_ids), dtype=torch.long))
    u = torch.rand(ids.shape, generator=generator)
    positions = (u < mask_prob) & maskable
    if not maskable.any():
        raise WorkbenchError("mlm_mask: the batch has no maskable token (every token is special): "
                         "the blocks hold no text; check the corpus and the tokenizer")
    if not positions.any():  # degenerate tiny batch: take the first maskable token
        positions.view(-1)[maskable.view(-1).nonzero()[0]] = True
    labels = ids[positions]
    corrupted = ids.clone()
    r = torch.rand(labels.shape, generator=generator)
    random_tokens = torch.randint(vocab_size, labels.shape, generator=generator)
    corrupted[positions] = torch.where(r < 0.8, torch.full_like(labels, mask_id),
                                       torch.where(r < 0.9, random_tokens, labels))
    return MaskedBatch(corrupted, positions, labels)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """An independent, reproducible generator for (seed, step): resuming replays the same masks."""
    return torch.Generator().manual_seed(step_seed(seed, step, stream))
