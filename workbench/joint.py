"""Beyond the paper: loss over model size and tokens, L(N, D) = E + A N^-alpha + B D^-beta.

    law = JointLaw().fit(n, d, y)                 # E_, A_, alpha_, B_, beta_
    boot = bootstrap_joint(table, B=200)          # table: n_params, tokens, value (read_table schema)
    boot.ci("alpha"); boot.optimal(1e18)          # intervals on every parameter; the compute-optimal split

The fit follows Hoffmann et al. (2022) and its re-analyses (Besiroglu et al. 2024): a Huber loss
(delta 1e-3) on the log residuals, summed over points, minimised with bounded L-BFGS-B from a grid
of starts, the best kept. The bootstrap resamples runs, not points: the checkpoints of one run
(same variant, size and seed) are not independent and travel together.

With C = 6 N D, the loss at a compute budget is least at
    N_opt = G (C / 6)^(beta / (alpha + beta)),  G = (alpha A / (beta B))^(1 / (alpha + beta)),
    D_opt = C / (6 N_opt),
with an interval from the bootstrap replicates. A table whose N and D move together (one token
count per size, or D proportional to N) cannot separate the two terms: the fit refuses it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from workbench.errors import FitError
from workbench.fit import r2_linear

PARAMS = ("E", "A", "alpha", "B", "beta")
DELTA = 1e-3
MAX_EXPONENT = 3.0
REPLICATE_TOLERANCES = dict(maxiter=1000, ftol=1e-10, gtol=1e-6)  # refits start at the optimum: looser is enough
COLLINEAR = 0.995  # |corr(log N, log D)| above this: the two terms cannot be told apart


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _points(n, d, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d, y = (np.asarray(v, dtype=float) for v in (n, d, y))
    for name, a in (("n", n), ("d", d), ("y", y)):
        if a.ndim != 1:
            raise FitError(f"{name} must be a 1-D array of points, got shape {a.shape}")
        if not (np.isfinite(a) & (a > 0)).all():
            raise FitError(f"{name} must be positive and finite for the joint law")
    if not len(n) == len(d) == len(y):
        raise FitError(f"n, d and y have different lengths ({len(n)}, {len(d)}, {len(y)})")
    if len(np.unique(n)) < 2 or len(np.unique(d)) < 2:
        raise FitError(f"the joint law needs at least two sizes and two token counts, got {len(np.unique(n))} "
                       f"and {len(np.unique(d))}")
    if len(y) < 6:
        raise FitError(f"the joint law has 5 parameters; give at least 6 points, got {len(y)}")
    corr = np.corrcoef(np.log(n), np.log(d))[0, 1]
    if abs(corr) > COLLINEAR:
        raise FitError(f"N and D move together in these points (corr of log N and log D = {corr:.3f}): the size "
                       f"and token terms cannot be told apart; add runs (or checkpoints) at several token counts "
                       f"per size")
    return n, d, y


class JointLaw:
    """L(N, D) = E + A N^-alpha + B D^-beta, E >= 0, A, B > 0, alpha, beta in (0, 3]."""

    name = "joint"
    param_names = PARAMS

    def __init__(self, delta: float = DELTA, tolerances: dict | None = None):
        self.delta = delta
        self.tolerances = tolerances or dict(maxiter=1000, ftol=1e-11, gtol=1e-7)

    def fit(self, n, d, y, sample_weight=None, starts=None) -> "JointLaw":
        n, d, y = _points(n, d, y)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
        c1, c2 = np.median(np.log(n)), np.median(np.log(d))  # centred logs: a well-conditioned problem
        x1, x2, ly, ymin = np.log(n) - c1, np.log(d) - c2, np.log(y), y[w > 0].min()
        delta = self.delta

        def loss(p):  # summed weighted Huber loss on log residuals (in units of delta), and its gradient
            E, la, alpha, lb, beta = p
            t1, t2 = np.exp(la - alpha * x1), np.exp(lb - beta * x2)
            pred = E + t1 + t2
            r = np.log(pred) - ly
            g = w * np.clip(r, -delta, delta) / pred / delta
            grad = [g.sum(), (g * t1).sum(), -(g * t1 * x1).sum(), (g * t2).sum(), -(g * t2 * x2).sum()]
            return float((w * _huber(r, delta)).sum() / delta), np.array(grad)

        bounds = [(0.0, ymin * (1 - 1e-9)), (-30.0, 30.0), (1e-3, MAX_EXPONENT), (-30.0, 30.0), (1e-3, MAX_EXPONENT)]
        best = None
        for p0 in (starts if starts is not None else self._grid(y, ymin)):
            r = minimize(loss, p0, method="L-BFGS-B", jac=True, bounds=bounds, options=self.tolerances)
            if best is None or r.fun < best.fun:
                best = r
        E, la, self.alpha_, lb, self.beta_ = (float(v) for v in best.x)
        self.E_ = E
        self.A_, self.B_ = float(np.exp(la + self.alpha_ * c1)), float(np.exp(lb + self.beta_ * c2))
        self.x_ = best.x  # the centred optimum: where the bootstrap's refits start
        self.loss_ = float(best.fun * delta)
        self.r2_ = r2_linear(y, self.predict(n, d))
        return self

    @staticmethod
    def _grid(y, ymin):
        """Starts: floors at 0 / half / 0.9 of the lowest loss, exponents 0.2 / 0.5 / 1, each term
        starting at half of what lies above the floor at the median size and token count."""
        for e_frac, alpha, beta in itertools.product((0.0, 0.5, 0.9), (0.2, 0.5, 1.0), (0.2, 0.5, 1.0)):
            E = e_frac * ymin
            half = np.log(max(np.median(y) - E, 1e-6 * ymin) / 2)
            yield [E, half, alpha, half, beta]

    @property
    def params_(self) -> dict[str, float]:
        return dict(E=self.E_, A=self.A_, alpha=self.alpha_, B=self.B_, beta=self.beta_)

    def predict(self, n, d) -> np.ndarray:
        n, d = np.asarray(n, float), np.asarray(d, float)
        if (n <= 0).any() or (d <= 0).any():
            raise FitError("the joint law predicts at positive N and D")
        return self.E_ + self.A_ * n ** -self.alpha_ + self.B_ * d ** -self.beta_

    def optimal(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) of a FLOP budget C = 6 N D."""
        return optimal_split(np.array([[self.E_, self.A_, self.alpha_, self.B_, self.beta_]]), flops)


def optimal_split(params: np.ndarray, flops) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt), each (rows of params, budgets), of C = 6 N D for parameter rows (E, A, alpha, B, beta)."""
    c = np.atleast_1d(np.asarray(flops, float))[None, :] / 6.0
    A, alpha, B, beta = (params[:, i:i + 1] for i in (1, 2, 3, 4))
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = g * c ** (beta / (alpha + beta))
    return n_opt, c / n_opt


@dataclass(frozen=True)
class JointBootstrap:
    law: JointLaw  # the fit on every point
    params: np.ndarray  # (B, 5) replicates: E, A, alpha, B, beta
    n_runs: int  # resampling units (runs)
    n_points: int
    level: float = 0.95

    def ci(self, name: str) -> tuple[float, float]:
        q = 100 * (1 - self.level) / 2
        lo, hi = np.percentile(self.params[:, PARAMS.index(name)], [q, 100 - q])
        return float(lo), float(hi)

    def optimal(self, flops: float) -> dict:
        """The compute-optimal split of `flops` (C = 6 N D) with its interval."""
        n, d = self.law.optimal(flops)
        nb, db = optimal_split(self.params, flops)
        q = 100 * (1 - self.level) / 2
        (nlo, nhi), (dlo, dhi) = np.percentile(nb[:, 0], [q, 100 - q]), np.percentile(db[:, 0], [q, 100 - q])
        return dict(flops=float(flops), n_opt=float(n[0, 0]), n_low=float(nlo), n_high=float(nhi),
                    d_opt=float(d[0, 0]), d_low=float(dlo), d_high=float(dhi))

    def table(self) -> pd.DataFrame:
        """Every parameter with its interval."""
        p = self.law.params_
        return pd.DataFrame([dict(param=k, value=p[k], low=self.ci(k)[0], high=self.ci(k)[1]) for k in PARAMS])


def bootstrap_joint(table: pd.DataFrame, B: int = 200, level: float = 0.95, random_state: int = 0) -> JointBootstrap:
    """Fit the joint law on a table (`n_params`, `tokens`, `value`; `seed`, `variant`, `step` optional)
    and bootstrap it B times by resampling runs with replacement: with a `step` column the checkpoints
    of one (variant, size, seed) are one run; without one every row is a run of its own."""
    need = {"n_params", "tokens", "value"} - set(table.columns)
    if need:
        raise FitError(f"the joint law needs columns n_params, tokens and value; missing {sorted(need)}")
    if B < 1:
        raise FitError(f"B must be >= 1, got {B}")
    # checkpoints (a step column) of one (variant, size, seed) are one run; without steps every row is a run
    key = [c for c in ("variant", "n_params", "seed") if c in table] if "step" in table else None
    n, d, y = (table[c].to_numpy(float) for c in ("n_params", "tokens", "value"))
    law = JointLaw().fit(n, d, y)
    runs = table.groupby(key, sort=False).ngroup().to_numpy() if key else np.arange(len(table))
    n_runs = int(runs.max()) + 1
    rng = np.random.default_rng(random_state)
    starts = [law.x_]
    rows = []
    for _ in range(B):
        counts = np.bincount(rng.integers(0, n_runs, n_runs), minlength=n_runs)
        w = counts[runs].astype(float)
        try:
            rep = JointLaw(tolerances=REPLICATE_TOLERANCES).fit(n[w > 0], d[w > 0], y[w > 0], sample_weight=w[w > 0],
                                                                starts=starts)
        except FitError:
            continue  # a draw that cannot separate the terms (too few sizes or token counts)
        rows.append([rep.E_, rep.A_, rep.alpha_, rep.B_, rep.beta_])
    if len(rows) < max(10, B // 2):
        raise FitError(f"only {len(rows)} of {B} bootstrap draws could be fitted: add sizes or token counts")
    return JointBootstrap(law, np.array(rows), n_runs, len(y), level)
