"""A pretraining sweep: every size x seed of a family, same data and recipe, resumable.

    df = run_sweep(load_profile("cpu"), root="runs")     # finished runs are skipped

Profiles are YAML files of `SweepConfig` fields (`workbench/profiles/<name>.yaml` or any path);
`--set key=value` overrides apply on top, and unknown keys fail before anything runs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from workbench.config import ConfigError, SweepConfig, from_dict, set_override
from workbench.data import prepare_data
from workbench.pretrain import run_id
from workbench.runs import RunStore, load_runs


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("workbench.profiles").iterdir() if p.name.endswith(".yaml"))


def profile_dict(name_or_path: str) -> dict:
    """The raw dict of a named profile or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        if name_or_path not in profile_names():
            raise ConfigError(f"unknown profile {name_or_path!r}: use one of {', '.join(profile_names())} "
                              f"or a path to a YAML file")
        return yaml.safe_load(resources.files("workbench.profiles").joinpath(f"{name_or_path}.yaml").read_text())
    if not path.exists():
        raise ConfigError(f"profile file {path} does not exist")
    return yaml.safe_load(path.read_text()) or {}


def load_profile(name_or_path: str = "cpu", overrides: list[str] | tuple[str, ...] = (), cls: type = SweepConfig):
    """A validated config (`SweepConfig` unless `cls` says otherwise) from a profile plus overrides."""
    raw = profile_dict(name_or_path)
    for o in overrides:
        set_override(raw, o)
    return from_dict(cls, raw)


def run_sweep(sweep: SweepConfig, root: str | Path = "runs"):
    """Pretrain every run of `sweep` under `root` (smallest first) on `sweep.exec.executor`,
    skipping finished ones; a failed run is reported and left out, the others go on.

    Returns the tidy table of this sweep's finished runs (see `workbench.runs.load_runs`), with the
    run counts of `workbench.executors.counts` in `df.attrs["counts"]`."""
    from workbench.executors import counts, pretrain_job, run_jobs

    runs = sweep.runs()
    if not all(RunStore(root).is_finished(run_id(r)) for r in runs):
        prepare_data(sweep.data)  # data errors surface here, and workers find the prepared cache
    outcomes = run_jobs([pretrain_job(r) for r in runs], root, sweep.exec, desc="sweep")
    df = load_runs(root)
    ids = {run_id(r) for r in runs}
    df = df[df.run_id.isin(ids)].sort_values(["n_params", "seed"]).reset_index(drop=True) if not df.empty else df
    df.attrs["counts"] = counts(outcomes)
    return df
