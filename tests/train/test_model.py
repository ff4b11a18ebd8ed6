import math

import pytest
import torch

from workbench.base.family import model_spec
from workbench.base.stopping import EarlyStopping, replay_early_stopping
from workbench.data.masking import mlm_mask
from workbench.train.model import build_mlm_model, mlm_loss


def test_early_stopping_patience_and_min_delta():
    s = EarlyStopping(patience=30, min_delta=0.05)
    assert s.update(10, 5.0) and not s.should_stop(10)
    assert not s.update(20, 4.97)  # improvement below min_delta does not count
    assert s.update(30, 4.9) and s.best_step == 30
    assert not s.should_stop(59) and s.should_stop(60)
    m = EarlyStopping(patience=2, mode="max")
    assert m.update(1, 0.5) and not m.update(2, 0.4) and m.update(3, 0.6)


def test_replay_on_a_logged_curve():
    steps = [100, 200, 300, 400, 500, 600, 700]
    loss = [5.0, 4.0, 3.9, 3.9, 3.9, 3.5, 3.4]  # a plateau, then a second descent
    short = replay_early_stopping(steps, loss, patience=200)
    assert short == dict(stop_step=500, best_step=300, best=3.9)
    long = replay_early_stopping(steps, loss, patience=300)
    assert long["stop_step"] is None and long["best"] == 3.4
    assert replay_early_stopping(steps, loss, patience=200, min_delta=0.2)["best_step"] == 200


def test_masked_only_loss_equals_hf_full_head_loss():
    """Golden check: our head-on-masked-positions loss is exactly BertForMaskedLM's -100 label loss."""
    model = build_mlm_model(model_spec("ar32", 2), 300, 32, dropout=0.0, seed=0).eval()
    blocks = torch.randint(5, 300, (4, 32), generator=torch.Generator().manual_seed(0))
    batch = mlm_mask(blocks, 0.15, 300, [0, 1, 2, 3, 4], 4, torch.Generator().manual_seed(1))
    labels = torch.full_like(blocks, -100)
    labels[batch.positions] = batch.labels
    with torch.no_grad():
        ours = mlm_loss(model, batch)
        theirs = model(input_ids=batch.input_ids, labels=labels).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert math.isfinite(ours.item())
