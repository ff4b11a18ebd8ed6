"""The named ways a run's seed becomes the seed of one random stream, so the data order, the masks
and the dropout of a run are reproducible and a resumed run draws what it would have drawn.

    rng = np.random.default_rng(epoch_seed(cfg.seed, epoch))   # the data order of one epoch
    gen = torch.Generator().manual_seed(step_seed(seed, step, stream))   # the masks of one step
"""

from __future__ import annotations

EPOCH_MIX = 100_003  # a prime above any epoch count: (seed, epoch) pairs never share a seed
STEP_MIX = 1_000_003  # a prime above any step count: (seed, step) pairs never share a seed
STREAMS = 7  # independent streams per step (objectives draw from stream 0, 1, ...)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of the data order of `epoch` in a run seeded `seed`."""
    return seed * EPOCH_MIX + epoch


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """The seed of random stream `stream` (< STREAMS) at `step` of a run seeded `seed`."""
    return (seed * STEP_MIX + step) * STREAMS + stream
