"""Beyond the paper: task metrics from task loss, the two-stage route, beside the direct law.

    sig = Sigmoid().fit(task_loss, metric)                    # metric = floor + (ceiling - floor) / (1 + e^(k (L - L0)))
    rep = two_stage_report(selected, fit, points=every_run)   # both routes on the same held-out sizes
    rep.describe(); rep.better                                # "two-stage" | "direct" | "tie"

The paper fits 1 - metric against N directly. The OLMo ladder predicts a task metric in two steps:
size (and tokens) -> task loss with a law, then task loss -> metric with a sigmoid fitted on every
model. Here the task loss is the finetuned head's evaluation cross-entropy at the kept epoch
(`workbench.tasks.kinds`), stage 1 is `fit.law` through the law protocol (so `joint` takes tokens
when the table has them), and stage 2 is fitted on `points`: every finetuning run of the fitted
sizes, tuning trials included, since each is one more (loss, metric) pair of the same task.

Both routes hold out the same largest `fit.n_held_out` sizes and are judged on the metric itself.
Their intervals come from one hierarchical bootstrap: each replicate draws sizes once, then runs
within them, for both stages (`workbench.laws.bootstrap.SizeGroups` with shared size draws), so the
two-stage interval carries the uncertainty of both fits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from workbench.base.errors import FitError
from workbench.config import FitConfig
from workbench.laws.bootstrap import SizeGroups, fit_replicates
from workbench.laws.fit import covariates_of, get_law, interval, r2_linear, split_by_size

SIGMOID_PARAMS = ("floor", "ceiling", "slope", "midpoint")


class Sigmoid:
    """metric = floor + (ceiling - floor) / (1 + exp(slope (L - midpoint))), decreasing in the task
    loss L: 0 <= floor <= ceiling <= 1, slope > 0. Least squares on the metric, bounded, from a grid
    of starts (the best kept)."""

    def fit(self, loss, metric, sample_weight=None, start: "Sigmoid | None" = None) -> "Sigmoid":
        """Fit on (task loss, metric) points; from `start`'s optimum alone when given (the bootstrap's refits)."""
        loss, metric = np.asarray(loss, float), np.asarray(metric, float)
        if loss.ndim != 1 or loss.shape != metric.shape:
            raise FitError(f"task loss and metric must be 1-D arrays of one length, got {loss.shape} and {metric.shape}")
        ok = np.isfinite(loss) & np.isfinite(metric)
        if not ok.all():
            raise FitError(f"{(~ok).sum()} task loss / metric value(s) are not finite")
        if ((metric < 0) | (metric > 1)).any():
            raise FitError("the metric must lie in [0, 1] for the sigmoid (a share: accuracy, F1, ...)")
        w = np.ones_like(loss) if sample_weight is None else np.asarray(sample_weight, float)
        keep = w > 0
        loss, metric, w = loss[keep], metric[keep], w[keep]
        if len(np.unique(loss)) < 4:
            raise FitError(f"the sigmoid has 4 parameters: it needs at least 4 distinct task losses, got "
                           f"{len(np.unique(loss))}")
        span = max(float(np.ptp(loss)), 1e-6)
        lo_b = [0.0, 0.0, 1e-3 / span, float(loss.min()) - 3 * span]
        hi_b = [1.0, 1.0, 1e3 / span, float(loss.max()) + 3 * span]
        sw = np.sqrt(w)

        def resid(p):
            floor, gap, slope, mid = p  # ceiling = floor + gap (1 - floor): the order holds inside the box
            return sw * (floor + gap * (1 - floor) * _logistic(-slope * (loss - mid)) - metric)

        if start is not None:
            starts = [start.x_]
        else:
            starts = []
            for floor0 in (0.0, 0.5 * float(metric.min())):
                top = max(float(metric.max()), floor0 + 1e-3)
                for slope0 in (1.0 / span, 5.0 / span, 20.0 / span):
                    for mid0 in np.percentile(loss, [25, 50, 75]):
                        starts.append([floor0, min((top - floor0) / (1 - floor0 + 1e-12), 1.0), slope0, float(mid0)])
        best = None
        for p0 in starts:
            r = least_squares(resid, np.clip(p0, lo_b, hi_b), bounds=(lo_b, hi_b), method="trf")
            if best is None or r.cost < best.cost:
                best = r
        self.x_ = best.x
        floor, gap, self.slope_, self.midpoint_ = (float(v) for v in best.x)
        self.floor_, self.ceiling_ = floor, floor + gap * (1 - floor)
        self.r2_ = r2_linear(metric, self.predict(loss)) if np.ptp(metric) > 0 else float("nan")
        return self

    @property
    def params_(self) -> dict[str, float]:
        return dict(zip(SIGMOID_PARAMS, (self.floor_, self.ceiling_, self.slope_, self.midpoint_)))

    def predict(self, loss) -> np.ndarray:
        return self.curve(np.array([[self.floor_, self.ceiling_, self.slope_, self.midpoint_]]), loss)[0]

    @staticmethod
    def curve(params: np.ndarray, loss) -> np.ndarray:
        """(B, len(loss)) metrics of parameter rows (floor, ceiling, slope, midpoint)."""
        loss = np.atleast_1d(np.asarray(loss, float))
        floor, ceiling, slope, mid = (params[:, i:i + 1] for i in range(4))
        return floor + (ceiling - floor) * _logistic(-slope * (loss[None, :] - mid))


def _logistic(x):
    return 0.5 * (1 + np.tanh(0.5 * x))  # 1 / (1 + e^-x) without overflow


@dataclass(frozen=True)
class RouteHeldOut:
    n_params: float
    actual: float  # the measured metric (mean over seeds)
    direct: float  # 1 - (the law of 1 - metric)
    direct_low: float
    direct_high: float
    task_loss_pred: float  # stage 1
    task_loss_actual: float
    two_stage: float  # stage 2 of stage 1
    two_stage_low: float
    two_stage_high: float
    direct_re: float  # relative errors on the metric itself
    two_stage_re: float


@dataclass(frozen=True)
class TwoStageReport:
    """The direct law and the two-stage route on the same held-out sizes of one task."""

    task: str
    law: str
    fit_sizes: tuple[float, ...]
    loss_law: dict  # stage 1 parameters (task loss vs N)
    loss_r2: float
    sigmoid: dict  # stage 2 parameters
    sigmoid_r2: float
    n_sigmoid_points: int
    direct_law: dict  # the direct law's parameters (1 - metric vs N)
    held_out: tuple[RouteHeldOut, ...]
    direct_mre: float
    two_stage_mre: float
    better: str  # "two-stage" | "direct" | "tie" (within 10% of each other)
    level: float = 0.95
    points: tuple[tuple[float, float, float], ...] = ()  # (n_params, task loss, metric) stage 2 was fitted on

    def describe(self) -> str:
        s = self.sigmoid
        text = (f"{self.task}: stage 1 {self.law} law of task loss on {len(self.fit_sizes)} sizes (R^2 = "
                f"{self.loss_r2:.3f}); stage 2 sigmoid on {self.n_sigmoid_points} runs (floor {s['floor']:.3f}, "
                f"ceiling {s['ceiling']:.3f}, R^2 = {self.sigmoid_r2:.3f})")
        for h in self.held_out:
            text += (f"; held out N = {h.n_params:,.0f}: measured {h.actual:.4f}, direct {h.direct:.4f} "
                     f"[{h.direct_low:.4f}, {h.direct_high:.4f}] (RE {100 * h.direct_re:+.2f}%), two-stage "
                     f"{h.two_stage:.4f} [{h.two_stage_low:.4f}, {h.two_stage_high:.4f}] "
                     f"(RE {100 * h.two_stage_re:+.2f}%)")
        verdict = {"tie": "the two routes predicted equally well (MRE within 10%)",
                   "direct": "the direct law predicted better", "two-stage": "the two-stage route predicted better"}
        return text + (f"; {verdict[self.better]}: MRE direct {100 * self.direct_mre:.2f}%, two-stage "
                       f"{100 * self.two_stage_mre:.2f}%")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_columns(df: pd.DataFrame, what: str) -> pd.DataFrame:
    need = {"n_params", "task_loss", "metric"} - set(df.columns)
    if need:
        raise FitError(f"{what} needs columns n_params, task_loss and metric; missing {sorted(need)}")
    bad = df.task_loss.isna()
    if bad.all():
        raise FitError(f"{what}: no run has a task loss; `run_finetune_study` fills it in for its runs (older ones "
                       f"are evaluated once from best/), a table from elsewhere needs a task_loss column")
    return df[~bad]


def two_stage_report(table: pd.DataFrame, fit: FitConfig = FitConfig(), points: pd.DataFrame | None = None,
                     task: str | None = None) -> TwoStageReport:
    """Hold out the `fit.n_held_out` largest sizes of `table` (one task: n_params, seed, metric,
    task_loss; value = 1 - metric), predict their metric by the direct law of 1 - metric and by
    the two-stage route, with `fit.level` intervals, and say which predicted better. `points`
    (default `table`): the runs stage 2 is fitted on; only their fitted sizes are used."""
    table = _check_columns(table, "the two-stage route")
    points = table if points is None else _check_columns(points, "the sigmoid's points")
    task = task or (str(table.task.iloc[0]) if "task" in table else "task")
    if fit.n_held_out < 1:
        raise FitError("the two-stage route is judged on held-out sizes: set fit.n_held_out >= 1")
    cls = get_law(fit.law)
    if "value" not in table:
        table = table.assign(value=1 - table.metric)
    small, held = split_by_size(table, fit.n_held_out, cls.min_sizes)
    sizes = np.sort(small.n_params.unique())
    pts = points[points.n_params.isin(sizes)]
    if set(pts.n_params.unique()) != set(sizes):
        raise FitError(f"the sigmoid's points lack size(s) {sorted(set(sizes) - set(pts.n_params))} of the fit")
    loss_rows = small.assign(value=small.task_loss)
    direct = cls().fit(small, **covariates_of(small, cls))
    stage1 = cls().fit(loss_rows, **covariates_of(loss_rows, cls))
    sig = Sigmoid().fit(pts.task_loss, pts.metric)

    # one hierarchical bootstrap: shared size draws for the direct law, stage 1 and stage 2
    rng = np.random.default_rng(fit.random_state)
    B = fit.n_bootstrap
    draws = rng.integers(0, len(sizes), (B, len(sizes)))
    n1, y1 = small.n_params.to_numpy(float), small.value.to_numpy(float)
    g1 = SizeGroups.of(n1)
    W1 = g1.weights(B, rng, size_draws=draws)
    cov1 = g1.sort(covariates_of(small, cls))
    p_direct = fit_replicates(fit.law, W1, n1[g1.order], y1[g1.order], g1, cov1)
    p_loss = fit_replicates(fit.law, W1, n1[g1.order], small.task_loss.to_numpy(float)[g1.order], g1, cov1)
    n2 = pts.n_params.to_numpy(float)
    g2 = SizeGroups.of(n2)
    W2 = g2.weights(B, rng, size_draws=draws)
    l2, m2 = pts.task_loss.to_numpy(float)[g2.order], pts.metric.to_numpy(float)[g2.order]
    p_sig = np.full((B, 4), np.nan)
    for i in range(B):
        try:
            s = Sigmoid().fit(l2, m2, sample_weight=W2[i], start=sig)
        except FitError:
            continue  # too few distinct losses in this draw
        p_sig[i] = [s.floor_, s.ceiling_, s.slope_, s.midpoint_]
    ok = np.isfinite(p_direct).all(1) & np.isfinite(p_loss).all(1) & np.isfinite(p_sig).all(1)
    if ok.sum() < max(10, B // 2):
        raise FitError(f"only {ok.sum()} of {B} bootstrap draws could fit both routes: add sizes or runs")
    out = []
    for n, rows in held.groupby("n_params"):
        cov = covariates_of(rows, cls)
        at = rows.n_params.to_numpy(float) if cov else np.array([n], float)
        actual = float(rows.metric.mean())
        d_pred = 1 - float(np.mean(direct.predict(at, **cov)))
        d_reps = 1 - cls.curve(p_direct[ok], at, **cov).mean(1)
        l_pred = float(np.mean(stage1.predict(at, **cov)))
        l_reps = cls.curve(p_loss[ok], at, **cov).mean(1)
        t_pred = float(sig.predict(l_pred)[0])
        floor, ceiling, slope, mid = p_sig[ok].T  # each replicate's sigmoid at its own stage-1 loss
        t_reps = floor + (ceiling - floor) * _logistic(-slope * (l_reps - mid))
        dl, dh = interval(d_reps, fit.level)
        tl, th = interval(t_reps, fit.level)
        out.append(RouteHeldOut(float(n), actual, d_pred, float(dl), float(dh), l_pred, float(rows.task_loss.mean()),
                                t_pred, float(tl), float(th), (d_pred - actual) / actual, (t_pred - actual) / actual))
    d_mre = float(np.mean([abs(h.direct_re) for h in out]))
    t_mre = float(np.mean([abs(h.two_stage_re) for h in out]))
    better = "tie" if abs(d_mre - t_mre) <= 0.1 * max(d_mre, t_mre) else ("direct" if d_mre < t_mre else "two-stage")
    return TwoStageReport(
        task=task, law=fit.law, fit_sizes=tuple(float(s) for s in sizes), loss_law=stage1.params_, loss_r2=stage1.r2_,
        sigmoid=sig.params_, sigmoid_r2=sig.r2_, n_sigmoid_points=len(pts), direct_law=direct.params_,
        held_out=tuple(out), direct_mre=d_mre, two_stage_mre=t_mre, better=better, level=fit.level,
        points=tuple(zip(pts.n_params.astype(float).tolist(), pts.task_loss.astype(float).tolist(),
                         pts.metric.astype(float).tolist())))


