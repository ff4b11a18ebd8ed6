"""The run store read back as tables: one row per run, one row per evaluation, and the fitting
tables the laws take.

    df = load_runs("runs")          # one row per run: config columns + summary columns
    curves = load_curves("runs")    # one row per evaluation of every run
    table = law_table(df)           # variant, n_params, seed, value, run_id (+ convergence verdicts)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from workbench.base.errors import FitError
from workbench.base.runfiles import CONFIG, read_metrics
from workbench.laws.fit import get_law
from workbench.laws.tables import law_points
from workbench.runs.store import RunStore

log = logging.getLogger(__name__)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def load_runs(root: str | os.PathLike, include_unfinished: bool = False):
    """A tidy DataFrame, one row per run: id, status, model counts, config (dotted columns) and
    summary (best_eval_loss, steps, tokens, flops, wall_time_s, ...)."""
    rows, store = [], RunStore(root)
    for cfg_path in sorted(Path(root).glob(f"*/{CONFIG}")):
        run_dir = cfg_path.parent
        summary = store.summary(run_dir.name)
        if summary is None and not include_unfinished:
            continue
        cfg = store.config(run_dir.name) or {}
        row = dict(run_id=run_dir.name, kind=cfg.get("kind"), **_flatten(cfg.get("model", {})))
        row.update(_flatten(cfg.get("config", {})))
        if isinstance(cfg.get("data"), dict) and cfg["data"].get("tokenizer_sha256"):
            row["tokenizer_sha256"] = cfg["data"]["tokenizer_sha256"]
        row.update(summary if summary is not None else {"status": "unfinished"})
        rows.append(row)
    return pd.DataFrame(rows)


def law_table(runs, value: str = "best_eval_loss"):
    """The fitting table of `load_runs` output: variant (family/objective), n_params, seed, value,
    run_id (and the convergence verdict and forecast where the summaries have them). Runs that did not complete (diverged, unfinished) are left out with a warning."""
    if runs.empty or "status" not in runs:
        raise FitError("no finished runs to fit: train the sweep first (`workbench sweep`), or check its failures")
    ok = runs["status"] == "completed"
    if (~ok).any():
        bad = runs[~ok]
        why = [f"{r.run_id} ({r.status}" + (f" at step {int(r.diverged_step)})" if r.status == "diverged"
                                            and "diverged_step" in bad and r.diverged_step == r.diverged_step else ")")
               for r in bad.itertuples()]
        log.warning("leaving out %d run(s) that did not complete: %s", len(bad), ", ".join(why))
    if not ok.any():
        raise FitError(f"no completed runs: {_not_completed(runs)}; nothing to fit (see each run's summary.json)")
    rows = runs[ok]
    missing = rows[value].isna() if value in rows else pd.Series(True, index=rows.index)
    if missing.any():
        raise FitError(f"run {rows.run_id[missing].iloc[0]} is completed but its summary has no {value}: "
                       f"{int(missing.sum())} such run(s); delete their summary.json to train them again")
    variant = rows["family"].astype(str) + "/" + rows["train.objective"].astype(str)
    _one_tokenizer(rows, variant)
    table = pd.DataFrame(dict(variant=variant, n_params=rows["n_params"].astype(float), seed=rows["seed"],
                              value=rows[value].astype(float), run_id=rows["run_id"]))
    for col in ("converged", "convergence", "forecast_loss", "forecast_low", "forecast_high"):
        if col in rows:  # each run's convergence verdict travels with its point (`workbench.base.convergence`)
            table[col] = rows[col]
    if value == "best_eval_loss" and "eval_loss_floor" in rows and rows["eval_loss_floor"].notna().any():
        table["floor"] = rows["eval_loss_floor"].astype(float).to_numpy()  # a generated language's known floor
    return table.reset_index(drop=True)


def _one_tokenizer(rows, variant) -> None:
    """Refuse a law over runs of one variant trained on different tokenizers (a data cache rebuilt
    between runs): their losses are not on one scale."""
    if "tokenizer_sha256" not in rows:
        return
    for name, group in rows.groupby(variant.to_numpy(), sort=True):
        shas = group.tokenizer_sha256.dropna()
        if shas.nunique() > 1:
            first = group[group.tokenizer_sha256 == shas.iloc[0]].run_id.iloc[0]
            other = group[group.tokenizer_sha256 != shas.iloc[0]].run_id.iloc[0]
            raise FitError(f"{name}: its runs used {shas.nunique()} tokenizers ({first} and {other} differ; the data "
                           f"cache was rebuilt between them); one law takes runs of one tokenizer: retrain or "
                           f"leave out one group")


def _not_completed(runs) -> str:
    """'2 diverged (lr 1e+06), 1 unfinished': why runs are left out of a fit, counted by status, with the
    learning rates of the diverged ones (the usual cause)."""
    parts = []
    for status, rows in runs.groupby("status", sort=True):
        lrs = sorted({float(v) for v in rows.get("train.lr", rows.get("lr", pd.Series(dtype=float))).dropna()})
        lr = f" (lr {', '.join(f'{v:g}' for v in lrs)})" if status == "diverged" and lrs else ""
        parts.append(f"{len(rows)} {status}{lr}")
    return ", ".join(parts)


def load_curves(root: str | os.PathLike):
    """Every logged evaluation of every run (finished or not), with its run id."""
    store = RunStore(root)
    rows = [dict(run_id=d.parent.name, **r) for d in sorted(Path(root).glob(f"*/{CONFIG}"))
            for r in read_metrics(store.path(d.parent.name))]  # a folder linked out of the store is refused
    return pd.DataFrame(rows)


def store_table(root, label: str | None = None) -> pd.DataFrame:
    """Every evaluation of every finished pretraining run under `root`, in the schema: variant
    (`label`, else family/objective), n_params, tokens, seed, step, value (eval loss), the known
    floor where runs on a generated language recorded one, plus each run's `converged` verdict and
    run id. `to_csv` it to share the runs; `read_table` reads it back."""

    runs = load_runs(root)
    if runs.empty or "kind" not in runs or not (runs.kind == "pretrain").any():
        raise FitError(f"no finished pretraining run under {root}")
    runs = runs[(runs.kind == "pretrain") & (runs.status == "completed")]
    curves = load_curves(root)
    curves = curves[curves.run_id.isin(runs.run_id) & curves.eval_loss.notna()]
    info = runs.set_index("run_id")
    variant = label or None
    out = pd.DataFrame(dict(
        variant=[variant or f"{info.family[r]}/{info['train.objective'][r]}" for r in curves.run_id],
        n_params=[float(info.n_params[r]) for r in curves.run_id], tokens=curves.tokens.astype(float).to_numpy(),
        seed=[int(info.seed[r]) for r in curves.run_id], step=curves.step.astype(int).to_numpy(),
        value=curves.eval_loss.astype(float).to_numpy(),
        converged=[info.converged[r] if "converged" in info else None for r in curves.run_id],
        run_id=curves.run_id.to_numpy()))
    if "eval_loss_floor" in info and info.eval_loss_floor.notna().any():  # a generated language's known floor
        out.insert(list(out.columns).index("value") + 1, "floor", [info.eval_loss_floor[r] for r in curves.run_id])
    return out.sort_values(["variant", "n_params", "seed", "step"]).reset_index(drop=True)


def fitting_rows(runs_table: pd.DataFrame, root, law: str = "power") -> pd.DataFrame:
    """The rows `law` is fitted on for the store's runs of `runs_table` (a `runs.law_table`): that
    table for a law of N alone; for a law with covariates (the joint law) the runs' checkpoints
    from the store under `root` (`store_table`, then `law_points`), labelled by the table's variant."""
    if not get_law(law).covariates:
        return runs_table
    label = str(runs_table.variant.iloc[0]) if runs_table.variant.nunique() == 1 else None
    curves = store_table(root, label=label)
    return law_points(curves[curves.run_id.isin(runs_table.run_id)].reset_index(drop=True), law)


