"""The run store and the one life cycle of a run: a self-describing folder per run, written
atomically, read back as tables.

    summary = run_once(spec, "runs", ExecConfig())    # skip, claim, resume or restart, record, summarise
    df = load_runs("runs")          # one row per run: config columns + summary columns
    curves = load_curves("runs")    # one row per evaluation of every run

A run folder `<root>/<run_id>/` holds `config.json` (resolved config, model counts, data),
`env.json` (versions, device, git commit), `metrics.jsonl` (one line per evaluation), `best/`
(the best checkpoint, `from_pretrained`-ready), `resume.pt` while unfinished, `claim.json` (the lock
held while a process works on it), `attempts.jsonl` (every attempt: host, pid, start, end) and
`summary.json`, written last: a run is finished exactly when its summary exists. The id is derived
from the config and seed, so a sweep skips what is done and never runs the same thing twice.
This module is the only one that knows these names.

Pretraining and finetuning are `RunSpec`s: each says what it is (`kind`, `run_id`, `n_params`),
loads its inputs (`prepare`, before any folder exists, so bad data writes nothing), describes
itself for `config.json` (`record`) and trains (`train`, from scratch or from `resume.pt`).
`run_once` owns everything else, for both.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from workbench.errors import CorruptCheckpointError, WorkbenchError
from workbench.files import append_jsonl, read_json, read_jsonl, write_json_atomic, write_jsonl_atomic

log = logging.getLogger(__name__)
SUMMARY, CONFIG, METRICS, ENV, CLAIM, ATTEMPTS = ("summary.json", "config.json", "metrics.jsonl", "env.json",
                                                  "claim.json", "attempts.jsonl")
RESUME, BEST = "resume.pt", "best"


class RunSpec(Protocol):
    """One run to execute (pretraining or finetuning); see the module docstring."""

    kind: str

    @property
    def run_id(self) -> str: ...

    @property
    def n_params(self) -> int: ...

    def prepare(self) -> Any: ...

    def record(self, inputs: Any) -> dict: ...

    def train(self, inputs: Any, run_dir: Path, ctx: Any) -> dict: ...


@dataclass(frozen=True)
class SpecBase:
    """What every run spec shares: its config, an id derived from it by the spec's `make_id`, and
    training alone (`train`) from the spec's `setup` (model, optimiser, schedule, batches, loss,
    evaluation, loop settings; the same pieces an ensemble trains with) and `summarize`."""

    cfg: Any

    @property
    def run_id(self) -> str:
        return type(self).make_id(self.cfg)

    def ensemble_key(self) -> Any:
        """Runs with the same key (not None) can train together as one ensemble
        (`workbench.ensemble`): same shape, same inputs, same batch size."""
        return None

    def train(self, inputs: Any, run_dir: Path, ctx) -> dict:
        from workbench.device import seeded
        from workbench.train import train_loop

        with seeded(self.cfg.seed, ctx.device):  # init and dropout reproducible, the caller's RNG untouched
            s = self.setup(inputs, run_dir, ctx)
            wall0 = time.time()
            res = train_loop(s.model, s.optimizer, s.scheduler, s.batch_at, s.loss_fn, s.evaluate, s.loop, run_dir,
                             s.save_best, ctx.device, ctx.precision, ctx.exec.progress, desc=s.desc)
        return self.summarize(inputs, s, res, ctx, time.time() - wall0)


def run_once(spec: RunSpec, root: str | os.PathLike, exec_cfg) -> dict:
    """Run (or resume, or skip if finished) `spec` under `root`; returns its summary.

    Skip a finished run; load its inputs; claim the folder (a kernel lock: another live process
    raises `RunBusy`); look for a summary again under the claim; write `config.json` (once) and
    `env.json`; train, resuming from `resume.pt` when an earlier attempt left one, or from scratch
    when that checkpoint is unreadable; write `summary.json` last and drop the checkpoint."""
    from workbench.device import run_context

    store = RunStore(root)
    if store.is_finished(spec.run_id):
        return store.summary(spec.run_id)
    inputs = spec.prepare()  # errors in the inputs surface before any folder exists
    with run_context(exec_cfg) as ctx, store.claim(spec.run_id) as run_dir:
        if store.is_finished(spec.run_id):  # finished by another process between the check above and the claim
            return store.summary(spec.run_id)
        for restart in (False, True):
            begin_run(spec, inputs, run_dir, exec_cfg, ctx)
            try:
                summary = spec.train(inputs, run_dir, ctx)
                break
            except CorruptCheckpointError as e:
                if restart:
                    raise
                log.warning("%s; restarting %s from scratch", e, spec.run_id)
                reset_run(run_dir)
        finish_run(spec, run_dir, summary)
        return summary


def begin_run(spec: RunSpec, inputs: Any, run_dir: Path, exec_cfg, ctx, ensemble: list[str] | None = None) -> None:
    """Write a claimed run's `config.json` (once: a resumed run keeps the one it started with) and
    `env.json` (every attempt; with the ids of the runs it trained beside when in an ensemble)."""
    from workbench.config import to_dict
    from workbench.device import environment

    record = spec.record(inputs)
    old = _read_or_none(run_dir / CONFIG) if (run_dir / CONFIG).exists() else None
    if old is not None and old.get("data") != record.get("data"):
        # e.g. the data cache was rebuilt with another tokenizer since this run started: never mix
        log.warning("%s started on other prepared data (%s) than it has now (%s): restarting it from scratch",
                    spec.run_id, _data_id(old.get("data")), _data_id(record.get("data")))
        reset_run(run_dir, keep=(CLAIM, ATTEMPTS))
        old = None
    if old is None:
        write_json_atomic(run_dir / CONFIG, dict(kind=spec.kind, run_id=spec.run_id, exec=to_dict(exec_cfg), **record))
    env = environment(ctx.device, ctx.precision)
    if ensemble:
        env["ensemble"] = ensemble
    write_json_atomic(run_dir / ENV, env)


def _data_id(meta: dict | None) -> str:
    meta = meta or {}
    return f"{meta.get('key')}, tokenizer {str(meta.get('tokenizer_sha256'))[:12]}"


def finish_run(spec: RunSpec, run_dir: Path, summary: dict) -> None:
    """Write the summary (the run is finished from here on) and drop the resume checkpoint."""
    write_json_atomic(run_dir / SUMMARY, summary)
    (run_dir / RESUME).unlink(missing_ok=True)
    log.info("%s: %s (%s)", spec.run_id, summary.get("status"), summary.get("stop_reason"))


def reset_run(run_dir: Path, keep: tuple[str, ...] = (CONFIG, CLAIM, ATTEMPTS)) -> None:
    """Empty a run folder (but its config, claim and attempt log) so the run restarts from scratch."""
    for p in Path(run_dir).iterdir():
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


class RunStore:
    """A folder of run folders."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_finished(self, run_id: str) -> bool:
        """A readable summary exists. An unreadable one (garbage, not an object) is named in a warning
        and the run counts as unfinished: a sweep trains it again and writes a new summary."""
        return self.summary(run_id) is not None

    def summary(self, run_id: str) -> dict | None:
        path = self.path(run_id) / SUMMARY
        return _read_or_none(path, " (the run counts as unfinished; a sweep trains it again)") if path.exists() else None

    def config(self, run_id: str) -> dict | None:
        """The run's recorded `config.json`, or None when there is none (or it is unreadable)."""
        path = self.path(run_id) / CONFIG
        return _read_or_none(path) if path.exists() else None

    def find(self, kind: str, config: dict) -> list[str]:
        """Ids of finished runs of `kind` whose recorded config equals `config` (a `to_dict` of one)."""
        out = []
        for cfg_path in sorted(self.root.glob(f"*/{CONFIG}")):
            rec = _read_or_none(cfg_path)
            if rec and rec.get("kind") == kind and rec.get("config") == config and self.is_finished(cfg_path.parent.name):
                out.append(cfg_path.parent.name)
        return out

    @contextmanager
    def claim(self, run_id: str) -> Iterator[Path]:
        """Hold the exclusive claim on a run folder while working on it.

        The claim is an advisory lock (`flock`) on `claim.json`: atomic across processes (and hosts,
        on file systems that support it), and released by the kernel when its holder dies, even by
        kill -9, so a crashed run never blocks a retry. A live holder raises `RunBusy`. Each claim
        appends an attempt (host, pid, start, whether a resume checkpoint existed) to
        `attempts.jsonl`, and its end when let go normally; a killed attempt has no end line."""
        path = self.path(run_id)
        path.mkdir(parents=True, exist_ok=True)
        fd = _lock(path / CLAIM, run_id)
        try:
            me = dict(host=socket.gethostname(), pid=os.getpid(), since=round(time.time(), 3))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
            append_jsonl(path / ATTEMPTS, dict(me, event="start", resume_checkpoint=(path / RESUME).exists()))
            try:
                yield path
            except BaseException as e:
                append_jsonl(path / ATTEMPTS, dict(me, event="end", at=round(time.time(), 3),
                                                    outcome=f"{type(e).__name__}: {e}"[:300]))
                raise
            append_jsonl(path / ATTEMPTS, dict(me, event="end", at=round(time.time(), 3),
                                                outcome="finished" if (path / SUMMARY).exists() else "released"))
        finally:
            os.close(fd)  # releases the lock; the file stays, so no process ever locks a stale inode

    def attempts(self, run_id: str) -> list[dict]:
        """Start lines of every attempt at this run (see `claim`)."""
        return [r for r in read_jsonl(self.path(run_id) / ATTEMPTS) if r.get("event") == "start"]


class RunBusy(WorkbenchError):
    """The run is claimed by a live process (another sweep, another worker)."""


def _lock(lock: Path, run_id: str) -> int:
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                owner = lock.read_text().strip()
            except OSError:
                owner = "?"
            raise RunBusy(f"run {run_id} is being run by another process ({owner}); "
                          f"it is released when that process ends") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the file was replaced between open and lock: lock the one now in place


def append_metrics(run_dir: Path, row: dict) -> None:
    append_jsonl(Path(run_dir) / METRICS, row)


def read_metrics(run_dir: Path) -> list[dict]:
    """Logged evaluations; a torn last line (killed mid-write) is ignored."""
    return read_jsonl(Path(run_dir) / METRICS)


def truncate_metrics(run_dir: Path, last_step: int) -> list[dict]:
    """Keep only evaluations up to `last_step` (used when resuming from a checkpoint)."""
    rows = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    write_jsonl_atomic(Path(run_dir) / METRICS, rows)
    return rows


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
    import pandas as pd

    rows, store = [], RunStore(root)
    for cfg_path in sorted(Path(root).glob(f"*/{CONFIG}")):
        run_dir = cfg_path.parent
        summary = store.summary(run_dir.name)
        if summary is None and not include_unfinished:
            continue
        cfg = store.config(run_dir.name) or {}
        row = dict(run_id=run_dir.name, kind=cfg.get("kind"), **_flatten(cfg.get("model", {})))
        row.update(_flatten(cfg.get("config", {})))
        row.update(summary if summary is not None else {"status": "unfinished"})
        rows.append(row)
    return pd.DataFrame(rows)


def _read_or_none(path: Path, consequence: str = "") -> dict | None:
    """A JSON object file, or None (with a warning naming it, and `consequence`) when it is unreadable
    or not an object."""
    try:
        obj = read_json(path)
    except (OSError, ValueError) as e:
        log.warning("%s is unreadable (%s): treated as missing%s", path, type(e).__name__, consequence)
        return None
    if not isinstance(obj, dict):
        log.warning("%s holds a %s, not an object: treated as missing%s", path, type(obj).__name__, consequence)
        return None
    return obj


def law_table(runs, value: str = "best_eval_loss"):
    """The fitting table of `load_runs` output: variant (family/objective), n_params, seed, value,
    run_id (and the convergence verdict and forecast where the summaries have them). Runs that did not complete (diverged, unfinished) are left out with a warning."""
    import pandas as pd

    ok = runs["status"] == "completed"
    if (~ok).any():
        bad = runs[~ok]
        why = [f"{r.run_id} ({r.status}" + (f" at step {int(r.diverged_step)})" if r.status == "diverged"
                                            and "diverged_step" in bad and r.diverged_step == r.diverged_step else ")")
               for r in bad.itertuples()]
        log.warning("leaving out %d run(s) that did not complete: %s", len(bad), ", ".join(why))
    rows = runs[ok]
    variant = rows["family"].astype(str) + "/" + rows["train.objective"].astype(str)
    table = pd.DataFrame(dict(variant=variant, n_params=rows["n_params"].astype(float), seed=rows["seed"],
                              value=rows[value].astype(float), run_id=rows["run_id"]))
    for col in ("converged", "convergence", "forecast_loss", "forecast_low", "forecast_high"):
        if col in rows:  # each run's convergence verdict travels with its point (`workbench.convergence`)
            table[col] = rows[col]
    return table.reset_index(drop=True)


def load_curves(root: str | os.PathLike):
    """Every logged evaluation of every run (finished or not), with its run id."""
    import pandas as pd

    rows = [dict(run_id=d.parent.name, **r) for d in sorted(Path(root).glob(f"*/{CONFIG}"))
            for r in read_metrics(d.parent)]
    return pd.DataFrame(rows)
