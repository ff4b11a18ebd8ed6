"""A notebook's parameters turned into a validated study, and the cell that opens every notebook.

    study, out = setup(profile, overrides, "sweep", out_dir, layers=[1, 2, 3, 4])

A notebook's parameters cell holds the profile, overrides, and the few scientific parameters that
notebook varies (`SCIENTIFIC` maps each to its place in the `StudyConfig`); they are applied on
top of the profile, so a wrong value stops the notebook at that step with a one-line `ConfigError`.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import yaml

from workbench.base.errors import ConfigError
from workbench.base.family import family_table
from workbench.config import StudyConfig, load
from workbench.front.outputs import Outputs

SCIENTIFIC = {"layers": "sweep.layers", "tasks": "finetune.tasks", "law": "fit.law", "n_held_out": "fit.n_held_out",
              "variant": "compare.variant"}


def load_study(profile: str, overrides=(), **scientific) -> StudyConfig:
    """The study of `profile` with `overrides`, then the notebook's scientific parameters on top.
    `variant` is a mapping of sweep settings ({"family": "ar64"}), stored as override strings."""
    unknown = sorted(set(scientific) - set(SCIENTIFIC))
    if unknown:
        raise ConfigError(f"not a scientific parameter: {', '.join(unknown)}; the notebooks' are "
                          f"{', '.join(SCIENTIFIC)}")
    if isinstance(scientific.get("variant"), dict):
        scientific["variant"] = [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                                 for k, v in scientific["variant"].items()]
    return load(profile, overrides, {SCIENTIFIC[k]: v for k, v in scientific.items()})


def setup(profile: str, overrides, name: str, out_dir: str, **scientific) -> tuple[StudyConfig, "Outputs"]:
    """What the cell after a notebook's parameters does: figures inline, quiet logging, wide tables,
    the study validated (`load_study`: a wrong value stops here, with one line), and the notebook's
    output folder `<out_dir>/<name>/`."""
    import logging

    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # not in IPython: nothing to set up for figures
        shell = None
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
        check_injected(shell.user_ns.get("In", []), name)
    logging.basicConfig(level=logging.WARNING)
    pd.set_option("display.width", 160, "display.max_columns", 30)
    study = load_study(profile, overrides, **scientific)
    return study, Outputs(out_dir, name)


INJECTED = "# Parameters\n"  # how papermill's injected-parameters cell starts


def check_injected(sources: list[str], name: str) -> None:
    """Refuse a papermill parameter the notebook does not declare (`-p lawx saturating` would be
    ignored with a warning): the injected cell's names against its parameters cell's, from the
    kernel's input history `In` (the parameters cell is the last cell before it that sets `profile`)."""
    import ast

    def assigned(src: str) -> list[str]:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            return []
        return [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]

    injected = [i for i, src in enumerate(sources) if isinstance(src, str) and src.startswith(INJECTED)]
    if not injected:
        return
    i = injected[-1]
    declared = next((assigned(src) for src in reversed(sources[:i]) if "profile" in assigned(src)), None)
    if declared is None:
        return
    # papermill's own --inject-paths names (PAPERMILL_INPUT_PATH, ...) are not the notebook's parameters
    unknown = [n for n in assigned(sources[i]) if n not in declared and not n.startswith("PAPERMILL_")]
    if unknown:
        raise ConfigError(f"{name} notebook: unknown parameter(s) {', '.join(unknown)}; it takes "
                          f"{', '.join(declared)}")


def scientific_values(study: StudyConfig, names) -> dict:
    """The values of the named scientific parameters in `study` (what a runner injects)."""
    out = {}
    for name in names:
        node: Any = study
        for part in SCIENTIFIC[name].split("."):
            node = getattr(node, part)
        out[name] = list(node) if isinstance(node, tuple) else node
    if "variant" in out:  # as the selection notebook takes it: {sweep setting: value}
        out["variant"] = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in out["variant"])}
    return out


def size_labels(family: str) -> pd.DataFrame:
    """The family's sizes with N, for pickers: n_layers, n_params, label ("L3  N=331,776")."""
    t = family_table(family)
    return t.assign(label=[f"L{r.n_layers}  N={r.n_params:,}" for r in t.itertuples()])[
        ["n_layers", "n_params", "label"]]


