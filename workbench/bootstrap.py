"""Uncertainty of power-law fits: hierarchical (sizes, then seeds) and naive pooled bootstrap.

    boot = bootstrap_power_law(df, B=1000, random_state=0)          # hierarchical, the paper's
    boot.ci()                      # 95% percentile interval of alpha
    boot.band([1e5, 1e6, 1e8])     # pointwise 2.5/50/97.5% of the fitted curve at each N

Each replicate draws M sizes with replacement from the M sizes, then for each drawn size T seed
results with replacement from that size's T results, and fits OLS on the pooled points.
Resampling sizes stands in for pretraining-seed variance. Replicates are encoded as integer
weights over the original points, so all B fits are a handful of matrix products (vectorised);
replicates with a single distinct size (the line is undefined) are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.fit import as_points


@dataclass(frozen=True)
class BootstrapResult:
    alphas: np.ndarray  # (B_valid,)
    betas: np.ndarray  # (B_valid,)
    n_dropped: int  # replicates with a single distinct size
    method: str  # "hierarchical" | "naive"

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of alpha."""
        q = 100 * (1 - level) / 2
        lo, hi = np.percentile(self.alphas, [q, 100 - q])
        return float(lo), float(hi)

    def predictions(self, n) -> np.ndarray:
        """(B_valid, len(n)) curve values of every replicate at sizes `n`."""
        n = np.atleast_1d(np.asarray(n, dtype=float))
        return np.exp(self.betas[:, None] + self.alphas[:, None] * np.log(n)[None, :])

    def band(self, n, level: float = 0.95) -> pd.DataFrame:
        """Pointwise percentile band of the fitted curve at each N: lower, median, upper."""
        q = 100 * (1 - level) / 2
        lo, med, hi = np.percentile(self.predictions(n), [q, 50, 100 - q], axis=0)
        return pd.DataFrame(dict(n_params=np.atleast_1d(n).astype(float), lower=lo, median=med, upper=hi))


def _size_index(n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points sorted by size: (order, counts per size, offsets of each size's block)."""
    order = np.argsort(n, kind="stable")
    _, counts = np.unique(n[order], return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, counts, offsets


def hierarchical_weights(counts: np.ndarray, offsets: np.ndarray, B: int, rng: np.random.Generator,
                         size_draws: np.ndarray | None = None) -> np.ndarray:
    """(B, P) resampling counts of P points grouped by size (sizes, then seeds within size).

    `size_draws` (B, M) may be given to share the size draws between paired analyses."""
    M, P = len(counts), int(counts.sum())
    S = rng.integers(0, M, (B, M)) if size_draws is None else size_draws
    T = counts[S]  # (B, M): results available at each drawn size
    r = np.floor(rng.random((B, M, counts.max())) * T[..., None]).astype(np.int64)
    valid = np.arange(counts.max())[None, None, :] < T[..., None]
    idx = offsets[S][..., None] + r  # (B, M, Tmax) point indices
    rows = np.broadcast_to(np.arange(B)[:, None, None], idx.shape)
    flat = (rows * P + idx)[valid]
    return np.bincount(flat, minlength=B * P).reshape(B, P)


def naive_weights(P: int, B: int, rng: np.random.Generator) -> np.ndarray:
    """(B, P) counts of the plain pooled bootstrap (resample the P points)."""
    idx = rng.integers(0, P, (B, P))
    return np.bincount((np.arange(B)[:, None] * P + idx).ravel(), minlength=B * P).reshape(B, P)


def weighted_ols(W: np.ndarray, x: np.ndarray, z: np.ndarray, size_of: np.ndarray):
    """Slopes and intercepts of B weighted OLS fits of z on x; mask of fits with >= 2 sizes."""
    W = W.astype(float)
    sw, sx, sz = W.sum(1), W @ x, W @ z
    sxx, sxz = W @ (x * x), W @ (x * z)
    onehot = np.eye(size_of.max() + 1)[size_of]  # (P, M)
    ok = ((W @ onehot) > 0).sum(1) >= 2
    den = np.where(ok, sxx - sx * sx / sw, 1.0)
    alpha = (sxz - sx * sz / sw) / den
    beta = (sz - alpha * sx) / sw
    return alpha, beta, ok


def bootstrap_power_law(n, y=None, B: int = 1000, method: str = "hierarchical",
                        random_state: int | np.random.Generator | None = None) -> BootstrapResult:
    """B bootstrap fits of ln y = alpha ln N + beta; see the module docstring."""
    if method not in ("hierarchical", "naive"):
        raise ValueError(f"method must be 'hierarchical' or 'naive', got {method!r}")
    if B < 1:
        raise ValueError(f"B must be >= 1, got {B}")
    n, y = as_points(n, y)
    rng = np.random.default_rng(random_state)
    order, counts, offsets = _size_index(n)
    n, y = n[order], y[order]
    size_of = np.repeat(np.arange(len(counts)), counts)
    W = hierarchical_weights(counts, offsets, B, rng) if method == "hierarchical" else naive_weights(len(n), B, rng)
    alpha, beta, ok = weighted_ols(W, np.log(n), np.log(y), size_of)
    return BootstrapResult(alpha[ok], beta[ok], int((~ok).sum()), method)


def bootstrap_power_law_loop(n, y=None, B: int = 1000, random_state=None) -> BootstrapResult:
    """The same hierarchical bootstrap as a plain Python loop (the benchmark's baseline)."""
    n, y = as_points(n, y)
    rng = np.random.default_rng(random_state)
    sizes = np.unique(n)
    groups = [np.flatnonzero(n == s) for s in sizes]
    alphas, betas, dropped = [], [], 0
    for _ in range(B):
        idx = np.concatenate([rng.choice(groups[s], len(groups[s])) for s in rng.integers(0, len(sizes), len(sizes))])
        if len(np.unique(n[idx])) < 2:
            dropped += 1
            continue
        a, b = np.polyfit(np.log(n[idx]), np.log(y[idx]), 1)
        alphas.append(a)
        betas.append(b)
    return BootstrapResult(np.array(alphas), np.array(betas), dropped, "hierarchical")
