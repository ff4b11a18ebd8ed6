"""Kinds of finetuning task: the HF head, the encoding and the official metric of each.

    kind = task_kind(get_task("trec"))          # registry.TASK_KINDS names the kind of every task
    model = kind.load_head(task, ckpt, dropout=0.1)
    enc = kind.encode(task, rows, tokenizer, seq_len, for_training=True)
    kind.evaluate(task, model, enc, rows, batch_size, device)   # {"accuracy": ..., "eval_loss": ...}, QA: {"f1": ...}

Every evaluation also returns `eval_loss`, the task loss: the head's mean cross-entropy of the gold
answer on the evaluation set (QA: of its start and end, averaged, as the head trains). Task metrics
are predicted from it in two stages (`workbench.laws.twostage`).

| kind | schema of a row | head | metrics |
|---|---|---|---|
| single / pair / yes_no | text, text_pair (None for single), label | sequence classification | accuracy (+ F1 or MCC) |
| multiple_choice | context, question, choices, label | multiple choice | accuracy |
| qa / qa_v2 | id, question, context, answers (qa_v2: may be empty) | span start / end | SQuAD F1 / EM (+ Best-F1) |

A new kind is a class with these three methods (one file) plus one line in `registry.TASK_KINDS`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from workbench.base import registry
from workbench.tasks import metrics as M

MAX_ANSWER_TOKENS = 30


class TaskKind(Protocol):
    def load_head(self, task, ckpt, dropout: float): ...

    def encode(self, task, rows: list[dict], tokenizer, seq_len: int, for_training: bool) -> dict: ...

    def evaluate(self, task, model, enc: dict, rows: list[dict], batch_size: int, device) -> dict: ...


def task_kind(task) -> TaskKind:
    return registry.get(registry.TASK_KINDS, task.kind, "task kind")()


def _head(cls_name: str, ckpt, dropout: float, **kw):
    import transformers

    return getattr(transformers, cls_name).from_pretrained(
        ckpt, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, **kw)


@torch.no_grad()
def _outputs(model, enc: dict, batch_size: int, device, read) -> tuple[list, float]:
    """(`read(model output)` of every evaluation batch in order, the mean task loss per example):
    the gold labels go in with the inputs, so the head computes its training loss on them."""
    n, outs, loss = len(enc["input_ids"]), [], 0.0
    for i in range(0, n, batch_size):
        idx = list(range(i, min(i + batch_size, n)))
        b = {k: v.to(device) for k, v in collate(enc, idx).items()}
        o = model(**b)
        outs.append(read(o))
        loss += float(o.loss) * len(idx)
    return outs, loss / max(n, 1)


def _choice_metrics(task, pred: np.ndarray, gold: np.ndarray) -> dict:
    res = dict(accuracy=M.accuracy(pred, gold))
    if task.metric == "f1":
        res["f1"] = M.f1_binary(pred, gold)
    if task.metric == "mcc":
        res["mcc"] = M.mcc(pred, gold)
    return res


class Classification:
    """Single sentences, sentence pairs and yes/no questions: `BertForSequenceClassification`."""

    def load_head(self, task, ckpt, dropout: float):
        return _head("BertForSequenceClassification", ckpt, dropout, num_labels=len(task.labels))

    def encode(self, task, rows, tokenizer, seq_len, for_training) -> dict:
        pairs = [r["text_pair"] for r in rows] if task.kind != "single" and rows[0]["text_pair"] is not None else None
        enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=seq_len,
                        return_token_type_ids=True)
        return dict(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                    labels=[r["label"] for r in rows])

    def evaluate(self, task, model, enc, rows, batch_size, device) -> dict:
        outs, loss = _outputs(model, enc, batch_size, device, lambda o: o.logits.float().argmax(-1).cpu().numpy())
        return dict(_choice_metrics(task, np.concatenate(outs), np.asarray(enc["labels"])), eval_loss=loss)


class MultipleChoice(Classification):
    """One of several answers to a question about a passage: `BertForMultipleChoice` (evaluated as a
    classification over the choices)."""

    def load_head(self, task, ckpt, dropout: float):
        return _head("BertForMultipleChoice", ckpt, dropout)

    def encode(self, task, rows, tokenizer, seq_len, for_training) -> dict:
        ids, types = [], []
        for r in rows:
            e = tokenizer([r["context"]] * len(r["choices"]), [f"{r['question']} {c}" for c in r["choices"]],
                          truncation="longest_first", max_length=seq_len, return_token_type_ids=True)
            ids.append(e["input_ids"])
            types.append(e["token_type_ids"])
        return dict(input_ids=ids, token_type_ids=types, labels=[r["label"] for r in rows])


class SpanQA:
    """Extractive question answering (SQuAD 1.1 `qa`; `qa_v2` may be unanswerable: [CLS] span)."""

    def load_head(self, task, ckpt, dropout: float):
        return _head("BertForQuestionAnswering", ckpt, dropout)

    def encode(self, task, rows, tokenizer, seq_len, for_training) -> dict:
        enc = tokenizer([r["question"] for r in rows], [r["context"] for r in rows], truncation="longest_first",
                        max_length=seq_len, return_offsets_mapping=True, return_token_type_ids=True)
        spans = [_answer_tokens(enc, i, r) for i, r in enumerate(rows)]
        return dict(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                    start_positions=[s for s, _ in spans], end_positions=[e for _, e in spans],
                    offsets=enc["offset_mapping"], seq_ids=[enc.sequence_ids(i) for i in range(len(rows))])

    def evaluate(self, task, model, enc, rows, batch_size, device) -> dict:
        outs, loss = _outputs(model, enc, batch_size, device,
                              lambda o: (o.start_logits.float().cpu().numpy(), o.end_logits.float().cpu().numpy()))
        starts = [row for s, _ in outs for row in s]  # per example: batches are padded to different widths
        ends = [row for _, e in outs for row in e]
        best = [_best_span(starts[i], ends[i], enc["offsets"][i], enc["seq_ids"][i], rows[i]["context"])
                for i in range(len(rows))]
        texts, margins = [t for t, _ in best], [m for _, m in best]
        golds = [r["answers"]["text"] for r in rows]
        res = M.squad_scores(texts, golds)
        res["squad_f1"] = res["f1"]
        if task.kind == "qa_v2":
            res.update(M.best_f1(texts, margins, golds))
        res["eval_loss"] = loss
        return res


def _answer_tokens(enc, i: int, row: dict) -> tuple[int, int]:
    """Token span of the first gold answer inside the (single, truncated) window; (0, 0) = [CLS]
    for unanswerable questions or answers cut off by truncation."""
    if not row["answers"]["text"]:
        return 0, 0
    a0 = row["answers"]["answer_start"][0]
    a1 = a0 + len(row["answers"]["text"][0])
    seq, offs = enc.sequence_ids(i), enc["offset_mapping"][i]
    ctx = [t for t, s in enumerate(seq) if s == 1]
    if not ctx or offs[ctx[0]][0] > a0 or offs[ctx[-1]][1] < a1:
        return 0, 0
    start = next(t for t in ctx if offs[t][1] > a0)
    end = next(t for t in reversed(ctx) if offs[t][0] < a1)
    return start, end


def _pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), right-padded with 0 to the longest sequence."""
    width = max(len(s) for s in seqs)
    ids, mask = torch.zeros((len(seqs), width), dtype=torch.long), torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def collate(enc: dict, idx) -> dict:
    """A padded batch (dynamic padding to the longest example) of the examples `idx`."""
    ids = [enc["input_ids"][i] for i in idx]
    types = [enc["token_type_ids"][i] for i in idx]
    if isinstance(ids[0][0], list):  # multiple choice: (B, C, T)
        shape = (len(ids), len(ids[0]), -1)
        (input_ids, mask), (token_types, _) = _pad([c for x in ids for c in x]), _pad([c for x in types for c in x])
        input_ids, mask, token_types = input_ids.view(shape), mask.view(shape), token_types.view(shape)
    else:
        (input_ids, mask), (token_types, _) = _pad(ids), _pad(types)
    batch = dict(input_ids=input_ids, token_type_ids=token_types, attention_mask=mask)
    for k in ("labels", "start_positions", "end_positions"):
        if k in enc:
            batch[k] = torch.as_tensor([enc[k][i] for i in idx])
    return batch


def _best_span(start, end, offsets, seq_ids, context: str) -> tuple[str, float]:
    """Highest-scoring context span (end >= start, <= MAX_ANSWER_TOKENS) and null - span margin."""
    ctx = np.array([s == 1 for s in seq_ids] + [False] * (len(start) - len(seq_ids)))
    s_scores = np.where(ctx, start, -np.inf)
    e_scores = np.where(ctx, end, -np.inf)
    total = s_scores[:, None] + e_scores[None, :]
    L = len(start)
    valid = np.triu(np.ones((L, L), bool)) & ~np.triu(np.ones((L, L), bool), MAX_ANSWER_TOKENS)
    total = np.where(valid, total, -np.inf)
    s, e = np.unravel_index(np.argmax(total), total.shape)
    if not np.isfinite(total[s, e]):
        return "", float("inf")
    return context[offsets[s][0]:offsets[e][1]], float(start[0] + end[0] - total[s, e])
