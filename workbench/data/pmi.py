"""PMI-masking (Levine et al. 2021): mask whole-word units and collocations found by PMI on the corpus.

    units = pmi_units(data, min_count=10, n_ngrams=20000)      # cached beside the prepared blocks
    batch = pmi_mask(blocks, unit_start, 0.15, vocab_size, special_ids, mask_id, generator)
    PMIMasking().train_masker(data, train_cfg)                   # the objective (registry.OBJECTIVES["pmi"])

1. Words are WordPiece runs (a token plus its `##` continuations); special tokens break n-grams.
2. Every word n-gram (n = 2..5) seen at least `min_count` times in the training blocks is scored by
   PMI_n = min over segmentations s of the n-gram into >= 2 contiguous parts of
   log p(n-gram) / prod p(part), the measure of Levine et al.; the `n_ngrams` highest (all lengths
   ranked together, PMI_n > 0 only) form the n-gram vocabulary.
3. In each block, occurrences of vocabulary n-grams are merged into units greedily: longest first,
   ties in a random (seeded) order, never overlapping; every other word is a unit on its own.
   The segmentation is computed once per prepared dataset and cached.
4. Per batch, units are taken in random order until `mask_prob` of the maskable tokens are
   covered; each chosen unit is then replaced 80% [MASK] / 10% random tokens / 10% kept, as a whole.

Words and n-grams are identified by 64-bit polynomial hashes of their token ids (collisions are
negligible at corpus scale and only merge two n-grams' counts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench.base.files import atomic_path, write_atomic
from workbench.config import config_hash
from workbench.data.masking import MaskedBatch

log = logging.getLogger(__name__)
MAX_N = 5
PMI_VERSION = 1
_P = np.uint64(1_000_003)  # hash multipliers: tokens within a word, words within an n-gram
_Q = np.uint64(0x9E3779B97F4A7C15)


def continuation_mask(tokenizer) -> np.ndarray:
    """Boolean per vocabulary id: True for WordPiece continuations (`##...`)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return np.array([t.startswith("##") for t in tokens], dtype=bool)


@dataclass(frozen=True)
class WordView:
    """Blocks seen as words. `start[b, t]`: token t begins a word; words are numbered row-major."""

    start: np.ndarray  # (n_blocks, T) bool
    word_of_token: np.ndarray  # (n_blocks * T,) word index
    hashes: np.ndarray  # (W,) uint64 word hash
    breaker: np.ndarray  # (W,) bool: special token (never inside an n-gram)


def word_view(blocks: np.ndarray, is_cont: np.ndarray, special_ids) -> WordView:
    ids = np.asarray(blocks).astype(np.int64)
    special = np.isin(ids, list(special_ids))
    start = ~is_cont[ids] | special
    start[:, 0] = True  # a word cut by the block edge starts a new word
    flat_start = start.ravel()
    word = np.cumsum(flat_start) - 1
    first = np.flatnonzero(flat_start)
    pos = np.arange(len(word)) - first[word]
    with np.errstate(over="ignore"):
        powers = _P ** np.arange(pos.max() + 1, dtype=np.uint64)
        contrib = ids.ravel().astype(np.uint64) * powers[pos] + np.uint64(1)
        hashes = np.add.reduceat(contrib, first)
    return WordView(start, word, hashes, special.ravel()[first])


def ngram_hashes(view: WordView, n: int) -> np.ndarray:
    """(W,) uint64 hash of the n-gram starting at each word; 0 where it would cross a breaker or the end."""
    W = len(view.hashes)
    out = np.zeros(W, np.uint64)
    if W < n:
        return out
    m = W - n + 1
    h = view.hashes[:m].copy()
    bad = view.breaker[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h = h * _Q + view.hashes[k:k + m]
            bad |= view.breaker[k:k + m]
    h[bad] = 0
    out[:m] = h
    return out


def ngram_vocabulary(view: WordView, min_count: int, n_ngrams: int) -> dict:
    """The top `n_ngrams` n-grams (n = 2..5, count >= `min_count`, PMI_n > 0) by PMI_n.

    Returns dict(hash=uint64[K], n=int[K], count=int[K], pmi=float[K], first=int[K]) sorted by PMI_n
    descending; `first` is the word index of one occurrence (for showing it)."""
    H = {m: ngram_hashes(view, m) if m > 1 else np.where(view.breaker, np.uint64(0), view.hashes)
         for m in range(1, MAX_N + 1)}
    tables = {}
    for m, h in H.items():
        valid = h != 0
        keys, first, counts = np.unique(h[valid], return_index=True, return_counts=True)
        tables[m] = (keys, counts, np.flatnonzero(valid)[first], np.log(counts) - np.log(valid.sum()))

    def logp(m: int, hashes: np.ndarray) -> np.ndarray:
        keys, _, _, lp = tables[m]
        i = np.clip(np.searchsorted(keys, hashes), 0, len(keys) - 1)
        return np.where(keys[i] == hashes, lp[i], -np.inf)

    rows = []
    for n in range(2, MAX_N + 1):
        keys, counts, first, lp = tables[n]
        keep = counts >= min_count
        if not keep.any():
            continue
        keys, counts, first, lp = keys[keep], counts[keep], first[keep], lp[keep]
        # best[a, b]: the most probable segmentation of words a..b (one part allowed), by dynamic programming
        best = {}
        for length in range(1, n + 1):
            for a in range(0, n - length + 1):
                b = a + length
                v = logp(length, H[length][first + a])
                for k in range(a + 1, b):
                    v = np.maximum(v, best[a, k] + best[k, b])
                best[a, b] = v
        split = np.max([best[0, k] + best[k, n] for k in range(1, n)], axis=0)  # >= 2 parts
        pmi = lp - split
        rows.append(dict(hash=keys, n=np.full(len(keys), n), count=counts, pmi=pmi, first=first))
    if not rows:
        return dict(hash=np.zeros(0, np.uint64), n=np.zeros(0, int), count=np.zeros(0, int),
                    pmi=np.zeros(0), first=np.zeros(0, int))
    allr = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    order = np.argsort(-allr["pmi"], kind="stable")
    order = order[allr["pmi"][order] > 0][:n_ngrams]
    return {k: v[order] for k, v in allr.items()}


def merge_units(view: WordView, vocab: dict, seed: int = 0) -> np.ndarray:
    """(n_blocks, T) bool: True where a masking unit begins (greedy longest-first, random ties, no overlap)."""
    W = len(view.hashes)
    occupied = np.zeros(W, bool)
    merged_tail = np.zeros(W, bool)  # words that continue a merged n-gram
    rng = np.random.default_rng(seed)
    for n in range(MAX_N, 1, -1):
        sel = vocab["hash"][vocab["n"] == n]
        if len(sel) == 0:
            continue
        starts = np.flatnonzero(np.isin(ngram_hashes(view, n), sel))
        starts = starts[rng.permutation(len(starts))]
        occ = occupied  # bound locally: the loop below is the hot path
        for s in starts.tolist():
            if not occ[s:s + n].any():
                occ[s:s + n] = True
                merged_tail[s + 1:s + n] = True
    unit_start = view.start.ravel() & ~merged_tail[view.word_of_token]
    return unit_start.reshape(view.start.shape)


@dataclass(frozen=True)
class PMIUnits:
    train: np.ndarray  # (n_train_blocks, T) bool unit starts
    eval: np.ndarray  # (n_eval_blocks, T) bool unit starts
    vocab: dict  # the n-gram vocabulary (see `ngram_vocabulary`)
    path: Path

    def examples(self, tokenizer, blocks: np.ndarray, is_cont: np.ndarray, special_ids, k: int = 20) -> list[str]:
        """The `k` top-PMI n-grams as text (read from one occurrence in `blocks`)."""
        view = word_view(blocks, is_cont, special_ids)
        first_tok = np.flatnonzero(view.start.ravel())
        flat = np.asarray(blocks).ravel()
        out = []
        for w, n in zip(self.vocab["first"][:k], self.vocab["n"][:k]):
            a = first_tok[w]
            b = first_tok[w + n] if w + n < len(first_tok) else len(flat)
            out.append(tokenizer.decode(flat[a:b].tolist()))
        return out


def pmi_units(data, min_count: int = 10, n_ngrams: int = 20_000, seed: int = 0) -> PMIUnits:
    """The n-gram vocabulary and unit segmentation of prepared `data`, computed once and cached beside it."""
    key = config_hash(dict(min_count=min_count, n_ngrams=n_ngrams, seed=seed, v=PMI_VERSION), 10)
    path = Path(data.path) / f"pmi-{key}.npz"
    if path.exists():
        z = np.load(path)
        vocab = {k[6:]: z[k] for k in z.files if k.startswith("vocab_")}
        return PMIUnits(z["train"], z["eval"], vocab, path)
    is_cont = continuation_mask(data.tokenizer)
    specials = list(data.special_ids.values())
    train_view = word_view(data.train, is_cont, specials)
    vocab = ngram_vocabulary(train_view, min_count, n_ngrams)
    train = merge_units(train_view, vocab, seed)
    held = merge_units(word_view(data.eval, is_cont, specials), vocab, seed + 1)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, train=train, eval=held, **{f"vocab_{k}": v for k, v in vocab.items()})
    lengths = {int(n): int((vocab["n"] == n).sum()) for n in np.unique(vocab["n"])}
    write_atomic(Path(data.path) / f"pmi-{key}.json", json.dumps(dict(
        min_count=min_count, n_ngrams=n_ngrams, seed=seed, selected=len(vocab["hash"]), by_length=lengths,
        units_per_word=float(train.sum() / max(train_view.start.sum(), 1))), indent=1))
    log.info("PMI vocabulary: %d n-grams (%s) with count >= %d", len(vocab["hash"]), lengths, min_count)
    return PMIUnits(train, held, vocab, path)


def pmi_mask(blocks: torch.Tensor, unit_start: torch.Tensor, mask_prob: float, vocab_size: int, special_ids,
             mask_id: int, generator: torch.Generator) -> MaskedBatch:
    """Mask whole units in random order until `mask_prob` of each row's maskable tokens are covered
    (a unit is taken while the budget is not passed by more than half of it; the budget is
    rounded stochastically); 80/10/10 per unit."""
    ids = blocks.long()
    B, T = ids.shape
    maskable = ~torch.isin(ids, torch.as_tensor(list(special_ids), dtype=torch.long))
    uid = unit_start.long().cumsum(1) - 1  # unit index of every token, per row
    size = torch.zeros(B, T, dtype=torch.long).scatter_add_(1, uid, maskable.long())  # maskable tokens per unit
    key = torch.rand(B, T, generator=generator).masked_fill(size == 0, float("inf"))
    order = key.argsort(1)
    sorted_size = size.gather(1, order)
    before = sorted_size.cumsum(1) - sorted_size
    # stochastic rounding keeps the expected rate at mask_prob even on short rows
    budget = (mask_prob * maskable.sum(1, keepdim=True) + torch.rand(B, 1, generator=generator)).floor().clamp(min=1)
    take_sorted = (sorted_size > 0) & (before + sorted_size / 2 <= budget)
    take_sorted[:, 0] |= sorted_size[:, 0] > 0  # every row with a maskable token predicts something
    take = torch.zeros(B, T, dtype=torch.bool).scatter_(1, order, take_sorted)
    positions = take.gather(1, uid) & maskable
    r_unit = torch.rand(B, T, generator=generator)
    r = r_unit.gather(1, uid)[positions]
    labels = ids[positions]
    random_tokens = torch.randint(vocab_size, labels.shape, generator=generator)
    corrupted = ids.clone()
    corrupted[positions] = torch.where(r < 0.8, torch.full_like(labels, mask_id),
                                       torch.where(r < 0.9, random_tokens, labels))
    return MaskedBatch(corrupted, positions, labels)


class PMIMasking:
    """The `pmi` objective: whole PMI units masked (training), plus `eval_pmi_loss` on fixed PMI masks."""

    name = "pmi"

    def train_masker(self, data, train_cfg):
        from workbench.data.objectives import special_ids

        specials, mask_id = special_ids(data)
        units = torch.from_numpy(pmi_units(data, train_cfg.pmi_min_count, train_cfg.pmi_ngrams).train)
        return lambda blocks, rows, gen: pmi_mask(blocks, units[rows], train_cfg.mask_prob, data.vocab_size,
                                                  specials, mask_id, gen)

    def eval_masks(self, data, train_cfg, index, blocks, seed) -> dict[str, MaskedBatch]:
        from workbench.data.objectives import special_ids

        specials, mask_id = special_ids(data)
        units = torch.from_numpy(pmi_units(data, train_cfg.pmi_min_count, train_cfg.pmi_ngrams).eval[index])
        return dict(eval_pmi_loss=pmi_mask(blocks, units, train_cfg.mask_prob, data.vocab_size, specials, mask_id,
                                           torch.Generator().manual_seed(seed)))
