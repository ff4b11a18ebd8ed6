"""Smoke tests of the pretraining engine and run store on the tiny corpus (seconds)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import QUIET, TINY_DATA, TINY_TRAIN

from workbench.base.runfiles import read_metrics
from workbench.config import PretrainConfig
from workbench.runs.pretrain import pretrain, run_id
from workbench.runs.store import RunBusy, RunStore
from workbench.runs.tables import load_curves, load_runs


def _cfg(layers=1, **train):
    return PretrainConfig("ar32", layers, 0, TINY_DATA, replace(TINY_TRAIN, **train))


def test_smallest_model_learns_and_folder_is_complete(tmp_path, tiny_data):
    summary = pretrain(_cfg(max_steps=60), tmp_path, QUIET, tiny_data)
    run = tmp_path / run_id(_cfg(max_steps=60))
    assert {"config.json", "env.json", "metrics.jsonl", "summary.json", "best"} <= set(os.listdir(run))
    assert not (run / "resume.pt").exists()
    attempts = [json.loads(line) for line in (run / "attempts.jsonl").read_text().splitlines()]
    assert [a["event"] for a in attempts] == ["start", "end"] and attempts[1]["outcome"] == "finished"
    with RunStore(tmp_path).claim(run.name):  # the claim was let go
        pass
    curve = read_metrics(run)
    assert [r["step"] for r in curve] == [10, 20, 30, 40, 50, 60]
    assert curve[-1]["eval_loss"] < curve[0]["eval_loss"] - 0.15  # it learns ...
    # ... and past a uniform guess. WordPiece training is not deterministic, so each session's tiny
    # corpus differs a little: over four draws the last loss sat 0.44-0.57 nats below ln V.
    assert curve[-1]["eval_loss"] < math.log(tiny_data.vocab_size) - 0.3
    assert summary["status"] == "completed" and summary["best_eval_loss"] == min(r["eval_loss"] for r in curve)
    assert summary["tokens"] == 60 * 8 * 32 and summary["flops"] == 6 * 12288 * summary["tokens"]
    assert summary["train_tokens"] == tiny_data.train.shape[0] * 32  # blocks of 32 tokens
    assert summary["passes"] == pytest.approx(summary["tokens"] / summary["train_tokens"], abs=1e-3)
    assert summary["passes_at_best"] == pytest.approx(summary["best_step"] * 8 * 32 / summary["train_tokens"], abs=1e-3)
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and "commit" in env["git"] and env["device"] == "cpu"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["train"]["max_steps"] == 60 and cfg["model"]["n_params"] == 12288
    # the best checkpoint is a stock HF checkpoint with its tokenizer
    from transformers import AutoTokenizer, BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(run / "best")
    assert model.config.hidden_size == 32 and AutoTokenizer.from_pretrained(run / "best").mask_token == "[MASK]"


def test_early_stopping_keeps_the_best(tmp_path, tiny_data):
    """lr=0 after warm-up: eval loss cannot improve, so the run stops after `patience` steps."""
    s = pretrain(_cfg(lr=1e-9, max_steps=200, patience=30, eval_interval=10), tmp_path, QUIET, tiny_data)
    assert s["stop_reason"] == "early_stopped" and s["steps"] - s["best_step"] >= 30 and s["steps"] < 200


def test_finished_runs_are_skipped(tmp_path, tiny_data):
    first = pretrain(_cfg(), tmp_path, QUIET, tiny_data)
    mtime = (tmp_path / run_id(_cfg()) / "summary.json").stat().st_mtime_ns
    assert pretrain(_cfg(), tmp_path, QUIET, tiny_data) == first
    assert (tmp_path / run_id(_cfg()) / "summary.json").stat().st_mtime_ns == mtime


def test_nan_loss_is_recorded_as_diverged(tmp_path, tiny_data, monkeypatch):
    import workbench.runs.pretrain as pt

    real = pt.mlm_loss
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += model.training  # count training steps only, not evaluation batches
        loss = real(model, batch)
        return loss * float("nan") if model.training and calls["n"] == 15 else loss

    monkeypatch.setattr(pt, "mlm_loss", flaky)
    s = pretrain(_cfg(), tmp_path, QUIET, tiny_data)
    assert s["status"] == "diverged" and s["diverged_step"] == 14 and s["steps"] == 14
    assert math.isfinite(s["best_eval_loss"])  # the evaluation before divergence is kept


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_data, monkeypatch):
    """Crash mid-run, resume from the checkpoint: same curve as a run that never stopped."""
    import workbench.runs.pretrain as pt

    whole = pretrain(_cfg(max_steps=40), tmp_path / "a", QUIET, tiny_data)
    real = pt.mlm_loss
    calls = {"n": 0}

    def crash(model, batch):
        calls["n"] += model.training
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(pt, "mlm_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_cfg(max_steps=40), tmp_path / "b", QUIET, tiny_data)
    run_b = tmp_path / "b" / run_id(_cfg(max_steps=40))
    assert (run_b / "resume.pt").exists() and not (run_b / "summary.json").exists()
    monkeypatch.setattr(pt, "mlm_loss", real)
    resumed = pretrain(_cfg(max_steps=40), tmp_path / "b", QUIET, tiny_data)
    a = [r["eval_loss"] for r in read_metrics(tmp_path / "a" / run_id(_cfg(max_steps=40)))]
    b = [r["eval_loss"] for r in read_metrics(run_b)]
    assert b == pytest.approx(a, rel=1e-6) and resumed["best_eval_loss"] == pytest.approx(whole["best_eval_loss"])


def test_corrupt_resume_checkpoint_restarts_from_scratch(tmp_path, tiny_data, caplog):
    cfg = _cfg()
    run = tmp_path / run_id(cfg)
    run.mkdir(parents=True)
    (run / "resume.pt").write_bytes(b"not a checkpoint")
    s = pretrain(cfg, tmp_path, QUIET, tiny_data)
    assert s["status"] == "completed" and "unreadable" in caplog.text
    assert [r["step"] for r in read_metrics(run)] == [10, 20, 30]


def test_a_live_claim_blocks_a_second_runner(tmp_path):
    store = RunStore(tmp_path)
    with store.claim("x"):
        with pytest.raises(RunBusy, match=f"being run by another process .*{os.getpid()}"):
            with store.claim("x"):
                pass
    with store.claim("x"):  # released on exit
        pass
    assert len(store.attempts("x")) == 2


def test_a_killed_holder_releases_its_claim(tmp_path):
    """The claim is a kernel lock: a holder killed with SIGKILL cannot leave it stale."""
    code = ("import sys, time; from workbench.runs.store import RunStore\n"
            "with RunStore(sys.argv[1]).claim('x'):\n    print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    store = RunStore(tmp_path)
    with pytest.raises(RunBusy, match=str(proc.pid)):
        with store.claim("x"):
            pass
    proc.kill()
    proc.wait()
    with store.claim("x"):
        pass
    starts = store.attempts("x")
    assert [a["pid"] for a in starts] == [proc.pid, os.getpid()]


def test_load_runs_and_curves(tmp_path, tiny_data):
    for layers in (1, 2):
        pretrain(_cfg(layers), tmp_path, QUIET, tiny_data)
    df = load_runs(tmp_path)
    assert len(df) == 2 and set(df.n_params) == {12288, 98304}
    for col in ("best_eval_loss", "steps", "tokens", "flops", "wall_time_s", "train.lr", "data.corpus", "seed"):
        assert col in df
    curves = load_curves(tmp_path)
    assert len(curves) == 6 and {"run_id", "step", "eval_loss", "train_loss", "lr"} <= set(curves)


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "workbench.front.cli", *args], capture_output=True, text=True,
                          env={**os.environ}, **kw)


@pytest.mark.parametrize("args, match", [
    (["--set", "sweep.family=gpt"], "unknown family"),
    (["--set", "sweep.layers=[0]"], "n_layers must be"),
    (["--set", "sweep.train.max_steps=-5"], "max_steps must be a positive"),
    (["--set", "sweep.train.lrr=1"], "unknown config key sweep.train.lrr"),
    (["--set", "sweep.data.corpus=files:/nonexistent/corpus"], "no such file"),
    (["--profile", "nope"], "unknown profile"),
    (["--set", "layers=[1]"], "did you mean sweep.layers"),
    (["--set", "sweep.layers=[1,"], "not valid YAML"),
])
def test_cli_bad_inputs_one_line_and_nothing_written(tmp_path, args, match):
    root = tmp_path / "runs"
    r = _cli("sweep", "--profile", "smoke", "--root", str(root), *args)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 2 and len(errors) == 1 and match in errors[0]
    assert "Traceback" not in r.stderr
    assert not root.exists() or not any(root.iterdir())


def test_killed_sweep_resumes_without_redoing_or_losing(tmp_path):
    """kill -9 the sweep while its second run is mid-way; the re-run finishes the rest only."""
    root = tmp_path / "runs"
    args = ["sweep", "--profile", "smoke", "--root", str(root), "--set", "sweep.train.max_steps=300",
            "--set", "sweep.train.patience=1000", "--set", "sweep.layers=[1, 2]"]
    proc = subprocess.Popen([sys.executable, "-m", "workbench.front.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300  # a guard against hangs, generous for a loaded machine
    while time.time() < deadline:
        done = list(root.glob("*/summary.json"))
        partial = [p for p in root.glob("*L2*/metrics.jsonl") if len(p.read_text().splitlines()) >= 3]
        if done and partial:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done and partial, "the sweep did not reach its second run in time"
    first = done[0]
    first_mtime = first.stat().st_mtime_ns
    steps_before = [r["step"] for r in read_metrics(partial[0].parent)]
    r = _cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr
    assert first.stat().st_mtime_ns == first_mtime  # the finished run was not redone
    df = load_runs(root)
    assert len(df) == 2 and (df.status == "completed").all() and (df.steps == 300).all()
    steps = [r["step"] for r in read_metrics(partial[0].parent)]
    assert steps == list(range(10, 301, 10))  # nothing lost, nothing duplicated
    assert steps[: len(steps_before) - 1] == steps_before[:-1]
    assert "resumed at step" in r.stderr


def test_a_generated_language_records_its_floor_and_fits_above_it(tmp_path, monkeypatch):
    """A run on the generated language records the Bayes floor of its own eval masks, below its loss,
    and its law table carries it for the floored law; a run on real text records none."""
    import workbench.data.sources.hmm as hmm
    from workbench.config import DataConfig, FitConfig
    from workbench.data.floor import eval_loss_floor
    from workbench.data.prepared import prepare_data
    from workbench.laws.report import law_report
    from workbench.laws.tables import final_points, read_table
    from workbench.runs.pretrain import eval_batch
    from workbench.runs.tables import fitting_rows, law_table, store_table

    monkeypatch.setattr(hmm, "SOURCE", replace(hmm.SOURCE, n_states=32, n_words=96, per_state=2, n_tokens=60_000))
    data_cfg = DataConfig(corpus="hmm", vocab_size=256, seq_len=32, eval_blocks=64)
    data = prepare_data(data_cfg, cache_dir=tmp_path / "cache")
    vocab = data.tokenizer.get_vocab()
    words = {vocab[w] for w in hmm.SOURCE.words() if w in vocab}
    held = set(np.unique(np.asarray(data.eval)).tolist()) - set(data.special_ids.values())
    assert len(words) > 40 and held <= words  # every held-out token is a whole word of the language
    summaries = []
    for layers in (1, 2):
        cfg = PretrainConfig("ar32", layers, 0, data_cfg, replace(TINY_TRAIN, max_steps=30, lr=3e-3))
        summaries.append(pretrain(cfg, tmp_path / "runs", QUIET, data))
        floor = summaries[-1]["eval_loss_floor"]
        assert floor is not None and 0 < floor < summaries[-1]["best_eval_loss"]
    table = law_table(load_runs(tmp_path / "runs"))
    assert table.floor.nunique() == 1 and table.floor.iloc[0] == summaries[0]["eval_loss_floor"]
    # the path the sweep notebook, `workbench fit` and the summary take: one point per run, the floor given
    rows = fitting_rows(table, tmp_path / "runs", "floored")
    assert len(rows) == 2
    report = law_report(rows, FitConfig(law="floored", n_bootstrap=20, n_held_out=0))
    assert report.params["E"] == summaries[0]["eval_loss_floor"] and report.n_points == 2
    # shared as a table (`workbench runs --export`) and read back, the runs keep their floor
    exported = tmp_path / "runs.csv"
    store_table(tmp_path / "runs").to_csv(exported, index=False)
    back = final_points(read_table(exported))
    assert (back.floor == summaries[0]["eval_loss_floor"]).all() and len(back) == 2
    assert law_report(back, FitConfig(law="floored", n_bootstrap=20, n_held_out=0)).params["E"] == report.params["E"]
    # a floor that is unknown (a word split into pieces) is None, with a warning, never a wrong number
    cfg = PretrainConfig("ar32", 1, 0, data_cfg, TINY_TRAIN)
    batch = eval_batch(data, cfg)[2]
    piece = next(i for t, i in vocab.items() if i not in words and t not in data.special_ids)  # e.g. "##7"
    k = int(np.flatnonzero(~batch.positions[0].numpy() & np.isin(batch.input_ids[0].numpy(), list(words)))[0])
    assert eval_loss_floor(data, batch, 0.15) is not None
    batch.input_ids[0, k] = piece  # shown as itself, unselected: the text holds a piece of a word
    assert eval_loss_floor(data, batch, 0.15) is None


def test_real_text_has_no_floor(tmp_path, tiny_data):
    assert pretrain(_cfg(max_steps=10), tmp_path, QUIET, tiny_data)["eval_loss_floor"] is None
