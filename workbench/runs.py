"""The run store: one self-describing folder per run, written atomically, read back as tables.

    store = RunStore("runs")
    df = load_runs("runs")          # one row per run: config columns + summary columns
    curves = load_curves("runs")    # one row per evaluation of every run

A run folder `<root>/<run_id>/` holds `config.json` (resolved config, model counts, data),
`env.json` (versions, device, git commit), `metrics.jsonl` (one line per evaluation), `best/`
(the best checkpoint, `from_pretrained`-ready), `resume.pt` while unfinished, and `summary.json`,
written last: a run is finished exactly when its summary exists. The id is derived from the config
and seed, so a sweep skips what is done and never runs the same thing twice.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from workbench.config import WorkbenchError

SUMMARY, CONFIG, METRICS, ENV, CLAIM = "summary.json", "config.json", "metrics.jsonl", "env.json", "claim.json"


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
        """Hold an exclusive claim on a run folder while working on it (atomic `O_EXCL` file).

        A claim left by a process that died on this host is taken over; a live one raises."""
        path = self.path(run_id)
        path.mkdir(parents=True, exist_ok=True)
        lock = path / CLAIM
        me = dict(host=socket.gethostname(), pid=os.getpid())
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if _claim_is_live(lock):
                    raise WorkbenchError(f"run {run_id} is being run by another process "
                                         f"({lock.read_text().strip()}); wait for it or remove {lock}") from None
                lock.unlink(missing_ok=True)
        else:  # pragma: no cover - lost a race twice
            raise WorkbenchError(f"could not claim run {run_id}")
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        try:
            yield path
        finally:
            lock.unlink(missing_ok=True)


def _claim_is_live(lock: Path) -> bool:
    try:
        owner = json.loads(lock.read_text())
    except (OSError, ValueError):
        return False  # unreadable or half-written claim: its writer died mid-write
    if owner.get("host") != socket.gethostname():
        return True  # cannot check a process on another host: assume it lives
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def append_metrics(run_dir: Path, row: dict) -> None:
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def read_metrics(run_dir: Path) -> list[dict]:
    """Logged evaluations; a torn last line (killed mid-write) is ignored."""
    path = Path(run_dir) / METRICS
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return rows


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
