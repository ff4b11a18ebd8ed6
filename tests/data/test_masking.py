import torch

from workbench.data.masking import mlm_mask, step_generator

SPECIALS = [0, 1, 2, 3, 4]


def _blocks(n=256, t=128, vocab=1000):
    b = torch.randint(5, vocab, (n, t), generator=torch.Generator().manual_seed(0))
    b[:, 0], b[:, -1] = 2, 3
    return b


def test_rate_and_80_10_10():
    blocks = _blocks()
    m = mlm_mask(blocks, 0.15, 1000, SPECIALS, 4, torch.Generator().manual_seed(1))
    maskable = blocks.numel() - 2 * len(blocks)
    assert abs(m.positions.sum().item() / maskable - 0.15) < 0.01
    new = m.input_ids[m.positions]
    frac_mask = (new == 4).float().mean().item()
    frac_kept = (new == m.labels).float().mean().item()  # includes random draws equal to the label (~0.1%)
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_kept - 0.1) < 0.02
    assert torch.equal(m.labels, blocks[m.positions])
    assert torch.equal(m.input_ids[~m.positions], blocks[~m.positions])  # unselected tokens untouched


def test_specials_never_selected_and_deterministic():
    blocks = _blocks(64, 16)
    a = mlm_mask(blocks, 0.5, 1000, SPECIALS, 4, step_generator(3, 7))
    b = mlm_mask(blocks, 0.5, 1000, SPECIALS, 4, step_generator(3, 7))
    c = mlm_mask(blocks, 0.5, 1000, SPECIALS, 4, step_generator(3, 8))
    assert not a.positions[:, 0].any() and not a.positions[:, -1].any()
    assert torch.equal(a.input_ids, b.input_ids) and not torch.equal(a.positions, c.positions)


def test_at_least_one_position():
    blocks = _blocks(1, 4)
    m = mlm_mask(blocks, 1e-9, 1000, SPECIALS, 4, torch.Generator().manual_seed(0))
    assert m.positions.sum() == 1 and len(m.labels) == 1


def test_a_batch_of_special_tokens_only_is_a_clear_error():
    import pytest

    blocks = torch.tensor([[0, 2, 3, 3], [0, 2, 3, 3]])
    with pytest.raises(ValueError, match="no maskable token"):
        mlm_mask(blocks, 0.15, 100, {0, 2, 3}, 4, step_generator(0, 0))
