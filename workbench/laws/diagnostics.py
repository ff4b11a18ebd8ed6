"""Convergence debugging and compute accounting on a table of runs.

    convergence_check(df, FitConfig())        # each size vs the law fitted on the other sizes
    compute_summary(runs, target_n=85e6, target_tokens=32e9)

A run that sits above the leave-one-size-out band was likely under-trained (stopped too early, or
a decaying schedule made it look converged); one below it is suspicious too (leakage, a bug).
Torch-free: the stopping rule is replayed from `workbench.base.stopping`, nothing is retrained here.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from workbench.base.errors import FitError
from workbench.base.stopping import replay_early_stopping
from workbench.config import FitConfig
from workbench.laws.bootstrap import bootstrap_law
from workbench.laws.fit import as_points, get_law

log = logging.getLogger(__name__)


def convergence_check(df: pd.DataFrame, fit: FitConfig = FitConfig(), z_threshold: float = 2.0,
                      sigma_floor: float = 0.002) -> pd.DataFrame:
    """One row per run: the leave-one-size-out prediction, its band, a z-like deviation and a flag.

    z = (ln y - ln pred) / sigma, where sigma combines the bootstrap spread of the prediction and
    the log-residual scatter of the other sizes' fit, never below `sigma_floor` (0.2% in log space:
    a fit through two or three sizes has no scatter to estimate noise from, and seed-to-seed
    differences of a converged loss are rarely smaller). flag: 'above' (z > z_threshold, an
    under-trained suspect), 'below' (z < -z_threshold) or 'ok'. The law, replicates, level and
seed come from `fit`, so the same runs always give the same flags. Needs one size more than the
law needs to be fitted on. The check is over converged losses, one per run: a law over N and tokens
(the joint law) is checked through its limit of unlimited tokens, the saturating law of N."""
    if get_law(fit.law).covariates:
        log.info("convergence check: the %s law is read at unlimited tokens, the saturating law of N", fit.law)
        fit = dataclasses.replace(fit, law="saturating")
    n_all, _ = as_points(df)
    sizes = np.unique(n_all)
    cls = get_law(fit.law)
    if len(sizes) < cls.min_sizes + 1:
        raise FitError(f"the convergence check needs >= {cls.min_sizes + 1} sizes (fit on >= {cls.min_sizes} "
                       f"others), got {len(sizes)}")
    zq = _z(fit.level)
    rows = []
    for s in sizes:
        others, here = df[df.n_params != s], df[df.n_params == s]
        law = cls().fit(others)
        boot = bootstrap_law(others, law=fit.law, B=fit.n_bootstrap, random_state=fit.random_state)
        band = boot.band([s], fit.level).iloc[0]
        line_sd = (np.log(band.upper) - np.log(band.lower)) / (2 * zq)
        on, oy = as_points(others)
        resid_sd = np.std(np.log(oy) - np.log(law.predict(on)), ddof=2) if len(oy) > 2 else 0.0
        sigma = max(float(np.hypot(line_sd, resid_sd)), sigma_floor)
        pred = float(law.predict(s))
        for _, r in here.iterrows():
            z = (np.log(r.value) - np.log(pred)) / sigma
            rows.append({**r.to_dict(), "pred": pred, "lower": pred * np.exp(-zq * sigma),
                         "upper": pred * np.exp(zq * sigma), "z": float(z),
                         "flag": "above" if z > z_threshold else "below" if z < -z_threshold else "ok"})
    return pd.DataFrame(rows)


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def compute_summary(runs: pd.DataFrame, target_n: float, target_tokens: float) -> dict:
    """C = 6 N D per run (runs need n_params and tokens) against one target run's 6 N D.

    Every row counts: seeds, tuning trials and finetuning runs included."""
    missing = {"n_params", "tokens"} - set(runs.columns)
    if missing:
        raise FitError(f"runs need columns n_params and tokens; missing {sorted(missing)}")
    c = 6.0 * runs["n_params"].astype(float) * runs["tokens"].astype(float)
    target = 6.0 * float(target_n) * float(target_tokens)
    return dict(n_runs=len(runs), small_flops=float(c.sum()), target_flops=target,
                ratio=target / float(c.sum()), small_params_total=float(runs["n_params"].unique().sum()),
                param_ratio=float(target_n) / float(runs["n_params"].unique().sum()),
                per_run_flops=c.to_numpy())


def plateaus(steps, values, min_steps: int, min_delta: float = 0.0) -> pd.DataFrame:
    """Stretches of a learning curve with no improvement of the best value by `min_delta` for more
    than `min_steps` steps: start (the step of the last improvement), end (the next improvement, or
    the last logged step), length, and whether it runs to the end of the curve (`open`).

    An open plateau longer than the patience is what early stopping acts on; closed ones are
    stretches a smaller patience would have stopped in."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    rows, best, best_step = [], np.inf, None
    for s, v in zip(steps, values):
        if not np.isfinite(v):
            continue
        if v < best - min_delta or best_step is None:
            if best_step is not None and s - best_step > min_steps:
                rows.append(dict(start=best_step, end=s, length=s - best_step, open=False))
            best, best_step = min(best, v), s
    if best_step is not None and len(steps) and steps[-1] - best_step > min_steps:
        rows.append(dict(start=best_step, end=float(steps[-1]), length=float(steps[-1] - best_step), open=True))
    return pd.DataFrame(rows, columns=["start", "end", "length", "open"])


def patience_needed(steps, values, min_delta: float = 0.0) -> float:
    """The longest wait between improvements on a logged curve: any patience above it would not
    have stopped the run before its last improvement."""
    p = plateaus(steps, values, 0, min_delta)
    closed = p[~p.open]
    return float(closed.length.max()) if len(closed) else 0.0


def undertrained_variant(cfg, patience: int, min_delta: float):
    """`cfg` (a PretrainConfig) with a stopping rule that gives up early: the convergence-debugging
    study's deliberately under-trained run (its own run id, so it never replaces the real one)."""
    import dataclasses

    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, patience=patience, min_delta=min_delta))


def debug_convergence(table: pd.DataFrame, curves: pd.DataFrame, suspect: str, rerun: str,
                      fit: FitConfig = FitConfig(), z_threshold: float = 2.0, patience_grid=(),
                      min_delta: float = 0.0) -> dict:
    """The convergence-debugging loop on one suspect run and its re-run (same size, more patience).

    `table` has one row per run (run_id, n_params, seed, value) for the other sizes plus `suspect`
    and `rerun`. Returns the check with the suspect in place (is it flagged?), the check with the
    re-run in its place (is it back inside the band?), and early stopping replayed on the re-run's
    logged curve for each patience in `patience_grid`: where it stops, its best loss, and whether
    that loss is inside the band; `patience_enough` is the smallest patience that gets inside."""
    others = table[~table.run_id.isin([suspect, rerun])]
    before = convergence_check(pd.concat([others, table[table.run_id == suspect]]), fit, z_threshold)
    after = convergence_check(pd.concat([others, table[table.run_id == rerun]]), fit, z_threshold)
    band = after[after.run_id == rerun].iloc[0]
    curve = curves[curves.run_id == rerun].sort_values("step")
    replay = []
    for p in patience_grid:
        r = replay_early_stopping(curve.step, curve.eval_loss, p, min_delta)
        replay.append(dict(patience=p, **r, inside_band=bool(band.lower <= r["best"] <= band.upper)))
    replay = pd.DataFrame(replay)
    enough = replay[replay.inside_band].patience.min() if len(replay) and replay.inside_band.any() else None
    return dict(before=before, after=after, replay=replay,
                suspect_flag=before.loc[before.run_id == suspect, "flag"].iloc[0],
                rerun_flag=band.flag, patience_enough=None if enough is None else int(enough))
