"""The run store: one self-describing folder per run, written atomically, read back as tables.

    store = RunStore("runs")
    df = load_runs("runs")          # one row per run: config columns + summary columns
    curves = load_curves("runs")    # one row per evaluation of every run

A run folder `<root>/<run_id>/` holds `config.json` (resolved config, model counts, data),
`env.json` (versions, device, git commit), `metrics.jsonl` (one line per evaluation), `best/`
(the best checkpoint, `from_pretrained`-ready), `resume.pt` while unfinished, `claim.json` (the lock
held while a process works on it), `attempts.jsonl` (every attempt: host, pid, start, end) and
`summary.json`, written last: a run is finished exactly when its summary exists. The id is derived from the config
and seed, so a sweep skips what is done and never runs the same thing twice.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from workbench.config import WorkbenchError

SUMMARY, CONFIG, METRICS, ENV, CLAIM, ATTEMPTS = ("summary.json", "config.json", "metrics.jsonl", "env.json",
                                                  "claim.json", "attempts.jsonl")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


class RunStore:
    """A folder of run folders."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_finished(self, run_id: str) -> bool:
        return (self.path(run_id) / SUMMARY).exists()

    def summary(self, run_id: str) -> dict:
        return read_json(self.path(run_id) / SUMMARY)

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
            _append_jsonl(path / ATTEMPTS, dict(me, event="start", resume_checkpoint=(path / "resume.pt").exists()))
            try:
                yield path
            except BaseException as e:
                _append_jsonl(path / ATTEMPTS, dict(me, event="end", at=round(time.time(), 3),
                                                    outcome=f"{type(e).__name__}: {e}"[:300]))
                raise
            _append_jsonl(path / ATTEMPTS, dict(me, event="end", at=round(time.time(), 3),
                                                outcome="finished" if (path / SUMMARY).exists() else "released"))
        finally:
            os.close(fd)  # releases the lock; the file stays, so no process ever locks a stale inode

    def attempts(self, run_id: str) -> list[dict]:
        """Start lines of every attempt at this run (see `claim`)."""
        return [r for r in _read_jsonl(self.path(run_id) / ATTEMPTS) if r.get("event") == "start"]


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


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def _read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a torn last line (killed mid-write) is ignored."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return rows


def append_metrics(run_dir: Path, row: dict) -> None:
    _append_jsonl(Path(run_dir) / METRICS, row)


def read_metrics(run_dir: Path) -> list[dict]:
    """Logged evaluations; a torn last line (killed mid-write) is ignored."""
    return _read_jsonl(Path(run_dir) / METRICS)


def truncate_metrics(run_dir: Path, last_step: int) -> list[dict]:
    """Keep only evaluations up to `last_step` (used when resuming from a checkpoint)."""
    rows = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    path = Path(run_dir) / METRICS
    fd, tmp = tempfile.mkstemp(dir=run_dir)
    with os.fdopen(fd, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)
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

    rows = []
    for cfg_path in sorted(Path(root).glob(f"*/{CONFIG}")):
        run_dir = cfg_path.parent
        finished = (run_dir / SUMMARY).exists()
        if not finished and not include_unfinished:
            continue
        cfg = read_json(cfg_path)
        row = dict(run_id=run_dir.name, kind=cfg.get("kind"), **_flatten(cfg.get("model", {})))
        row.update(_flatten(cfg.get("config", {})))
        row.update(read_json(run_dir / SUMMARY) if finished else {"status": "unfinished"})
        rows.append(row)
    return pd.DataFrame(rows)


def load_curves(root: str | os.PathLike):
    """Every logged evaluation of every run (finished or not), with its run id."""
    import pandas as pd

    rows = [dict(run_id=d.parent.name, **r) for d in sorted(Path(root).glob(f"*/{CONFIG}"))
            for r in read_metrics(d.parent)]
    return pd.DataFrame(rows)
