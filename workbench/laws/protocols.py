"""Backtest protocols as data: which models are held out, what of them is the target, and what the
law is fitted on.

    backtest(table, fit, protocol="hitchhiker")           # a named preset
    backtest(table, fit, protocol=Protocol(n_held_out=2, target="final"))

`PROTOCOLS` names the presets: `largest` (the workbench's default: the largest size held out, its
runs' best checkpoints the target, every smaller size fitted), `paper` (Ivgi et al. 2022: fit
L1-6, predict L7-8, i.e. the two largest sizes held out) and `hitchhiker` (Choshen et al. 2024, "A
Hitchhiker's Guide to Scaling Law Estimation": the largest model held out and scored over the last
30% of its training tokens, checkpoint by checkpoint; for a law of tokens the first 10% of every
training run's tokens dropped, a share where the paper cuts a fixed token count). A new
protocol is one `Protocol(...)` and, to name it, one line in `PROTOCOLS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.base.errors import FitError

HOLDOUTS = ("largest", "compute")  # by N, or by the compute of its longest run (6 N D)
TARGETS = ("best", "final", "last_fraction")


@dataclass(frozen=True)
class Protocol:
    """One way to backtest a law on a ladder (per variant, i.e. per model family)."""

    name: str = "custom"
    holdout: str = "largest"  # which sizes are held out: the largest by N, or by compute (N x final tokens)
    n_held_out: int = 1  # how many sizes are held out (each scored, then averaged)
    target: str = "best"  # per held-out run: its best checkpoint, its final one, or its last_fraction of tokens
    target_fraction: float = 0.3  # last_fraction: the share of the run's tokens (or steps) scored
    train_models: int = 0  # fit on the k smallest sizes only; 0 = every size not held out
    train_fraction: float = 1.0  # fit on the first share of each training run's tokens (or steps)
    drop_fraction: float = 0.1  # the first share of each training run's checkpoints left out (warm-up)

    def __post_init__(self) -> None:
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise FitError(f"protocol {self.name}: {msg}")

        check(self.holdout in HOLDOUTS, f"holdout must be one of {', '.join(HOLDOUTS)}, got {self.holdout!r}")
        check(self.target in TARGETS, f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        check(self.n_held_out >= 1, f"n_held_out must be >= 1, got {self.n_held_out}")
        check(0 < self.target_fraction <= 1, f"target_fraction must be in (0, 1], got {self.target_fraction}")
        check(self.train_models >= 0, f"train_models must be >= 0 (0 = all), got {self.train_models}")
        check(0 < self.train_fraction <= 1, f"train_fraction must be in (0, 1], got {self.train_fraction}")
        check(0 <= self.drop_fraction < 1, f"drop_fraction must be in [0, 1), got {self.drop_fraction}")


PROTOCOLS = {
    "largest": Protocol(name="largest"),
    "paper": Protocol(name="paper", n_held_out=2),
    "hitchhiker": Protocol(name="hitchhiker", target="last_fraction", target_fraction=0.3, drop_fraction=0.1),
}


def get_protocol(protocol: "str | Protocol | None") -> Protocol:
    """A `Protocol`, or the preset of that name (`PROTOCOLS`); None is `largest`."""
    if protocol is None:
        return PROTOCOLS["largest"]
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise FitError(f"unknown backtest protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}, or a Protocol")
    return PROTOCOLS[protocol]
