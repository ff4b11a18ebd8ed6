"""Run a study's notebooks with papermill on a profile, and write its summary.

    workbench notebooks --profile study-converged                # the default study (README command 1)
    run_notebooks("smoke", "outputs/smoke", overrides=["root=/tmp/runs"])

The profile (`workbench/profiles/<name>.yaml`) is loaded once, with the overrides, before anything
runs, so a typo fails at once. Each notebook is given the profile, the overrides and its own
scientific parameters read from the loaded study (`notebook.SCIENTIFIC`), so the value in the
profile is the value used. The output folder gets the executed notebooks, each notebook's
figures, tables and `results.json` in `<out>/<notebook>/`, and `summary.md` / `summary.json`.
Before the notebooks, every pretraining run they need (the sweep's and model selection's variant)
trains on one pool of workers and is certified there (`pretrain_study`), so that no core waits
for one notebook's last run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from workbench.base.errors import WorkbenchError, one_line
from workbench.base.files import write_atomic
from workbench.config import NOTEBOOKS, load
from workbench.front.params import SCIENTIFIC, scientific_values

log = logging.getLogger(__name__)


def notebooks_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "notebooks"
    if not (path / "sweep.ipynb").exists():
        raise WorkbenchError(f"the notebooks are not at {path}: run from a source checkout (git clone, pip install -e .)")
    return path


def notebook_parameters(name: str) -> dict:
    """papermill's view of a notebook's parameters cell."""
    import papermill as pm

    return pm.inspect_notebook(str(notebooks_dir() / f"{name}.ipynb"))


def plan(profile: str, overrides=(), only=None) -> dict[str, dict]:
    """{notebook: papermill parameters} of a study, validated before anything runs."""
    study = load(profile, overrides)
    bad = sorted(set(only or ()) - set(NOTEBOOKS))
    if bad:
        raise WorkbenchError(f"unknown notebook(s) {bad}: use {', '.join(NOTEBOOKS)}")
    # `only` names the notebooks to run (in NOTEBOOKS' order), whether or not the profile lists them
    names = [nb for nb in NOTEBOOKS if nb in only] if only else list(study.notebooks)
    out = {}
    for nb in names:
        declared = notebook_parameters(nb)
        values = scientific_values(study, [p for p in declared if p in SCIENTIFIC])
        out[nb] = dict(profile=profile, overrides=list(overrides), **values)
    return out


def writable_folder(path: str | Path, what: str) -> Path:
    """`path` made a folder this process can write into, or one `WorkbenchError` line saying why not."""
    import os
    import tempfile

    path = Path(path).resolve()
    if path.exists() and not path.is_dir():
        raise WorkbenchError(f"{what} {path} is a file, not a folder: give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WorkbenchError(f"{what} {path} is not writable ({e.strerror or type(e).__name__}): give a folder "
                             f"you can write to") from None
    return path


def run_notebooks(profile: str = "cpu", out: str | Path = "outputs/cpu", only=None, overrides=()) -> dict:
    """Execute the study's notebooks in order and write the summary. The study's pretraining runs are
    trained first, all on one pool, in a child process (`pretrain_first`); the notebooks read them
    back. A failed sweep stops the study (every other notebook reads its runs); any other notebook
    that fails is reported and the rest run."""
    import papermill as pm
    from tqdm.auto import tqdm

    from workbench.front.summary import write_summary

    steps = plan(profile, overrides, only)
    out = writable_folder(out, "the notebooks' output folder (--out)")
    timings, failures = {}, []
    pretraining = ""
    if "sweep" in steps:
        t0 = time.time()
        pretraining = pretrain_first(profile, overrides, with_variant="selection" in steps)
        timings["pretraining"] = round(time.time() - t0, 1)
    for nb, params in tqdm(steps.items(), desc="notebooks", dynamic_ncols=True):
        t0 = time.time()
        try:
            pm.execute_notebook(str(notebooks_dir() / f"{nb}.ipynb"), str(out / f"{nb}.ipynb"),
                                parameters=dict(params, interactive=False, out_dir=str(out)),
                                cwd=str(notebooks_dir().parent), progress_bar=False)
        except pm.PapermillExecutionError as e:
            failures.append(dict(notebook=nb, error=one_line(f"{e.ename}: {e.evalue}")))
            log.error("%s.ipynb failed: %s", nb, failures[-1]["error"])
            if nb == "sweep":
                break
        finally:
            timings[nb] = round(time.time() - t0, 1)
    summary = write_summary(out, profile, timings, failures, list(steps), pretraining_error=pretraining)
    write_report(out, [nb for nb in steps if (out / f"{nb}.ipynb").exists()], profile)
    return summary


def pretrain_first(profile: str, overrides=(), with_variant: bool = True) -> str:
    """`pretrain_study` in a child process (so that no CUDA context, cached GPU memory or local Ray
    outlives it while the notebooks run); returns "" or what went wrong, in one line. Whatever it
    leaves unfinished, the notebooks train and report."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    child = ctx.Process(target=_pretrain_child, args=(profile, list(overrides), with_variant, errors))
    child.start()
    child.join()
    error = errors.get() if not errors.empty() else ""
    if not error and child.exitcode != 0:
        error = f"the pretraining process ended with exit code {child.exitcode}"
    if error:
        log.warning("pretraining before the notebooks: %s (the notebooks train what is left)", error)
    return error


def _pretrain_child(profile: str, overrides: list, with_variant: bool, errors) -> None:
    try:
        pretrain_study(load(profile, overrides), with_variant)
    except Exception as e:  # noqa: BLE001 - reported in the summary; the notebooks meet it again
        log.exception("pretraining before the notebooks failed")
        errors.put(one_line(f"{type(e).__name__}: {e}"))


def pretrain_study(study, with_variant: bool) -> None:
    """Train (and certify, as `convergence.certify` says) the study's pretraining runs before its
    notebooks: the sweep's, and with `with_variant` model selection's variant sweep too, on one pool
    of workers, largest first (`execute.sweep.run_sweeps`), so that no core idles while one part's
    last run finishes. A variant that cannot be set up (its data, its settings) leaves the baseline
    to train alone. The notebooks then read the runs back; a run that failed here is tried again by
    its notebook, which reports it. (The convergence notebook's deliberately under-trained twin
    trains in that notebook.)"""
    from workbench.execute.sweep import run_sweeps

    sweeps = [study.sweep]
    if with_variant:
        try:
            sweeps.append(study.variant_sweep())
        except WorkbenchError as e:
            log.warning("model selection's variant is not pretrained first: %s", one_line(str(e)))
    kw = dict(certify=study.convergence.certify, certify_factor=study.convergence.certify_factor)
    try:
        tables = run_sweeps(sweeps, study.root, study.exec, **kw)
    except WorkbenchError as e:
        if len(sweeps) == 1:
            raise
        log.warning("pretraining the variant beside the baseline failed (%s): the baseline alone", one_line(str(e)))
        sweeps = sweeps[:1]
        tables = run_sweeps(sweeps, study.root, study.exec, **kw)
    for sweep, df in zip(sweeps, tables):
        log.info("pretraining %s: %s", sweep.label, ", ".join(f"{k} {v}" for k, v in df.attrs["counts"].items()))


def write_report(out: Path, notebooks: list[str], profile: str) -> Path:
    """One self-contained HTML page of the executed notebooks, in order, figures inline (nbconvert),
    headed by the study's summary: `<out>/report.html`, for readers without Jupyter."""
    import nbformat
    from nbconvert import HTMLExporter

    summary = (out / "summary.md").read_text() if (out / "summary.md").exists() else ""
    summary = "\n".join(line for line in summary.splitlines() if not line.lstrip().startswith("!["))  # figures follow
    merged = nbformat.v4.new_notebook(metadata={"title": f"scaling-workbench study: {profile}"})
    merged.cells.append(nbformat.v4.new_markdown_cell(summary or f"# Study `{profile}`"))
    for nb in notebooks:
        executed = nbformat.read(out / f"{nb}.ipynb", as_version=4)
        merged.metadata.setdefault("kernelspec", executed.metadata.get("kernelspec", {}))
        merged.metadata.setdefault("language_info", executed.metadata.get("language_info", {}))
        merged.cells.append(nbformat.v4.new_markdown_cell(f"---\n*Notebook `{nb}.ipynb`, executed with papermill.*"))
        merged.cells += [c for c in executed.cells if "parameters" not in c.metadata.get("tags", [])
                         and "injected-parameters" not in c.metadata.get("tags", [])]
    html, _ = HTMLExporter(embed_images=True).from_notebook_node(merged)
    path = out / "report.html"
    write_atomic(path, html)
    return path
