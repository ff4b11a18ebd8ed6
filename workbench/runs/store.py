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
from workbench.base.files import append_jsonl, read_json, read_jsonl
from workbench.base.runfiles import ATTEMPTS, BEST, CERTIFICATE, CLAIM, CONFIG, ENV, METRICS, RESUME, STOP, SUMMARY

log = logging.getLogger(__name__)
STATUSES = ("completed", "diverged")  # what a finished run's summary says it is
RUN_FILES = (CLAIM, ATTEMPTS, CONFIG, ENV, METRICS, RESUME, BEST, STOP, CERTIFICATE, SUMMARY)  # what it writes in a run


class RunStore:
    """A folder of run folders."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        """The run's folder; one that resolves outside the root (a symlink out of it) is refused."""
        if not run_id or run_id in (".", "..") or "/" in run_id or "\x00" in run_id:
            raise UnsafePath(f"{run_id!r} is not a run id (a folder name inside the run store)")
        path = self.root / run_id
        self.check_inside(path)
        return path

    def check_inside(self, path: Path) -> None:
        """Refuse `path` (a run folder, or a file a run writes in it or below) when it, a symlink, or a
        folder above it resolves outside the store's root."""
        if not (path.exists() or path.is_symlink()):
            return
        try:
            real, root = path.resolve(), self.root.resolve()
        except (RuntimeError, OSError) as e:  # a symlink loop
            raise UnsafePath(f"{path} cannot be resolved ({e}): remove the link and run again") from None
        if real != root and root not in real.parents:
            raise UnsafePath(f"{path} resolves to {real}, outside the run store {root}: the store never writes "
                             f"there; remove the link (or copy the run in) and run again")

    def check_files(self, run_id: str) -> Path:
        """The run's folder, with each file the store writes there checked to stay inside the root."""
        path = self.path(run_id)
        for name in RUN_FILES:
            self.check_inside(path / name)
        return path

    def is_finished(self, run_id: str) -> bool:
        """A readable summary exists. An unreadable one (garbage, not an object) is named in a warning
        and the run counts as unfinished: a sweep trains it again and writes a new summary."""
        return self.summary(run_id) is not None

    def summary(self, run_id: str) -> dict | None:
        """The run's summary; None when there is none, or it is unreadable or has no `status` (named
        in a warning: the run counts as unfinished and a sweep trains it again)."""
        path = self.path(run_id) / SUMMARY
        self.check_inside(path)
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
        self.check_inside(path)
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

        The claim is two advisory locks (`flock`), taken together: on the run folder itself, which
        deleting a file cannot undo, and on `claim.json` (which names the holder), which NFS extends
        across hosts where a folder lock stays local to one. Both are atomic across processes and
        released by the kernel when their holder dies, even by kill -9, so a crashed run never
        blocks a retry. A live holder raises `RunBusy`. Each claim
        appends an attempt (host, pid, start, whether a resume checkpoint existed) to
        `attempts.jsonl`, and its end when let go normally; a killed attempt has no end line. A claim
        for bookkeeping on a finished run (`attempt=False`: a summary completed afterwards) logs none."""
        path = self.path(run_id)
        path.mkdir(parents=True, exist_ok=True)
        self.check_files(run_id)
        fds = _lock(path, run_id)
        try:
            me = dict(host=socket.gethostname(), pid=os.getpid(), since=round(time.time(), 3))
            os.ftruncate(fds[0], 0)  # the locked file itself: written in place, never replaced
            os.pwrite(fds[0], json.dumps(me).encode(), 0)
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
            for fd in fds:
                os.close(fd)  # releases the locks; the file stays, so no process ever locks a stale inode

    def attempts(self, run_id: str) -> list[dict]:
        """Start lines of every attempt at this run (see `claim`)."""
        return [r for r in read_jsonl(self.path(run_id) / ATTEMPTS) if r.get("event") == "start"]


class RunBusy(WorkbenchError):
    """The run is claimed by a live process (another sweep, another worker)."""


class UnsafePath(WorkbenchError):
    """A path in the run store that resolves outside it (a symlink out of the root)."""


def _lock(run_dir: Path, run_id: str) -> list[int]:
    """Two exclusive `flock`s, both or none (a held one raises `RunBusy`): on the run folder (deleting
    a file cannot undo it) and on `claim.json` (across hosts on NFS, where a folder lock is local to
    one host). Returns the open descriptors, `claim.json`'s first."""
    import fcntl

    folder = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(folder)
        raise _busy(run_dir, run_id) from None
    except OSError:  # pragma: no cover - a file system that cannot lock a folder: the file lock alone
        os.close(folder)
        folder = None
    try:
        return [_lock_file(run_dir / CLAIM, run_dir, run_id)] + ([folder] if folder is not None else [])
    except BaseException:
        if folder is not None:
            os.close(folder)
        raise


def _lock_file(lock: Path, run_dir: Path, run_id: str) -> int:
    """The flock on `claim.json`, opened without following a link; retried when the file was replaced
    between open and lock, so no two processes ever hold locks on two different inodes."""
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(run_dir, run_id) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _busy(run_dir: Path, run_id: str) -> RunBusy:
    try:
        owner = " ".join((run_dir / CLAIM).read_text().split()) or "?"
    except OSError:
        owner = "?"
    return RunBusy(f"run {run_id} is being run by another process ({owner}); it is released when that process ends")


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


