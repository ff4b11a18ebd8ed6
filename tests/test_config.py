import pytest

from workbench.config import (ConfigError, DataConfig, PretrainConfig, SweepConfig, TrainConfig, config_hash,
                              from_dict, set_override, to_dict)


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
    ({"seeds": [-1]}, "seeds must be >= 0"),
    ({"data": {"corpus": "s3://bucket"}}, "data.corpus must be"),
    ({"data": {"eval_fraction": 1.5}}, "eval_fraction"),
    ({"train": {"objective": "clm"}}, "objective"),
    ({"train": {"pmi_min_count": 1}}, "pmi_min_count"),
    ({"exec": {"device": "tpu"}}, "exec.device"),
    ({"train": {"adam_betas": [0.9]}}, "must have 2 items"),
])
def test_bad_configs_fail_loudly(raw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(SweepConfig, raw)


def test_frozen():
    with pytest.raises(Exception):
        TrainConfig().lr = 1.0  # type: ignore[misc]


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
