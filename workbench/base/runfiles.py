"""The names of a run folder's files and its metrics log: the one place that knows them, below the
training loop (which writes the log and checkpoints) and the run store (which reads them).

    append_metrics(run_dir, dict(step=100, eval_loss=5.9))
    rows = read_metrics(run_dir)      # one dict per logged evaluation; a torn last line is ignored

A run folder `<root>/<run_id>/` holds `config.json` (resolved config, model counts, data),
`env.json` (versions, device, git commit), `metrics.jsonl` (one line per evaluation), `best/` (the
best checkpoint, `from_pretrained`-ready), `resume.pt` while unfinished, `stop.pt` (a pretraining
run's full state where it stopped early, which a convergence certificate continues from),
`certificate/` (that continuation's own log and state), `claim.json` (who holds the run's lock while a
process works on it), `attempts.jsonl` (every attempt) and `summary.json`, written last.
"""

from __future__ import annotations

from pathlib import Path

from workbench.base.files import append_jsonl, read_jsonl, write_jsonl_atomic

SUMMARY, CONFIG, METRICS, ENV, CLAIM, ATTEMPTS = ("summary.json", "config.json", "metrics.jsonl", "env.json",
                                                  "claim.json", "attempts.jsonl")


RESUME, BEST, STOP, CERTIFICATE = "resume.pt", "best", "stop.pt", "certificate"


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


