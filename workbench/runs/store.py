"""The run store: a folder of self-describing run folders (`workbench.base.runfiles` names their
files), each claimed by one process at a time.

    store = RunStore("runs")
    store.is_finished(run_id); store.summary(run_id); store.find("pretrain", to_dict(cfg))
    with store.claim(run_id) as run_dir: ...     # a kernel lock; another live process raises RunBusy

A run is finished exactly when its `summary.json` exists. The id is derived from the config and
seed, so a sweep skips what is done and never runs the same thing twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from workbench.base.errors import WorkbenchError
from workbench.base.files import append_jsonl, read_json, read_jsonl
from workbench.base.runfiles import ATTEMPTS, CLAIM, CONFIG, RESUME, SUMMARY

log = logging.getLogger(__name__)
STATUSES = ("completed", "diverged")  # what a finished run's summary says it is


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
        """The run's summary; None when there is none, or it is unreadable or has no `status` (named
        in a warning: the run counts as unfinished and a sweep trains it again)."""
        path = self.path(run_id) / SUMMARY
        if not path.exists():
            return None
        again = " (the run counts as unfinished; a sweep trains it again)"
        summary = _read_or_none(path, again)
        if summary is not None and summary.get("status") not in STATUSES:
            log.warning("%s has no run status (%r): treated as missing%s", path, summary.get("status"), again)
            return None
        return summary

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
    def claim(self, run_id: str, attempt: bool = True) -> Iterator[Path]:
        """Hold the exclusive claim on a run folder while working on it.

        The claim is an advisory lock (`flock`) on `claim.json`: atomic across processes (and hosts,
        on file systems that support it), and released by the kernel when its holder dies, even by
        kill -9, so a crashed run never blocks a retry. A live holder raises `RunBusy`. Each claim
        appends an attempt (host, pid, start, whether a resume checkpoint existed) to
        `attempts.jsonl`, and its end when let go normally; a killed attempt has no end line. A claim
        for bookkeeping on a finished run (`attempt=False`: a summary completed afterwards) logs none."""
        path = self.path(run_id)
        path.mkdir(parents=True, exist_ok=True)
        fd = _lock(path / CLAIM, run_id)
        try:
            me = dict(host=socket.gethostname(), pid=os.getpid(), since=round(time.time(), 3))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
            if not attempt:
                yield path
                return
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


