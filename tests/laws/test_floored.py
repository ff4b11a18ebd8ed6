"""The power law above a known floor: exact on exact data, through the bootstrap, the report, the
backtest and the law table, and loud where the floor is missing, mixed or above a point."""

import numpy as np
import pandas as pd
import pytest

from workbench.base.errors import FitError
from workbench.config import FitConfig
from workbench.laws.floored import FlooredPowerLaw


def _ladder(e=3.3, a=12.0, alpha=0.3, noise=0.0, seeds=3, rng=0):
    g = np.random.default_rng(rng)
    n = np.repeat([3e3, 2.5e4, 8.3e4, 2e5], seeds)
    y = e + a * n ** -alpha * np.exp(g.normal(0, noise, len(n)))
    return pd.DataFrame(dict(variant="ar16/mlm", n_params=n, seed=np.tile(range(seeds), 4), value=y, floor=e))


def test_exact_on_exact_points_and_from_a_table():
    t = _ladder()
    law = FlooredPowerLaw().fit(t.n_params, t.value, floor=t.floor)
    assert law.params_ == pytest.approx(dict(E=3.3, A=12.0, alpha=0.3), rel=1e-9)
    assert law.predict(1e6) == pytest.approx(3.3 + 12.0 * 1e6 ** -0.3)
    assert FlooredPowerLaw().fit(t).params_ == pytest.approx(law.params_)
    # the saturating law, E free, cannot tell its floor from 4 noisy sizes as well as knowing it
    noisy = _ladder(noise=0.01, rng=1)
    assert FlooredPowerLaw().fit(noisy).alpha_ == pytest.approx(0.3, abs=0.03)


def test_missing_mixed_or_crossed_floors_are_refused():
    t = _ladder()
    with pytest.raises(FitError, match="needs the known floor"):
        FlooredPowerLaw().fit(t.n_params, t.value)
    with pytest.raises(FitError, match="different floors"):
        FlooredPowerLaw().fit(t.n_params, t.value, floor=t.floor + np.arange(len(t)) * 0.01)
    with pytest.raises(FitError, match="at or below the floor"):
        FlooredPowerLaw().fit(t.n_params, t.value, floor=t.value.min() + 0.01)
    with pytest.raises(FitError, match="one finite floor"):
        FlooredPowerLaw().fit(t.n_params, t.value, floor=np.full(len(t), np.nan))


def test_report_bootstrap_and_backtest():
    from workbench.laws.bootstrap import bootstrap_law
    from workbench.laws.report import law_report
    from workbench.laws.tables import backtest

    t = _ladder(noise=0.005, rng=2)
    boot = bootstrap_law(t, law="floored", B=200)
    assert (boot.params[:, 0] == 3.3).all()  # the floor is given, in every replicate
    lo, hi = boot.ci("alpha")
    assert lo < 0.3 < hi
    fit = FitConfig(law="floored", n_bootstrap=200, n_held_out=1)
    report = law_report(t, fit)
    assert report.law == "floored" and report.r2 > 0.99 and "unlimited" not in report.describe()
    assert abs(report.held_out[0].re) < 0.01  # L4 from L1-3 with two parameters
    bt = backtest(t, fit)
    assert (bt.law_are < 0.01).all()


def test_law_table_carries_the_floor(tmp_path):
    from workbench.runs.tables import law_table

    runs = pd.DataFrame(dict(run_id=["a", "b"], status="completed", family="ar16", **{"train.objective": "mlm"},
                             n_params=[3e3, 2.5e4], seed=0, best_eval_loss=[3.8, 3.6], eval_loss_floor=[3.3, 3.3]))
    assert law_table(runs).floor.tolist() == [3.3, 3.3]
    assert "floor" not in law_table(runs.assign(eval_loss_floor=None))  # real text: no known floor


def test_any_table_with_a_floor_column_fits_the_floored_law(tmp_path):
    """A table read from disk keeps its floor (under its own name or a common alias), so the floored
    law fits anyone's runs on a generated language, from Python and from the command line."""
    from workbench.front.cli import main
    from workbench.laws.report import law_report
    from workbench.laws.tables import read_table

    t = _ladder(noise=0.002, rng=3).rename(columns={"floor": "eval_loss_floor", "value": "loss"})
    path = tmp_path / "ladder.csv"
    t.to_csv(path, index=False)
    table = read_table(path)
    assert table.columns.tolist() == ["variant", "n_params", "seed", "value", "floor"]
    assert (table.floor == 3.3).all()
    report = law_report(table, FitConfig(law="floored", n_bootstrap=100, n_held_out=1))
    assert report.params["E"] == 3.3 and report.params["alpha"] == pytest.approx(0.3, abs=0.02)
    assert main(["fit", "--table", str(path), "--set", "fit.law=floored", "--set", "fit.n_bootstrap=50"]) == 0
    # duplicates averaged keep their floor; a floor column left empty (real text) is dropped, not refused
    twice = read_table(pd.concat([t, t]).drop(columns="seed"), dedupe="mean")
    assert len(twice) == 4 and (twice.floor == 3.3).all()
    empty = read_table(t.assign(eval_loss_floor=np.nan))
    assert "floor" not in empty and "holds no floor" in " ".join(empty.attrs["notes"])
    mixed = read_table(t.assign(eval_loss_floor=[3.3] * 6 + [np.nan] * 6))  # kept; the floored law refuses it
    with pytest.raises(FitError, match="one finite floor"):
        FlooredPowerLaw().fit(mixed)
    for bad in (-0.1, "low"):
        with pytest.raises(FitError, match=r"eval_loss_floor.*\(floor\)"):
            read_table(t.assign(eval_loss_floor=bad))


def test_a_floor_column_on_disk_missing_cells_bad_rows_and_repeats(tmp_path):
    """Missing floors as a CSV writes them stay missing, an error names the table's own row, and
    repeated points with different floors are not averaged into one."""
    from workbench.laws.tables import read_table

    t = _ladder().rename(columns={"floor": "loss_floor"})
    t["loss_floor"] = t.loss_floor.astype(object)
    t.loc[[0, 1, 2], "loss_floor"] = ["", "NaN", "n/a"]
    path = tmp_path / "partly.csv"
    t.to_csv(path, index=False)
    table = read_table(path)
    assert table.floor.isna().tolist() == [True] * 3 + [False] * 9 and (table.floor[3:] == 3.3).all()
    assert any("loss_floor" in n and "9 of 12" in n for n in table.attrs["notes"])
    t.loc[7, "loss_floor"] = "low"
    t.to_csv(path, index=False)
    with pytest.raises(FitError, match=r"'loss_floor' \(floor\): row 8 is 'low'"):
        read_table(path)
    mapped = read_table(_ladder().rename(columns={"floor": "H"}), columns={"floor": "H"})
    assert (mapped.floor == 3.3).all()
    twice = pd.concat([_ladder(), _ladder().assign(floor=2.0)]).drop(columns="seed")
    with pytest.raises(FitError, match="different floors"):
        read_table(twice, dedupe="mean")


def test_the_backtest_ranks_laws_on_every_variant_when_only_some_know_their_floor(tmp_path, capsys):
    """A table of a generated language's ladder and a real-text ladder: the floored law is backtested
    on the variant with a floor, and the laws that score both are ranked on both."""
    from workbench.front.cli import main

    hmm = _ladder(noise=0.002, rng=4).assign(variant="hmm")
    text = _ladder(e=5.0, noise=0.002, rng=5).assign(variant="text", floor=np.nan)
    path = tmp_path / "two.csv"
    pd.concat([hmm, text]).to_csv(path, index=False)
    assert main(["backtest", "--table", str(path)]) == 0
    out = capsys.readouterr().out
    assert "floored law:" in out and "not ranked against the laws that score every variant" in out
    assert "compared on the" not in out  # no law's comparison shrank to the one variant with a floor
    assert "best law: floored" not in out
