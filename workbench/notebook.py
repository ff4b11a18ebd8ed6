"""What the notebooks call: their parameters turned into validated configs, and their outputs.

    sweep = sweep_config(profile="cpu", family="ar32", layers=[1, 2, 3, 4], seeds=1, objective="mlm")
    out = Outputs("outputs/cpu", "sweep")          # out.figure(fig, "fit"), out.results({...})

The parameters cell of every notebook holds primitives only (papermill injects them); the cell
after it calls one of the builders here, so a wrong value stops the notebook at that step with a
one-line `ConfigError`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.config import ConfigError, SweepConfig, from_dict, set_override
from workbench.family import family_table, get_family, model_spec
from workbench.sweep import profile_dict


def _check_layers(family: str, layers) -> list[int]:
    fam = get_family(family)  # unknown family -> ConfigError
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ConfigError(f"layers must be a non-empty list of depths, e.g. [1, 2, 3, 4]; got {layers!r}")
    bad = [n for n in layers if not isinstance(n, int) or isinstance(n, bool) or n not in fam.layers]
    if bad:
        sizes = ", ".join(f"L{n} (N={model_spec(family, n).n_params:,})" for n in fam.layers)
        raise ConfigError(f"unknown size(s) {bad} for family {family!r}; its sizes are {sizes}")
    return sorted(layers)


def _check_seeds(seeds) -> int:
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"seeds is the number of seeds per size and must be an integer >= 1, got {seeds!r}")
    return seeds


def sweep_config(profile: str = "smoke", family: str = "ar32", layers=(1, 2), seeds: int = 1,
                 objective: str = "mlm", max_steps: int = 0, patience: int = 0, overrides=()) -> SweepConfig:
    """A `SweepConfig` from a profile and the notebook's parameters (0 = keep the profile's value)."""
    raw = profile_dict(profile)
    raw["family"] = family
    raw["layers"] = _check_layers(family, layers)
    raw["seeds"] = list(range(_check_seeds(seeds)))
    train = raw.setdefault("train", {})
    train["objective"] = objective
    for name, value in (("max_steps", max_steps), ("patience", patience)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be an integer >= 0 (0 = the profile's), got {value!r}")
        if value:
            train[name] = value
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of 'key=value' strings, got the string {overrides!r}")
    for o in overrides:
        set_override(raw, o)
    return from_dict(SweepConfig, raw)


def finetune_config(tasks, pretrain_root: str, family: str, layers, seeds: int, lrs, epochs, tune: bool = True,
                    objective: str = "mlm", max_train: int = 0, max_eval: int = 0, batch_size: int = 64,
                    fixed_lr: float = 1e-4, fixed_epochs: int = 3, sweep: SweepConfig | None = None):
    """A `FinetuneStudyConfig` from the finetuning notebook's parameters. With `sweep`, the
    checkpoints are exactly that sweep's seed-0 runs (else: by family / objective in the store)."""
    from workbench.pretrain import run_id
    from workbench.study import FinetuneStudyConfig

    if isinstance(tasks, str) or not tasks:
        raise ConfigError(f"tasks must be a non-empty list of task names, got {tasks!r}")
    return from_dict(FinetuneStudyConfig, dict(
        tasks=list(tasks), pretrain_root=pretrain_root, family=family, layers=_check_layers(family, layers),
        seeds=_check_seeds(seeds), lrs=list(lrs), epochs=list(epochs), tune=tune, objective=objective,
        max_train=max_train, max_eval=max_eval, batch_size=batch_size, fixed_lr=fixed_lr, fixed_epochs=fixed_epochs,
        pretrain_ids=[run_id(r) for r in sweep.runs() if r.seed == 0 and r.n_layers in layers] if sweep else []))


def size_labels(family: str) -> pd.DataFrame:
    """The family's sizes with N, for pickers: n_layers, n_params, label ("L3  N=331,776")."""
    t = family_table(family)
    return t.assign(label=[f"L{r.n_layers}  N={r.n_params:,}" for r in t.itertuples()])[
        ["n_layers", "n_params", "label"]]


class Outputs:
    """The folder a notebook writes: `<out_dir>/<name>/` with figures (PNG), tables (CSV), results.json."""

    def __init__(self, out_dir: str | Path, name: str):
        self.dir = Path(out_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._results: dict[str, Any] = {}

    def figure(self, fig, name: str) -> Path:
        path = self.dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        self._results.setdefault("figures", {})[name] = path.name
        self._write()
        return path

    def table(self, df: pd.DataFrame, name: str) -> Path:
        path = self.dir / f"{name}.csv"
        df.to_csv(path, index=False)
        self._results.setdefault("tables", {})[name] = path.name
        self._write()
        return path

    def results(self, values: dict) -> dict:
        self._results.update(_jsonable(values))
        self._write()
        return self._results

    def _write(self) -> None:
        from workbench.runs import write_json_atomic

        write_json_atomic(self.dir / "results.json", self._results)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def read_results(out_dir: str | Path, name: str) -> dict:
    path = Path(out_dir) / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}
