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


# ---------------------------------------------------------------- nothing followed out, nothing foreign


def _copy(swept, tmp_path):
    import shutil

    src, study, df = swept
    root = tmp_path / "store"
    shutil.copytree(src, root)
    return root, study, df


def test_a_run_folder_that_links_out_of_the_store_is_refused_and_nothing_is_written_there(tmp_path, swept, capsys):
    import shutil

    from workbench.runs.store import UnsafePath

    root, study, df = _copy(swept, tmp_path)
    victim, outside = df.run_id.iloc[0], tmp_path / "elsewhere"
    outside.mkdir()
    shutil.rmtree(root / victim)
    (root / victim).symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match=rf"{victim} resolves to .*elsewhere, outside the run store"):
        RunStore(root).summary(victim)
    with pytest.raises(UnsafePath):
        run_sweep(study.sweep, root, study.exec)
    assert main(["sweep", "--profile", "smoke", "--set", "sweep.layers=[1, 2]", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside the run store" in err[0]
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["claim.json", "attempts.jsonl", "summary.json", "best"])
def test_a_run_file_that_links_out_of_the_store_is_never_written(tmp_path, swept, name):
    from workbench.runs.store import UnsafePath

    root, study, df = _copy(swept, tmp_path)
    run = df.run_id.iloc[-1]
    (root / run / "summary.json").unlink()  # unfinished: a sweep would claim it and train
    target = tmp_path / f"outside-{name}"
    target.write_text("keep me\n") if name != "best" else target.mkdir()
    path = root / run / name
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(target)
    with pytest.raises(UnsafePath, match=f"{name} resolves to .*outside-{name}, outside the run store"):
        with RunStore(root).claim(run):
            pass
    assert (target.read_text() == "keep me\n") if name != "best" else list(target.iterdir()) == []


def test_a_run_id_cannot_name_a_path(tmp_path):
    from workbench.runs.store import UnsafePath

    for bad in ("..", "../x", "a/b", ""):
        with pytest.raises(UnsafePath, match="is not a run id"):
            RunStore(tmp_path).path(bad)


def test_a_resume_checkpoint_of_another_run_is_refused_and_the_run_restarts(tmp_path, caplog):
    """Copy run A's resume.pt into unfinished run B: B restarts from scratch with a warning, and its
    curve is the curve of B trained undisturbed (not A's continued)."""
    import shutil

    from workbench.base.runfiles import read_metrics
    from workbench.runs.pretrain import run_id

    study = load("smoke", ["sweep.layers=[1]", "sweep.seeds=[0, 1]", "exec.workers=1",
                           "sweep.train.max_steps=30", "sweep.train.patience=100"])
    clean = run_sweep(study.sweep, tmp_path / "clean", study.exec)
    a, b = (run_id(r) for r in study.sweep.runs())
    # a store where A stopped after its checkpoint at step 10 and B has not begun
    study10 = load("smoke", ["sweep.layers=[1]", "sweep.seeds=[0]", "exec.workers=1", "sweep.train.max_steps=30",
                             "sweep.train.patience=100"])
    from workbench.runs.pretrain import PretrainSpec
    from workbench.train import loop as loop_mod

    root = tmp_path / "store"
    calls = {"n": 0}
    real = loop_mod._save_resume

    def stop_after_first(*args, **kw):
        real(*args, **kw)
        calls["n"] += 1
        raise KeyboardInterrupt  # killed right after its first checkpoint

    loop_mod._save_resume = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            from workbench.runs.lifecycle import run_once

            run_once(PretrainSpec(study10.sweep.runs()[0]), root, study.exec)
    finally:
        loop_mod._save_resume = real
    (root / b).mkdir()
    shutil.copy(root / a / "resume.pt", root / b / "resume.pt")
    (root / a / "resume.pt").unlink()
    shutil.rmtree(root / a)
    again = run_sweep(study.sweep, root, study.exec)
    assert (again.status == "completed").all()
    assert f"was written by run {a}, not {b}; restarting {b} from scratch" in caplog.text
    got = [r["eval_loss"] for r in read_metrics(root / b)]
    want = [r["eval_loss"] for r in read_metrics(tmp_path / "clean" / b)]
    assert got == pytest.approx(want, rel=1e-6) and clean.run_id.tolist() == again.run_id.tolist()


def test_the_data_cache_changing_under_a_running_sweep_stops_the_later_runs(tmp_path, monkeypatch):
    """The cache is rebuilt (another tokenizer) after the first run finished: the later runs refuse it
    (one line each), the sweep reports them failed, and a fit refuses to put both tokenizers on one law."""
    from workbench.base.errors import FitError
    from workbench.data.prepared import prepare_data
    from workbench.runs.pretrain import PretrainSpec
    from workbench.runs.tables import law_table

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "cache"))
    study = load("smoke", ["sweep.layers=[1, 2]", "exec.workers=1"])
    meta = prepare_data(study.sweep.data).path / "meta.json"

    def rebuild(outcome):
        if outcome is not None and not rebuild.done:  # as if the cache were deleted and rebuilt here
            rebuild.done = True
            rec = json.loads(meta.read_text())
            rec["tokenizer_sha256"] = "f" * 64
            meta.write_text(json.dumps(rec))
    rebuild.done = False

    df = run_sweep(study.sweep, tmp_path / "runs", study.exec, on_done=rebuild)
    assert df.attrs["counts"]["failed"] == 1 and len(df) == 1
    refused = {r.run_id for r in df.itertuples()} ^ {PretrainSpec(c).run_id for c in study.sweep.runs()}
    assert len(refused) == 1 and not (tmp_path / "runs" / refused.pop() / "summary.json").exists()
    # a second store where both tokenizers did finish: the fit names them
    runs = load_runs(tmp_path / "runs")
    two = pd_concat_with_other_tokenizer(runs)
    with pytest.raises(FitError, match="its runs used 2 tokenizers"):
        law_table(two)


def pd_concat_with_other_tokenizer(runs):
    import pandas as pd

    other = runs.copy()
    other["run_id"] = other.run_id + "-x"
    other["n_params"] = other.n_params * 2
    other["tokenizer_sha256"] = "f" * 64
    return pd.concat([runs, other], ignore_index=True)


def test_deleting_the_claim_file_does_not_let_a_second_process_in(tmp_path):
    """The claim is a lock on the run folder: unlinking claim.json under a running run changes nothing."""
    from workbench.runs.store import RunBusy

    store = RunStore(tmp_path)
    with store.claim("r1") as run_dir:
        (run_dir / "claim.json").unlink()
        with pytest.raises(RunBusy, match="run r1 is being run by another process"):
            with store.claim("r1"):
                pass
    with store.claim("r1"):  # released with its holder
        pass


def test_a_best_checkpoint_gets_the_usual_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        study = load("smoke", ["sweep.layers=[1]", "exec.workers=1", "sweep.train.max_steps=10"])
        df = run_sweep(study.sweep, tmp_path, study.exec)
    finally:
        os.umask(old)
    best = tmp_path / df.run_id.iloc[0] / "best"
    assert stat.S_IMODE(best.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in best.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o644}, modes


def test_a_store_root_that_is_itself_a_link_works(tmp_path, swept):
    """Only what resolves outside the root is refused: a root reached through a symlink is fine."""
    root, study, df = _copy(swept, tmp_path)
    (tmp_path / "linked").symlink_to(root, target_is_directory=True)
    again = run_sweep(study.sweep, tmp_path / "linked", study.exec)
    assert again.attrs["counts"]["skipped"] == len(df) and (again.status == "completed").all()


def test_a_symlink_loop_in_the_store_is_one_line(tmp_path):
    from workbench.runs.store import UnsafePath

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(UnsafePath, match="cannot be resolved"):
        RunStore(tmp_path).summary("loop")
