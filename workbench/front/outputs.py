"""What a notebook writes: `<out_dir>/<name>/` with its figures (PNG), tables (CSV) and
`results.json`, every file written atomically; figures over runs that are not converged carry the
warning.

    out = Outputs("outputs/cpu", "sweep"); out.runs_from(convergence_counts(runs))
    out.figure(fig, "fit"); out.results(dict(law=report))       # typed reports as their dicts
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.base.files import atomic_path, write_atomic, write_json_atomic
from workbench.front.closing import not_converged


class Outputs:
    """The folder a notebook writes: `<out_dir>/<name>/` with figures (PNG), tables (CSV), results.json."""

    def __init__(self, out_dir: str | Path, name: str):
        self.dir = Path(out_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._results: dict[str, Any] = {}
        self.caveat: str | None = None  # stamped on every figure from `runs_from` on

    def runs_from(self, stop_reasons: dict | None) -> str | None:
        """Say how the runs behind this notebook's results stopped (`convergence_counts`): when any
        is not converged, every figure saved from here on carries the warning; returned too."""
        self.caveat = not_converged(stop_reasons)
        return self.caveat

    def figure(self, fig, name: str) -> None:
        if self.caveat:  # the figure says it too, not only the text around it
            fig.text(0.5, 0.0, textwrap.fill(self.caveat, 90), ha="center", va="top", color="crimson", fontsize=7.5)
            self._results.setdefault("figure_caveats", {})[name] = self.caveat
        path = self.dir / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        self._results.setdefault("figures", {})[name] = path.name
        self._write()  # returns nothing: a notebook cell ending in it shows no PosixPath

    def table(self, df: pd.DataFrame, name: str) -> None:
        path = self.dir / f"{name}.csv"
        write_atomic(path, df.to_csv(index=False))
        self._results.setdefault("tables", {})[name] = path.name
        self._write()  # returns nothing: a notebook cell ending in it shows no PosixPath

    def results(self, values) -> dict:
        """Record values: a notebook's typed results (`front.results`) or a dict; anything with
        `to_dict` (typed results, reports) is written as its dict."""
        self._results.update(_jsonable(values))
        self._write()
        return self._results

    def _write(self) -> None:
        write_json_atomic(self.dir / "results.json", self._results)


def _jsonable(v):
    if hasattr(v, "to_dict") and not isinstance(v, pd.DataFrame):
        v = v.to_dict()
    if isinstance(v, pd.DataFrame):
        v = v.to_dict("records")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def read_results(out_dir: str | Path, name: str) -> dict:
    path = Path(out_dir) / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}
