"""Which texts share a long word sequence with a corpus: the contamination check between pretraining
text and finetuning examples (GPT-3's 13-gram test).

    hits = shared_ngrams(corpus_texts, examples, n=13)     # [True/False, or None when too short to check]
    kept = drop_near_duplicates(docs)                      # documents mostly repeating earlier ones left out

Words are lower-cased runs of letters and digits, so punctuation and spacing do not hide a copy.
"""

from __future__ import annotations

import re
from typing import Iterable

_WORD = re.compile(r"[a-z0-9]+")


def ngrams(text: str, n: int) -> set[int]:
    """Hashes of the text's word n-grams (a text shorter than n words has none)."""
    words = _WORD.findall(text.lower())
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


def shared_ngrams(corpus: Iterable[str], texts: Iterable[str], n: int = 13, min_n: int = 8) -> list[bool | None]:
    """For each of `texts`: does it share a word n-gram with `corpus`? A text of k words, min_n <= k < n,
    is checked whole (its min_n-grams: a copy of it would share one); a shorter one is None (unchecked)."""
    texts = list(texts)
    corpus = list(corpus)
    lengths = [len(_WORD.findall(t.lower())) for t in texts]
    needed = sorted({n if k >= n else min_n for k in lengths if k >= min_n})
    seen = {m: set().union(*(ngrams(doc, m) for doc in corpus)) if corpus else set() for m in needed}
    return [None if k < min_n else not seen[n if k >= n else min_n].isdisjoint(ngrams(t, n if k >= n else min_n))
            for t, k in zip(texts, lengths)]


def drop_near_duplicates(docs: list, n: int = 13, max_seen: float = 0.5) -> list:
    """`docs` (objects with `.text`) without those whose word n-grams are mostly (> max_seen) in the
    documents before them: a second copy of a text would put the same words on both sides of the
    held-out split."""
    seen: set[int] = set()
    kept = []
    for doc in docs:
        grams = ngrams(doc.text, n)
        if not grams or len(grams & seen) / len(grams) <= max_seen:
            kept.append(doc)
        seen |= grams
    return kept
