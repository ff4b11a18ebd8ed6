"""The one life cycle of a run: skip if finished, load inputs, claim, config and env, train (resuming
from `resume.pt`), summary last.

    summary = run_once(spec, "runs", ExecConfig())    # skip, claim, resume or restart, record, summarise

Pretraining and finetuning are `RunSpec`s: each says what it is (`kind`, `run_id`, `n_params`),
loads its inputs (`prepare`, before any folder exists, so bad data writes nothing), describes
itself for `config.json` (`record`) and trains (`train`, from scratch or from `resume.pt`).
`run_once` owns everything else, for both; ensembles (`workbench.runs.ensemble`) take each member
through the same steps.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, TypeVar

from workbench.base.errors import CorruptCheckpointError
from workbench.base.files import write_json_atomic
from workbench.base.runfiles import ATTEMPTS, CLAIM, CONFIG, ENV, RESUME, SUMMARY
from workbench.runs.store import RunStore, _read_or_none

log = logging.getLogger(__name__)
T = TypeVar("T")


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

    def after(self, root: Any, exec_cfg: Any, summary: dict) -> dict: ...


@dataclass(frozen=True)
class SpecBase:
    """What every run spec shares: its config, an id derived from it by the spec's `make_id`, and
    training alone (`train`) from the spec's `setup` (model, optimiser, schedule, batches, loss,
    evaluation, loop settings; the same pieces an ensemble trains with) and `summarize`."""

    cfg: Any

    @property
    def run_id(self) -> str:
        return type(self).make_id(self.cfg)

    def after(self, root, exec_cfg, summary: dict) -> dict:
        """What the worker does with a finished run before reporting it (a pretraining run's
        certificate); returns the summary to report. Nothing, here."""
        return summary

    def ensemble_key(self) -> Any:
        """Runs with the same key (not None) can train together as one ensemble
        (`workbench.train.stacked`): same shape, same inputs, same batch size."""
        return None

    def train(self, inputs: Any, run_dir: Path, ctx) -> dict:
        from workbench.train.device import seeded
        from workbench.train.loop import train_loop

        with seeded(self.cfg.seed, ctx.device):  # init and dropout reproducible, the caller's RNG untouched
            s = self.setup(inputs, run_dir, ctx)
            wall0 = time.time()
            res = train_loop(s, run_dir, ctx.device, ctx.precision, ctx.exec.progress)
        return self.summarize(inputs, s, res, ctx, time.time() - wall0)


def run_once(spec: RunSpec, root: str | os.PathLike, exec_cfg) -> dict:
    """Run (or resume, or skip if finished) `spec` under `root`; returns its summary.

    Skip a finished run; load its inputs; claim the folder and begin it (`claimed`); train, resuming
    from `resume.pt` when an earlier attempt left one, or from scratch when that checkpoint is
    unreadable (`restarting`); write `summary.json` last and drop the checkpoint (`finish_run`).
    An ensemble (`workbench.runs.ensemble`) takes each member through the same steps."""
    from workbench.train.device import run_context

    store = RunStore(root)
    if store.is_finished(spec.run_id):
        return store.summary(spec.run_id)
    inputs = spec.prepare()  # errors in the inputs surface before any folder exists
    with run_context(exec_cfg) as ctx, claimed(store, spec, inputs, exec_cfg, ctx) as run_dir:
        if run_dir is None:  # finished by another process between the check above and the claim
            return store.summary(spec.run_id)
        summary = restarting(spec, run_dir, lambda: spec.train(inputs, run_dir, ctx))
        finish_run(spec, run_dir, summary)
        return summary


@contextmanager
def claimed(store: RunStore, spec: RunSpec, inputs: Any, exec_cfg, ctx,
            ensemble: list[str] | None = None) -> Iterator[Path | None]:
    """Hold the claim on `spec`'s folder (another live process raises `RunBusy`), look for its summary
    again under the claim (None: finished meanwhile, nothing to do), and begin the run
    (`begin_run`: config.json once, env.json every attempt)."""
    with store.claim(spec.run_id) as run_dir:
        if store.is_finished(spec.run_id):
            yield None
            return
        begin_run(spec, inputs, run_dir, exec_cfg, ctx, ensemble)
        yield run_dir


def restarting(spec: RunSpec, run_dir: Path, attempt: Callable[[], T]) -> T:
    """`attempt()`; when it meets an unreadable resume checkpoint, empty the folder (its config, env,
    claim and attempt log kept) and try once more, from scratch."""
    try:
        return attempt()
    except CorruptCheckpointError as e:
        log.warning("%s; restarting %s from scratch", e, spec.run_id)
        reset_run(run_dir, keep=(CONFIG, ENV, CLAIM, ATTEMPTS))
        return attempt()


def begin_run(spec: RunSpec, inputs: Any, run_dir: Path, exec_cfg, ctx, ensemble: list[str] | None = None) -> None:
    """Write a claimed run's `config.json` (once: a resumed run keeps the one it started with) and
    `env.json` (every attempt; with the ids of the runs it trained beside when in an ensemble)."""
    from workbench.config import to_dict
    from workbench.train.device import environment

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


