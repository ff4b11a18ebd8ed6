"""The paper's test of convergence, built in: would the run, retrained with 3x its patience, end
more than 1% lower? Continue it from its stop and see.

    cert = certify("runs/cpu", run_id)      # continue from stop.pt as the run with 3x its patience would go
    cert["gain"], cert["certified"]          # the best eval loss's relative drop; certified when < 1%
    certify_store("runs/cpu", which="largest")   # the largest size's runs (or "all") of a store
    PretrainSpec(cfg, then=CertifyAfter())       # certified in the worker that trains it, right after

An early-stopped pretraining run keeps its full state where it stopped (`stop.pt`: model, AdamW,
schedule, early-stopping state and the CPU and CUDA dropout generators). With the data order and
masks fixed by (seed, step), the same run retrained with more patience follows the same curve, step
for step (tested: equal to such a retrain's evaluations), so continuing from the stop state *is* that
retrain past the stop, at a fraction of its cost. The continuation keeps the run's early-stopping
state (best, best step, min-delta) under the longer rule, (1 + `factor`) x the patience (3x), and
stops where the retrained run stops: `factor` patiences after the stop when nothing improves, later
when something does (a fixed window would miss a drop after a gain inside it: measured, a run whose
2-patience window saw 0.64% went on to 1.6%). It ends sooner once its best is `min_gain` (1%) below
the lowest loss the run reached, since the retrained run's best could only be lower: the verdict is
decided there. Its step guard is the retrained run's, (1 + `factor`) x `train.max_steps` under a
constant LR; a decaying schedule ends at its horizon, and a run whose horizon leaves less than the
longer rule's wait after its best step is refused (past a linear schedule's horizon the LR is 0). A
continuation still waiting out its patience at the guard (the retrained run would stop at its
horizon) or one that diverges is NOT converged, whatever its gain. It runs at the run's own
precision and micro-batching, logs into the run's `certificate/` folder (metrics, a resume
checkpoint should it be interrupted, `start.json` naming the stop state and rule it started from)
and never touches `best/` or the run's curve. `stop.pt` holds the model and AdamW's
two moments: about 3x the model's size, kept with each run.

The gain is measured from the lowest eval loss the run reached before its stop (with a min-delta,
the recorded best counts only gains larger than it). A drop of `min_gain` (1%) or more makes the run
**not** converged, whatever its stop reason said: `converged` becomes false and `convergence` says
why. A smaller drop keeps the verdict, with "certified: ..." beside it. Only runs converged by their
verdict are certified (a horizon stop or a best step on a decayed LR is not converged already).
Where the run's learning-curve forecast said otherwise (its interval wholly `min_gain` or more below
the lowest loss reached while the continuation found no such drop, or wholly above that line where
it found one), the certificate decides and its line says the forecast missed; an interval that
straddles the line says nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.base.errors import CorruptCheckpointError, WorkbenchError
from workbench.base.files import atomic_path, sha256, write_json_atomic
from workbench.base.runfiles import CERTIFICATE, METRICS, RESUME, STOP, SUMMARY, read_metrics
from workbench.config import ExecConfig, PretrainConfig, from_dict
from workbench.runs.pretrain import PretrainSpec
from workbench.runs.store import RunBusy, RunStore
from workbench.runs.tables import load_runs

log = logging.getLogger(__name__)

FACTOR = 2.0  # the retrained run's patience is (1 + FACTOR)x the run's: 3x, the paper's test
MIN_GAIN = 0.01  # a drop of the best eval loss this large (relative) means the run was not converged
FILE, START = "certificate.json", "start.json"
METHOD = "rule"  # continued under the longer patience's own stopping rule (earlier ones: a fixed window)


def certify(root: str | Path, run_id: str, factor: float = FACTOR, min_gain: float = MIN_GAIN,
            exec_cfg: ExecConfig = ExecConfig()) -> dict:
    """Certify one early-stopped, converged pretraining run (see the module's doc); returns the
    certificate, also written to `<run>/certificate/certificate.json` and into the run's summary. A
    run already certified with the same `factor` and `min_gain` is not trained again."""
    from workbench.train.device import run_context, seeded, torch_threads
    from workbench.train.loop import train_loop

    if not (factor > 0 and math.isfinite(factor)):
        raise WorkbenchError(f"factor must be a positive number of patiences, got {factor!r}")
    if not 0 < min_gain < 1:
        raise WorkbenchError(f"min_gain must be in (0, 1), got {min_gain!r}")
    store = RunStore(root)
    summary, record = _certifiable(store, run_id, root)
    if _same(summary.get("certificate"), factor, min_gain):
        return summary["certificate"]
    cfg = from_dict(PretrainConfig, record["config"], "config.json")
    spec = PretrainSpec(cfg, tokenizer_sha256=(record.get("data") or {}).get("tokenizer_sha256"))
    stop_step, patience = int(summary["steps"]), int(cfg.train.patience)
    rule = math.ceil((1 + factor) * patience - 1e-9)  # the patience of the run retrained "with 3x the patience"
    # its step guard: (1 + factor)x the run's under a constant LR; a decaying schedule ends at its horizon
    constant = cfg.train.schedule == "constant"
    guard = math.ceil((1 + factor) * cfg.train.max_steps - 1e-9) if constant else cfg.train.max_steps
    best_step, every = int(summary["best_step"]), int(cfg.train.eval_interval)
    if best_step + rule > guard:  # the retrained run could not wait its patience out (a linear one ends at LR 0)
        raise WorkbenchError(f"{run_id}: the retrained run's step guard, {guard:,} (train.max_steps="
                             f"{cfg.train.max_steps}{f' x {1 + factor:g}' if constant else ', its horizon'}), ends "
                             f"before step {best_step + rule:,}, {1 + factor:g}x its patience after its best step: "
                             f"raise train.max_steps to certify it")
    if stop_step % every and guard > stop_step:  # its last evaluation came only because its horizon did
        raise WorkbenchError(f"{run_id} stopped at step {stop_step}, its horizon, off its evaluation grid (every "
                             f"{every}): the run retrained with more patience never evaluates there; make "
                             f"train.max_steps a multiple of train.eval_interval to certify it")
    reached = [float(r["eval_loss"]) for r in read_metrics(store.path(run_id)) if r["step"] <= stop_step]
    before = min(reached)  # the lowest the run reached (its recorded best counts min-delta gains only)
    decided = before * (1 - min_gain)  # reaching this decides it: the retrained run's best would be as low
    data = spec.prepare()  # the run's own tokenizer, or a one-line refusal
    # the run's own precision and micro-batching: another would give another curve (bf16 vs fp32 evals)
    exec_cfg = dataclasses.replace(exec_cfg, precision=summary.get("precision") or exec_cfg.precision,
                                   micro_batch_size=_micro(summary, cfg))
    t0 = time.time()
    # exec.cpus_per_run as a worker would have it (`workbench certify` runs in the command's own process)
    with run_context(exec_cfg) as ctx, torch_threads(exec_cfg.cpus_per_run), \
            store.claim(run_id, attempt=False) as run_dir:
        summary, record = _certifiable(store, run_id, root)  # again under the claim: another may have finished
        if _same(summary.get("certificate"), factor, min_gain):
            return summary["certificate"]
        cert_dir = run_dir / CERTIFICATE
        for name in (RESUME, METRICS, FILE, START):
            store.check_inside(cert_dir / name)  # nothing of the continuation is written out of the store
        stop = run_dir / STOP  # missing: `_begin` refuses in one line
        start = dict(run_id=run_id, stop_step=stop_step, rule_patience=rule, guard=guard, stop_at=decided,
                     stop_sha256=sha256(stop) if stop.exists() else None)
        if stop_step - best_step >= rule:  # the retrained run stops here too (a patience under the eval interval)
            _empty(cert_dir)  # another rule's continuation: none of it is this one's
            end, reason = stop_step, "early_stopped"
        else:
            with seeded(cfg.seed, ctx.device):
                res = _continue(spec, data, run_dir, cert_dir, start, ctx, train_loop)
            end, reason = int(res.steps), res.stop_reason
        rows = [r for r in read_metrics(cert_dir) if stop_step < r["step"] <= end]
        after = min([before] + [float(r["eval_loss"]) for r in rows])
        best_row = min(rows, key=lambda r: r["eval_loss"]) if rows else None
        gain = (before - after) / before
        # decided: 1% below; guard: the retrained run would stop at its horizon; patience: it stops as the run did
        ended = ("diverged" if reason == "diverged" else "decided" if after <= decided
                 else "guard" if reason == "horizon" else "patience")
        cert = dict(method=METHOD, factor=factor, min_gain=min_gain, from_step=stop_step, to_step=end,
                    steps=end - stop_step, patience=patience, rule_patience=rule, guard=guard, ended=ended,
                    best_recorded=float(summary["best_eval_loss"]), best_before=before, best_after=after,
                    continuation_best=float(best_row["eval_loss"]) if best_row else None,
                    best_step_after=int(best_row["step"]) if best_row and best_row["eval_loss"] < before else None,
                    gain=gain, certified=ended == "patience", device=str(ctx.device), precision=ctx.precision,
                    wall_time_s=round(time.time() - t0, 2))
        cert.update(_forecast_check(summary, cert))
        cert["line"] = _line(cert)
        write_json_atomic(cert_dir / FILE, cert)
        write_json_atomic(run_dir / SUMMARY, _with_certificate(summary, cert))  # before the checkpoint goes:
        (cert_dir / RESUME).unlink(missing_ok=True)  # a crash between the two leaves a certified run
    log.info("%s: %s", run_id, cert["line"])
    return cert


@dataclass(frozen=True)
class CertifyAfter:
    """Certify a run right after it trained, in the same worker (`PretrainSpec.then`): certificates
    fill the workers beside the other runs instead of queueing after the sweep. A run `certify`
    refuses (not early-stopped, not converged already, too close to its horizon, no stop state) is
    left as it is, and to `certify_store`, which says why; a run another process holds (`RunBusy`)
    is left to the executor's `after`, which leaves it to that process."""

    factor: float = FACTOR
    min_gain: float = MIN_GAIN

    def __call__(self, root, run_id: str, exec_cfg: ExecConfig, summary: dict) -> dict:
        try:
            certify(root, run_id, self.factor, self.min_gain, exec_cfg)
        except (CorruptCheckpointError, RunBusy):
            raise
        except WorkbenchError as e:  # refused before any training: `certify_store` warns with the reason
            log.info("%s: not certified where it trained: %s", run_id, e)
            return summary
        return RunStore(root).summary(run_id)


def _same(cert, factor: float, min_gain: float) -> bool:
    return (bool(cert) and cert.get("method") == METHOD and cert.get("factor") == factor
            and cert.get("min_gain") == min_gain)


def _certifiable(store: RunStore, run_id: str, root) -> tuple[dict, dict]:
    """(summary, config record) of a run a certificate can continue, or a one-line refusal: a
    finished pretraining run that stopped early and whose verdict before any certificate was
    converged (a horizon stop or a best step on a decayed LR is not converged already)."""
    summary, record = store.summary(run_id), store.config(run_id)
    if summary is None or record is None:
        raise WorkbenchError(f"{run_id}: no finished run of that id under {root}")
    if record.get("kind") != "pretrain":
        raise WorkbenchError(f"{run_id} is a {record.get('kind')} run: certificates are for pretraining runs")
    if summary.get("status") != "completed" or summary.get("stop_reason") != "early_stopped":
        raise WorkbenchError(f"{run_id} did not stop early ({summary.get('status')}, {summary.get('stop_reason')}): it "
                             f"is not converged already, and there is nothing to certify; train it to an early stop")
    verdict = summary.get("converged_before_certificate", summary.get("converged"))
    if verdict is False:
        why = summary.get("convergence_before_certificate", summary.get("convergence"))
        raise WorkbenchError(f"{run_id} is not converged already ({why}): there is nothing to certify")
    return summary, record


def _micro(summary: dict, cfg: PretrainConfig) -> int:
    micro = int(summary.get("micro_batch_size") or 0)
    return 0 if micro >= cfg.train.batch_size else micro


def _continue(spec: PretrainSpec, data, run_dir: Path, cert_dir: Path, start: dict, ctx, train_loop):
    """Train the continuation in `cert_dir` under the longer rule, until it stops as the retrained
    run would, reaches `stop_at` or its guard: from its own resume checkpoint when an interrupted
    continuation of this very start left one (same run, stop step, rule, bar and stop state), else
    afresh from the run's stop state."""
    def attempt():
        s = spec.setup(data, cert_dir, ctx)
        loop = dataclasses.replace(s.loop, max_steps=start["guard"], patience=start["rule_patience"],
                                   stop_at=start["stop_at"], keep_stop_state=False, checkpoint_interval=0)
        s = dataclasses.replace(s, loop=loop, save_best=lambda: None)  # the run's best/ stays its own
        return train_loop(s, cert_dir, ctx.device, ctx.precision, ctx.exec.progress)

    if _read_start(cert_dir) != start or not (cert_dir / RESUME).exists():
        _begin(run_dir, cert_dir, start)
    try:
        return attempt()
    except CorruptCheckpointError as e:  # a torn continuation checkpoint: start it over from the stop state
        log.warning("%s; starting the certificate of %s over", e, start["run_id"])
        _begin(run_dir, cert_dir, start)
        return attempt()


def _read_start(cert_dir: Path) -> dict | None:
    try:
        return json.loads((cert_dir / START).read_text())
    except (OSError, ValueError):
        return None


def _empty(cert_dir: Path) -> None:
    """The continuation folder, made or emptied of its files."""
    cert_dir.mkdir(exist_ok=True)
    for old in cert_dir.iterdir():
        if old.is_file() or old.is_symlink():
            old.unlink()


def _begin(run_dir: Path, cert_dir: Path, start: dict) -> None:
    """An empty continuation folder whose resume checkpoint is the run's stop state, relabelled as
    the continuation's (which the resume check then accepts), and `start.json` saying which."""
    stop_step = start["stop_step"]
    if not (run_dir / STOP).exists():
        raise WorkbenchError(f"{run_dir.name} has no {STOP} (runs trained before certificates existed keep no stop "
                             f"state): train it again to certify it")
    _empty(cert_dir)  # another start's continuation, or a torn one
    state = torch.load(run_dir / STOP, map_location="cpu", weights_only=True)
    if state.get("run_id") not in (None, run_dir.name) or int(state.get("step", -1)) != stop_step:
        raise WorkbenchError(f"{run_dir / STOP} is not {run_dir.name}'s state at its stop (step {stop_step}): it was "
                             f"written by {state.get('run_id')} at step {state.get('step')}")
    state["run_id"] = cert_dir.name
    with atomic_path(cert_dir / RESUME) as tmp:
        torch.save(state, tmp)
    write_json_atomic(cert_dir / START, start)


def _forecast_check(summary: dict, cert: dict) -> dict:
    """Did the run's learning-curve forecast agree with the certificate? The forecast says "drop"
    when its whole interval lies `min_gain` or more below the lowest loss reached, "no drop" when
    all of it lies above that line, and nothing (undecided) when it straddles it; only a forecast
    that said something can miss."""
    lo, hi = summary.get("forecast_low"), summary.get("forecast_high")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return dict(forecast="none", forecast_missed=None, forecast_note=None)
    line = cert["best_before"] * (1 - cert["min_gain"])
    said = "drop" if hi <= line else "no drop" if lo > line else "undecided"
    found = "no drop" if cert["certified"] else "drop"
    missed = None if said == "undecided" else said != found
    note = None
    if missed:
        steps = summary.get("forecast_steps_needed")
        need = f", {int(steps):,} more steps to within 0.5% of it" if steps is not None and math.isfinite(steps) else ""
        note = (f"it put the converged loss at {summary.get('forecast_loss'):.4f} [{lo:.4f}, {hi:.4f}]{need}, "
                f"{'a drop' if said == 'drop' else 'no drop'} of {100 * cert['min_gain']:g}% or more; continuing "
                f"{cert['steps']:,} steps lowered the best by {100 * cert['gain']:.2f}%")
    return dict(forecast=said, forecast_missed=missed, forecast_note=note)


def certificate_line(cert) -> str:
    """The certificate's one line ("" for a run without one): for tables and summaries."""
    return cert.get("line", "") if isinstance(cert, dict) else ""


def _line(cert: dict) -> str:
    how = f"continuing as with {1 + cert['factor']:g}x its patience (steps {cert['from_step']}..{cert['to_step']}"
    fell, bar = f"lowered the best eval loss by {100 * cert['gain']:.2f}%", f"{100 * cert['min_gain']:g}%"
    ended = cert["ended"]
    if ended == "patience":
        text = (f"certified: {how}, where that run stops: no new best within {cert['rule_patience']:,} steps of its "
                f"best) {fell} (< {bar})")
    elif ended == "decided":
        text = f"NOT converged: {how}) {fell} (>= {bar}), to {cert['best_after']:.4f} at step {cert['best_step_after']}"
    elif ended == "guard":
        text = (f"NOT converged: {how}, that run's step guard) {fell}, still waiting out its patience there: the "
                f"run retrained with {1 + cert['factor']:g}x the patience would stop at its horizon; raise "
                f"train.max_steps to settle it")
    else:
        text = f"NOT converged: {how}) the loss {ended} at step {cert['to_step']}"
    if cert.get("forecast_missed"):
        text += f"; the forecast missed ({cert['forecast_note']})"
    return text


def _with_certificate(summary: dict, cert: dict) -> dict:
    """The summary with the certificate: the verdict before any certificate is kept beside it, so a
    later certificate (another factor) starts from that verdict, not from an earlier certificate's."""
    out = dict(summary, certificate=cert)
    before = summary.get("convergence_before_certificate", summary.get("convergence"))
    verdict = summary.get("converged_before_certificate", summary.get("converged"))
    out.update(convergence_before_certificate=before, converged_before_certificate=verdict)
    if cert["certified"]:
        out["convergence"] = f"{before}; {cert['line']}" if before else cert["line"]
        out["converged"] = verdict
    else:
        out["converged"] = False
        out["convergence"] = cert["line"]
    return out


def certify_store(root: str | Path, which: str = "largest", factor: float = FACTOR, min_gain: float = MIN_GAIN,
                  exec_cfg: ExecConfig = ExecConfig(), within=None) -> list[dict]:
    """Certify the early-stopped pretraining runs of a store (of them, those in `within`, run ids,
    when given: one sweep's): `which` = "largest" (every run of the largest size of each variant),
    "all", or a comma-separated list of run ids. Runs that did not stop early, or are not converged
    already, or stop too close to their horizon, are skipped with a warning saying which. Returns one dict per run: run_id, n_params and the
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
        try:
            cert, skipped = certify(root, r.run_id, factor, min_gain, exec_cfg), None
        except CorruptCheckpointError:
            raise
        except WorkbenchError as e:  # not converged already, too close to its horizon, no stop state
            log.warning("%s: not certified: %s", r.run_id, e)
            cert, skipped = None, str(e)
        out.append(dict(run_id=r.run_id, n_params=int(r.n_params), certificate=cert, skipped=skipped))
    return out
