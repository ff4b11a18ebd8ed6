"""Laws from any table: reading, checking, backtests, and the same numbers from a file and the store."""


import numpy as np
import pandas as pd
import pytest
from helpers import EXAMPLE_LADDER

from workbench.base.errors import FitError
from workbench.config import FitConfig
from workbench.front.cli import main
from workbench.laws.report import law_report
from workbench.laws.tables import backtest, final_points, read_table, selection_backtest

EXAMPLE = EXAMPLE_LADDER


def _ladder(alpha=-0.08, beta=2.5, sizes=(1e4, 3e4, 1e5, 3e5, 1e6), seeds=3, variant="a", rng=0, sd=0.01):
    rng = np.random.default_rng(rng)
    return pd.DataFrame([dict(family=variant, N=n, D=20 * n, seed=s,
                              loss=np.exp(beta + alpha * np.log(n) + rng.normal(0, sd))) for n in sizes
                         for s in range(seeds)])


def test_aliases_and_a_column_map_give_the_same_table(tmp_path):
    df = _ladder()
    auto = read_table(df)
    assert list(auto.columns) == ["variant", "n_params", "tokens", "seed", "value"]
    mapped = read_table(df.rename(columns={"loss": "my loss", "N": "size"}), {"value": "my loss", "n_params": "size"})
    pd.testing.assert_frame_equal(auto, mapped)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(auto, read_table(tmp_path / "t.csv"))
    pd.testing.assert_frame_equal(auto, read_table(tmp_path / "t.parquet"))


@pytest.mark.parametrize("change, columns, says", [
    (lambda d: d.drop(columns="N"), None, "no n_params column"),
    (lambda d: d.assign(params=d.N), None, r"ambiguous n_params: columns \['N', 'params'\]"),
    (lambda d: d.assign(loss=d.loss.astype(object).where(d.index != 4, "n/a")), None,
     r"column 'loss' \(value\): row 5 is 'n/a', not a number"),
    (lambda d: d.assign(N=d.N.where(d.index != 2, -5.0)), None, r"column 'N' \(n_params\): row 3 is -5.0; it must be > 0"),
    (lambda d: pd.concat([d, d.iloc[[1]]]), None, r"rows \[2, 16\] are the same run twice"),
    (lambda d: d, {"value": "nope"}, "the table has no column 'nope'"),
    (lambda d: d, {"size": "N"}, r"column map names \['size'\]"),
    (lambda d: d.assign(seed=d.seed + 0.5), None, "must hold whole numbers"),
])
def test_bad_tables_are_one_line_errors(change, columns, says):
    with pytest.raises(FitError, match=says):
        read_table(change(_ladder()), columns)


def test_backtest_reports_the_law_against_naive_baselines_and_the_seed_floor():
    table = read_table(pd.concat([_ladder(variant="a", rng=1), _ladder(alpha=-0.12, beta=2.9, variant="b", rng=2)]))
    bt = backtest(table, FitConfig())
    assert list(bt.variant) == ["a", "b"] and (bt.target_n == 1e6).all()
    assert (bt.law_are < bt.best_small_are).all() and bt.law_beats_baselines.all()
    assert ((bt.seed_spread > 0.003) & (bt.seed_spread < 0.03)).all()  # the 1% noise the ladder was drawn with
    sel = selection_backtest(table, FitConfig())
    assert sel["n_pairs"] == 1 and sel["law_accuracy"] == 1.0


def test_crossing_laws_are_where_the_law_beats_ranking_by_the_largest_small_size():
    sizes = np.geomspace(1e4, 1e7, 6)
    cross = sizes[-2] * 1.5  # the lines cross between the last fitted size and the target
    a = _ladder(alpha=-0.05, beta=2.0, sizes=sizes, variant="flat", rng=3, sd=0.002)
    b = _ladder(alpha=-0.10, beta=2.0 + 0.05 * np.log(cross), sizes=sizes, variant="steep", rng=4, sd=0.002)
    sel = selection_backtest(read_table(pd.concat([a, b])), FitConfig())
    assert sel["law_accuracy"] == 1.0 and sel["largest_small_accuracy"] == 0.0


def test_a_run_of_checkpoints_is_fitted_at_its_best_one():
    df = pd.DataFrame(dict(N=[1e4] * 3 + [1e5] * 3, step=[100, 200, 300] * 2, loss=[3.0, 2.5, 2.6, 2.8, 2.2, 2.3]))
    best = final_points(read_table(df))
    assert list(best.value) == [2.5, 2.2] and list(best.step) == [200, 200]


def test_checkpoints_drop_the_start_of_each_run():
    from workbench.laws.tables import checkpoints

    df = read_table(pd.DataFrame(dict(N=[1e4] * 11, step=np.arange(0, 1100, 100), loss=np.linspace(5, 3, 11))))
    kept = checkpoints(df, drop_fraction=0.25)
    assert kept.step.min() == 300 and len(kept) == 8
    with pytest.raises(FitError, match="drop_fraction"):
        checkpoints(df, 1.0)


def test_the_example_table_fits_in_python_and_on_the_command_line(capsys):
    from workbench.config import load

    fit = load("smoke", ["fit.n_bootstrap=60"]).fit
    table = final_points(read_table(EXAMPLE))
    assert table.variant.nunique() >= 1 and table.n_params.nunique() >= 3
    assert main(["fit", "--table", str(EXAMPLE), "--profile", "smoke", "--set", "fit.n_bootstrap=60"]) == 0
    out = capsys.readouterr().out
    for variant, rows in table.groupby("variant"):
        assert f"{variant}: {law_report(rows, fit).describe()}" in out
        assert f"{variant}: joint law L(N, D)" in out and "compute-optimal at C" in out
    assert "law_are" in out and "best_small_are" in out


def test_the_store_exported_to_csv_reads_back_to_the_same_law(tmp_path, capsys):
    import dataclasses

    from workbench.config import load
    from workbench.execute.sweep import run_sweep
    from workbench.runs.tables import law_table, load_runs

    study = load("smoke", ["exec.workers=1"])
    run_sweep(study.sweep, tmp_path / "runs", study.exec)
    store = law_table(load_runs(tmp_path / "runs"))
    store[["variant", "n_params", "seed", "value"]].to_csv(tmp_path / "runs.csv", index=False)
    again = read_table(tmp_path / "runs.csv")
    a, b = law_report(store, study.fit), law_report(again, study.fit)
    assert a.describe() == b.describe() and a.params_ci == b.params_ci
    assert main(["fit", "--table", str(tmp_path / "runs.csv"), "--profile", "smoke"]) == 0
    # the joint law over the store: each run's checkpoints, the same numbers on the command line
    from workbench.runs.tables import fitting_rows

    rows = fitting_rows(store, tmp_path / "runs", "joint")
    assert rows.run_id.nunique() == len(store) and len(rows) > len(store) and "step" in rows
    joint = dataclasses.replace(study.fit, law="joint", n_bootstrap=30)
    capsys.readouterr()
    assert main(["fit", "--profile", "smoke", "--root", str(tmp_path / "runs"), "--law", "joint",
                 "--set", "fit.n_bootstrap=30"]) == 0
    assert law_report(rows, joint).describe() in capsys.readouterr().out


@pytest.mark.parametrize("law", ["power", "joint"])
def test_the_extrapolation_notebook_fits_a_table_with_the_same_numbers(tmp_path, law):
    import json

    import papermill as pm

    from workbench.config import load
    from workbench.front.study import notebooks_dir
    from workbench.laws.tables import law_points

    overrides = ["fit.n_bootstrap=40"] if law == "joint" else []
    table = law_points(read_table(EXAMPLE), law)  # the joint law: checkpoints
    variant = sorted(table.variant.unique())[0]
    pm.execute_notebook(str(notebooks_dir() / "extrapolation.ipynb"), str(tmp_path / "ex.ipynb"),
                        parameters=dict(profile="smoke", table_file=str(EXAMPLE), table_variant=variant, law=law,
                                        overrides=overrides, interactive=False, out_dir=str(tmp_path)),
                        cwd=str(notebooks_dir().parent), progress_bar=False)
    res = json.loads((tmp_path / "extrapolation" / "results.json").read_text())
    want = law_report(table[table.variant == variant].reset_index(drop=True), load("smoke", overrides, {"fit.law": law}).fit)
    assert res["law"]["law"] == law and res["law"]["n_points"] == want.n_points
    assert res["label"] == variant and res["law"]["params"] == pytest.approx(want.params)
    assert res["law"]["params_ci"]["alpha"] == pytest.approx(list(want.params_ci["alpha"]))
    assert res["stop_reasons"] is None and res["backtest"][0]["variant"] == variant
    assert (tmp_path / "extrapolation" / "backtest.csv").exists()


def test_the_selection_notebook_compares_two_variants_of_a_table(tmp_path):
    import json

    import papermill as pm

    from workbench.front.study import notebooks_dir

    sizes = np.geomspace(1e4, 1e7, 5)
    df = pd.concat([_ladder(alpha=-0.05, beta=2.0, sizes=sizes, variant="flat", rng=3, sd=0.002),
                    _ladder(alpha=-0.10, beta=2.0 + 0.05 * np.log(sizes[-2] * 1.5), sizes=sizes, variant="steep",
                            rng=4, sd=0.002)])
    df.to_csv(tmp_path / "two.csv", index=False)
    pm.execute_notebook(str(notebooks_dir() / "selection.ipynb"), str(tmp_path / "sel.ipynb"),
                        parameters=dict(profile="smoke", table_file=str(tmp_path / "two.csv"),
                                        table_variants=["flat", "steep"], interactive=False, out_dir=str(tmp_path)),
                        cwd=str(notebooks_dir().parent), progress_bar=False)
    res = json.loads((tmp_path / "selection" / "results.json").read_text())
    assert res["selection"]["variants"] == ["flat", "steep"] and res["selection"]["winner"] == "steep"
    assert res["decision_backtest"]["n_pairs"] == 1 and res["decision_backtest"]["law_accuracy"] == 1.0
    assert res["stop_reasons"] is None and not res["downstream"]


def _four(**extra):
    return pd.DataFrame(dict(n_params=[1e4, 3e4, 1e5, 3e5], value=[6.0, 5.5, 5.1, 4.8], **extra))


@pytest.mark.parametrize("make, columns, words", [
    (lambda: pd.concat([_four(), _four()[["value"]]], axis=1), None,
     "repeated column name(s): 'value'"),
    (lambda: _four(), ["n_params", "value"], "the column map must be {schema name: column name}"),
    (lambda: _four(), {"n_params": ["n_params"], "value": "value"}, "give one column name as text"),
    (lambda: _four(), {"n_params": "n_params", "value": "n_params"}, "is given as both n_params and value"),
    (lambda: _four(when=pd.date_range("2024-01-01", periods=4)), {"tokens": "when"},
     "holds dates, not numbers"),
    (lambda: _four(took=pd.to_timedelta([1, 2, 3, 4], unit="h")), {"tokens": "took"},
     "holds durations, not numbers"),
    (lambda: _four().assign(value=[6.0 + 1j, 5.5, 5.1, 4.8]), None, "holds complex numbers, not numbers"),
    (lambda: _four().assign(variant=["a", "", "a", "a"]), None, "(variant): row 2 is empty"),
    (lambda: _four().assign(variant=["a", None, "a", "a"]), None, "(variant): row 2 is empty"),
    (lambda: _four().iloc[:0], None, "the table has no rows"),
    (lambda: _four().assign(n_params=[2**53 + 1, 2**53, 10**5, 10**6]), None, "above 2^53"),
    (lambda: _four().assign(value=[6.0, 1e308, 5.1, 4.8]), None, "outside 1e-100 .. 1e+100"),
    (lambda: _four().rename(columns={"n_params": "N", "value": "loss"}), {"value": "N"},
     "column 'N' would be both n_params and value"),  # a map and an alias landing on one column
])
def test_a_table_the_fits_cannot_use_is_one_line(make, columns, words):
    """The campaign's table inputs through the Python API: each one `FitError` line, nothing cast."""
    with pytest.raises(FitError) as e:
        read_table(make(), columns)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_an_empty_table_is_said_so_by_the_fits():
    with pytest.raises(FitError, match="the table has no rows"):
        law_report(pd.DataFrame(columns=["n_params", "value"]), FitConfig())


def test_a_variant_may_be_called_na(tmp_path):
    """Only an empty cell is missing: a CSV's variant `NA` (or `None`) is a name, not a hole."""
    (tmp_path / "t.csv").write_text("variant,n_params,value\nNA,1e4,6\nNA,3e4,5.5\nNone,1e4,6.1\nNone,3e4,5.6\n")
    assert sorted(read_table(tmp_path / "t.csv").variant.unique()) == ["NA", "None"]


def test_an_empty_run_table_is_one_line():
    from workbench.runs.tables import law_table

    with pytest.raises(FitError, match="no finished runs to fit"):
        law_table(pd.DataFrame())
