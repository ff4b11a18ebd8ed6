"""The run store: a folder of self-describing run folders (`workbench.base.runfiles` names their
files), each claimed by one process at a time.

    store = RunStore("runs")
    store.is_finished(run_id); store.summary(run_id); store.find("pretrain", to_dict(cfg))
    with store.claim(run_id) as run_dir: ...     # a kernel lock; another live process raises RunBusy

A run is finished exactly when its `summary.json` exists. The id is derived from the config and
seed, so a sweep skips what is done and never runs the same thing twice. Nothing in the store is
followed out of it: a run folder, or a file of one, that resolves outside the root is refused
(`UnsafePath`), so a symlink can never make a sweep write elsewhere.
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
from workbench.base.files import append_jsonl, read_json, read_jsonl, write_atomic
from workbench.base.runfiles import ATTEMPTS, BEST, CLAIM, CONFIG, ENV, METRICS, RESUME, SUMMARY

log = logging.getLogger(__name__)
STATUSES = ("completed", "diverged")  # what a finished run's summary says it is
RUN_FILES = (CLAIM, ATTEMPTS, CONFIG, ENV, METRICS, RESUME, BEST, SUMMARY)  # what the store writes in a run folder


class RunStore:
    """A folder of run folders."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        """The run's folder; one that resolves outside the root (a symlink out of it) is refused."""
        if not run_id or run_id in (".", "..") or "/" in run_id or "\x00" in run_id:
            raise UnsafePath(f"{run_id!r} is not a run id (a folder name inside the run store)")
        path = self.root / run_id
        self._inside(path)
        return path

    def _inside(self, path: Path) -> None:
        """Refuse `path` when it (a symlink, or a folder above it) resolves outside the store's root."""
        if not (path.exists() or path.is_symlink()):
            return
        real, root = path.resolve(), self.root.resolve()
        if real != root and root not in real.parents:
            raise UnsafePath(f"{path} resolves to {real}, outside the run store {root}: the store never writes "
                             f"there; remove the link (or copy the run in) and run again")

    def check_files(self, run_id: str) -> Path:
        """The run's folder, with each file the store writes there checked to stay inside the root."""
        path = self.path(run_id)
        for name in RUN_FILES:
            self._inside(path / name)
        return path

    def is_finished(self, run_id: str) -> bool:
        """A readable summary exists. An unreadable one (garbage, not an object) is named in a warning
        and the run counts as unfinished: a sweep trains it again and writes a new summary."""
        return self.summary(run_id) is not None

    def summary(self, run_id: str) -> dict | None:
        """The run's summary; None when there is none, or it is unreadable or has no `status` (named
        in a warning: the run counts as unfinished and a sweep trains it again)."""
        path = self.path(run_id) / SUMMARY
        self._inside(path)
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
        self._inside(path)
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

        The claim is an advisory lock (`flock`) on the run folder itself: atomic across processes,
        released by the kernel when its holder dies, even by kill -9, so a crashed run never blocks a
        retry, and not undone by deleting a file. `claim.json` only says who holds it. On a file
        system that cannot lock a folder (NFS) the lock falls back to `claim.json`, which then must
        not be deleted while a run works. A live holder raises `RunBusy`. Each claim
        appends an attempt (host, pid, start, whether a resume checkpoint existed) to
        `attempts.jsonl`, and its end when let go normally; a killed attempt has no end line. A claim
        for bookkeeping on a finished run (`attempt=False`: a summary completed afterwards) logs none."""
        path = self.path(run_id)
        path.mkdir(parents=True, exist_ok=True)
        self.check_files(run_id)
        fd, on_file = _lock(path, run_id)
        try:
            me = dict(host=socket.gethostname(), pid=os.getpid(), since=round(time.time(), 3))
            if on_file:  # the locked file itself: written in place, never replaced
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(me).encode(), 0)
            else:
                write_atomic(path / CLAIM, json.dumps(me))
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


class UnsafePath(WorkbenchError):
    """A path in the run store that resolves outside it (a symlink out of the root)."""


def _lock(run_dir: Path, run_id: str) -> tuple[int, bool]:
    """An exclusive `flock` on the run folder (a held one raises `RunBusy`): the open descriptor, and
    whether the lock fell back to `claim.json` (a file system that cannot lock a folder)."""
    import fcntl

    while True:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                owner = " ".join((run_dir / CLAIM).read_text().split())
            except OSError:
                owner = "?"
            raise RunBusy(f"run {run_id} is being run by another process ({owner}); "
                          f"it is released when that process ends") from None
        except OSError:  # pragma: no cover - a file system that cannot lock folders
            os.close(fd)
            log.warning("%s: this file system cannot lock a folder; locking %s instead", run_dir, CLAIM)
            return _lock_file(run_dir / CLAIM, run_id), True
        try:
            same = os.fstat(fd).st_ino == os.stat(run_dir).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, False
        os.close(fd)  # the folder was replaced between open and lock: lock the one now in place


def _lock_file(lock: Path, run_id: str) -> int:  # pragma: no cover - only where folders cannot be locked
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(f"run {run_id} is being run by another process; it is released when that process "
                          f"ends") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


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


