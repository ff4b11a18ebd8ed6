"""Which texts share a long word sequence with a corpus: the contamination check between pretraining
text and finetuning examples (GPT-3's 13-gram test).

    hits = shared_ngrams(corpus_texts, examples, n=13)     # [bool] per example

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


def shared_ngrams(corpus: Iterable[str], texts: Iterable[str], n: int = 13) -> list[bool]:
    """For each of `texts`: does it share any word n-gram with `corpus`?"""
    seen: set[int] = set()
    for doc in corpus:
        seen |= ngrams(doc, n)
    return [not seen.isdisjoint(ngrams(t, n)) for t in texts]
