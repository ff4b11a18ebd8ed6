"""Progress bars that also work from worker processes.

    bar = progress.bar(total=1000, initial=0, desc="ar32-L2", enabled=True)   # tqdm-like
    bar.update(1); bar.set_postfix({"eval_loss": "6.12"}); bar.close()

In the process that draws (a terminal, a notebook) this is `tqdm.auto`. A worker of the parallel
local executor cannot draw into the driver's notebook, so there `bar` sends its state through a
queue (`report_to`, set once when the worker starts) and the driver draws one bar per worker
(`WorkerBars`). Updates are sent at most every `SEND_EVERY_S` seconds, and always on close.

A worker's bar is also its per-step hook: `update` calls the `on_step` given to `report_to` in the
training thread (the executor uses it to hand the cores of idle workers to the runs still going).
"""

from __future__ import annotations

import time
from typing import Any

SEND_EVERY_S = 0.5
REFITS_AFTER_S = 2.0  # a loop of law refits (a bootstrap) shows its bar once it has taken this long
_sink: tuple[Any, int, Any] | None = None  # (queue, worker index, on_step) in a worker; None in the driver


def report_to(queue, worker: int, on_step=None) -> None:
    """Make this process's bars report to `queue` as worker `worker` (called in the worker), and
    call `on_step()` at every step."""
    global _sink
    _sink = (queue, worker, on_step)


def bar(total: int, initial: int = 0, desc: str = "", enabled: bool = True, delay: float = 0.0):
    """A tqdm-like bar. With `delay`, it appears only once the work has taken that many seconds (long
    fits show progress, short ones print nothing); such bars are not drawn from a worker."""
    from tqdm.auto import tqdm

    if _sink is not None:
        if delay:
            return tqdm(total=total, disable=True)
        return _QueueBar(*_sink, total=total, initial=initial, desc=desc, draw=enabled)
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True,
                delay=delay)


def refits(total: int, desc: str):
    """The bar of a loop of refits (a bootstrap): drawn only once the loop has taken REFITS_AFTER_S, so
    quick fits print nothing; Ctrl-C between two refits leaves it closed when used with `with`."""
    return bar(total=total, desc=desc, delay=REFITS_AFTER_S)


class _QueueBar:
    """The tqdm methods the training loop uses, sent to the driver instead of drawn."""

    def __init__(self, queue, worker: int, on_step, total: int, initial: int, desc: str, draw: bool = True):
        self.queue, self.worker, self.on_step, self.draw = queue, worker, on_step, draw
        self.state = dict(worker=worker, desc=desc, total=total, n=initial, postfix="")
        self.sent = 0.0
        self._send(force=True)

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.draw and (force or now - self.sent >= SEND_EVERY_S):
            self.sent = now
            try:
                self.queue.put_nowait(dict(self.state))
            except Exception:  # noqa: BLE001 - a lost progress message must never stop a run
                pass

    @property
    def total(self) -> int:  # read like tqdm's (an ensemble's bar reads it)
        return self.state["total"]

    @property
    def n(self) -> int:
        return self.state["n"]

    def update(self, n: int = 1) -> None:
        self.state["n"] += n
        if self.on_step:
            self.on_step()
        self._send()

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **kw) -> None:
        self.state["postfix"] = ", ".join(f"{k}={v}" for k, v in {**(values or {}), **kw}.items())
        self._send()

    def close(self) -> None:
        self._send(force=True)


class WorkerBars:
    """The driver's side: one tqdm bar per worker, redrawn from the queued states."""

    def __init__(self, queue, n_workers: int, enabled: bool):
        from tqdm.auto import tqdm

        self.queue = queue
        self.bars = [tqdm(total=1, desc=f"worker {i}", position=i + 1, disable=not enabled, leave=False,
                          dynamic_ncols=True) for i in range(n_workers)]

    def drain(self) -> None:
        import queue as q

        while True:
            try:
                s = self.queue.get_nowait()
            except (q.Empty, EOFError, OSError):
                return
            b = self.bars[s["worker"]]
            b.total, b.n = s["total"], s["n"]
            b.set_description(f"w{s['worker']} {s['desc']}", refresh=False)
            b.set_postfix_str(s["postfix"], refresh=False)
            b.refresh()

    def close(self) -> None:
        self.drain()
        for b in self.bars:
            b.close()
