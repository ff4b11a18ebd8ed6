"""Finetune one pretrained checkpoint on one task with one (lr, epochs, seed): one run folder.

    summary = finetune(FinetuneConfig(task="movie-sentiment", pretrain_run="runs/pretrain-ar32-L2-...",
                                      lr=1e-3, epochs=3), root="runs")

The paper's recipe: constant LR after 10% warm-up, dropout 0.1, batch 64, evaluation after every
epoch on the task's official metric, the whole epoch budget trained and the best epoch kept post
hoc. HF heads by task type: sequence classification (single / pair / yes-no), multiple choice,
question answering (span start / end; for unanswerable questions the [CLS] position). The loop is
`workbench.train.train_loop`, shared with pretraining (resume, divergence, metrics log).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench import metrics as M
from workbench.config import ConfigError, ExecConfig, WorkbenchError, config_hash, to_dict
from workbench.device import environment, place, resolve_device, resolve_precision
from workbench.model import param_groups
from workbench.runs import CONFIG, ENV, SUMMARY, RunStore, read_json, write_json_atomic
from workbench.tasks import Task, get_task
from workbench.train import (CorruptCheckpointError, LoopConfig, make_schedule, remove_resume, reset_run,
                             save_best_checkpoint, train_loop)

log = logging.getLogger(__name__)
MAX_ANSWER_TOKENS = 30


@dataclass(frozen=True)
class FinetuneConfig:
    task: str
    pretrain_run: str  # folder of a finished pretraining run (its best/ checkpoint is used)
    lr: float = 1e-4
    epochs: int = 3
    seed: int = 0
    batch_size: int = 64
    warmup_fraction: float = 0.1
    dropout: float = 0.1
    weight_decay: float = 0.01
    seq_len: int = 0  # 0 = the checkpoint's position table (its pretraining block length)
    max_train: int = 0  # 0 = all training examples (first N of a fixed shuffle otherwise)
    max_eval: int = 0  # 0 = the whole evaluation split
    source: str = ""  # a local folder of <split>.jsonl in the hub schema, for hub tasks offline

    def __post_init__(self) -> None:
        get_task(self.task)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"finetune {name} must be positive, got {getattr(self, name)}")
        if self.seq_len < 0:
            raise ConfigError(f"finetune seq_len must be >= 0 (0: the checkpoint's length), got {self.seq_len}")
        if self.lr <= 0 or not 0 <= self.warmup_fraction < 1 or self.seed < 0:
            raise ConfigError(f"finetune lr must be > 0, warmup_fraction in [0, 1), seed >= 0; got "
                              f"{self.lr}, {self.warmup_fraction}, {self.seed}")


def checkpoint_of(pretrain_run: str | Path) -> Path:
    best = Path(pretrain_run) / "best"
    if not (best / "config.json").exists():
        raise WorkbenchError(f"no pretrained checkpoint at {best}: give the folder of a finished "
                             f"pretraining run (run `workbench sweep` first)")
    return best


def run_id(cfg: FinetuneConfig) -> str:
    return f"finetune-{cfg.task}-{Path(cfg.pretrain_run).name}-lr{cfg.lr:g}-ep{cfg.epochs}-s{cfg.seed}-{config_hash(cfg)}"


def finetune(cfg: FinetuneConfig, root: str | Path, exec_cfg: ExecConfig = ExecConfig()) -> dict:
    """Finetune (or resume, or skip if finished) the run of `cfg` under `root`; returns its summary."""
    store, rid = RunStore(root), run_id(cfg)
    if store.is_finished(rid):
        return store.summary(rid)
    ckpt = checkpoint_of(cfg.pretrain_run)
    task = get_task(cfg.task)
    data = task.load(cfg.source or None)
    device = resolve_device(exec_cfg.device)
    precision = resolve_precision(device, exec_cfg.precision)
    with store.claim(rid) as run_dir:
        if store.is_finished(rid):  # finished by another process between the check above and the claim
            return store.summary(rid)
        try:
            return _run(cfg, task, data, ckpt, exec_cfg, run_dir, device, precision)
        except CorruptCheckpointError as e:
            log.warning("%s; restarting %s from scratch", e, rid)
            reset_run(run_dir)
            return _run(cfg, task, data, ckpt, exec_cfg, run_dir, device, precision)


def _subset(rows: list[dict], n: int, seed: int) -> list[dict]:
    if not n or n >= len(rows):
        return rows
    idx = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(idx)]


def _run(cfg, task: Task, data, ckpt: Path, exec_cfg: ExecConfig, run_dir: Path, device, precision) -> dict:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized head weights" is expected here
    pre = read_json(Path(cfg.pretrain_run) / CONFIG)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    positions = read_json(ckpt / "config.json")["max_position_embeddings"]
    seq_len = cfg.seq_len or positions
    if seq_len > positions:
        raise WorkbenchError(f"seq_len {seq_len} exceeds the {positions} positions the checkpoint was pretrained "
                             f"with; use seq_len <= {positions} (0 takes {positions})")
    train_rows = _subset(data.train, cfg.max_train, 0)  # same subset for every seed and size
    eval_rows = _subset(data.eval, cfg.max_eval, 1)
    train = encode(task, train_rows, tokenizer, seq_len, for_training=True)
    evalset = encode(task, eval_rows, tokenizer, seq_len, for_training=False)
    steps_per_epoch = max(1, -(-len(train["input_ids"]) // cfg.batch_size))
    max_steps = cfg.epochs * steps_per_epoch
    if not (run_dir / CONFIG).exists():
        write_json_atomic(run_dir / CONFIG, dict(
            kind="finetune", run_id=run_dir.name, config=to_dict(cfg), exec=to_dict(exec_cfg),
            model=pre["model"], pretrain=dict(run_id=pre["run_id"], config=pre["config"]),
            task=dict(name=task.name, kind=task.kind, metric=task.metric, labels=list(task.labels),
                      eval_split=task.eval_split, origin=task.origin, n_train=len(train_rows), n_eval=len(eval_rows))))
    write_json_atomic(run_dir / ENV, environment(device, precision))

    torch.manual_seed(cfg.seed)
    model = place(load_head(task, ckpt, cfg.dropout), device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=device.type == "cuda")
    scheduler = make_schedule(optimizer, "constant", int(cfg.warmup_fraction * max_steps), max_steps)
    batch_at = _batches(train, cfg, steps_per_epoch, device)

    def evaluate() -> dict:
        return evaluate_task(task, model, evalset, eval_rows, cfg.batch_size * 2, device)

    def save_best() -> None:
        save_best_checkpoint(run_dir, model, tokenizer)

    loop = LoopConfig(max_steps=max_steps, eval_interval=steps_per_epoch, patience=max_steps + 1, mode="max",
                      monitor=task.metric, grad_clip=1.0, checkpoint_interval=exec_cfg.checkpoint_interval,
                      micro_batch_size=exec_cfg.micro_batch_size)
    wall0 = time.time()
    res = train_loop(model, optimizer, scheduler, batch_at, lambda m, b: m(**b).loss, evaluate, loop, run_dir,
                     save_best, device, precision, exec_cfg.progress, desc=f"{task.name} {pre['model']['name']}")
    summary = dict(status=res.status, stop_reason=res.stop_reason, task=task.name, metric=task.metric,
                   value=res.best, one_minus=1 - res.best if res.best == res.best else None,
                   best_epoch=res.best_step // steps_per_epoch if res.best_step > 0 else None,
                   steps=res.steps, epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed, n_params=pre["model"]["n_params"],
                   tokens=int(res.steps * cfg.batch_size * seq_len), train_time_s=round(res.train_time_s, 2),
                   wall_time_s=round(time.time() - wall0, 2), diverged_step=res.diverged_step)
    write_json_atomic(run_dir / SUMMARY, summary)
    remove_resume(run_dir)
    return summary


def load_head(task: Task, ckpt: Path, dropout: float):
    from transformers import BertForMultipleChoice, BertForQuestionAnswering, BertForSequenceClassification

    kw = dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    if task.kind in ("qa", "qa_v2"):
        return BertForQuestionAnswering.from_pretrained(ckpt, **kw)
    if task.kind == "multiple_choice":
        return BertForMultipleChoice.from_pretrained(ckpt, **kw)
    return BertForSequenceClassification.from_pretrained(ckpt, num_labels=len(task.labels), **kw)


# ------------------------------------------------------------------ encoding and batching


def encode(task: Task, rows: list[dict], tokenizer, seq_len: int, for_training: bool) -> dict:
    """Token ids (lists, unpadded) and targets for every example of a task type."""
    if task.kind in ("single", "pair", "yes_no"):
        enc = tokenizer([r["text"] for r in rows], [r["text_pair"] for r in rows] if task.kind != "single" and
                        rows[0]["text_pair"] is not None else None, truncation=True, max_length=seq_len,
                        return_token_type_ids=True)
        return dict(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                    labels=[r["label"] for r in rows])
    if task.kind == "multiple_choice":
        ids, types = [], []
        for r in rows:
            e = tokenizer([r["context"]] * len(r["choices"]), [f"{r['question']} {c}" for c in r["choices"]],
                          truncation="longest_first", max_length=seq_len, return_token_type_ids=True)
            ids.append(e["input_ids"])
            types.append(e["token_type_ids"])
        return dict(input_ids=ids, token_type_ids=types, labels=[r["label"] for r in rows])
    enc = tokenizer([r["question"] for r in rows], [r["context"] for r in rows], truncation="longest_first",
                    max_length=seq_len, return_offsets_mapping=True, return_token_type_ids=True)
    starts, ends = [], []
    for i, r in enumerate(rows):
        s, e = _answer_tokens(enc, i, r)
        starts.append(s)
        ends.append(e)
    return dict(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"], start_positions=starts,
                end_positions=ends, offsets=enc["offset_mapping"], seq_ids=[enc.sequence_ids(i) for i in range(len(rows))])


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


def _batches(enc: dict, cfg: FinetuneConfig, steps_per_epoch: int, device):
    n = len(enc["input_ids"])

    @functools.lru_cache(maxsize=2)
    def order(epoch: int) -> np.ndarray:
        return np.random.default_rng(cfg.seed * 100_003 + epoch).permutation(n)

    def batch_at(step: int) -> dict:
        epoch, k = divmod(step, steps_per_epoch)
        idx = order(epoch)[k * cfg.batch_size:(k + 1) * cfg.batch_size]
        return {key: t.to(device) for key, t in collate(enc, idx).items()}

    return batch_at


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate_task(task: Task, model, enc: dict, rows: list[dict], batch_size: int, device) -> dict:
    """The task's official metric (and companions) on the evaluation rows."""
    n = len(enc["input_ids"])
    outs = []
    for i in range(0, n, batch_size):
        idx = list(range(i, min(i + batch_size, n)))
        b = {k: v.to(device) for k, v in collate(enc, idx).items()
             if k in ("input_ids", "token_type_ids", "attention_mask")}
        out = model(**b)
        if task.kind in ("qa", "qa_v2"):
            outs.append((out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()))
        else:
            outs.append(out.logits.float().argmax(-1).cpu().numpy())
    if task.kind not in ("qa", "qa_v2"):
        pred, gold = np.concatenate(outs), np.asarray(enc["labels"])
        res = dict(accuracy=M.accuracy(pred, gold))
        if task.metric == "f1":
            res["f1"] = M.f1_binary(pred, gold)
        if task.metric == "mcc":
            res["mcc"] = M.mcc(pred, gold)
        return res
    texts, margins = [], []
    for (starts, ends), i0 in zip(outs, range(0, n, batch_size)):
        for j in range(len(starts)):
            t, m = _best_span(starts[j], ends[j], enc["offsets"][i0 + j], enc["seq_ids"][i0 + j], rows[i0 + j]["context"])
            texts.append(t)
            margins.append(m)
    golds = [r["answers"]["text"] for r in rows]
    res = M.squad_scores(texts, golds)
    res["squad_f1"] = res["f1"]
    if task.kind == "qa_v2":
        res.update(M.best_f1(texts, margins, golds))
    return res


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
