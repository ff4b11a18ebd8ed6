"""Official task metrics: accuracy, F1, Matthews correlation, SQuAD F1 / EM, Best-F1, HasAns-F1.

    accuracy([1, 0], [1, 1])                    # 0.5
    squad_scores(preds, golds)                  # {"f1": ..., "exact": ...} in percent-free [0, 1]
    best_f1(span_preds, null_margins, golds)    # SQuAD 2.0 Best-F1 with the threshold chosen post hoc

SQuAD answer normalisation follows the official script: lower case, drop punctuation, the articles
a/an/the, and extra whitespace; a question scores the max over its gold answers; an unanswerable
question's only gold answer is "".
"""

from __future__ import annotations

import collections
import re
import string

import numpy as np

from workbench.base.errors import WorkbenchError


def accuracy(pred, gold) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    return float((pred == gold).mean())


def f1_binary(pred, gold, positive: int = 1) -> float:
    pred, gold = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp, fp, fn = (pred & gold).sum(), (pred & ~gold).sum(), (~pred & gold).sum()
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def mcc(pred, gold) -> float:
    """Matthews correlation (multi-class form of Gorodkin 2004; the binary MCC for two classes)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    classes = np.union1d(pred, gold)
    C = np.array([[np.sum((gold == a) & (pred == b)) for b in classes] for a in classes], dtype=float)
    t, p, c, s = C.sum(1), C.sum(0), np.trace(C), C.sum()
    den = np.sqrt((s * s - (p * p).sum()) * (s * s - (t * t).sum()))
    return float((c * s - (t * p).sum()) / den) if den else 0.0


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def token_f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _golds(answers: list[str]) -> list[str]:
    return answers if answers else [""]


def squad_scores(preds: list[str], golds: list[list[str]]) -> dict:
    """Mean F1 and exact match over questions (each the max over its gold answers)."""
    f1 = [max(token_f1(p, g) for g in _golds(gs)) for p, gs in zip(preds, golds)]
    em = [max(exact(p, g) for g in _golds(gs)) for p, gs in zip(preds, golds)]
    return dict(f1=float(np.mean(f1)), exact=float(np.mean(em)))


def best_f1(span_preds: list[str], null_margins, golds: list[list[str]]) -> dict:
    """SQuAD 2.0 Best-F1: predict "" where null_margin > threshold, threshold chosen post hoc.

    `null_margins[i]` = null score - best span score of question i (higher: more likely no answer).
    The official `find_best_thresh`: start from every question unanswered, then answer them one by
    one in order of increasing margin (ties in question order) and keep the best prefix. Returns
    best_f1, the threshold (the margin of the last question answered; below every margin when
    answering nothing is best), HasAns-F1 and NoAns-F1 of that prediction."""
    m = np.asarray(null_margins, dtype=float).ravel()
    if not (len(m) == len(span_preds) == len(golds)) or len(m) == 0:
        raise WorkbenchError(f"best_f1 needs one span, margin and gold list per question, got "
                         f"{len(span_preds)} / {len(m)} / {len(golds)}")
    if not np.isfinite(m).all():
        raise WorkbenchError("best_f1: every null margin must be finite")
    # a span answering an unanswerable question scores 0 whatever it normalises to (official: `if preds[qid]`)
    span_f1 = np.array([max(token_f1(p, g) for g in gs) if gs else float(not p) for p, gs in zip(span_preds, golds)])
    null_f1 = np.array([float(not gs) for gs in golds])  # "" is right exactly for unanswerable questions
    order = np.argsort(m, kind="stable")
    score = np.cumsum(np.concatenate([[null_f1.sum()], (span_f1 - null_f1)[order]]))  # prefix k answered
    k = int(np.argmax(score))  # the first best prefix, as the official strict ">" keeps
    answered = np.zeros(len(m), dtype=bool)
    answered[order[:k]] = True
    per_q = np.where(answered, span_f1, null_f1)
    has = np.array([bool(gs) for gs in golds])
    return dict(best_f1=float(score[k]) / len(m), threshold=float(m[order[k - 1]]) if k else float(m.min()) - 1.0,
                has_ans_f1=float(per_q[has].mean()) if has.any() else float("nan"),
                no_ans_f1=float(per_q[~has].mean()) if (~has).any() else float("nan"))
