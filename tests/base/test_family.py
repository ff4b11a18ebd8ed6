import pytest
import torch

from workbench.base.errors import ConfigError
from workbench.base.family import family_table, get_family, model_spec


@pytest.mark.parametrize("family, layers, expected_n", [
    ("ar32", 1, 12_288), ("ar32", 8, 6_291_456), ("bert-base", 12, 84_934_656), ("ar64", 5, 12 * 5 * 320**2),
])
def test_paper_n_values(family, layers, expected_n):
    assert model_spec(family, layers).n_params == expected_n


@pytest.mark.parametrize("family, layers", [("ar32", 1), ("ar32", 3), ("ar64", 2), ("ar48h8", 2), ("ar16h2", 1)])
@pytest.mark.parametrize("vocab, positions", [(512, 32), (8192, 128)])
def test_exact_counts_match_numel(family, layers, vocab, positions):
    from transformers import BertForMaskedLM

    spec = model_spec(family, layers)
    model = BertForMaskedLM(spec.bert_config(vocab, positions))
    assert sum(p.numel() for p in model.parameters()) == spec.n_params_total(vocab, positions)
    assert sum(p.numel() for p in model.bert.encoder.parameters()) == spec.n_params_encoder()
    emb = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert emb == spec.n_params_embedding(vocab, positions)


def test_flops_count_matmuls_of_a_forward_pass():
    """FLOPs from the formula match torch's FLOP counter on a real forward pass (within 2%)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertForMaskedLM

    spec = model_spec("ar32", 2)
    config = spec.bert_config(1000, 64)
    config._attn_implementation = "eager"  # plain matmuls, which the counter sees on CPU
    model = BertForMaskedLM(config).eval()
    ids = torch.randint(5, 1000, (2, 64))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(input_ids=ids)
    per_token = fc.get_total_flops() / ids.numel()
    assert per_token == pytest.approx(spec.forward_flops_per_token(64, 1000, head_fraction=1.0), rel=0.02)


@pytest.mark.parametrize("family, layers, match", [
    ("ar32", 0, ">= 1"), ("ar32", -2, ">= 1"), ("bert-base", 3, "defines L12, not L3"), ("ar30h4", 1, "do not divide"),
    ("ar32", 9, "defines L1-8, not L9"), ("ar32", 100, "defines L1-8"), ("ar16", 13, "defines L1-12, not L13"),
    ("nope", 1, "unknown family"),
])
def test_impossible_shapes(family, layers, match):
    with pytest.raises(ConfigError, match=match):
        model_spec(family, layers)


def test_family_table_and_custom_family():
    assert get_family("ar48h8").n_heads == 8 and get_family("ar48").n_heads == 4
    df = family_table("ar32")
    assert list(df.n_layers) == list(range(1, 9))
    assert (df.n_params.diff().dropna() > 0).all()
    assert (df.params_total > df.params_non_embedding).all()
