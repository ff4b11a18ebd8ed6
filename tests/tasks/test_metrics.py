"""Metrics against hand-computed values."""

import numpy as np
import pytest

from workbench.tasks.metrics import accuracy, best_f1, f1_binary, mcc, normalize_answer, squad_scores, token_f1


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
    tied = best_f1(spans, [-5.0, -5.0, -5.0], golds)  # ties are answered in question order, as officially
    assert tied["best_f1"] == pytest.approx(2 / 3)
    assert np.isnan(best_f1(["x"], [0.0], [["x"]])["no_ans_f1"])


def _official_best(preds: dict, scores: dict, na_probs: dict, has_ans: dict) -> float:
    """`find_best_thresh` of the official SQuAD 2.0 evaluation script, as published."""
    num_no_ans = sum(1 for k in has_ans if not has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
    return best_score / len(scores)


def test_best_f1_considers_answering_nothing():
    assert best_f1(["x"], [0.3], [[]])["best_f1"] == 1.0
    assert best_f1(["x", "y"], [0.3, -2.0], [[], []])["best_f1"] == 1.0


@pytest.mark.parametrize("seed", range(40))
def test_best_f1_equals_the_official_find_best_thresh(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    words = ["a", "b", "c", "the", "x", "y"]
    golds = [[] if rng.random() < rng.uniform(0, 1) else [" ".join(rng.choice(words, rng.integers(1, 3)))]
             for _ in range(n)]
    preds = [" ".join(rng.choice(words, rng.integers(1, 3))) for _ in range(n)]
    margins = rng.integers(-3, 3, n).astype(float) if seed % 2 else rng.normal(size=n)  # odd seeds: many ties
    ids = [str(i) for i in range(n)]
    scores = {q: max(token_f1(p, g) for g in (gs or [""])) for q, p, gs in zip(ids, preds, golds)}
    want = _official_best(dict(zip(ids, preds)), scores, dict(zip(ids, margins)),
                          {q: bool(gs) for q, gs in zip(ids, golds)})
    assert best_f1(preds, margins, golds)["best_f1"] == pytest.approx(want, abs=1e-12)


def test_best_f1_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one span, margin and gold"):
        best_f1(["x", "y"], [0.1], [[], []])
