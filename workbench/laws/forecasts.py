"""Forecasts registered before the run: a dated prediction written down, then scored once the run
lands, never re-fitted after the fact.

    fc = make_forecast(table, "power", target_n=786_432, fit=study.fit)     # pred, interval, what it saw
    path = save_forecast(fc, "runs/forecasts")                              # <created>-N<target>.json
    score_forecast(fc, actual=6.116)        # {"actual", "error", "inside"}: the relative error, in the band or not

A forecast records the law, the target (N, and tokens for the joint law), the prediction and its
bootstrap interval at `fit.level`, the table it was fitted on (sizes, run ids where the table has
them, a sha256 of its rows) and when it was made. Scoring reads that file only: the law is not fitted
again, so a forecast cannot drift toward the answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.base.errors import FitError

FOLDER = "forecasts"  # inside a run store: not a run folder (no config.json), so the store ignores it


def make_forecast(table: pd.DataFrame, law: str, target_n: float, target_tokens: float | None = None,
                  fit=None, note: str = "", variant: str = "") -> dict:
    """The forecast of `law` fitted on `table` (the fitting rows: `law_points` or a law table) at
    `target_n` (and `target_tokens` for a law of tokens, only then), with its interval from the
    bootstrap. `variant` names what it forecasts (a sweep's label): only its runs score it."""
    from workbench.config import FitConfig
    from workbench.laws.bootstrap import bootstrap_law
    from workbench.laws.fit import get_law

    fit = fit or FitConfig()
    cls = get_law(law)
    if not np.isfinite(target_n) or target_n <= 0:
        raise FitError(f"a forecast's target N must be a positive size, got {target_n}")
    if cls.covariates and target_tokens is None:
        raise FitError(f"the {law} law predicts at a token count too: give the target as N,D (e.g. --target 1e8,2e9)")
    if not cls.covariates and target_tokens is not None:
        raise FitError(f"the {law} law predicts from N alone: give the target as N, without tokens")
    cov = {"tokens": np.array([float(target_tokens)])} if cls.covariates else {}
    fitted = cls().fit(table, **({"tokens": table["tokens"].to_numpy(float)} if cls.covariates else {}))
    boot = bootstrap_law(table, law=law, B=fit.n_bootstrap, random_state=fit.random_state)
    lo, hi = (float(v) for v in np.percentile(boot.predictions([target_n], **cov)[:, 0],
                                               [50 * (1 - fit.level), 50 * (1 + fit.level)]))
    rows = table[[c for c in ("variant", "n_params", "tokens", "seed", "step", "value") if c in table]]
    return dict(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), variant=variant, law=law,
        target_n=float(target_n),
        target_tokens=None if target_tokens is None else float(target_tokens),
        pred=float(fitted.predict(np.array([target_n]), **cov)[0]), low=lo, high=hi, level=fit.level,
        params=fitted.params_, sizes=sorted(float(n) for n in table.n_params.unique()),
        run_ids=sorted(map(str, table.run_id.unique())) if "run_id" in table else [],
        n_points=int(len(table)), table_sha256=hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest(),
        note=note)


def save_forecast(forecast: dict, folder: str | Path) -> Path:
    """Write the forecast as `<folder>/<created>-<law>-N<target>[-D<tokens>][-<k>].json`, under a name
    no file has (taken with O_EXCL, so two processes never share one): a forecast is never replaced."""
    import os

    from workbench.base.files import write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = forecast["created"].replace(":", "").replace("+0000", "Z")
    tokens = f"-D{forecast['target_tokens']:.3g}" if forecast.get("target_tokens") else ""
    stem = f"{stamp}-{forecast['law']}-N{forecast['target_n']:.0f}{tokens}"
    for k in range(1, 1000):
        path = folder / f"{stem}{'' if k == 1 else f'-{k}'}.json"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # the name is ours now
        except FileExistsError:
            continue
        write_json_atomic(path, forecast)
        return path
    raise FitError(f"no free forecast name under {folder} for {stem}")  # pragma: no cover


def load_forecasts(folder: str | Path) -> list[dict]:
    """Every forecast in `folder`, oldest first (unreadable files skipped by name)."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            fc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(fc, dict) and {"target_n", "pred", "low", "high", "created", "law"} <= set(fc):
            out.append(dict(fc, file=path.name))
    return out


def score_forecast(forecast: dict, actual: float) -> dict:
    """The forecast against what was measured: relative error (pred - actual) / actual, and whether
    the measured value lies inside the forecast's interval."""
    actual = float(actual)
    return dict(actual=actual, error=(forecast["pred"] - actual) / actual,
                inside=bool(forecast["low"] <= actual <= forecast["high"]))


def describe(forecast: dict, actual: float | None) -> str:
    """One line: what was forecast, when, and its score (or that its run has not landed)."""
    target = f"N = {forecast['target_n']:,.0f}" + (f", D = {forecast['target_tokens']:.3g}"
                                                    if forecast.get("target_tokens") else "")
    head = (f"forecast of {forecast['created']} ({forecast['law']} law on {len(forecast['sizes'])} sizes) at {target}: "
            f"{forecast['pred']:.4f} [{forecast['low']:.4f}, {forecast['high']:.4f}]")
    if actual is None:
        return head + "; its run has not landed yet"
    s = score_forecast(forecast, actual)
    return head + (f"; measured {s['actual']:.4f}, error {100 * s['error']:+.2f}% "
                   f"({'inside' if s['inside'] else 'OUTSIDE'} the interval)")


def forecast_lines(root: str | Path, losses: dict, variant: str = "") -> list[str]:
    """One line per forecast of `variant` registered in the run store under `root`
    (`<root>/forecasts/`), scored against `losses` ({N: mean best eval loss} of that variant's sizes
    trained so far) where its size has landed. Forecasts of other variants are left to their own
    sweeps; a forecast at given tokens (a law of tokens) is not scored against best eval losses,
    which are reached at other token counts."""
    measured = {float(n): float(v) for n, v in losses.items()}
    out = []
    for fc in load_forecasts(Path(root) / FOLDER):
        if fc.get("variant", "") != variant:
            continue
        if fc.get("target_tokens"):
            out.append(describe(fc, None).replace("its run has not landed yet", "scored against a table at its "
                                                                                  "tokens, not here"))
            continue
        out.append(describe(fc, measured.get(float(fc["target_n"]))))
    return out
