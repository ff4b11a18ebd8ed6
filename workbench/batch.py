"""Run the four notebooks with papermill on a parameter profile and write a summary.

    workbench notebooks --params cpu --out outputs/cpu        # the default study, offline
    run_notebooks("smoke", "outputs/smoke")

A parameter profile (`notebooks/params/<name>.yaml`) has a `common:` section, given to every
notebook that declares those parameters, and one section per notebook. Every key must be a
parameter of some notebook (papermill's own inference of the tagged cell), so a typo fails before
anything runs. The output folder gets the executed notebooks, each notebook's figures, tables and
`results.json` in `<out>/<notebook>/`, and `summary.md` / `summary.json` with the key numbers.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import yaml

from workbench.config import ConfigError, WorkbenchError, set_override
from workbench.notebook import read_results

log = logging.getLogger(__name__)
NOTEBOOKS = ("sweep", "finetune", "convergence", "extrapolation")
# the default study's bar: a law over >= 4 sizes with R^2 >= 0.98, and the held-out size within 5%
BAR = dict(min_sizes=4, min_r2=0.98, max_abs_re=0.05)


def notebooks_dir() -> Path:
    path = Path(__file__).resolve().parents[1] / "notebooks"
    if not (path / "sweep.ipynb").exists():
        raise WorkbenchError(f"the notebooks are not at {path}: run from a source checkout (git clone, pip install -e .)")
    return path


def params_names() -> list[str]:
    return sorted(p.stem for p in (notebooks_dir() / "params").glob("*.yaml"))


def load_params(name_or_path: str, overrides=()) -> dict[str, dict]:
    """{notebook: parameters} of a profile, with `notebook.key=value` (or `common.key=value`) overrides.

    A top-level `notebooks: [...]` list restricts which notebooks the profile runs (a study)."""
    import papermill as pm

    path = Path(name_or_path)
    if not path.suffix:
        path = notebooks_dir() / "params" / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown notebook parameters {name_or_path!r}: use one of {', '.join(params_names())} "
                              f"or a path to a YAML file")
    raw = yaml.safe_load(path.read_text()) or {}
    for o in overrides:
        set_override(raw, o)
    unknown = sorted(set(raw) - {"common", "notebooks", *NOTEBOOKS})
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r} in {path}: use notebooks, common, {', '.join(NOTEBOOKS)}")
    selected = raw.get("notebooks") or list(NOTEBOOKS)
    if set(selected) - set(NOTEBOOKS):
        raise ConfigError(f"notebooks: {sorted(set(selected) - set(NOTEBOOKS))} unknown; use {', '.join(NOTEBOOKS)}")
    declared = {nb: set(pm.inspect_notebook(str(notebooks_dir() / f"{nb}.ipynb"))) for nb in NOTEBOOKS}
    common = raw.get("common") or {}
    stray = sorted(set(common) - set().union(*declared.values()))
    if stray:
        raise ConfigError(f"common parameter {stray[0]!r} is not a parameter of any notebook")
    out = {}
    for nb in [n for n in NOTEBOOKS if n in selected]:
        own = raw.get(nb) or {}
        bad = sorted(set(own) - declared[nb])
        if bad:
            raise ConfigError(f"{bad[0]!r} is not a parameter of {nb}.ipynb; see "
                              f"`papermill --help-notebook notebooks/{nb}.ipynb`")
        out[nb] = {**{k: v for k, v in common.items() if k in declared[nb]}, **own}
    return out


def run_notebooks(params: str = "cpu", out: str | Path = "outputs/cpu", only=None, overrides=()) -> dict:
    """Execute the notebooks in order (stopping at the first failure) and write the summary."""
    import papermill as pm
    from tqdm.auto import tqdm

    plan = load_params(params, overrides)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [nb for nb in plan if not only or nb in only]
    timings, failure = {}, None
    for nb in tqdm(names, desc="notebooks", dynamic_ncols=True):
        p = dict(plan[nb], interactive=False, out_dir=str(out))
        if "root" in p:
            p["root"] = str(Path(p["root"]).resolve())
        t0 = time.time()
        try:
            pm.execute_notebook(str(notebooks_dir() / f"{nb}.ipynb"), str(out / f"{nb}.ipynb"), parameters=p,
                                cwd=str(notebooks_dir().parent), progress_bar=False)
        except pm.PapermillExecutionError as e:
            failure = dict(notebook=nb, error=f"{e.ename}: {e.evalue}")
            log.error("%s.ipynb failed: %s: %s", nb, e.ename, e.evalue)
            break
        finally:
            timings[nb] = round(time.time() - t0, 1)
    summary = write_summary(out, params, timings, failure, names)
    return summary


def _fmt_n(n) -> str:
    return f"{float(n):,.0f}"


def write_summary(out: Path, params: str, timings: dict, failure: dict | None, names=NOTEBOOKS) -> dict:
    """`summary.json` (every notebook's results and the bar checks) and a readable `summary.md`."""
    res = {nb: read_results(out, nb) if nb in names else {} for nb in NOTEBOOKS}
    sw, ft, cv, ex = (res[nb] for nb in NOTEBOOKS)
    lines = [f"# Study summary (`{params}` parameters)", ""]
    checks = {}
    if failure:
        lines += [f"**FAILED** in `{failure['notebook']}.ipynb`: {failure['error']}", ""]
    if sw:
        held = sw.get("held_out") or []
        max_re = max((abs(h["re"]) for h in held), default=None)
        checks = dict(sizes=sw["n_sizes"] >= BAR["min_sizes"], r2=sw["r2"] >= BAR["min_r2"],
                      held_out=max_re is not None and max_re <= BAR["max_abs_re"])
        lines += ["## Pretraining sweep", "",
                  f"{sw['family']} {sw['objective']}, {sw['n_sizes']} sizes, profile `{sw['profile']}`, "
                  f"runs in `{sw['root']}` (stop reasons: {sw.get('stop_reasons')}).", "",
                  "| N | best eval loss |", "|---|---|"]
        lines += [f"| {_fmt_n(n)} | {v:.4f} |" for n, v in sorted(sw["losses"].items(), key=lambda kv: float(kv[0]))]
        lines += ["", f"- power law: alpha = {sw['alpha']:.4f} (95% CI {sw['alpha_ci'][0]:.4f} .. "
                      f"{sw['alpha_ci'][1]:.4f}), R^2 = {sw['r2']:.4f}"]
        lines += [f"- held out N = {_fmt_n(h['n_params'])}: predicted {h['pred']:.4f}, measured {h['actual']:.4f}, "
                  f"RE = {100 * h['re']:+.2f}%" for h in held]
        lines += [f"- bar (>= {BAR['min_sizes']} sizes, R^2 >= {BAR['min_r2']}, held-out |RE| <= "
                  f"{100 * BAR['max_abs_re']:.0f}%): " + ", ".join(f"{k} {'ok' if v else 'NOT MET'}"
                                                             for k, v in checks.items()),
                  "", "![fit](sweep/fit.png) ![curves](sweep/curves.png)", ""]
    if ft:
        lines += ["## Finetuning", "", f"{ft['completed']}/{ft['n_runs']} runs completed.", ""]
        for t, law in ft["laws"].items():
            by = ", ".join(f"{_fmt_n(n)}: {v:.3f}" for n, v in
                           sorted(ft["metric_by_size"][t].items(), key=lambda kv: float(kv[0])))
            lines.append(f"- {t}: metric by N {by}; alpha = {law['alpha']:.3f} (95% CI {law['alpha_ci'][0]:.3f} .. "
                         f"{law['alpha_ci'][1]:.3f}), R^2 = {law['r2']:.3f}")
        if ft.get("tuning"):
            lines += ["", "Hyperparameter sensitivity (per-size tuning against one fixed recipe):"]
            lines += [f"- {name}: alpha = {law['alpha']:.3f} (95% CI {law['alpha_ci'][0]:.3f} .. "
                      f"{law['alpha_ci'][1]:.3f}), R^2 = {law['r2']:.3f}" for name, law in ft["tuning"].items()]
        figures = "![finetuning](finetune/fit.png)" + (" ![tuning](finetune/tuning.png)" if ft.get("tuning") else "")
        lines += ["", figures, ""]
    if cv:
        lines += ["## Convergence check", "",
                  f"{cv['n_runs']} runs; flagged: {', '.join(cv['flagged']) or 'none'}.",
                  "Patience each run needed (longest wait between improvements): "
                  + ", ".join(f"{k.split('-')[2]} {v:.0f}" for k, v in cv["patience_needed"].items()), "",
                  "![check](convergence/check.png) ![curves](convergence/curves.png)", ""]
    if ex:
        lines += ["## Extrapolation and model selection", "",
                  f"- fit on N = {', '.join(_fmt_n(n) for n in ex['fit_sizes'])}: MRE on held-out sizes "
                  f"{100 * ex['mre']:.2f}%"]
        if ex.get("selection"):
            lines += [f"- pretraining loss: {ex['selection']['verdict']}"]
            lines += [f"- {task} (1 - metric): {d['verdict']}" for task, d in (ex.get("downstream") or {}).items()]
            lines += ["", "![comparison](extrapolation/comparison.png)"]
        lines += [""]
    lines += ["## Files", ""] + [f"- [{nb}.ipynb]({nb}.ipynb) ({timings[nb]:.0f} s)" for nb in timings]
    lines += [f"- total {sum(timings.values()):.0f} s"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    summary = dict(params=params, timings_s=timings, failure=failure, bar=BAR, bar_checks=checks, results=res)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
