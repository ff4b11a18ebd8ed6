"""The early-stopping rule, and the same rule replayed on a logged curve (torch-free).

    stopper = EarlyStopping(patience=300, min_delta=0.0)     # used by the training loop
    replay_early_stopping(steps, losses, patience=100)       # where it would have stopped, what it kept

The convergence notebook replays the rule on every logged curve with other patience and min-delta
values without retraining anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Stop once `patience` steps pass without an improvement of more than `min_delta`.

    `mode="min"` for losses, `"max"` for metrics. The best value and its step are kept."""

    patience: int
    min_delta: float = 0.0
    mode: str = "min"
    best: float = math.nan
    best_step: int = -1

    def update(self, step: int, value: float) -> bool:
        """Record an evaluation; True if it is a new best."""
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best_step < 0 or sign * (self.best - value) > self.min_delta:
            self.best, self.best_step = value, step
            return True
        return False

    def should_stop(self, step: int) -> bool:
        return self.best_step >= 0 and step - self.best_step >= self.patience


def replay_early_stopping(steps, values, patience: int, min_delta: float = 0.0, mode: str = "min") -> dict:
    """Replay the stopping rule on a logged curve: where it would have stopped and what it kept."""
    stopper = EarlyStopping(patience, min_delta, mode)
    stop_step = None
    for step, value in zip(steps, values):
        stopper.update(int(step), float(value))
        if stopper.should_stop(int(step)):
            stop_step = int(step)
            break
    return dict(stop_step=stop_step, best_step=stopper.best_step, best=stopper.best)
