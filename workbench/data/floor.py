"""The lowest held-out MLM loss a model can reach in expectation, where the corpus knows it.

    floor = eval_loss_floor(data, batch, mask_prob=0.15)   # nats per masked token, or None

Real text has no known floor (None). A generated language (`data.sources.hmm`) knows its own: the
Bayes loss of the process that wrote it, for exactly the masked blocks given, so a run's eval loss
and a law's asymptote can be set against it. Where the tokenizer split a word of the language into
pieces (a word too rare for WordPiece's `min_frequency`, or a vocabulary too small) the blocks are no
longer the process's words: the floor is then unknown (None, with a warning), never a wrong number.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from workbench.base import registry
from workbench.data.corpus import corpus_parts
from workbench.data.masking import MaskedBatch
from workbench.data.prepared import PreparedData

log = logging.getLogger(__name__)
_CACHE: dict[tuple, float | None] = {}  # (data, masked batch, mask_prob) -> floor: runs of one sweep share it


def floor_source(corpus: str):
    """The registered source of `corpus` if it is one generated language (it has `mlm_floor`), else None."""
    parts = corpus_parts(corpus)
    if len(parts) != 1:
        return None
    source = registry.get(registry.CORPUS_SOURCES, parts[0])
    return source if hasattr(source, "mlm_floor") else None


def eval_loss_floor(data: PreparedData, batch: MaskedBatch, mask_prob: float) -> float | None:
    """The Bayes MLM loss of `batch` (masked held-out blocks of `data`), or None where unknown."""
    source = floor_source(data.meta["config"]["corpus"])
    if source is None:
        return None
    ids, pos, labels = (t.numpy() for t in (batch.input_ids, batch.positions, batch.labels))
    key = (str(data.path), source.fingerprint(), mask_prob, hashlib.sha256(ids.tobytes() + pos.tobytes()).hexdigest())
    if key not in _CACHE:
        _CACHE[key] = _floor(source, data, ids, pos, labels, mask_prob)
    return _CACHE[key]


def _floor(source, data: PreparedData, ids, pos, labels, mask_prob: float) -> float | None:
    tok = data.tokenizer
    vocab = tok.get_vocab()
    symbol_of = {vocab[w]: i for i, w in enumerate(source.words()) if w in vocab}
    is_word = np.zeros(max(data.vocab_size, int(ids.max()) + 1), bool)
    is_word[list(symbol_of)] = True
    specials = list(data.special_ids.values())
    split = (~pos & ~is_word[ids] & ~np.isin(ids, specials)).sum() + (~is_word[labels]).sum()
    if split:  # a token that is neither a word nor special where the blocks show the text itself
        log.warning("the floor of %s is unknown: %d held-out token(s) are pieces of words the tokenizer split "
                    "(raise data.vocab_size, or the corpus's size so that every word is seen twice)", data.path, split)
        return None
    mean, _ = source.mlm_floor(ids, pos, labels, symbol_of, data.vocab_size, mask_prob, tok.mask_token_id,
                               tok.sep_token_id)
    return mean
