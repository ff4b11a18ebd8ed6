"""scaling-workbench: study neural scaling laws of BERT-style Transformers from small experiments.

    from workbench import load, run_sweep, law_table, law_report
    study = load("smoke")
    runs = run_sweep(study.sweep, study.root, study.exec)
    print(law_report(law_table(runs), study.fit).describe())

One folder per part of the data flow: `base/` (errors, registries, files, the family table,
convergence rules) -> `config` -> `data/` and `tasks/` -> `train/` -> `runs/` -> `execute/`; `laws/`
(torch-free) fits what `runs/` or any table gives; `front/` (CLI, notebooks, plots, summary) on
top. `tests/test_layout.py` keeps these arrows. The public names below load on first use.
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("scaling-workbench")  # one version: pyproject.toml's
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_PUBLIC = {
    "load": "config", "StudyConfig": "config", "SweepConfig": "config", "FitConfig": "config",
    "run_sweep": "execute.sweep", "run_finetune_study": "execute.finetune_study",
    "finetune_table": "execute.finetune_study", "load_runs": "runs.tables", "load_curves": "runs.tables",
    "law_table": "runs.tables", "law_report": "laws.report", "selection_report": "laws.selection",
    "compare_variants": "laws.selection", "convergence_check": "laws.diagnostics", "get_law": "laws.fit",
    "bootstrap_law": "laws.bootstrap", "read_table": "laws.tables", "backtest": "laws.tables",
    "bootstrap_joint": "laws.joint", "two_stage_report": "laws.twostage",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"workbench.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
