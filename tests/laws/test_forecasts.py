"""Forecasts registered before the run: written once, dated, scored when the run lands, never refitted."""

import json

import numpy as np
import pandas as pd
import pytest

from workbench.base.errors import FitError
from workbench.config import FitConfig
from workbench.laws.forecasts import forecast_lines, load_forecasts, make_forecast, save_forecast, score_forecast


def _ladder(seeds=3):
    rng = np.random.default_rng(0)
    return pd.DataFrame([dict(variant="a", n_params=n, seed=s, value=7 * n ** -0.05 * (1 + rng.normal(0, 0.002)),
                              run_id=f"r{n:g}-{s}") for n in (1e4, 3e4, 1e5, 3e5) for s in range(seeds)])


def test_a_forecast_is_written_once_and_scored_from_its_file(tmp_path):
    fc = make_forecast(_ladder(), "power", 1e6, fit=FitConfig(n_bootstrap=200), variant="a")
    assert fc["low"] < fc["pred"] < fc["high"] and fc["sizes"] == [1e4, 3e4, 1e5, 3e5] and len(fc["run_ids"]) == 12
    assert fc["pred"] == pytest.approx(7 * 1e6 ** -0.05, rel=0.01) and len(fc["table_sha256"]) == 64
    path = save_forecast(fc, tmp_path / "forecasts")
    again = save_forecast(fc, tmp_path / "forecasts")  # the same second: a name of its own, nothing replaced
    assert path.name.endswith("-power-N1000000.json") and again.name.endswith("-power-N1000000-2.json")
    again.unlink()
    (saved,) = load_forecasts(tmp_path / "forecasts")
    assert saved["file"] == path.name and saved["pred"] == fc["pred"]
    assert score_forecast(saved, fc["pred"]) == dict(actual=fc["pred"], error=0.0, inside=True)
    assert score_forecast(saved, 2 * fc["pred"])["inside"] is False
    # the score is read from the file alone (here edited by hand): the law is not fitted again
    path.write_text(json.dumps(dict(json.loads(path.read_text()), pred=1.0, low=0.9, high=1.1)))
    (line,) = forecast_lines(tmp_path, {1e6: 1.05}, "a")
    assert "measured 1.0500, error -4.76% (inside the interval)" in line
    (line,) = forecast_lines(tmp_path, {}, "a")
    assert line.endswith("its run has not landed yet")
    assert forecast_lines(tmp_path, {1e6: 1.05}, "another sweep") == []  # scored by its own variant's runs only


def test_a_law_of_tokens_needs_the_target_tokens():
    with pytest.raises(FitError, match="give the target as N,D"):
        make_forecast(_ladder().assign(tokens=1e8), "joint", 1e6)
    with pytest.raises(FitError, match="predicts from N alone: give the target as N, without tokens"):
        make_forecast(_ladder(), "power", 1e6, 2e9)


def test_a_registered_forecast_is_scored_when_its_run_lands(tmp_path, capsys):
    """smoke L1-2 trained; forecast L3; train L3: `workbench fit` and the summary's sweep section score it."""
    from workbench.config import load
    from workbench.front.cli import main
    from workbench.front.results import SweepResults
    from workbench.front.summary import _sweep
    from workbench.laws.report import law_report
    from workbench.runs.tables import law_table, load_runs

    sets = ["--root", str(tmp_path), "--set", "sweep.layers=[1, 2]", "--set", "exec.workers=1"]
    assert main(["sweep", "--profile", "smoke", *sets]) == 0
    assert main(["forecast", "--profile", "smoke", *sets, "--target", "331776"]) == 0
    assert main(["forecast", "--profile", "smoke", *sets, "--target", "98304"]) == 2  # trained already
    out = capsys.readouterr()
    assert "its run has not landed yet" in out.out and "is already trained" in out.err
    sets[3] = "sweep.layers=[1, 2, 3]"
    assert main(["sweep", "--profile", "smoke", *sets]) == 0
    assert main(["fit", "--profile", "smoke", *sets]) == 0
    scored = [line for line in capsys.readouterr().out.splitlines() if line.startswith("forecast of")]
    assert len(scored) == 1 and "N = 331,776" in scored[0] and "measured" in scored[0] and "error" in scored[0]
    runs = load_runs(tmp_path)
    study = load("smoke", ["sweep.layers=[1, 2, 3]"])
    sw = SweepResults(label="ar32/mlm", root=str(tmp_path), law=law_report(law_table(runs), study.fit),
                      losses={str(n): v for n, v in runs.groupby("n_params").best_eval_loss.mean().items()})
    lines, _ = _sweep(sw)
    assert main(["forecast", "--profile", "smoke", *sets, "--target", "786432", "--law", "joint"]) == 2
    assert any(line.startswith("- forecast of") and "measured" in line for line in lines)
