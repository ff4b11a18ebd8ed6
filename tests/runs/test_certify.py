"""Convergence certificates: an early-stopped run continued from its stop state under 3x its
patience is the same run retrained with 3x the patience; a drop of 1% or more un-certifies it."""

import json
from dataclasses import replace

import pytest
from helpers import QUIET, TINY_DATA, TINY_TRAIN

from workbench.base.errors import WorkbenchError
from workbench.base.runfiles import read_metrics
from workbench.config import PretrainConfig
from workbench.runs.certify import certify, certify_store
from workbench.runs.pretrain import pretrain, run_id


def _cfg(layers=1, **train):
    base = dict(schedule="constant", max_steps=400, eval_interval=10)
    return PretrainConfig("ar32", layers, 0, TINY_DATA, replace(TINY_TRAIN, **{**base, **train}))


def test_the_continuation_is_the_run_retrained_with_3x_the_patience(tmp_path, tiny_data):
    """min_delta 0.15 stops the run at step 20, while its loss still falls fast. With a bar it cannot
    reach (99%), the continuation goes on under the 3x rule and stops exactly where the same run
    trained with 3x the patience stops, its evaluations equal step for step; with the 1% bar it
    stops at the first evaluation 1% below the lowest loss reached: NOT converged."""
    short = _cfg(lr=1e-3, patience=10, min_delta=0.15)
    s = pretrain(short, tmp_path, QUIET, tiny_data)
    assert s["stop_reason"] == "early_stopped" and s["converged"] is True and s["steps"] == 20
    run = tmp_path / run_id(short)
    best_mtime = (run / "best" / "model.safetensors").stat().st_mtime_ns
    patient = _cfg(lr=1e-3, patience=30, min_delta=0.15)
    p = pretrain(patient, tmp_path, QUIET, tiny_data)
    retrained = {r["step"]: r["eval_loss"] for r in read_metrics(tmp_path / run_id(patient))}
    assert p["steps"] > 40  # it found gains past the first two patiences: a fixed window ends at 40

    rule = certify(tmp_path, run.name, factor=2, min_gain=0.99, exec_cfg=QUIET)
    assert rule["from_step"] == 20 and rule["to_step"] == p["steps"] and rule["ended"] == "patience"
    continued = {r["step"]: r["eval_loss"] for r in read_metrics(run / "certificate")}
    assert sorted(continued) == list(range(30, p["steps"] + 1, 10))
    for step, loss in continued.items():
        assert loss == pytest.approx(retrained[step], rel=1e-5), step
    reached = min(r["eval_loss"] for r in read_metrics(run))  # below the recorded best: min-delta gates that
    assert rule["best_before"] == reached < rule["best_recorded"] == s["best_eval_loss"]
    assert rule["best_after"] == pytest.approx(min(retrained.values()), rel=1e-5)  # the retrained run's best
    assert rule["certified"] is True and rule["rule_patience"] == 30 and rule["guard"] == 1200

    cert = certify(tmp_path, run.name, factor=2, exec_cfg=QUIET)  # the 1% bar: decided at its first evaluation
    first = next(st for st in sorted(retrained) if st > 20 and retrained[st] <= reached * 0.99)
    assert cert["ended"] == "decided" and cert["to_step"] == first < p["steps"] and cert["best_step_after"] == first
    assert cert["gain"] >= 0.01 and cert["certified"] is False and cert["best_after"] < reached
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] is False and summary["convergence"].startswith(
        f"NOT converged: continuing as with 3x its patience (steps 20..{first})")
    assert summary["certificate"] == cert and summary["convergence_before_certificate"].startswith("early-stopped")
    assert (run / "best" / "model.safetensors").stat().st_mtime_ns == best_mtime  # the run's best stays its own
    assert not (run / "certificate" / "resume.pt").exists() and (run / "stop.pt").exists()
    # certified once: asked again, nothing is trained
    mtime = (run / "certificate" / "metrics.jsonl").stat().st_mtime_ns
    assert certify(tmp_path, run.name, factor=2, exec_cfg=QUIET) == cert
    assert (run / "certificate" / "metrics.jsonl").stat().st_mtime_ns == mtime
    # a certificate of the fixed-window kind (before the rule) is not reused: it is made again
    summary["certificate"] = {k: v for k, v in cert.items() if k != "method"}
    (run / "summary.json").write_text(json.dumps(summary))
    assert certify(tmp_path, run.name, factor=2, exec_cfg=QUIET)["method"] == "rule"
    assert (run / "certificate" / "metrics.jsonl").stat().st_mtime_ns != mtime


def test_a_run_that_cannot_improve_is_certified(tmp_path, tiny_data, monkeypatch):
    """...on exec.cpus_per_run threads, as in a worker, and torch's own count is restored after."""
    import torch

    import workbench.train.loop as loop

    cfg = _cfg(lr=1e-9, patience=30, min_delta=1e-3)  # rounding-level changes are no improvement
    s = pretrain(cfg, tmp_path, QUIET, tiny_data)
    before = torch.get_num_threads()
    threads, seen, train_loop = 1 if before != 1 else 2, [], loop.train_loop
    monkeypatch.setattr(loop, "train_loop", lambda *a, **k: seen.append(torch.get_num_threads()) or train_loop(*a, **k))
    [row] = certify_store(tmp_path, "all", exec_cfg=replace(QUIET, cpus_per_run=threads))
    assert seen == [threads] and torch.get_num_threads() == before
    cert = row["certificate"]
    assert cert["certified"] is True and abs(cert["gain"]) < 1e-4 and cert["to_step"] == s["steps"] + 60
    assert cert["ended"] == "patience" and cert["to_step"] == s["best_step"] + 90  # 3x the patience after its best
    summary = json.loads((tmp_path / run_id(cfg) / "summary.json").read_text())
    assert summary["converged"] is True and "; certified: continuing as with 3x its patience" in summary["convergence"]
    assert "where that run stops: no new best within 90 steps of its best) lowered" in summary["convergence"]


def test_runs_that_did_not_stop_early_or_kept_no_state_are_refused(tmp_path, tiny_data):
    horizon = _cfg(max_steps=20, patience=100)
    pretrain(horizon, tmp_path, QUIET, tiny_data)
    with pytest.raises(WorkbenchError, match="did not stop early .*horizon.*nothing to certify"):
        certify(tmp_path, run_id(horizon), exec_cfg=QUIET)
    [row] = certify_store(tmp_path, "largest", exec_cfg=QUIET)
    assert row["certificate"] is None and row["skipped"] == "stopped at its horizon, not early"
    stopped = _cfg(lr=1e-9, patience=20, min_delta=1e-3)
    pretrain(stopped, tmp_path, QUIET, tiny_data)
    (tmp_path / run_id(stopped) / "stop.pt").unlink()
    with pytest.raises(WorkbenchError, match="has no stop.pt .*train it again to certify it"):
        certify(tmp_path, run_id(stopped), exec_cfg=QUIET)
    with pytest.raises(WorkbenchError, match="no finished run of that id"):
        certify(tmp_path, "pretrain-nothing", exec_cfg=QUIET)
    with pytest.raises(WorkbenchError, match="no completed pretraining run 'x'"):
        certify_store(tmp_path, "x", exec_cfg=QUIET)


def test_the_command_and_the_sweep_notebook_glue_certify_the_largest_size(tmp_path, capsys):
    """smoke L1-2, stopped early on purpose (min-delta 0.5 on a loss that still falls): `workbench
    certify` continues the largest size under 5x its patience, finds the drop, exits 1; the notebooks' glue
    (same factor) reads it back."""
    from workbench.config import load
    from workbench.front.cli import main
    from workbench.front.closing import convergence_counts, not_converged, verdict_table
    from workbench.front.glue import sweep_table

    sets = ["--root", str(tmp_path), "--set", "sweep.layers=[1, 2]", "--set", "sweep.train.schedule=constant",
            "--set", "sweep.train.max_steps=300", "--set", "sweep.train.min_delta=0.5",
            "--set", "convergence.certify_factor=4"]  # 2 patiences found 0.98% on one smoke corpus: 4 find more
    assert main(["sweep", "--profile", "smoke", *sets]) == 0
    capsys.readouterr()
    assert main(["certify", "--profile", "smoke", *sets]) == 1
    [line] = capsys.readouterr().out.splitlines()
    l2 = next(p for p in tmp_path.glob("pretrain-ar32-L2-*"))
    stop = json.loads((l2 / "summary.json").read_text())["steps"]
    assert line.startswith(l2.name) and f"NOT converged: continuing as with 5x its patience (steps {stop}.." in line
    study = load("smoke", sets[3::2], {"root": str(tmp_path)})
    runs, _ = sweep_table(study.sweep, study.root, study.exec, convergence=study.convergence)
    verdicts = verdict_table(runs.assign(name=runs.run_id))
    assert list(verdicts.converged) == [True, False] and verdicts.certificate[1].startswith("NOT converged")
    assert verdicts.certificate[0] == ""  # only the largest size is certified
    assert convergence_counts(runs) == {"converged": 1, "certificate": 1}
    assert "failed the certificate (continued as if retrained with 3x the patience: 1% lower" in not_converged(
        convergence_counts(runs))
    # model selection certifies the variant's largest size too (PMI L1-2 here), and reads the baseline's back
    from workbench.front.glue import selection_inputs

    both, _, (label_a, label_b), _ = selection_inputs(study)
    pmi = both[both.run_id.str.contains("-pmi-")].sort_values("n_params")
    assert len(pmi) == 2 and pmi.certificate.iloc[0] == "" and pmi.certificate.iloc[1] != ""
    assert both[both.run_id == l2.name].certificate.iloc[0].startswith("NOT converged")


def test_a_horizon_too_close_or_a_verdict_already_not_converged_is_refused(tmp_path, tiny_data):
    """A linear schedule reaches LR 0 at its horizon: a continuation past it would find nothing and
    certify anything. A run whose best came on a decayed LR is not converged already."""
    close = _cfg(lr=1e-9, patience=30, min_delta=1e-3, schedule="linear", max_steps=60)
    s = pretrain(close, tmp_path, QUIET, tiny_data)
    assert s["stop_reason"] == "early_stopped" and s["best_step"] + 90 > 60 > s["steps"]
    with pytest.raises(WorkbenchError, match="step guard, 60 .train.max_steps=60, its horizon., ends before step "
                                             ".*3x its patience after its best step: raise train.max_steps"):
        certify(tmp_path, run_id(close), exec_cfg=QUIET)
    [row] = certify_store(tmp_path, "all", exec_cfg=QUIET)
    assert row["certificate"] is None and "raise train.max_steps" in row["skipped"]
    summary = json.loads((tmp_path / run_id(close) / "summary.json").read_text())
    summary.update(converged=False, convergence="early-stopped, but its best step 10 came at LR 1e-12 ...")
    (tmp_path / run_id(close) / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(WorkbenchError, match="is not converged already .*decayed|is not converged already"):
        certify(tmp_path, run_id(close), exec_cfg=QUIET)


def test_certificates_of_other_lengths_start_from_the_verdict_before_any(tmp_path, tiny_data):
    """7x the patience finds the drop (not converged); 2x at a 50% bar does not (certified again:
    the verdict before any certificate was converged); each rule starts over from the stop state and
    reads only its own span."""
    cfg = _cfg(lr=1e-3, patience=10, min_delta=0.5)
    s = pretrain(cfg, tmp_path, QUIET, tiny_data)
    run = tmp_path / run_id(cfg)
    six = certify(tmp_path, run.name, factor=6, exec_cfg=QUIET)
    assert not six["certified"] and json.loads((run / "summary.json").read_text())["converged"] is False
    one = certify(tmp_path, run.name, factor=1, min_gain=0.5, exec_cfg=QUIET)
    assert one["to_step"] == s["steps"] + 10 and one["certified"]
    assert [r["step"] for r in read_metrics(run / "certificate")] == [s["steps"] + 10]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] is True and summary["converged_before_certificate"] is True
    assert summary["convergence"].count("certified:") == 1 and "NOT converged" not in summary["convergence"]
    assert json.loads((run / "certificate" / "start.json").read_text())["rule_patience"] == 20


def test_a_continuation_at_the_retrained_runs_step_guard_is_not_converged(tmp_path, tiny_data):
    """min_delta 0.15 stops the run at step 20, its horizon too (no gain that large from step 10 to 20,
    one from 10 to 30). Retrained with 2x the patience (20 steps) and 2x the step guard (40), it finds
    that gain at step 30 and is still waiting at its guard: it would stop at its horizon, so the
    certificate, which ends there too, says NOT converged, whatever the gain."""
    cfg = _cfg(lr=1e-3, patience=10, min_delta=0.15, max_steps=20)
    s = pretrain(cfg, tmp_path, QUIET, tiny_data)
    assert s["stop_reason"] == "early_stopped" and s["steps"] == 20 and s["best_step"] == 10
    retrained = pretrain(_cfg(lr=1e-3, patience=20, min_delta=0.15, max_steps=40), tmp_path, QUIET, tiny_data)
    assert retrained["stop_reason"] == "horizon" and retrained["steps"] == 40 and retrained["best_step"] >= 30
    cert = certify(tmp_path, run_id(cfg), factor=1, min_gain=0.99, exec_cfg=QUIET)
    assert cert["ended"] == "guard" and cert["to_step"] == cert["guard"] == 40 and cert["rule_patience"] == 20
    assert cert["certified"] is False and 0 < cert["gain"] < 0.99
    summary = json.loads((tmp_path / run_id(cfg) / "summary.json").read_text())
    assert summary["converged"] is False and "that run's step guard" in summary["convergence"]
    assert "would stop at its horizon; raise train.max_steps" in summary["convergence"]


def test_a_retrained_run_that_stops_where_the_run_did_needs_no_continuation(tmp_path, tiny_data):
    """A patience of 5 steps on a 10-step evaluation grid stops the run 10 steps after its best;
    retrained with 1.2x the patience (6 steps) it stops at that same evaluation: certified, nothing
    trained."""
    cfg = _cfg(lr=1e-9, patience=5, min_delta=1e-3)
    s = pretrain(cfg, tmp_path, QUIET, tiny_data)
    assert s["stop_reason"] == "early_stopped" and s["steps"] - s["best_step"] == 10
    cert = certify(tmp_path, run_id(cfg), factor=0.2, exec_cfg=QUIET)
    assert cert["rule_patience"] == 6 and cert["steps"] == 0 and cert["to_step"] == s["steps"]
    assert cert["ended"] == "patience" and cert["certified"] is True and cert["gain"] == 0
    assert not (tmp_path / run_id(cfg) / "certificate" / "metrics.jsonl").exists()


def test_an_interrupted_continuation_resumes_where_it_stopped(tmp_path, tiny_data, monkeypatch):
    """A continuation killed mid-way (Ctrl-C, a lost worker) resumes from its own checkpoint, not from
    the run's stop: the same evaluations, step for step, as the continuation that was never
    interrupted (which is the run retrained with 3x the patience)."""
    import workbench.runs.pretrain as pt

    short = _cfg(lr=1e-3, patience=10, min_delta=0.15)
    for root in ("a", "b"):
        assert pretrain(short, tmp_path / root, QUIET, tiny_data)["steps"] == 20
    whole = certify(tmp_path / "a", run_id(short), factor=2, min_gain=0.99, exec_cfg=QUIET)
    assert whole["to_step"] > 50
    real, calls = pt.mlm_loss, {"n": 0}

    def crash(model, batch):
        calls["n"] += model.training
        if calls["n"] == 25:  # step 45, after the evaluation and checkpoint at step 40
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(pt, "mlm_loss", crash)
    cert_b = tmp_path / "b" / run_id(short) / "certificate"
    with pytest.raises(KeyboardInterrupt):
        certify(tmp_path / "b", run_id(short), factor=2, min_gain=0.99, exec_cfg=QUIET)
    assert (cert_b / "resume.pt").exists() and (cert_b / "start.json").exists()
    assert [r["step"] for r in read_metrics(cert_b)] == [30, 40]
    assert "certificate" not in json.loads((cert_b.parent / "summary.json").read_text())
    calls["n"] = -10**9  # counting, no more crashing
    resumed = certify(tmp_path / "b", run_id(short), factor=2, min_gain=0.99, exec_cfg=QUIET)
    assert calls["n"] + 10**9 == whole["to_step"] - 40  # trained from step 40 on, not again from 20
    a = read_metrics(tmp_path / "a" / run_id(short) / "certificate")
    b = read_metrics(cert_b)
    assert [r["step"] for r in b] == [r["step"] for r in a]  # every step once: no second start from step 20
    assert [r["eval_loss"] for r in b] == pytest.approx([r["eval_loss"] for r in a], rel=1e-5)
    assert resumed["to_step"] == whole["to_step"] and resumed["gain"] == pytest.approx(whole["gain"], rel=1e-5)
    assert not (cert_b / "resume.pt").exists()
