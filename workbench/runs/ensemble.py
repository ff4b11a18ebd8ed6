"""The life cycle of an ensemble: runs of one shape trained side by side as one stacked model
(`workbench.train.stacked`), each member through the same steps as a run alone.

    summaries = run_ensemble(unit, root, exec_cfg)   # {run_id: summary}, like run_once for each
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from workbench.base.progress import bar as progress_bar
from workbench.runs.lifecycle import claimed, finish_run, restarting
from workbench.runs.store import RunBusy, RunStore
from workbench.train.device import autocast, run_context, seeded
from workbench.train.loop import RunLoop
from workbench.train.stacked import MemberRNG, member_losses

log = logging.getLogger(__name__)


@dataclass
class _Member:
    spec: Any
    run_dir: Path
    setup: Any
    run: RunLoop
    wall0: float


def run_ensemble(specs: list, root, exec_cfg) -> dict[str, dict | None]:
    """Train `specs` (same `ensemble_key`) as one ensemble under `root`; {run_id: summary}, None for
    a run held by another process (left to it). Each member goes through `run_once`'s steps: skip if
    finished, `claimed` (claim, re-check, config and env), `restarting` from an unreadable checkpoint,
    `finish_run` as soon as it stops."""
    store = RunStore(root)
    out: dict[str, dict | None] = {s.run_id: store.summary(s.run_id) for s in specs if store.is_finished(s.run_id)}
    todo = [s for s in specs if s.run_id not in out]
    if not todo:
        return out
    inputs = todo[0].prepare()  # members share their inputs (that is what the ensemble key says)
    ids = [s.run_id for s in todo]
    log.info("training %d runs as one ensemble: %s", len(todo), ", ".join(ids))
    with run_context(exec_cfg) as ctx, contextlib.ExitStack() as claims:
        members = []
        for spec in todo:
            try:
                run_dir = claims.enter_context(claimed(store, spec, inputs, exec_cfg, ctx, ensemble=ids))
            except RunBusy:
                out[spec.run_id] = None
                continue
            if run_dir is None:  # finished by another process meanwhile
                out[spec.run_id] = store.summary(spec.run_id)
                continue
            members.append(restarting(spec, run_dir, lambda: _start(spec, inputs, run_dir, ctx)))  # noqa: B023
        if members:
            _train(members, ctx, exec_cfg, lambda m: out.__setitem__(m.spec.run_id, _finish(m, inputs, ctx)))
    return out


def _finish(m: _Member, inputs, ctx) -> dict:
    """Summarise a member as soon as it stops: a later crash of the ensemble cannot lose it."""
    summary = m.spec.summarize(inputs, m.setup, m.run.finish(), ctx, time.time() - m.wall0)
    finish_run(m.spec, m.run_dir, summary)
    return summary


def _start(spec, inputs, run_dir: Path, ctx) -> _Member:
    with seeded(spec.cfg.seed, ctx.device):  # the run alone seeds torch here, then sets up
        setup = spec.setup(inputs, run_dir, ctx)
        rng = MemberRNG(ctx.device)  # ... and draws its dropout from the state left after set-up
    run = RunLoop.of(setup, run_dir, ctx.device, ctx.precision, progress=False, rng=rng)  # may meet a bad checkpoint
    return _Member(spec, run_dir, setup, run, time.time())


def _train(members: list[_Member], ctx, exec_cfg, on_stop: Callable[[_Member], None]) -> None:
    """Step the members together: each iteration advances the members at the lowest step (all of
    them, unless a resume left them apart) with one stacked forward/backward."""
    first = members[0].setup
    shown = min(m.run.step for m in members)
    bar = progress_bar(total=max(m.setup.loop.max_steps for m in members), initial=shown,
                       desc=f"{first.desc} x{len(members)}", enabled=exec_cfg.progress)
    while active := [m for m in members if not m.run.done]:
        step = min(m.run.step for m in active)
        group = [m for m in active if m.run.step == step]
        t0 = time.perf_counter()
        batches = [m.setup.batch_at(m.run.step) for m in group]
        with autocast(ctx.device, ctx.precision):
            losses = member_losses([m.setup.model for m in group], batches, [m.run.rng for m in group])
        finite = [loss for loss in losses if torch.isfinite(loss)]
        if finite:  # a diverged member gets no update (RunLoop records it), the others are unaffected
            torch.stack(finite).sum().backward()
        seconds = (time.perf_counter() - t0) / len(group)  # each member is booked its share of the step
        for m, loss in zip(group, losses):
            m.run.advance(loss.detach(), seconds)
            if m.run.done:
                on_stop(m)
        now = min((m.run.step for m in members if not m.run.done), default=bar.total)
        bar.update(max(0, now - shown))
        shown = max(shown, now)
        bar.set_postfix(dict(training=sum(not m.run.done for m in members)))
    bar.close()


