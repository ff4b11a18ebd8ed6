"""Beyond the paper: loss over model size and tokens, L(N, D) = E + A N^-alpha + B D^-beta.

    law = JointLaw().fit(n, y, tokens=d)          # E_, A_, alpha_, B_, beta_; or .fit(table) with a tokens column
    law.predict(n, tokens=d); law.predict(n)      # at D tokens; without tokens: the limit of unlimited tokens
    boot = bootstrap_joint(table, B=200)          # table: n_params, tokens, value (read_table schema)
    boot.ci("alpha"); compute_optimal(boot, 1e18)  # intervals on every parameter; the compute-optimal split

It is a `workbench.laws.fit.Law` registered as `joint` (covariate `tokens`), so `fit.law=joint` takes it
through reports, plots, backtests and model selection. Read as a curve over N, it is the loss a size
reaches with unlimited tokens, E + A N^-alpha (the converged limit), unless a token count is given
(`fit.tokens`): a size measured at finite D sits above that curve by B D^-beta.

The fit follows Hoffmann et al. (2022) and its re-analyses (Besiroglu et al. 2024): a Huber loss
(delta 1e-3) on the log residuals, summed over points, minimised with bounded L-BFGS-B, the best of
its starts kept. The starts come from a screen (`search="screen"`, the default): on a grid of 2,800
(E, alpha, beta) the two amplitudes A and B are solved in closed form (least squares of the relative
residuals, from sums shared across the grid), the 20 best by that error are ranked by the Huber loss
itself, and L-BFGS-B runs from the best start and from the best one in another basin (exponents a
factor 2 apart, or E 0.3 of the lowest loss apart); the better is then run on to a relative
tolerance of 1e-15. `search="grid"` runs L-BFGS-B from each of 27 fixed starts instead: the same
optimum where the problem has one (on the benchmark's families the parameters agree to 4e-6 and the
losses to 1e-15; the largest gap is in B, along a direction where the loss is flat), 10-25x slower
on 1,000 points (`benchmarks/joint_fit_speed.py`), and a little more thorough where the landscape
has several valleys of nearly equal loss: on 300 random problems, well posed and misspecified, the
screen ended in another optimum in 14, its loss 4e-8 to 7e-3 higher, mostly flat valleys where the
token exponent runs to its bound; it found a lower one in 2. The bootstrap resamples runs, not
points: the checkpoints of one run (same variant, size and seed) are not independent and travel
together, and every replicate starts from the point estimate.

With C = 6 N D, the loss at a compute budget is least at
    N_opt = G (C / 6)^(beta / (alpha + beta)),  G = (alpha A / (beta B))^(1 / (alpha + beta)),
    D_opt = C / (6 N_opt),
with an interval from the bootstrap replicates. A table whose N and D move together (one token
count per size, or D proportional to N) cannot separate the two terms: the fit refuses it.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from workbench.base.errors import FitError
from workbench.laws.bootstrap import BootstrapResult, bootstrap_law
from workbench.laws.fit import covariates_of, huber, interval, r2_linear, run_units, sizes

PARAMS = ("E", "A", "alpha", "B", "beta")
DELTA = 1e-3
MIN_EXPONENT, MAX_EXPONENT = 1e-3, 3.0
START_TOLERANCES = dict(maxiter=1000, ftol=1e-11, gtol=1e-7)  # from each start
POLISH_TOLERANCES = dict(maxiter=1000, ftol=1e-15, gtol=1e-10)  # the screen's best of 2, on to the optimum
REPLICATE_TOLERANCES = dict(maxiter=1000, ftol=1e-10, gtol=1e-6)  # refits start at the optimum: looser is enough
SEARCHES = ("screen", "grid")
SCREEN_EXPONENTS = np.geomspace(MIN_EXPONENT, MAX_EXPONENT, 20)  # alpha and beta of the screen
SCREEN_FLOORS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99)  # E as fractions of the lowest loss
SCREEN_KEEP, SCREEN_STARTS = 20, 2  # ranked by the Huber loss; L-BFGS-B runs from this many
COLLINEAR = 0.995  # |corr(log N, log D)| above this: the two terms cannot be told apart


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
    min_sizes = 2
    covariates = ("tokens",)

    def __init__(self, delta: float = DELTA, tolerances: dict | None = None, search: str = "screen"):
        if search not in SEARCHES:
            raise FitError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
        self.delta, self.search, self.tolerances = delta, search, tolerances

    def fit(self, n, y=None, sample_weight=None, tokens=None, starts=None) -> "JointLaw":
        """Fit on points (n, y) seen at `tokens`, or on a table with n_params, tokens and value."""
        if isinstance(n, pd.DataFrame):
            if tokens is None:
                tokens = covariates_of(n, JointLaw)["tokens"]
            n, y = n["n_params"].to_numpy(float), n["value"].to_numpy(float)
        if tokens is None or y is None:
            raise FitError("the joint law needs n, y and tokens (D) for every point, or a table with n_params, "
                           "tokens and value")
        w = np.ones(np.size(y)) if sample_weight is None else np.asarray(sample_weight, float)
        if w.shape != (np.size(y),):
            raise FitError(f"sample_weight has {w.size} values for {np.size(y)} points")
        n, d, y = _points(n, tokens, y)
        if not (w > 0).all():  # a bootstrap replicate: what it did not draw is not there
            keep = w > 0
            n, d, y = _points(n[keep], d[keep], y[keep])
            w = w[keep]
        c1, c2 = np.median(np.log(n)), np.median(np.log(d))  # centred logs: a well-conditioned problem
        x1, x2, ly, ymin = np.log(n) - c1, np.log(d) - c2, np.log(y), y[w > 0].min()
        delta = self.delta

        def loss(p):  # summed weighted Huber loss on log residuals (in units of delta), and its gradient
            E, la, alpha, lb, beta = p
            t1, t2 = np.exp(la - alpha * x1), np.exp(lb - beta * x2)
            pred = t1 + t2
            pred += E
            r = np.log(pred)
            r -= ly
            a = np.abs(r)
            m = np.minimum(a, delta)  # the Huber loss is m (|r| - m / 2); its derivative sign(r) m
            wm = w * m
            g = np.copysign(wm, r) / pred
            gt1, gt2 = g * t1, g * t2
            grad = np.array([g.sum(), gt1.sum(), -(gt1 @ x1), gt2.sum(), -(gt2 @ x2)])
            return float(wm @ a - 0.5 * (wm @ m)) / delta, grad / delta

        bounds = [(0.0, ymin * (1 - 1e-9)), (-30.0, 30.0), (MIN_EXPONENT, MAX_EXPONENT), (-30.0, 30.0),
                  (MIN_EXPONENT, MAX_EXPONENT)]
        polish = starts is None and self.search == "screen" and self.tolerances is None
        if starts is not None:  # given as (E, ln A, alpha, ln B, beta): centred here
            starts = [[E, la - a * c1, a, lb - b * c2, b] for E, la, a, lb, b in starts]
        elif self.search == "screen":
            starts = _screen(x1, x2, y, ly, w, ymin, bounds, delta)
        else:
            starts = self._grid(y, ymin)
        best = None
        for p0 in starts:
            r = minimize(loss, p0, method="L-BFGS-B", jac=True, bounds=bounds,
                         options=self.tolerances or START_TOLERANCES)
            if best is None or r.fun < best.fun:
                best = r
        if polish:  # the best start, from where it stopped, to the optimum
            best = minimize(loss, best.x, method="L-BFGS-B", jac=True, bounds=bounds, options=POLISH_TOLERANCES)
        E, la, self.alpha_, lb, self.beta_ = (float(v) for v in best.x)
        self.E_ = E
        self.A_, self.B_ = float(np.exp(la + self.alpha_ * c1)), float(np.exp(lb + self.beta_ * c2))
        self.x_ = np.array([E, np.log(self.A_), self.alpha_, np.log(self.B_), self.beta_])  # refits start here
        self.loss_ = float(best.fun * delta)
        self.r2_ = r2_linear(y, self.predict(n, tokens=d))
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

    def predict(self, n, tokens=None) -> np.ndarray:
        """The loss at sizes `n` seen at `tokens` (a number or one per size); without tokens, the
        limit of unlimited tokens E + A N^-alpha."""
        return self.curve(np.array([[self.E_, self.A_, self.alpha_, self.B_, self.beta_]]), n, tokens)[0].reshape(
            np.shape(n))

    @classmethod
    def curve(cls, params: np.ndarray, n, tokens=None) -> np.ndarray:
        """(B, len(n)) losses of parameter rows (E, A, alpha, B, beta) at sizes `n` and `tokens`
        (a number, one per size, or None: unlimited)."""
        n = np.atleast_1d(sizes(n))
        E, A, alpha, B, beta = (params[:, i:i + 1] for i in range(5))
        out = E + A * n[None, :] ** -alpha
        if tokens is not None and not np.all(np.isinf(tokens)):
            d = np.broadcast_to(np.asarray(tokens, float), n.shape)
            if not (d > 0).all():
                raise FitError(f"the joint law predicts at positive token counts D; got {d[~(d > 0)][0]!r}")
            out = out + B * d[None, :] ** -beta
        return out

    @classmethod
    def formula(cls, params: dict) -> str:
        """The curve over N it is drawn as: its limit of unlimited tokens."""
        return f"y = {params['E']:.3g} + {params['A']:.3g} N^{{-{params['alpha']:.3f}}}\\ (D \\to \\infty)"

    @classmethod
    def fit_many(cls, W: np.ndarray, n: np.ndarray, y: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(B, 5) parameters of B weighted refits (the bootstrap's): the full fit once from the grid
        of starts, then each replicate from its optimum. NaN rows where a replicate cannot separate
        the terms (too few sizes or token counts, or N and D collinear in it)."""
        from workbench.base.progress import refits

        full = cls().fit(n, y, tokens=tokens)
        out = np.full((len(W), len(PARAMS)), np.nan)
        with refits(len(W), "joint law: bootstrap refits") as progress:  # long fits show a bar; Ctrl-C stops
            for i, w in enumerate(W):
                try:
                    rep = cls(tolerances=REPLICATE_TOLERANCES).fit(n, y, sample_weight=w, tokens=tokens,
                                                                   starts=[full.x_])
                    out[i] = [rep.E_, rep.A_, rep.alpha_, rep.B_, rep.beta_]
                except FitError:
                    pass
                progress.update(1)
        return out

    def optimal(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) of a FLOP budget C = 6 N D."""
        return optimal_split(np.array([[self.E_, self.A_, self.alpha_, self.B_, self.beta_]]), flops)


def _screen(x1, x2, y, ly, w, ymin, bounds, delta) -> list[np.ndarray]:
    """Starts for L-BFGS-B in centred coordinates (E, ln A, alpha, ln B, beta): the best of a grid
    over (E, alpha, beta) whose A and B solve the weighted least squares of the relative residuals
    (E + A u + B v) / y - 1, u = e^(-alpha x1), v = e^(-beta x2), in closed form from sums shared
    across the grid (positive A and B only); the best SCREEN_KEEP by that error ranked again by the
    Huber loss (the 27 fixed starts of search="grid" join them when fewer than SCREEN_STARTS
    closed forms have A, B > 0); the best, then the best in another basin, up to SCREEN_STARTS."""
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    e = np.asarray(SCREEN_FLOORS) * ymin
    iy = 1.0 / y
    u = np.exp(-SCREEN_EXPONENTS[:, None] * x1[None, :]) * iy  # (exponents, points): u / y
    v = np.exp(-SCREEN_EXPONENTS[:, None] * x2[None, :]) * iy
    uw, vw = u * w, v * w
    suu, svv, suv = (uw * u).sum(1), (vw * v).sum(1), uw @ v.T  # normal equations (alpha, beta, E)
    su, sv, suy, svy = uw.sum(1), vw.sum(1), uw @ iy, vw @ iy  # with r = 1 - E / y on the right
    b1 = (su[:, None] - suy[:, None] * e[None, :])[:, None, :]
    b2 = (sv[:, None] - svy[:, None] * e[None, :])[None, :, :]
    a11, a22, a12 = suu[:, None, None], svv[None, :, None], suv[:, :, None]
    with np.errstate(all="ignore"):
        det = a11 * a22 - a12 ** 2
        det = np.where(det > 1e-12 * a11 * a22, det, np.nan)  # u and v nearly parallel: no closed form there
        A, B = (a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det
        rss = -2 * (A * b1 + B * b2) + A ** 2 * a11 + 2 * A * B * a12 + B ** 2 * a22  # less a constant per E
        rss = np.where((A > 0) & (B > 0) & np.isfinite(rss), rss - 2 * e * (w @ iy) + e ** 2 * ((w * iy) @ iy), np.inf)
    order = np.argsort(rss, axis=None)[:SCREEN_KEEP]
    ia, ib, ie = np.unravel_index(order[np.isfinite(rss.ravel()[order])], rss.shape)
    with np.errstate(divide="ignore"):
        cand = np.column_stack([e[ie], np.log(A[ia, ib, ie]), SCREEN_EXPONENTS[ia], np.log(B[ia, ib, ie]),
                                SCREEN_EXPONENTS[ib]])
    if len(cand) < SCREEN_STARTS:  # few closed forms with A, B > 0: the fixed starts beside them
        cand = np.vstack([cand, np.array(list(JointLaw._grid(y, ymin)))])
    cand = np.clip(cand, lo, hi)
    pred = cand[:, :1] + np.exp(cand[:, 1:2] - cand[:, 2:3] * x1) + np.exp(cand[:, 3:4] - cand[:, 4:5] * x2)
    cand = cand[np.argsort((w * huber(np.log(pred) - ly, delta)).sum(1), kind="stable")]
    chosen = [cand[0]]
    for c in cand[1:]:
        if len(chosen) == SCREEN_STARTS:
            break
        if all(np.abs(np.log(c[[2, 4]] / o[[2, 4]])).max() > np.log(2) or abs(c[0] - o[0]) > 0.3 * ymin
               for o in chosen):
            chosen.append(c)
    return chosen


def optimal_split(params: np.ndarray, flops) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt), each (rows of params, budgets), of C = 6 N D for parameter rows (E, A, alpha, B, beta)."""
    c = np.atleast_1d(np.asarray(flops, float))[None, :] / 6.0
    A, alpha, B, beta = (params[:, i:i + 1] for i in (1, 2, 3, 4))
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = g * c ** (beta / (alpha + beta))
    return n_opt, c / n_opt


def compute_optimal(boot, flops: float) -> dict:
    """The compute-optimal split of `flops` (C = 6 N D) by a joint-law bootstrap (`bootstrap_joint`):
    the split of its fit on every point, with the interval of the replicates' splits at its level."""
    n, d = boot.fitted.optimal(flops)
    nb, db = optimal_split(boot.params, flops)
    (nlo, nhi), (dlo, dhi) = interval(nb[:, 0], boot.level), interval(db[:, 0], boot.level)
    return dict(flops=float(flops), n_opt=float(n[0, 0]), n_low=float(nlo), n_high=float(nhi),
                d_opt=float(d[0, 0]), d_low=float(dlo), d_high=float(dhi))


def bootstrap_joint(table: pd.DataFrame, B: int = 200, level: float = 0.95, random_state: int = 0,
                    method: str = "naive") -> BootstrapResult:
    """Fit the joint law on a table (`n_params`, `tokens`, `value`; `seed`, `variant`, `step` optional)
    and bootstrap it B times (`workbench.laws.bootstrap.bootstrap_law`). A run is the resampling unit: with
    a `step` column the checkpoints of one (variant, size, seed) are one run, without one every row
    is a run of its own. `method="naive"` (default) draws runs pooled over sizes; "hierarchical"
    draws sizes, then runs within them, as law reports do. With one run per size (a ladder's
    checkpoints) the two are the same. On a grid where every (N, D) is a run of its own they are
    not: in 200 simulated studies the naive intervals covered the truth about 95% of the time and
    the hierarchical ones 98-100% (conservative: the sizes carry no noise of their own there;
    `tests/laws/test_joint.py`)."""
    need = {"n_params", "tokens", "value"} - set(table.columns)
    if need:
        raise FitError(f"the joint law needs columns n_params, tokens and value; missing {sorted(need)}")
    if B < 1:
        raise FitError(f"B must be >= 1, got {B}")
    law = JointLaw().fit(table)
    boot = bootstrap_law(table, law="joint", B=B, method=method, random_state=random_state)
    if len(boot.params) < max(10, B // 2):
        raise FitError(f"only {len(boot.params)} of {B} bootstrap draws could be fitted: add sizes or token counts")
    runs = run_units(table)
    return dataclasses.replace(boot, fitted=law, level=level, n_points=len(table),
                               n_runs=len(table) if runs is None else int(runs.max()) + 1)
