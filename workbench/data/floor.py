"""The lowest held-out MLM loss any model can reach, where the corpus knows it.

    floor = eval_loss_floor(data, batch, mask_prob=0.15)   # nats per masked token, or None

Real text has no known floor (None). A generated language (`data.sources.hmm`) knows its own: the
Bayes loss of the process that wrote it, for exactly the masked blocks given, so a run's eval loss
and a law's asymptote can be set against it.
"""

from __future__ import annotations

from workbench.base import registry
from workbench.base.errors import WorkbenchError
from workbench.data.corpus import corpus_parts
from workbench.data.masking import MaskedBatch
from workbench.data.prepared import PreparedData


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
    tok = data.tokenizer
    vocab = tok.get_vocab()
    symbol_of = {vocab[w]: i for i, w in enumerate(source.words()) if w in vocab}
    if not symbol_of:
        raise WorkbenchError(f"the tokenizer of {data.path} knows no word of {source.name}: not its data")
    mean, _ = source.mlm_floor(batch.input_ids.numpy(), batch.positions.numpy(), batch.labels.numpy(), symbol_of,
                               data.vocab_size, mask_prob, tok.mask_token_id, tok.sep_token_id)
    return mean
