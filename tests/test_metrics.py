"""Metrics against hand-computed values."""

import numpy as np
import pytest

from workbench.metrics import accuracy, best_f1, f1_binary, mcc, normalize_answer, squad_scores, token_f1


def test_classification_metrics_by_hand():
    pred, gold = [1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 0]
    assert accuracy(pred, gold) == pytest.approx(4 / 6)
    # tp=2 fp=1 fn=1 -> F1 = 4 / 6
    assert f1_binary(pred, gold) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # tn=2: MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (4 - 1) / 9
    assert mcc(pred, gold) == pytest.approx(3 / 9)
    assert mcc([0, 0, 0], [0, 1, 0]) == 0.0
    three = mcc([0, 1, 2, 2], [0, 1, 2, 1])
    assert -1 <= three <= 1 and three > 0


def test_squad_normalisation_f1_and_em():
    assert normalize_answer("The  Big, Apple!") == "big apple"
    assert token_f1("the big apple", "big red apple") == pytest.approx(2 * (2 / 2) * (2 / 3) / (1 + 2 / 3))
    s = squad_scores(["Big Apple", "paris"], [["the big apple", "NYC"], ["London"]])
    assert s["exact"] == 0.5 and s["f1"] == pytest.approx(0.5)
    assert squad_scores([""], [[]]) == dict(f1=1.0, exact=1.0)  # unanswerable, abstained


def test_best_f1_chooses_the_threshold_post_hoc():
    spans = ["paris", "blue", "1999"]
    golds = [["Paris"], [], ["2001"]]  # q2 unanswerable, q3 answered wrong
    margins = [-2.0, 1.0, 0.5]  # null - span: q2 and q3 lean towards "no answer"
    r = best_f1(spans, margins, golds)
    # abstaining on q2 only (threshold in [0.5, 1)): F1 = (1 + 1 + 0) / 3; also abstaining on q3 gives
    # (1 + 1 + 0) / 3 too (q3's gold is non-empty); the first threshold reaching the max is kept
    assert r["best_f1"] == pytest.approx(2 / 3)
    assert r["has_ans_f1"] == pytest.approx(0.5) and r["no_ans_f1"] == 1.0
    always = best_f1(spans, [-5.0, -5.0, -5.0], golds)
    assert always["best_f1"] == pytest.approx(1 / 3)
    assert np.isnan(best_f1(["x"], [0.0], [["x"]])["no_ans_f1"])
