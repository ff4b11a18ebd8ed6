"""The paper's test of convergence, built in: continue an early-stopped run and see whether its loss
still falls.

    cert = certify("runs/cpu", run_id)      # continue from stop.pt for 2x its patience
    cert["gain"], cert["certified"]          # the best eval loss's relative drop; certified when < 1%
    certify_store("runs/cpu", which="largest")   # the largest size's runs (or "all") of a store

An early-stopped pretraining run keeps its full state where it stopped (`stop.pt`: model, AdamW,
schedule, early-stopping state and the dropout generator). With the data order and masks fixed by
(seed, step), continuing from there is the curve the run would have followed with more patience:
its wait since the best was 1x the patience, the continuation adds `factor` x more (3x in all, the
paper's re-training with more patience, at a fraction of its cost). The continuation logs into the
run's own `certificate/` folder (its metrics, and its resume checkpoint should it be interrupted)
and never touches the run's `best/` or its curve.

A run whose best eval loss falls by `min_gain` (1%) or more in the continuation is **not**
converged, whatever its stop reason said: its summary's `converged` becomes false and
`convergence` says why. One that stays within 1% keeps its verdict, with the certificate beside it.
Where the run's learning-curve forecast said otherwise (its interval entirely 1% or more below the
best while the continuation found no such drop, or no drop forecast where there was one), the
certificate decides and `forecast_missed` says so.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import torch

from workbench.base.errors import WorkbenchError
from workbench.base.files import atomic_path, write_json_atomic
from workbench.base.runfiles import CERTIFICATE, RESUME, STOP, SUMMARY, read_metrics
from workbench.config import ExecConfig, PretrainConfig, from_dict
from workbench.runs.pretrain import PretrainSpec
from workbench.runs.store import RunStore
from workbench.runs.tables import load_runs

log = logging.getLogger(__name__)

FACTOR = 2.0  # the continuation's length in patiences: with the wait before the stop, 3x the patience
MIN_GAIN = 0.01  # a drop of the best eval loss this large (relative) means the run was not converged
FILE = "certificate.json"


def certify(root: str | Path, run_id: str, factor: float = FACTOR, min_gain: float = MIN_GAIN,
            exec_cfg: ExecConfig = ExecConfig()) -> dict:
    """Certify one early-stopped pretraining run (see the module's doc); returns the certificate,
    also written to `<run>/certificate/certificate.json` and into the run's summary. A run already
    certified with the same `factor` and `min_gain` is not trained again."""
    from workbench.train.device import run_context, seeded
    from workbench.train.loop import train_loop

    if not (factor > 0 and math.isfinite(factor)):
        raise WorkbenchError(f"factor must be a positive number of patiences, got {factor!r}")
    if not 0 < min_gain < 1:
        raise WorkbenchError(f"min_gain must be in (0, 1), got {min_gain!r}")
    store = RunStore(root)
    summary, record = store.summary(run_id), store.config(run_id)
    if summary is None or record is None:
        raise WorkbenchError(f"{run_id}: no finished run of that id under {root}")
    old = summary.get("certificate")
    if old and old.get("factor") == factor and old.get("min_gain") == min_gain:
        return old
    if record.get("kind") != "pretrain":
        raise WorkbenchError(f"{run_id} is a {record.get('kind')} run: certificates are for pretraining runs")
    if summary.get("status") != "completed" or summary.get("stop_reason") != "early_stopped":
        raise WorkbenchError(f"{run_id} did not stop early ({summary.get('status')}, {summary.get('stop_reason')}): it "
                             f"is not converged already, and there is nothing to certify; train it to an early stop")
    cfg = from_dict(PretrainConfig, record["config"], "config.json")
    spec = PretrainSpec(cfg, tokenizer_sha256=(record.get("data") or {}).get("tokenizer_sha256"))
    data = spec.prepare()  # the run's own tokenizer, or a one-line refusal
    stop_step, patience = int(summary["steps"]), int(cfg.train.patience)
    extra = max(cfg.train.eval_interval, int(round(factor * patience)))
    t0 = time.time()
    with run_context(exec_cfg) as ctx, store.claim(run_id, attempt=False) as run_dir:
        cert_dir = run_dir / CERTIFICATE
        _begin(run_dir, cert_dir, stop_step)
        with seeded(cfg.seed, ctx.device):
            s = spec.setup(data, cert_dir, ctx)
            loop = dataclasses.replace(s.loop, max_steps=stop_step + extra, patience=10 ** 12, keep_stop_state=False,
                                       checkpoint_interval=0)
            s = dataclasses.replace(s, loop=loop, save_best=lambda: None)  # the run's best/ stays its own
            res = train_loop(s, cert_dir, ctx.device, ctx.precision, ctx.exec.progress)
        rows = [r for r in read_metrics(cert_dir) if r["step"] > stop_step]
        before = float(summary["best_eval_loss"])
        after = min([before] + [float(r["eval_loss"]) for r in rows])
        best_row = min(rows, key=lambda r: r["eval_loss"]) if rows else None
        gain = (before - after) / before
        cert = dict(factor=factor, min_gain=min_gain, from_step=stop_step, to_step=int(res.steps),
                    steps=int(res.steps) - stop_step, patience=patience, best_before=before, best_after=after,
                    best_step_after=int(best_row["step"]) if best_row and best_row["eval_loss"] < before else None,
                    continuation_best=float(best_row["eval_loss"]) if best_row else None, gain=gain,
                    certified=bool(gain < min_gain), verdict_before=summary.get("converged"),
                    wall_time_s=round(time.time() - t0, 2))
        cert.update(_forecast_check(summary, cert))
        cert["line"] = _line(cert)
        write_json_atomic(cert_dir / FILE, cert)
        (cert_dir / RESUME).unlink(missing_ok=True)
        write_json_atomic(run_dir / SUMMARY, _with_certificate(summary, cert))
    log.info("%s: %s", run_id, cert["line"])
    return cert


def _begin(run_dir: Path, cert_dir: Path, stop_step: int) -> None:
    """The continuation's folder, starting from the run's stop state (unless an interrupted
    continuation left its own resume checkpoint): the state is the run's, relabelled as the
    continuation's, which the resume check then accepts."""
    if (cert_dir / RESUME).exists():
        return
    if not (run_dir / STOP).exists():
        raise WorkbenchError(f"{run_dir.name} has no {STOP} (runs trained before certificates existed keep no stop "
                             f"state): train it again to certify it")
    cert_dir.mkdir(exist_ok=True)
    for old in cert_dir.iterdir():  # a finished certificate of other settings: start over
        if old.is_file():
            old.unlink()
    state = torch.load(run_dir / STOP, map_location="cpu", weights_only=True)
    if state.get("run_id") not in (None, run_dir.name) or int(state.get("step", -1)) != stop_step:
        raise WorkbenchError(f"{run_dir / STOP} is not {run_dir.name}'s state at its stop (step {stop_step}): it was "
                             f"written by {state.get('run_id')} at step {state.get('step')}")
    state["run_id"] = cert_dir.name
    with atomic_path(cert_dir / RESUME) as tmp:
        torch.save(state, tmp)


def _forecast_check(summary: dict, cert: dict) -> dict:
    """Did the run's learning-curve forecast agree with the certificate?"""
    lo, hi = summary.get("forecast_low"), summary.get("forecast_high")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return dict(forecast_missed=None)
    before, min_gain = cert["best_before"], cert["min_gain"]
    forecast_drop = hi <= before * (1 - min_gain)  # the whole interval 1% or more below the best
    found_drop = not cert["certified"]
    missed = forecast_drop != found_drop
    why = None
    if missed and forecast_drop:
        why = (f"the forecast put the converged loss at {summary.get('forecast_loss'):.4f} [{lo:.4f}, {hi:.4f}], "
               f"1% or more below the best; continuing found {100 * cert['gain']:.2f}%")
    elif missed:
        why = (f"the forecast [{lo:.4f}, {hi:.4f}] saw no drop of 1%; continuing lowered the best by "
               f"{100 * cert['gain']:.2f}%")
    return dict(forecast_missed=missed, forecast_note=why)


def certificate_line(cert) -> str:
    """The certificate's one line ("" for a run without one): for tables and summaries."""
    return cert.get("line", "") if isinstance(cert, dict) else ""


def _line(cert: dict) -> str:
    span = f"continuing {cert['factor']:g}x its patience (steps {cert['from_step']}..{cert['to_step']})"
    if cert["certified"]:
        text = (f"certified: {span} lowered the best eval loss by {100 * cert['gain']:.2f}% "
                f"(< {100 * cert['min_gain']:g}%)")
    else:
        text = (f"NOT converged: {span} lowered the best eval loss by {100 * cert['gain']:.2f}% "
                f"(>= {100 * cert['min_gain']:g}%), to {cert['best_after']:.4f} at step {cert['best_step_after']}")
    if cert.get("forecast_missed"):
        text += f"; the forecast missed ({cert['forecast_note']})"
    return text


def _with_certificate(summary: dict, cert: dict) -> dict:
    out = dict(summary, certificate=cert)
    before = summary.get("convergence_before_certificate", summary.get("convergence"))
    out["convergence_before_certificate"] = before
    if cert["certified"]:
        out["convergence"] = f"{before}; {cert['line']}" if before else cert["line"]
        out["converged"] = summary.get("converged")
    else:
        out["converged"] = False
        out["convergence"] = cert["line"]
    return out


def certify_store(root: str | Path, which: str = "largest", factor: float = FACTOR, min_gain: float = MIN_GAIN,
                  exec_cfg: ExecConfig = ExecConfig(), within=None) -> list[dict]:
    """Certify the early-stopped pretraining runs of a store (of them, those in `within`, run ids,
    when given: one sweep's): `which` = "largest" (every run of the largest size of each variant),
    "all", or a comma-separated list of run ids. Runs that did not stop early are skipped with a
    warning (they are not converged already). Returns one dict per run: run_id, n_params and the
    certificate (None where skipped, with `skipped` saying why)."""
    runs = load_runs(root)
    if runs.empty or "kind" not in runs or not (runs.kind == "pretrain").any():
        raise WorkbenchError(f"no finished pretraining run under {root} to certify")
    pre = runs[(runs.kind == "pretrain") & (runs.status == "completed")]
    if within is not None:
        pre = pre[pre.run_id.isin(set(within))]
    if which == "all":
        chosen = pre
    elif which == "largest":
        variant = pre["family"].astype(str) + "/" + pre["train.objective"].astype(str)
        chosen = pre[pre.n_params == pre.groupby(variant).n_params.transform("max")]
    else:
        ids = [r.strip() for r in which.split(",") if r.strip()]
        unknown = sorted(set(ids) - set(pre.run_id))
        if unknown:
            raise WorkbenchError(f"no completed pretraining run {unknown[0]!r} under {root} (certify takes 'largest', "
                                 f"'all' or run ids)")
        chosen = pre[pre.run_id.isin(ids)]
    out = []
    for r in chosen.sort_values(["n_params", "run_id"]).itertuples():
        if r.stop_reason != "early_stopped":
            log.warning("%s stopped at its %s: not converged already, not certified", r.run_id, r.stop_reason)
            out.append(dict(run_id=r.run_id, n_params=int(r.n_params), certificate=None,
                            skipped=f"stopped at its {r.stop_reason}, not early"))
            continue
        out.append(dict(run_id=r.run_id, n_params=int(r.n_params),
                        certificate=certify(root, r.run_id, factor, min_gain, exec_cfg), skipped=None))
    return out
