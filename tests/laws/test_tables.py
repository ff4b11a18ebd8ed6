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
    (lambda d: pd.concat([d, d.iloc[[1]]]), None, r"rows \[2, 16\] are the same point twice"),
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
    assert main(["fit", "--table", str(EXAMPLE), "--profile", "smoke", "--set", "fit.n_bootstrap=60",
                 "--law", "power"]) == 0
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


# ---------------------------------------------------------------- tables as people publish them


def test_published_tables_read_as_written(tmp_path):
    """OPT-style: gzipped, sizes as `125m` / `1.3B`, a `model` column naming runs, `tokens_seen` and
    `perf` as aliases; the run column makes each model's rows its checkpoints, said in a note."""
    rows = [dict(model=m, model_size=size, tokens_seen=t, perf=v)
            for m, size, base in (("opt-125m", "125m", 3.4), ("opt-350m", "350M", 3.1), ("opt-1.3b", "1.3b", 2.8))
            for t, v in ((3e9, base), (6e9, base - 0.2), (9e9, base - 0.3))]
    pd.DataFrame(rows).to_csv(tmp_path / "opt.csv.gz", index=False)
    t = read_table(tmp_path / "opt.csv.gz", {"run": "model"})
    assert sorted(t.n_params.unique()) == [125e6, 350e6, 1.3e9] and (t.groupby("n_params").step.max() == 3).all()
    assert t.attrs["notes"] == ["the value is read from 'perf' as a loss (lower is better); for a score, fit 1 - score",
                                "9 rows read as checkpoints of 3 runs (the run column), in the order of their "
                                "tokens: up to 3 per run"]
    assert final_points(t).value.tolist() == pytest.approx([3.1, 2.8, 2.5])


def test_a_bad_size_string_names_row_and_value():
    with pytest.raises(FitError, match=r"column 'N' \(n_params\): row 2 is '2.8X', not a number or a size such as"):
        read_table(pd.DataFrame(dict(N=["125m", "2.8X"], loss=[3.0, 2.9])))


def test_checkpoints_without_a_step_or_run_column_are_refused_with_the_ways_out():
    """142 OPT checkpoints were once read as 142 runs; now the table must say which they are."""
    df = pd.DataFrame(dict(N=[1e6, 1e6, 1e7, 1e7], D=[1e8, 2e8, 1e8, 2e8], loss=[3.0, 2.9, 2.6, 2.5]))
    with pytest.raises(FitError, match=r"has 2 token counts and the table no step or run column: checkpoints of one "
                                       r"run, or runs of their own\? Checkpoints: --columns step=<tokens column>"):
        read_table(df)
    as_checkpoints = read_table(df, {"step": "D"})
    assert final_points(as_checkpoints).value.tolist() == [2.9, 2.5]
    as_runs = read_table(df.assign(seed=[0, 1, 0, 1]))
    assert len(final_points(as_runs)) == 4


def test_repeated_points_are_averaged_only_when_asked():
    df = pd.DataFrame(dict(N=[1e6, 1e6, 1e7, 1e8], loss=[3.0, 3.2, 2.6, 2.3]))
    with pytest.raises(FitError, match=r"average them \(--dedupe mean\)"):
        read_table(df)
    t = read_table(df, dedupe="mean")
    assert t.value.tolist() == pytest.approx([3.1, 2.6, 2.3])
    assert t.attrs["notes"] == ["2 repeated points (equal variant, n_params, seed) averaged into 1 (dedupe=mean)"]


def test_hyperparameter_columns_select_the_best_setting_per_size():
    """Runs at equal N with different LRs are settings, not seeds: per size the best setting is
    fitted (its seeds stay seeds), and the note says which and out of how many."""
    rows = [dict(N=n, lr=lr, seed=s, loss=base + {1e-3: 0.0, 3e-3: d3}[lr] + 0.01 * s)
            for n, base, d3 in ((1e6, 3.0, 0.1), (1e7, 2.6, -0.05), (1e8, 2.3, -0.02)) for lr in (1e-3, 3e-3)
            for s in (0, 1)]
    with pytest.raises(FitError, match="--hparams lr,batch"):
        read_table(pd.DataFrame(rows).drop(columns="lr"))
    t = read_table(pd.DataFrame(rows), hparams=["lr"])
    assert t.groupby("n_params").seed.nunique().tolist() == [2, 2, 2]
    assert t.groupby("n_params").value.min().tolist() == pytest.approx([3.0, 2.55, 2.28])
    assert t.attrs["notes"] == ["hyperparameters lr: the best setting per size, all N = 1e+06: lr=0.001 of 2 settings; "
                                "all N = 1e+07: lr=0.003 of 2 settings; all N = 1e+08: lr=0.003 of 2 settings"]


def test_the_lower_envelope_takes_the_lowest_setting_per_size_and_tokens():
    df = pd.DataFrame(dict(N=[1e6] * 4, D=[1e8, 1e8, 2e8, 2e8], lr=[1, 2, 1, 2], seed=[0, 0, 1, 1],
                           loss=[3.0, 2.9, 2.7, 2.8]))
    t = read_table(df, hparams="lr", select="envelope")
    assert t.value.tolist() == [2.9, 2.7] and "lower envelope" in t.attrs["notes"][0]


def test_the_command_line_takes_hparams_and_defaults_to_the_joint_law_with_tokens(tmp_path, capsys):
    rows = [dict(N=n, D=d, lr=lr, loss=(1.7 + 400 * n ** -0.34 + 410 * d ** -0.28) * (1 + 0.05 * (lr == 3)),
                 run=f"{n:g}-{d:g}-{lr}")
            for n in (1e5, 1e6, 1e7, 1e8) for d in (1e8, 1e9, 1e10) for lr in (1, 3)]
    pd.DataFrame(rows).to_csv(tmp_path / "grid.csv", index=False)
    assert main(["fit", "--profile", "smoke", "--set", "fit.n_bootstrap=20", "--table", str(tmp_path / "grid.csv"),
                 "--hparams", "lr", "--select", "envelope"]) == 0
    out = capsys.readouterr().out
    assert "note: hyperparameters lr: lower envelope" in out and out.count("law: joint, L(N, D)") == 1
    assert "best law: joint, mean ARE 0.00% against the best naive baseline's" in out  # every law backtested


# ---------------------------------------------------------------- backtest protocols


def _exact_ladder(alpha=-0.1, sizes=(1e5, 1e6, 1e7, 1e8), steps=10):
    """Two families whose every checkpoint sits on a power law of N: the law's ARE is 0 under any
    protocol, and each naive baseline's is known: (N_fit / N_target)^alpha - 1."""
    return pd.DataFrame([dict(variant=v, n_params=n, tokens=1e6 * s, step=s, seed=0, value=a * n ** alpha)
                         for v, a in (("a", 5.0), ("b", 6.0)) for n in sizes for s in range(1, steps + 1)])


@pytest.mark.parametrize("protocol, best_small, last_point, points", [
    ("hitchhiker", 10 ** 0.1 - 1, 10 ** 0.1 - 1, 4),  # the last 30% of the target's tokens: checkpoints 7-10
    ("largest", 10 ** 0.1 - 1, 10 ** 0.1 - 1, 1),
    ("paper", ((10 ** 0.1 - 1) + (100 ** 0.1 - 1)) / 2, ((10 ** 0.1 - 1) + (100 ** 0.1 - 1)) / 2, 2),
])
def test_protocols_reproduce_the_known_are(protocol, best_small, last_point, points):
    from workbench.laws.tables import mean_over_variants

    bt = backtest(_exact_ladder(), FitConfig(), protocol)
    m = mean_over_variants(bt)
    assert m["n_variants"] == 2 and m["law_are"] == pytest.approx(0, abs=1e-9)
    assert m["best_small_are"] == pytest.approx(best_small) and m["last_point_are"] == pytest.approx(last_point)
    assert (bt.protocol == protocol).all() and bt.n_target_points.tolist() == [points] * 2


def test_a_protocol_is_data():
    from workbench.laws.protocols import Protocol

    bt = backtest(_exact_ladder(), FitConfig(), Protocol(train_models=2, train_fraction=0.5, target="final"))
    assert bt.law_are.max() == pytest.approx(0, abs=1e-9)
    assert bt.last_point_are.tolist() == pytest.approx([100 ** 0.1 - 1] * 2)  # the 2nd smallest carried over
    with pytest.raises(FitError, match="protocol custom: target must be one of best, final, last_fraction"):
        Protocol(target="median")
    with pytest.raises(FitError, match="unknown backtest protocol 'chinchilla'"):
        backtest(_exact_ladder(), FitConfig(), "chinchilla")


def test_the_target_is_the_protocols(tmp_path):
    """On a family still improving over tokens, the best checkpoint and the last 30% differ: the
    Hitchhiker target averages the last 30% of the target run's checkpoints."""
    df = pd.DataFrame([dict(variant="a", n_params=n, tokens=1e6 * s, step=s, seed=0,
                            value=5 * n ** -0.1 + 2 / s) for n in (1e5, 1e6, 1e7) for s in range(1, 11)])
    hh = backtest(df, FitConfig(), "hitchhiker").iloc[0]
    best = backtest(df, FitConfig(), "largest").iloc[0]
    last = df[(df.n_params == 1e7) & (df.step >= 7)].value.mean()
    assert hh.actual == pytest.approx(last) and best.actual == pytest.approx(df[df.n_params == 1e7].value.min())


def test_workbench_backtest_prints_every_law_and_the_winner(tmp_path, capsys):
    _exact_ladder().to_csv(tmp_path / "ladder.csv.gz", index=False)
    assert main(["backtest", "--profile", "smoke", "--table", str(tmp_path / "ladder.csv.gz"),
                 "--protocol", "hitchhiker"]) == 0
    out = capsys.readouterr().out
    assert "power law:" in out and "joint law:" in out and "saturating law:" in out
    assert "mean over 2 variant(s): ARE law 0.00%, best smaller model 25.89%, largest fitted size 25.89%" in out
    assert "mean ARE 0.00% against the best naive baseline's 25.89%" in out and "naive baseline is better" not in out


def test_the_envelope_compares_settings_whatever_their_seeds_and_grids():
    """Two LRs with their own seeds and token grids: at each (N, D) the setting with the lower seed
    mean wins, and all its seeds are kept."""
    rows = [dict(N=1e6, D=d, step=i + 1, lr=1, seed=s, loss=3.0 - 0.1 * i + 0.01 * s)
            for i, d in enumerate((1e8, 2e8, 3e8)) for s in (0, 1)]
    rows += [dict(N=1e6, D=d, step=i + 2, lr=2, seed=s, loss=2.95 - 0.2 * i + 0.01 * (s - 5))
             for i, d in enumerate((2e8, 3e8)) for s in (5, 6)]
    t = read_table(pd.DataFrame(rows), hparams="lr", select="envelope")
    assert t.groupby("tokens").value.mean().tolist() == pytest.approx([3.005, 2.905, 2.755])  # lr 1, 1, then 2
    assert t.groupby("tokens").seed.apply(sorted).tolist() == [[0, 1], [0, 1], [5, 6]]


def test_a_run_column_and_seeds_reused_across_settings_are_read():
    rows = [dict(run=f"lr{lr}-s{s}", N=n, lr=lr, seed=s, loss=3 - 0.1 * np.log10(n) + 0.05 * lr + 0.01 * s)
            for n in (1e6, 1e7) for lr in (1, 2) for s in (0, 1)]
    t = read_table(pd.DataFrame(rows), hparams="lr")
    assert len(t) == 4 and "lr=1 of 2 settings" in t.attrs["notes"][0]


def test_sizes_with_units_are_exact():
    t = read_table(pd.DataFrame(dict(N=["4.1B", "4100000000", "125m"], seed=[0, 1, 0], loss=[2.0, 2.1, 3.0])))
    assert sorted(t.n_params.unique()) == [125e6, 4.1e9]
