"""scaling-workbench: study neural scaling laws of BERT-style Transformers from small experiments.

    from workbench import load, run_sweep, law_table, law_report
    study = load("smoke")
    runs = run_sweep(study.sweep, study.root, study.exec)
    print(law_report(law_table(runs), study.fit).describe())

Data flow: config -> family -> corpus/data -> objectives/model -> train -> pretrain/finetune ->
runs (store and run life cycle) -> executors -> sweep/finetune_study -> fit/bootstrap -> report/selection
-> plots; tables (any table of runs) -> joint (L(N, D)) -> twostage (metric from task loss);
notebook/study/summary drive the notebooks. The public names below load on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_PUBLIC = {
    "load": "config", "StudyConfig": "config", "SweepConfig": "config", "FitConfig": "config",
    "run_sweep": "sweep", "run_finetune_study": "finetune_study", "finetune_table": "finetune_study",
    "load_runs": "runs", "load_curves": "runs", "law_table": "runs", "law_report": "report",
    "selection_report": "selection", "compare_variants": "selection", "convergence_check": "diagnostics",
    "get_law": "fit", "bootstrap_law": "bootstrap", "read_table": "tables", "backtest": "tables",
    "bootstrap_joint": "joint", "two_stage_report": "twostage",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"workbench.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
