"""The model family as a table: shapes, parameter counts and FLOPs of BERT-style encoders.

    spec = model_spec("ar32", 4)      # L=4, H=128, 4 heads;  spec.n_params == 12 * 4 * 128**2

Sizes grow by depth L at a fixed aspect ratio AR = H / L (the paper's families). Family names:
`ar32` (L1-8), `ar64` (L1-5), `bert-base` (L12 H768 12 heads), or any `ar<AR>` / `ar<AR>h<heads>`
(4 heads unless given, L1-12), e.g. `ar48h8`. A depth the family does not define is refused.
N = 12 L H^2 is the non-embedding count the fits use; the exact counts match `numel` of
`transformers.BertForMaskedLM` (tested).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workbench.base.errors import ConfigError


@dataclass(frozen=True)
class Family:
    name: str
    aspect_ratio: int | None  # H / L; None for fixed-shape families
    n_heads: int
    layers: tuple[int, ...]  # the depths the family defines; any other L is refused
    hidden: int | None = None  # fixed width (bert-base)


FAMILIES: dict[str, Family] = {
    "ar32": Family("ar32", 32, 4, tuple(range(1, 9))),
    "ar64": Family("ar64", 64, 4, tuple(range(1, 6))),
    "bert-base": Family("bert-base", None, 12, (12,), hidden=768),
}

CUSTOM_LAYERS = tuple(range(1, 13))  # the depths of a custom ar<AR> family; a deeper one is a FAMILIES row
_CUSTOM = re.compile(r"^ar(\d+)(?:h(\d+))?$")


def get_family(name: str) -> Family:
    """A named family, or a custom `ar<AR>[h<heads>]` one."""
    if name in FAMILIES:
        return FAMILIES[name]
    m = _CUSTOM.match(name)
    if not m:
        raise ConfigError(f"unknown family {name!r}: use one of {', '.join(FAMILIES)} "
                          f"or 'ar<aspect ratio>[h<heads>]', e.g. ar48h4")
    ar, heads = int(m.group(1)), int(m.group(2) or 4)
    if ar < 1 or heads < 1:
        raise ConfigError(f"family {name!r}: aspect ratio and heads must be >= 1")
    return Family(name, ar, heads, CUSTOM_LAYERS)


@dataclass(frozen=True)
class ModelSpec:
    """One encoder shape. Counts take the vocabulary and positions as arguments."""

    family: str
    n_layers: int
    hidden: int
    n_heads: int

    @property
    def name(self) -> str:
        return f"{self.family}-L{self.n_layers}"

    @property
    def intermediate(self) -> int:
        return 4 * self.hidden

    @property
    def n_params(self) -> int:
        """N = 12 L H^2: the paper's non-embedding parameter count (x axis of every fit)."""
        return 12 * self.n_layers * self.hidden**2

    def n_params_encoder(self) -> int:
        """Exact encoder parameters (weights, biases, LayerNorms): L (12 H^2 + 13 H)."""
        return self.n_layers * (12 * self.hidden**2 + 13 * self.hidden)

    def n_params_embedding(self, vocab_size: int, max_positions: int) -> int:
        """Word + position + 2 token-type embeddings and their LayerNorm."""
        return (vocab_size + max_positions + 2) * self.hidden + 2 * self.hidden

    def n_params_mlm_head(self, vocab_size: int) -> int:
        """MLM head: dense H->H, LayerNorm, decoder bias (decoder weight tied to embeddings)."""
        return self.hidden**2 + 3 * self.hidden + vocab_size

    def n_params_total(self, vocab_size: int, max_positions: int) -> int:
        """Every parameter of `BertForMaskedLM` (tied weights counted once), as `numel` gives."""
        return (self.n_params_embedding(vocab_size, max_positions) + self.n_params_encoder()
                + self.n_params_mlm_head(vocab_size))

    def forward_flops_per_token(self, seq_len: int, vocab_size: int, head_fraction: float = 1.0) -> int:
        """Matmul FLOPs of one forward pass per token: 2N for the weights, 4 L T H for attention
        scores and values, and the MLM head (2 H^2 + 2 H V) on `head_fraction` of positions."""
        head = 2 * self.hidden**2 + 2 * self.hidden * vocab_size
        return int(2 * self.n_params + 4 * self.n_layers * seq_len * self.hidden + head_fraction * head)

    def train_flops_per_token(self, seq_len: int, vocab_size: int, head_fraction: float = 1.0) -> int:
        """Forward + backward = 3x forward. C = 6 N D is this without attention and head."""
        return 3 * self.forward_flops_per_token(seq_len, vocab_size, head_fraction)

    def bert_config(self, vocab_size: int, max_positions: int, dropout: float = 0.1):
        """The `transformers.BertConfig` of this shape (the paper's BERT hyperparameters)."""
        from transformers import BertConfig

        return BertConfig(
            vocab_size=vocab_size, hidden_size=self.hidden, num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads, intermediate_size=self.intermediate,
            hidden_act="gelu", hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            max_position_embeddings=max_positions, type_vocab_size=2, initializer_range=0.02,
            layer_norm_eps=1e-12,
        )


def model_spec(family: str, n_layers: int) -> ModelSpec:
    """The shape of depth `n_layers` in `family`; impossible shapes raise `ConfigError`."""
    fam = get_family(family)
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ConfigError(f"n_layers must be an integer >= 1, got {n_layers!r}")
    if n_layers not in fam.layers:
        span = f"L{fam.layers[0]}-{fam.layers[-1]}" if len(fam.layers) > 1 else f"L{fam.layers[0]}"
        raise ConfigError(f"family {family!r} defines {span}, not L{n_layers}; choose depths in {list(fam.layers)} "
                          f"(or add a family to workbench.base.family.FAMILIES)")
    hidden = fam.hidden if fam.hidden is not None else fam.aspect_ratio * n_layers
    if hidden % fam.n_heads:
        raise ConfigError(f"{family}-L{n_layers}: {fam.n_heads} heads do not divide hidden size {hidden}; "
                          f"choose heads that divide {hidden} (e.g. {family.split('h')[0]}h{_divisor(hidden)})")
    return ModelSpec(family, n_layers, hidden, fam.n_heads)


def _divisor(h: int) -> int:
    return next(d for d in (4, 2, 1) if h % d == 0)


def family_table(family: str, layers: tuple[int, ...] | None = None, vocab_size: int = 8192,
                 seq_len: int = 128):
    """A DataFrame with one row per size: shape, N, exact counts and FLOPs per token."""
    import pandas as pd

    if vocab_size < 1 or seq_len < 1:
        raise ConfigError(f"vocab size and sequence length must be positive, got {vocab_size} and {seq_len}")

    fam = get_family(family)
    rows = []
    for n in layers or fam.layers:
        s = model_spec(family, n)
        rows.append(dict(
            name=s.name, n_layers=n, hidden=s.hidden, n_heads=s.n_heads, n_params=s.n_params,
            params_non_embedding=s.n_params_encoder(),
            params_total=s.n_params_total(vocab_size, seq_len),
            train_flops_per_token=s.train_flops_per_token(seq_len, vocab_size, head_fraction=0.15),
        ))
    return pd.DataFrame(rows)
