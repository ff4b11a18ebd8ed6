import pytest

from workbench.base.errors import ConfigError
from workbench.config import (
    DataConfig,
    ExecConfig,
    FitConfig,
    PretrainConfig,
    StudyConfig,
    SweepConfig,
    TrainConfig,
    config_hash,
    from_dict,
    load,
    profile_names,
    set_override,
    to_dict,
)


def test_round_trip_and_hash_stability():
    cfg = from_dict(SweepConfig, {"family": "ar64", "layers": [1, 2], "train": {"lr": "1e-3"}})
    assert cfg.layers == (1, 2) and cfg.train.lr == 1e-3
    assert from_dict(SweepConfig, to_dict(cfg)) == cfg
    assert config_hash(cfg) == config_hash(from_dict(SweepConfig, to_dict(cfg)))
    assert config_hash(cfg) != config_hash(from_dict(SweepConfig, {**to_dict(cfg), "seeds": [1]}))


@pytest.mark.parametrize("raw, match", [
    ({"lrr": 1}, "unknown config key lrr"),
    ({"train": {"lrr": 1}}, "unknown config key train.lrr"),
    ({"train": {"max_steps": 0}}, "max_steps must be a positive"),
    ({"train": {"max_steps": "ten"}}, "train.max_steps must be of type int"),
    ({"train": {"batch_size": 1.5}}, "batch_size must be of type int"),
    ({"train": {"lr": "fast"}}, "train.lr must be a number"),
    ({"layers": []}, "layers is empty"),
    ({"layers": [1, 1]}, "duplicates"),
    ({"layers": [0]}, "n_layers must be an integer >= 1"),
    ({"family": "gpt2"}, "unknown family"),
    ({"family": "ar33h4", "layers": [1]}, "4 heads do not divide hidden size 33"),
    ({"seeds": [-1]}, r"seeds must be in 0 \.\. 2147483647, got -1"),
    ({"seeds": [2**40]}, r"seeds must be in 0 \.\. 2147483647, got 1099511627776"),
    ({"layers": [9]}, r"family 'ar32' defines L1-8, not L9"),
    ({"data": {"corpus": "s3://bucket"}}, "data.corpus must be"),
    ({"data": {"eval_fraction": 1.5}}, "eval_fraction"),
    ({"train": {"objective": "clm"}}, "objective"),
    ({"train": {"pmi_min_count": 1}}, "pmi_min_count"),
    ({"train": {"adam_betas": [0.9]}}, "must have 2 items"),
    ({"seeds": [0, 0]}, "seeds has duplicates"),
    ({"train": {"lr": float("inf")}}, "train.lr must be a finite number > 0"),
])
def test_bad_configs_fail_loudly(raw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(SweepConfig, raw)


@pytest.mark.parametrize("raw, match", [
    ({"exec": {"device": "tpu"}}, "exec.device"),
    ({"exec": {"executor": "dask"}}, "exec.executor must be one of local, ray"),
    ({"fit": {"law": "cubic"}}, "fit.law must be one of power, saturating"),
    ({"fit": {"n_bootstrap": 0}}, "fit.n_bootstrap must be >= 1"),
    ({"layers": [1, 2]}, "did you mean sweep.layers"),
    ({"finetune": {"tasks": ["nope"]}}, "unknown task"),
    ({"finetune": {"n_seeds": 0}}, "n_seeds must be >= 1"),
    ({"finetune": {"sources": ["boolq"]}}, "finetune.sources entries are task=PATH"),
    ({"finetune": {"sources": ["vitaminc=x"]}}, "unknown task 'vitaminc'"),
    ({"finetune": {"sources": ["trec=hub"]}}, "only boolq has a hub route"),
    ({"compare": {"variant": ["train.objective=clm"]}}, "train.objective must be one of mlm, pmi"),
    ({"notebooks": ["sweeps"]}, "notebooks: \\['sweeps'\\] unknown"),
])
def test_bad_study_configs_fail_loudly(raw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(StudyConfig, raw)


def test_frozen():
    with pytest.raises(Exception):
        TrainConfig().lr = 1.0  # type: ignore[misc]


def test_profiles_load_with_base_and_overrides(tmp_path):
    assert {"smoke", "cpu", "paper", "study-convergence", "study-mlm-vs-pmi"} <= set(profile_names())
    for name in profile_names():
        load(name)
    conv = load("study-convergence")
    assert conv.sweep == load("cpu").sweep and conv.notebooks == ("convergence",) and conv.convergence.undertrain_layer == 3
    study = load("cpu", ["sweep.train.patience=1000", "fit.law=saturating"], {"sweep.layers": [1, 2]})
    assert study.sweep.train.patience == 1000 and study.fit.law == "saturating" and study.sweep.layers == (1, 2)
    assert [r.train.patience for r in study.sweep.runs()] == [1000, 1000]  # the knob reaches every run
    f = tmp_path / "mine.yaml"
    f.write_text("base: smoke\nfit: {n_bootstrap: 50}\n")
    assert load(str(f)).fit.n_bootstrap == 50 and load(str(f)).sweep == load("smoke").sweep
    with pytest.raises(ConfigError, match="is not a file"):
        load(str(tmp_path))
    f.write_text("sweep: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(f))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load("smoke", ["sweep.layers=[1, 2"])
    assert ExecConfig() == load("cpu").exec and FitConfig().random_state == 0


def test_override_parses_yaml_values():
    raw = set_override({}, "train.lr=3e-4")
    set_override(raw, "layers=[1, 2, 3]")
    cfg = from_dict(SweepConfig, raw)
    assert cfg.train.lr == 3e-4 and cfg.layers == (1, 2, 3)
    with pytest.raises(ConfigError, match="key=value"):
        set_override({}, "train.lr")


def test_sweep_expands_smallest_first():
    runs = SweepConfig(layers=(3, 1, 2), seeds=(0, 1)).runs()
    assert [(r.n_layers, r.seed) for r in runs] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert all(isinstance(r, PretrainConfig) and r.data == DataConfig() for r in runs)


@pytest.mark.parametrize("override, says", [
    ("sweep.data.corpus='files:'", "names no source"),
    ("sweep.train.lr=.inf", "train.lr must be a finite number > 0, got inf"),
    ("sweep.seeds=[0, 0]", "sweep.seeds has duplicates"),
])
def test_inputs_that_used_to_be_accepted_silently(override, says):
    with pytest.raises(ConfigError, match=says):
        load("smoke", [override])


def test_cli_family_refuses_bad_numbers_in_one_line(capsys):
    from workbench.front.cli import main

    assert main(["family", "ar32", "--vocab-size", "-5"]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert main(["family", "ar32", "--layers", "a"]) == 2
    assert "--layers must be comma-separated depths" in capsys.readouterr().err


def test_a_vocabulary_larger_than_the_corpus_yields_is_said(tmp_path, text_corpus, caplog):
    from workbench.config import DataConfig
    from workbench.data.prepared import prepare_data

    data = prepare_data(DataConfig(corpus=f"files:{text_corpus}", vocab_size=60000, seq_len=16, eval_blocks=4),
                        cache_dir=tmp_path)
    assert data.vocab_size < 60000
    assert f"data.vocab_size=60000 asked, but WordPiece finds only {data.vocab_size} tokens" in caplog.text


def test_a_files_folder_corpus_skips_hidden_folders(tmp_path, text_corpus):
    from workbench.data.corpus import corpus_files

    (text_corpus / ".git").mkdir()
    (text_corpus / ".git" / "HEAD").write_text("ref: refs/heads/main")
    files = corpus_files(f"files:{text_corpus}")
    assert len(files) == 6 and not any(".git" in str(f) for f in files)
