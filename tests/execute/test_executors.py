"""Executors and fault tolerance on the local executor: failures collected, crashes retried from the
checkpoint, NaN runs recorded and skipped by fits, two sweeps sharing one store, micro-batches."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from helpers import QUIET, TINY_DATA, TINY_TRAIN

from workbench.base.errors import ConfigError
from workbench.base.runfiles import read_metrics
from workbench.config import ExecConfig, PretrainConfig, SweepConfig
from workbench.data.masking import mlm_mask
from workbench.execute.contract import counts, run_jobs
from workbench.execute.raycluster import gpu_share
from workbench.runs.pretrain import PretrainSpec, pretrain, run_id
from workbench.runs.store import RunStore
from workbench.train.loop import split_batch


def _cfg(layers=1, seed=0, **train):
    return PretrainConfig("ar32", layers, seed, TINY_DATA, replace(TINY_TRAIN, **train))


def _failing_at(monkeypatch, layers: set, step: int, times: int, error=RuntimeError):
    """mlm_loss raises `error` at training step `step` of models with these depths, `times` times."""
    import workbench.runs.pretrain as pt

    real, seen = pt.mlm_loss, {"fails": 0}
    steps = {}

    def flaky(model, batch):
        n = model.config.num_hidden_layers
        if model.training and n in layers:
            steps[n] = steps.get(n, 0) + 1
            if steps[n] == step and seen["fails"] < times:
                seen["fails"] += 1
                steps[n] = 0  # the retry counts its steps afresh
                raise error("injected crash")
        return real(model, batch)

    monkeypatch.setattr(pt, "mlm_loss", flaky)
    return seen


def test_failures_are_collected_and_crashes_retried_from_the_checkpoint(tmp_path, tiny_data, monkeypatch):
    seen = _failing_at(monkeypatch, {1}, step=25, times=1)  # L1 crashes once at step 25 (checkpoint at 20)
    import workbench.runs.pretrain as pt
    flaky = pt.mlm_loss

    def broken(model, batch):  # L2 fails at every attempt
        if model.training and model.config.num_hidden_layers == 2:
            raise RuntimeError("always broken")
        return flaky(model, batch)

    monkeypatch.setattr(pt, "mlm_loss", broken)
    jobs = [PretrainSpec(_cfg(n)) for n in (1, 2, 3)]
    with pytest.warns(UserWarning, match=r"1 of 3 runs failed.*always broken"):
        out = run_jobs(jobs, tmp_path, replace(QUIET, max_retries=2))
    assert [o.status for o in out] == ["completed", "failed", "completed"] and seen["fails"] == 1
    store = RunStore(tmp_path)
    l1 = store.attempts(run_id(_cfg(1)))
    assert len(l1) == 2 and l1[1]["resume_checkpoint"]  # the retry resumed from the step-20 checkpoint
    assert [r["step"] for r in read_metrics(tmp_path / run_id(_cfg(1)))] == [10, 20, 30]
    assert len(store.attempts(run_id(_cfg(2)))) == 3  # max_retries = 2
    c = counts(out)
    assert (c["completed"], c["failed"], c["retried"], c["attempts"], c["lost"]) == (2, 1, 2, 6, 0)
    again = run_jobs(jobs[:1], tmp_path, QUIET)  # finished runs are skipped, not redone
    assert again[0].skipped and len(store.attempts(run_id(_cfg(1)))) == 2


def test_a_crash_before_the_first_checkpoint_restarts_without_logging_twice(tmp_path, tiny_data, monkeypatch):
    """No resume checkpoint yet (checkpoint_interval beyond the crash): the retry starts from step 0
    and the evaluations the crashed attempt logged are dropped, not duplicated."""
    _failing_at(monkeypatch, {1}, step=25, times=1)
    out = run_jobs([PretrainSpec(_cfg(1))], tmp_path, replace(QUIET, checkpoint_interval=1000))
    assert out[0].status == "completed" and out[0].attempts == 2
    assert [r["step"] for r in read_metrics(tmp_path / run_id(_cfg(1)))] == [10, 20, 30]


def test_config_errors_are_not_retried(tmp_path, tiny_data, monkeypatch):
    _failing_at(monkeypatch, {1}, step=3, times=99, error=ConfigError)
    with pytest.warns(UserWarning, match="injected crash"):
        out = run_jobs([PretrainSpec(_cfg(1))], tmp_path, QUIET)
    assert out[0].status == "failed" and out[0].attempts == 1


def test_nan_run_is_diverged_the_sweep_goes_on_and_fits_skip_it(tmp_path, tiny_data, monkeypatch, caplog):
    import workbench.runs.pretrain as pt
    from workbench.execute.sweep import run_sweep
    from workbench.runs.tables import law_table

    real = pt.mlm_loss

    def nan_at_l2(model, batch):
        loss = real(model, batch)
        return loss * float("nan") if model.training and model.config.num_hidden_layers == 2 else loss

    monkeypatch.setattr(pt, "mlm_loss", nan_at_l2)
    sweep = SweepConfig("ar32", (1, 2, 3), (0,), TINY_DATA, TINY_TRAIN)
    df = run_sweep(sweep, tmp_path, QUIET)
    assert list(df.status) == ["completed", "diverged", "completed"]
    assert df.diverged_step.iloc[1] == 0 and df.attrs["counts"]["diverged"] == 1
    table = law_table(df)
    assert f"leaving out 1 run(s) that did not complete: {df.run_id.iloc[1]} (diverged at step 0)" in caplog.text
    assert sorted(table.n_params) == [12288, 331776]


def test_two_sweeps_on_one_store_split_the_work_and_never_duplicate(tmp_path):
    root = tmp_path / "runs"
    args = [sys.executable, "-m", "workbench.front.cli", "sweep", "--profile", "smoke", "--root", str(root),
            "--set", "sweep.layers=[1, 2, 3]", "--set", "sweep.seeds=[0, 1]", "--set", "sweep.train.max_steps=60",
            "--set", "sweep.train.patience=100", "--set", "exec.cpus_per_run=1",
            "--set", "exec.workers=1"]  # one process and thread each: 2 cores, 2 sweeps
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    store = RunStore(root)
    ids = [d.name for d in root.iterdir() if d.name.startswith("pretrain-")]
    assert len(ids) == 6 and all(store.is_finished(i) for i in ids)
    attempts = {i: store.attempts(i) for i in ids}
    assert all(len(a) == 1 for a in attempts.values()), attempts  # every run trained exactly once
    for out, _ in outs:  # and each sweep reports all six
        assert all(i in out for i in ids)
    workers = {a[0]["pid"] for a in attempts.values()}
    assert workers <= {p.pid for p in procs}


def test_split_batch_weights_reassemble_the_batch():
    blocks = torch.randint(5, 100, (8, 16))
    b = mlm_mask(blocks, 0.3, 100, [0, 1, 2, 3, 4], 4, torch.Generator().manual_seed(0))
    parts = split_batch(b, 3)
    assert [len(p.input_ids) for p, _ in parts] == [3, 3, 2]
    assert torch.equal(torch.cat([p.labels for p, _ in parts]), b.labels)
    assert sum(w for _, w in parts) == pytest.approx(1.0)
    d = {"input_ids": torch.zeros(5, 4), "labels": torch.arange(5)}
    assert [w for _, w in split_batch(d, 2)] == pytest.approx([0.4, 0.4, 0.2])
    assert split_batch(d, 0)[0][1] == 1.0


def test_gradient_accumulation_follows_the_whole_batch(tmp_path, tiny_data):
    """Micro-batches of 3 rows accumulate the gradient of the batch of 8 (no dropout: same maths)."""
    cfg = _cfg(2, dropout=0.0, max_steps=20)
    whole = pretrain(cfg, tmp_path / "a", QUIET, tiny_data)
    micro = pretrain(cfg, tmp_path / "b", replace(QUIET, micro_batch_size=3), tiny_data)
    a = [r["eval_loss"] for r in read_metrics(tmp_path / "a" / run_id(cfg))]
    b = [r["eval_loss"] for r in read_metrics(tmp_path / "b" / run_id(cfg))]
    assert b == pytest.approx(a, rel=1e-5) and micro["micro_batch_size"] == 3 and whole["micro_batch_size"] == 8


def test_exec_config_and_resources():
    with pytest.raises(ConfigError, match="executor must be one of local, ray"):
        ExecConfig(executor="dask")
    with pytest.raises(ConfigError, match="gpus_per_run"):
        ExecConfig(gpus_per_run=1.5)
    assert gpu_share(10_000) == 0.25 and gpu_share(3_000_000) == 0.5 and gpu_share(85_000_000) == 1.0
    from workbench.execute.raycluster import RayExecutor

    job = PretrainSpec(_cfg(1))
    assert RayExecutor(ExecConfig()).resources(job, cluster_gpus=0) == dict(num_cpus=1, num_gpus=0.0)
    assert RayExecutor(ExecConfig()).resources(job, cluster_gpus=8)["num_gpus"] == 0.25
    assert RayExecutor(ExecConfig(gpus_per_run=1, cpus_per_run=4)).resources(job, 8) == dict(num_cpus=4, num_gpus=1)
    assert RayExecutor(ExecConfig(device="cpu")).resources(job, 8)["num_gpus"] == 0.0


def test_ray_missing_is_a_clear_error(monkeypatch):
    import builtins

    from workbench.base.errors import WorkbenchError
    from workbench.execute.raycluster import import_ray

    real = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray":
            raise ImportError(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(WorkbenchError, match=r"pip install 'scaling-workbench\[ray\]'"):
        import_ray()


def test_resume_checkpoints_load_with_weights_only(tmp_path, tiny_data):
    """A resume checkpoint holds tensors and plain values only, so `weights_only=True` reads it."""
    from workbench.runs.pretrain import setup_pretraining
    from workbench.train.loop import EarlyStopping, _save_resume

    model, opt, sched, batch_at = setup_pretraining(_cfg(1), tiny_data, torch.device("cpu"))
    _save_resume(tmp_path, model, opt, sched, EarlyStopping(5), 7, 1.0, torch.get_rng_state())
    state = torch.load(tmp_path / "resume.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 7 and set(state) >= {"model", "optimizer", "scheduler", "stopper", "rng"}


def test_a_failed_checkpoint_save_leaves_no_temp_file(tmp_path, tiny_data, monkeypatch):
    from workbench.runs.pretrain import setup_pretraining
    from workbench.train.loop import EarlyStopping, _save_resume

    model, opt, sched, _ = setup_pretraining(_cfg(1), tiny_data, torch.device("cpu"))
    real_save = torch.save

    def full_disk(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        _save_resume(tmp_path, model, opt, sched, EarlyStopping(5), 7, 1.0, torch.get_rng_state())
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(torch, "save", real_save)


def test_environment_errors_are_one_line_and_not_retried(tmp_path, tiny_data, capsys):
    from workbench.front.cli import main

    afile = tmp_path / "a-file"
    afile.write_text("")
    assert main(["sweep", "--profile", "smoke", "--root", str(afile), "--set", "sweep.layers=[1]"]) == 2
    assert "is not a writable folder" in capsys.readouterr().err
    assert main(["sweep", "--profile", "smoke", "--root", str(tmp_path / "r"), "--set", "sweep.layers=[1]",
                 "--set", "exec.device=mps"]) == 2
    assert "MPS is not available" in capsys.readouterr().err
    assert not list((tmp_path / "r").glob("pretrain-*"))  # refused before any run was claimed
    from workbench.execute.contract import execute
    from workbench.runs.pretrain import PretrainSpec

    out = execute(PretrainSpec(_cfg(1)), afile / "sub", QUIET)  # past the up-front check: a permanent OSError is not retried
    assert out.status == "failed" and "NotADirectoryError" in out.error and out.attempts == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_root_is_refused_up_front(tmp_path, capsys):
    from workbench.front.cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["sweep", "--profile", "smoke", "--root", str(ro), "--set", "sweep.layers=[1]"]) == 2
        assert "is not a writable folder" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)
