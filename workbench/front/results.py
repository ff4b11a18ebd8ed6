"""What each notebook records, typed: the notebook builds one of these and writes it to its
`results.json` (`Outputs.results`); the study summary reads it back with `from_dict`, so writer and
reader share one schema instead of hand-picked keys.

    out.results(SweepResults(label=..., law=report, losses=..., stop_reasons=...))
    sw = SweepResults.from_dict(read_results("outputs/cpu", "sweep"))      # sw.law is a LawReport

Reports inside (`LawReport`, `SelectionReport`) are written with their `to_dict` and read back as
the typed reports; `figures`, `tables` and `figure_caveats` are `Outputs`' own and are kept beside.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from workbench.laws.report import LawReport
from workbench.laws.selection import SelectionReport


@dataclass(frozen=True)
class NotebookResults:
    """Fields every notebook's results share."""

    stop_reasons: dict | None = None  # `convergence_counts` of the runs behind the results (None: a table)
    figures: dict = field(default_factory=dict)  # written by Outputs: name -> PNG file
    tables: dict = field(default_factory=dict)  # written by Outputs: name -> CSV file
    figure_caveats: dict = field(default_factory=dict)  # written by Outputs: figure -> the warning on it
    REPORTS: ClassVar[dict[str, Any]] = {}  # field -> report type, or (dict, report type) for {name: report}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("figures", "tables", "figure_caveats")}

    @classmethod
    def from_dict(cls, d: dict | None):
        """The results read back from `results.json` (unknown keys ignored), reports typed; None for
        a notebook that did not run."""
        if not d:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for name, kind in cls.REPORTS.items():
            value = kw.get(name)
            if value is None:
                continue
            if isinstance(kind, tuple):
                kw[name] = {k: kind[1].from_dict(v) for k, v in value.items()}
            else:
                kw[name] = kind.from_dict(value)
        return cls(**kw)


@dataclass(frozen=True)
class SweepResults(NotebookResults):
    label: str = ""
    layers: list = field(default_factory=list)
    root: str = ""
    run_ids: list = field(default_factory=list)
    law: LawReport | None = None
    losses: dict = field(default_factory=dict)  # str(N) -> mean best eval loss
    wall_time_s: float = 0.0
    REPORTS: ClassVar[dict] = {"law": LawReport}


@dataclass(frozen=True)
class FinetuneResults(NotebookResults):
    tasks: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    n_runs: int = 0
    completed: int = 0
    laws: dict = field(default_factory=dict)  # task -> LawReport on 1 - metric
    metric_by_size: dict = field(default_factory=dict)  # task -> str(N) -> mean metric
    selected: Any = None  # the selected (lr, epochs) per task and size
    tuning: dict | None = None  # "<task> tuned" / "<task> untuned" -> LawReport
    two_stage: dict = field(default_factory=dict)  # task -> TwoStageReport (as its dict)
    two_stage_skipped: dict = field(default_factory=dict)  # task -> why the route was not fitted
    unavailable: dict = field(default_factory=dict)  # task -> why its data could not be had
    REPORTS: ClassVar[dict] = {"laws": (dict, LawReport), "tuning": (dict, LawReport)}


@dataclass(frozen=True)
class ConvergenceResults(NotebookResults):
    debug: dict | None = None  # the under-trained worked example (`glue.debug_undertrained`)
    run_ids: list = field(default_factory=list)
    names: dict = field(default_factory=dict)  # run id -> readable name
    n_runs: int = 0
    flagged: list = field(default_factory=list)
    flags: dict = field(default_factory=dict)
    z: dict = field(default_factory=dict)
    patience_needed: dict = field(default_factory=dict)  # run id -> longest wait between improvements
    plateau_steps: int = 0
    verdicts: list = field(default_factory=list)  # one dict per run (`closing.verdict_table`)


@dataclass(frozen=True)
class ExtrapolationResults(NotebookResults):
    label: str = ""
    table_file: str = ""
    law: LawReport | None = None
    forms: Any = None  # `compare_forms` (its dict), or None
    backtest: list = field(default_factory=list)  # `laws.tables.backtest` rows
    REPORTS: ClassVar[dict] = {"law": LawReport}


@dataclass(frozen=True)
class SelectionResults(NotebookResults):
    baseline: str = ""
    variant_b: str = ""
    selection: SelectionReport | None = None
    downstream: dict = field(default_factory=dict)  # task -> SelectionReport on 1 - metric
    table_file: str = ""
    decision_backtest: dict | None = None
    unavailable: dict = field(default_factory=dict)
    REPORTS: ClassVar[dict] = {"selection": SelectionReport, "downstream": (dict, SelectionReport)}


RESULTS = {"sweep": SweepResults, "finetune": FinetuneResults, "convergence": ConvergenceResults,
           "extrapolation": ExtrapolationResults, "selection": SelectionResults}
