"""Is a run converged? The verdict every pretraining summary carries, and a forecast of where its
curve is going (torch-free).

    converged, why = verdict("early_stopped", best_step=4200, steps=4500, lr_at_best=1e-3, peak_lr=1e-3)
    f = forecast(steps, losses, lrs)      # Forecast(loss, low, high, steps_needed, n_points) or None

The paper's lesson: laws appear only over runs trained to convergence, and a decaying learning rate
gives the appearance of convergence. So a run is converged only when early stopping fired (the
patience elapsed without improvement) *and* its best evaluation came while the LR was at least half
its peak. A stop at the step horizon (its best is then at or near the last evaluation) or a best
step on a decayed LR is not converged, whatever the curve looks like.

The forecast fits L(t) = L_inf + a t^-b (b in [0.3, 3]: flatter exponents leave the asymptote
unidentified by any finite curve; learning curves in steps have b near 0.76, Kaplan et al. 2020) to
the tail of the eval curve, using only evaluations while the LR was at least half its peak (a
decaying LR flattens the curve for the wrong reason). The point forecast is the fit on the last 70%
(the first part is warm-up and fast early learning). Its interval has to carry two uncertainties an
i.i.d. residual bootstrap misses: where the tail starts (the fit is repeated on the last 30% .. 80%)
and eval noise that is correlated from one evaluation to the next (residuals are resampled in
moving blocks). On real curves of the workbench's runs stopped early, the interval covers the loss
the same run reached once converged (tests/base/test_convergence.py, tests/data/converged_curves.csv).
It also gives the steps still needed to come within `TOLERANCE` of L_inf.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DECAYED = 0.5  # an LR below this share of its peak counts as decayed
TOLERANCE = 0.005  # "converged" in the forecast: within 0.5% of the forecast asymptote
MIN_POINTS = 5


def verdict(stop_reason: str, best_step: int, steps: int, lr_at_best: float | None, peak_lr: float,
            status: str = "completed") -> tuple[bool, str]:
    """(converged, one line saying why)."""
    if status == "diverged":
        return False, f"diverged at step {steps}"
    if stop_reason == "horizon":
        return False, (f"stopped at the {steps}-step horizon with its best at step {best_step}: not converged "
                       f"(raise train.max_steps, with a constant LR after warm-up)")
    if stop_reason != "early_stopped":
        return False, f"stop reason {stop_reason!r}: not an early stop"
    if lr_at_best is not None and peak_lr > 0 and lr_at_best < DECAYED * peak_lr:
        return False, (f"early-stopped, but its best step {best_step} came at LR {lr_at_best:.3g}, below half the "
                       f"peak {peak_lr:.3g}: a decayed LR only looks converged (use train.schedule=constant)")
    return True, (f"early-stopped at step {steps}: no improvement for {steps - best_step} steps after its best at "
                  f"step {best_step}" + (f", at LR {lr_at_best:.3g}" if lr_at_best is not None else ""))


@dataclass(frozen=True)
class Forecast:
    loss: float  # forecast converged loss L_inf
    low: float  # interval on L_inf
    high: float
    steps_needed: int | None  # further steps until within TOLERANCE of L_inf (0: already there)
    n_points: int  # evaluations the fit used

    def to_dict(self) -> dict:
        return asdict(self)


def _curve(t, l_inf, a, b):
    return l_inf + a * np.power(t, -b)


B_GRID = np.geomspace(0.3, 3.0, 80)  # exponents tried; flatter ones leave the asymptote unidentified
TAILS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # tail fractions whose fits make up the interval
BLOCK = 5  # evaluations per resampled block of residuals


def _fit(t: np.ndarray, y: np.ndarray):
    """(L_inf, a, b) by least squares: for each b on `B_GRID` the curve is linear in (L_inf, a),
    solved in closed form (a >= 0, L_inf <= the lowest loss seen); the b with the least squared
    error wins. Vectorised over the grid, so a bootstrap of hundreds of refits takes milliseconds."""
    x = np.power(t[None, :], -B_GRID[:, None])  # (G, n)
    xm, ym = x.mean(1, keepdims=True), y.mean()
    a = ((x - xm) * (y - ym)).sum(1) / np.maximum(((x - xm) ** 2).sum(1), 1e-300)
    a = np.maximum(a, 0.0)
    l_inf = np.minimum(ym - a * xm[:, 0], y.min())
    sse = ((l_inf[:, None] + a[:, None] * x - y[None, :]) ** 2).sum(1)
    i = int(np.argmin(sse))
    return np.array([l_inf[i], a[i], B_GRID[i]])


def forecast(steps, losses, lrs=None, tail: float = 0.7, level: float = 0.95, n_boot: int = 200,
             seed: int = 0) -> Forecast | None:
    """Forecast of the converged loss from an eval curve (None when too few usable points)."""
    t, y = np.asarray(steps, float), np.asarray(losses, float)
    if len(t) < MIN_POINTS:
        return None
    keep = np.isfinite(y) & (t > 0)
    if lrs is not None:
        lr = np.asarray(lrs, float)
        keep &= lr >= DECAYED * np.nanmax(lr)
    t, y = t[keep], y[keep]
    if len(t) < MIN_POINTS:
        return None

    def last(fraction):
        start = min(int(len(t) * (1 - fraction)), len(t) - MIN_POINTS)
        return t[start:], y[start:]

    l_inf, a, b = (float(v) for v in _fit(*last(tail)))
    rng = np.random.default_rng(seed)
    draws = []
    per_tail = max(1, n_boot // len(TAILS))
    for fraction in TAILS:
        tt, yy = last(fraction)
        fitted = _curve(tt, *_fit(tt, yy))
        resid = yy - fitted
        n, block = len(resid), min(BLOCK, len(resid))
        for _ in range(per_tail):
            starts = rng.integers(0, n - block + 1, -(-n // block))
            draws.append(_fit(tt, fitted + np.concatenate([resid[i:i + block] for i in starts])[:n])[0])
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha]) if len(draws) >= 20 else (math.nan, math.nan)
    gap = TOLERANCE * l_inf
    with np.errstate(over="ignore"):
        needed = (a / gap) ** (1 / b) if a > 0 and gap > 0 else 0.0
    steps_needed = int(max(0.0, needed - t[-1])) if math.isfinite(needed) and needed < 1e12 else None
    return Forecast(l_inf, float(min(low, l_inf)), float(max(high, l_inf)), steps_needed, len(last(tail)[0]))


def summarize_run(rows: list[dict], stop_reason: str, best_step: int, steps: int, peak_lr: float,
                  status: str = "completed", monitor: str = "eval_loss") -> dict:
    """The convergence fields of a pretraining summary from its logged evaluations."""
    by_step = {r["step"]: r for r in rows}
    lr_at_best = by_step.get(best_step, {}).get("lr")
    converged, why = verdict(stop_reason, best_step, steps, lr_at_best, peak_lr, status)
    out = dict(converged=converged, convergence=why, lr_at_best=lr_at_best)
    f = forecast([r["step"] for r in rows], [r[monitor] for r in rows], [r.get("lr", peak_lr) for r in rows])
    out.update(forecast_loss=f and f.loss, forecast_low=f and f.low, forecast_high=f and f.high,
               forecast_steps_needed=f and f.steps_needed)
    return out
