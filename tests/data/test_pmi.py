"""PMI-masking: the n-gram vocabulary finds collocations, units stay whole, the rate is 15%."""

import random

import numpy as np
import pytest
import torch
from helpers import QUIET, TINY_DATA, TINY_TRAIN

from workbench.config import DataConfig, PretrainConfig, TrainConfig
from workbench.data.pmi import continuation_mask, ngram_hashes, ngram_vocabulary, pmi_mask, pmi_units, word_view
from workbench.data.prepared import prepare_data


@pytest.fixture(scope="module")
def collocation_data(tmp_path_factory):
    """Random filler words with one strong collocation, "xylo phonic", and its words also seen apart."""
    rng = random.Random(0)
    filler = ("river stone cloud paper lamp window garden bridge market silver winter letter "
              "forest candle harbor engine").split()
    folder = tmp_path_factory.mktemp("colloc")
    for d in range(8):
        words = []
        for _ in range(600):
            r = rng.random()
            words += ["xylo", "phonic"] if r < 0.05 else ["xylo"] if r < 0.06 else ["phonic"] if r < 0.07 \
                else [rng.choice(filler)]
        (folder / f"d{d}.txt").write_text(" ".join(words))
    return prepare_data(DataConfig(corpus=f"files:{folder}", vocab_size=200, seq_len=32, eval_fraction=0.25,
                                   eval_blocks=16))


def _ids(data, word):
    return data.tokenizer(word, add_special_tokens=False)["input_ids"]


def test_known_collocation_is_a_top_ngram_and_one_unit(collocation_data):
    data = collocation_data
    units = pmi_units(data, min_count=5, n_ngrams=3)
    specials = list(data.special_ids.values())
    top = units.examples(data.tokenizer, data.train, continuation_mask(data.tokenizer), specials, k=1)
    assert top == ["xylo phonic"]
    assert units.vocab["n"][0] == 2 and units.vocab["pmi"][0] > 1.0
    # every "xylo phonic" occurrence is one unit: the token after "xylo" never starts a unit
    xylo, phonic = _ids(data, "xylo"), _ids(data, "phonic")
    train = np.asarray(data.train)
    L = len(xylo)
    hits = 0
    for b, t in zip(*np.nonzero(train[:, : -len(xylo + phonic)] == xylo[0])):
        if list(train[b, t:t + L]) == xylo and list(train[b, t + L:t + L + len(phonic)]) == phonic:
            hits += 1
            assert units.train[b, t] and not units.train[b, t + 1:t + L + len(phonic)].any()
    assert hits > 50
    # and a batch masks it whole: both words or neither
    blocks = torch.from_numpy(train.astype(np.int64))
    us = torch.from_numpy(units.train)
    batch = pmi_mask(blocks, us, 0.15, data.vocab_size, specials, data.special_ids["[MASK]"],
                     torch.Generator().manual_seed(0))
    pos = batch.positions.numpy()
    both = 0
    for b, t in zip(*np.nonzero(train[:, : -len(xylo + phonic)] == xylo[0])):
        if list(train[b, t:t + L]) == xylo and list(train[b, t + L:t + L + len(phonic)]) == phonic:
            span = pos[b, t:t + L + len(phonic)]
            assert span.all() or not span.any()
            both += span.all()
    assert both > 0


def test_pmi_is_min_over_segmentations():
    """"10 11" is a collocation; "10 11 w" with an independent filler word w is not, though its plain
    two-part PMI against "10" alone is high: PMI_n takes the minimum over segmentations."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(600):
        body = rng.integers(20, 30, 30)
        k = rng.integers(0, 27)
        body[k:k + 2] = [10, 11]
        rows.append([2, *body, 3])
    blocks = np.array(rows)
    is_cont = np.zeros(64, bool)
    vocab = ngram_vocabulary(word_view(blocks, is_cont, [0, 1, 2, 3, 4]), min_count=5, n_ngrams=1000)
    pmi = dict(zip(vocab["hash"].tolist(), vocab["pmi"].tolist()))
    view = word_view(np.array([[2, 10, 11, 25, 3]]), is_cont, [0, 1, 2, 3, 4])
    h2, h3 = int(ngram_hashes(view, 2)[1]), int(ngram_hashes(view, 3)[1])
    assert pmi[h2] > 2 and vocab["hash"][0] == h2
    assert pmi.get(h3, 0.0) < 0.5  # "10 11 | 25" is independent


def test_masking_rate_and_unit_integrity(tiny_data):
    data = tiny_data
    units = pmi_units(data, min_count=3, n_ngrams=500)
    specials = list(data.special_ids.values())
    mask_id = data.special_ids["[MASK]"]
    blocks = torch.from_numpy(np.asarray(data.train).astype(np.int64))
    us = torch.from_numpy(units.train)
    rates, multi, mixed = [], 0, 0
    for step in range(20):
        g = torch.Generator().manual_seed(step)
        b = pmi_mask(blocks, us, 0.15, data.vocab_size, specials, mask_id, g)
        maskable = ~torch.isin(blocks, torch.tensor(specials))
        rates.append(float(b.positions.sum() / maskable.sum()))
        assert torch.equal(b.labels, blocks[b.positions])
        uid = us.long().cumsum(1) - 1
        for r in range(0, len(blocks), 7):  # every unit all-or-nothing, and 80/10/10 decided per unit
            for u in uid[r].unique():
                cols = (uid[r] == u) & maskable[r]
                if cols.sum() == 0:
                    continue
                p = b.positions[r, cols]
                assert p.all() or not p.any()
                if p.all() and cols.sum() > 1:
                    multi += 1
                    is_mask = b.input_ids[r, cols] == mask_id
                    mixed += bool(is_mask.any() and not is_mask.all())
    assert abs(np.mean(rates) - 0.15) < 0.01
    assert multi > 50  # multi-token units (words or n-grams) were masked whole
    # 80/10/10 decided per unit: [MASK] mixed with other tokens only when a random draw hits [MASK]
    # (about 1 / vocab per token); a per-token decision would mix about a third of 2-token units
    assert mixed / multi < 0.05, (mixed, multi)


def test_pmi_pretraining_logs_both_losses_and_ids_differ(tmp_path):
    from workbench.runs.pretrain import pretrain, run_id
    from workbench.runs.tables import load_curves

    base = PretrainConfig("ar32", 1, 0, TINY_DATA, TINY_TRAIN)
    cfg = PretrainConfig("ar32", 1, 0, TINY_DATA, TrainConfig(**{**TINY_TRAIN.__dict__, "objective": "pmi",
                                                                 "pmi_min_count": 3}))
    assert "-pmi-" in run_id(cfg) and run_id(cfg) != run_id(base)
    summary = pretrain(cfg, tmp_path, QUIET)
    assert summary["status"] == "completed"
    curves = load_curves(tmp_path)
    assert {"eval_loss", "eval_pmi_loss"} <= set(curves.columns)
    assert curves.eval_pmi_loss.notna().all() and curves.eval_loss.notna().all()
