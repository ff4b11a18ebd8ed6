"""The one way the workbench writes files that others may read while it works: atomically.

    write_atomic(path, b"...")              # temp file in the same folder, fsync, rename over `path`
    write_json_atomic(path, {"a": 1})
    append_jsonl(path, row); read_jsonl(path)   # append-only logs; a torn last line is ignored

A reader sees the old file or the new one, never half of one, and a process killed mid-write leaves
at most a hidden temp file behind (removed on the way out when it can be).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False, overwrite: bool = True) -> Iterator[Path]:
    """A temp path (file, or folder with `directory`) beside `path` to write to; renamed over `path`
    when the block ends without error. A folder replaces an existing one only with `overwrite`;
    otherwise the rename fails (OSError) and the folder already there stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets what open() would give it
    try:
        yield tmp
        if directory:
            _usual_modes(tmp)
        if directory and overwrite and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def _usual_modes(folder: Path) -> None:
    """Give a finished temp folder and what is in it the modes mkdir and open() give under the umask
    (mkdtemp makes 0700, and some writers 0600), like every other file of a run."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for base, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(base, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(base, f), 0o666 & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write bytes (or UTF-8 text) to `path` through a temp file, fsync, then rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True, default=str))


def sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one row. A torn last line (a writer killed mid-line) is cut off first, so the new
    row starts a line of its own instead of being glued to the tear."""
    with open(path, "a+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            f.seek(max(0, end - 1))
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                keep = data.rfind(b"\n") + 1
                log.warning("%s: cut a torn last line (%d bytes) before appending", path, len(data) - keep)
                f.truncate(keep)
        f.write((json.dumps(row) + "\n").encode())
        f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file. A torn last line (killed mid-write) is ignored; any other line
    that is not a JSON object is skipped with a warning naming the file and the lines."""
    rows, bad = [], []
    if Path(path).exists():
        lines = Path(path).read_text(errors="replace").split("\n")
        torn_tail = bool(lines[-1])  # no newline after the last line: written in part
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict):
                rows.append(row)
            elif not (torn_tail and i == len(lines)):
                bad.append(i)
    if bad:
        log.warning("%s: skipped %d unreadable line(s) (line %s)", path, len(bad), ", ".join(map(str, bad[:5])))
    return rows


def write_jsonl_atomic(path: str | os.PathLike, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
