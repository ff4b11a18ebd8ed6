"""The extension points, as name -> "module:attribute" tables. Adding an objective, a task kind, a
law or an executor is one file plus one line here.

    get(OBJECTIVES, "pmi")          # the object named there, imported on first use

| table | what an entry provides | protocol |
|---|---|---|
| OBJECTIVES | training masks and extra eval losses of a pretraining objective | `workbench.objectives.Objective` |
| TASK_KINDS | the HF head, encoding and official metric of a kind of finetuning task | `workbench.taskkinds.TaskKind` |
| LAWS | a law of y against N (and covariates such as tokens): fit (with sample weights) and predict | `workbench.fit.Law` |
| EXECUTORS | where the runs of a sweep or study execute | `workbench.executors.Executor` |

Configs validate names against these tables without importing the implementations, so the tables
sit below every other module (no import cycles).
"""

from __future__ import annotations

import importlib

from workbench.errors import ConfigError

OBJECTIVES = {"mlm": "workbench.objectives:MLM", "pmi": "workbench.pmi:PMIMasking"}
TASK_KINDS = {
    "single": "workbench.taskkinds:Classification",
    "pair": "workbench.taskkinds:Classification",
    "yes_no": "workbench.taskkinds:Classification",
    "multiple_choice": "workbench.taskkinds:MultipleChoice",
    "qa": "workbench.taskkinds:SpanQA",
    "qa_v2": "workbench.taskkinds:SpanQA",
}
LAWS = {"power": "workbench.fit:PowerLaw", "saturating": "workbench.saturating:SaturatingPowerLaw",
        "joint": "workbench.joint:JointLaw"}
EXECUTORS = {"local": "workbench.executors:LocalExecutor", "ray": "workbench.executors:RayExecutor"}


def check(table: dict, name: str, what: str) -> str:
    """`name` if the table has it, else a ConfigError listing the valid names."""
    if name not in table:
        raise ConfigError(f"{what} must be one of {', '.join(table)}, got {name!r}")
    return name


def get(table: dict, name: str, what: str = "name"):
    """The object registered under `name` (imported on first use)."""
    module, attr = table[check(table, name, what)].split(":")
    return getattr(importlib.import_module(module), attr)
