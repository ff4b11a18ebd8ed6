"""The run store under bad files: unreadable summaries, torn metrics lines."""

import json

import pytest

from workbench.base.files import append_jsonl, read_jsonl
from workbench.config import load
from workbench.execute.sweep import run_sweep
from workbench.front.cli import main
from workbench.runs.store import RunStore
from workbench.runs.tables import load_curves, load_runs


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    study = load("smoke", ["sweep.layers=[1, 2]", "exec.workers=1"])
    df = run_sweep(study.sweep, root, study.exec)
    return root, study, df


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", "{}", '{"status": "running"}'])
def test_an_unreadable_summary_is_named_and_the_store_keeps_working(tmp_path, swept, garbage, caplog, capsys):
    import shutil

    src, study, df = swept
    root = tmp_path / "store"
    shutil.copytree(src, root)
    bad, good = df.run_id.iloc[0], df.run_id.iloc[1]
    (root / bad / "summary.json").write_text(garbage)
    store = RunStore(root)
    assert not store.is_finished(bad) and store.is_finished(good)
    assert bad in caplog.text and "counts as unfinished" in caplog.text  # {} has no status: the same
    assert list(load_runs(root).run_id) == [good]
    assert set(load_runs(root, include_unfinished=True).run_id) == {bad, good}
    assert main(["runs", "--root", str(root)]) == 0
    assert main(["runs", "--root", str(root), "--all"]) == 0
    assert good in capsys.readouterr().out
    again = run_sweep(study.sweep, root, study.exec)  # the sweep trains the unreadable one again
    assert (again.status == "completed").all() and len(again) == 2
    assert json.loads((root / bad / "summary.json").read_text())["status"] == "completed"
    assert again.set_index("run_id").best_eval_loss[bad] == pytest.approx(df.set_index("run_id").best_eval_loss[bad])


def test_a_torn_line_is_cut_before_the_next_append(tmp_path, caplog):
    path = tmp_path / "m.jsonl"
    for step in range(5):
        append_jsonl(path, dict(step=step))
    with open(path, "a") as f:
        f.write('{"step": 5, "eval_lo')  # killed mid-write
    assert [r["step"] for r in read_jsonl(path)] == [0, 1, 2, 3, 4]  # the tear itself is not a warning
    assert "unreadable" not in caplog.text
    for step in range(5, 30):
        append_jsonl(path, dict(step=step))
    assert [r["step"] for r in read_jsonl(path)] == list(range(30))
    assert "cut a torn last line" in caplog.text


def test_a_bad_line_inside_a_log_is_skipped_and_named(tmp_path, swept, caplog):
    src, _, df = swept
    run = src / df.run_id.iloc[0]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    torn = tmp_path / df.run_id.iloc[0]
    torn.mkdir()
    (torn / "config.json").write_text((run / "config.json").read_text())
    half = len(lines) // 2
    (torn / "metrics.jsonl").write_text("\n".join(lines[:half] + [lines[half][:7]] + lines[half + 1:]) + "\n")
    curves = load_curves(tmp_path)
    assert len(curves) == len(lines) - 1  # every row but the damaged one
    assert f"line {half + 1}" in caplog.text and "skipped 1 unreadable" in caplog.text


def test_editing_a_files_corpus_makes_new_runs(tmp_path, text_corpus):
    over = [f"sweep.data.corpus=files:{text_corpus}", "sweep.data.max_documents=0", "sweep.data.eval_blocks=8",
            "exec.workers=1"]
    first = run_sweep(load("smoke", over + ["sweep.layers=[1]"]).sweep, tmp_path / "runs", load("smoke", over).exec)
    victim = sorted(text_corpus.iterdir())[0]
    victim.write_text(victim.read_text() + " an edited sentence that was not there before .")
    study = load("smoke", over + ["sweep.layers=[1, 2]"])
    second = run_sweep(study.sweep, tmp_path / "runs", study.exec)
    assert len(second) == 2 and first.run_id.iloc[0] not in set(second.run_id)  # L1 trained again, on the new text
    assert second.attrs["counts"]["skipped"] == 0
    keys = {json.loads((tmp_path / "runs" / r / "config.json").read_text())["data"]["key"] for r in second.run_id}
    assert len(keys) == 1 and keys != {json.loads((tmp_path / "runs" / first.run_id.iloc[0] / "config.json")
                                                  .read_text())["data"]["key"]}


def test_a_rebuilt_tokenizer_is_never_mixed_into_a_sweep(tmp_path, swept, caplog):
    import shutil

    src, study, df = swept
    root = tmp_path / "store"
    shutil.copytree(src, root)
    l1, l2 = df.run_id
    cfg = root / l1 / "config.json"
    rec = json.loads(cfg.read_text())
    rec["data"]["tokenizer_sha256"] = "0" * 64  # as if L1 had trained on a cache that has since been rebuilt
    cfg.write_text(json.dumps(rec))
    (root / l2 / "summary.json").unlink()  # L2 still to run: it would train beside L1 on another tokenizer
    from workbench.base.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match=f"{l1}.*used another tokenizer"):
        run_sweep(study.sweep, root, study.exec)
    (root / l1 / "summary.json").unlink()  # L1 unfinished: its next attempt starts over on the tokenizer now there
    again = run_sweep(study.sweep, root, study.exec)
    assert (again.status == "completed").all() and "restarting it from scratch" in caplog.text
    assert json.loads(cfg.read_text())["data"]["tokenizer_sha256"] != "0" * 64


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from workbench.base.files import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644


def test_a_completed_summary_without_its_loss_names_the_run_in_the_fit(tmp_path, swept):
    import shutil

    from workbench.base.errors import FitError
    from workbench.runs.tables import law_table

    src, _, df = swept
    root = tmp_path / "store"
    shutil.copytree(src, root)
    bad = df.run_id.iloc[0]
    (root / bad / "summary.json").write_text('{"status": "completed"}')
    with pytest.raises(FitError, match=rf"run {bad} is completed but its summary has no best_eval_loss"):
        law_table(load_runs(root))
