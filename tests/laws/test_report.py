"""Model-selection reports on synthetic laws: verdicts, trust, interpolation, bad inputs."""

import numpy as np
import pandas as pd
import pytest

from workbench.config import FitConfig
from workbench.laws.report import law_report
from workbench.laws.selection import selection_report

SIZES = 12 * np.arange(1, 6) * (32 * np.arange(1, 6)) ** 2  # AR32 L1-5


def _table(variant: str, beta: float, alpha: float, sizes=SIZES, seeds=3, noise=0.002, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [dict(variant=variant, n_params=float(n), seed=s,
                 value=float(np.exp(beta + alpha * np.log(n) + rng.normal(0, noise)))) for n in sizes for s in range(seeds)]
    return pd.DataFrame(rows)


def test_a_clear_winner_is_predicted_right_and_trusted():
    table = pd.concat([_table("mlm", 2.0, -0.02), _table("pmi", 2.03, -0.02, seed=1)])
    r = selection_report(table, ("mlm", "pmi"), FitConfig(n_bootstrap=300), n_held_out=1)
    assert r.winner == "mlm" and r.prediction_right and r.trustworthy
    assert r.fit_sizes == {"mlm": 4, "pmi": 4} and r.target_n == SIZES[-1]
    assert "prediction RIGHT; trustworthy" in r.verdict and r.p_a_beats_b > 0.95


def test_two_point_fits_are_never_called_trustworthy():
    table = pd.concat([_table("ar32", 2.0, -0.02), _table("ar64", 2.03, -0.02, seed=1)])
    r = selection_report(table, ("ar32", "ar64"), FitConfig(n_bootstrap=300), n_held_out=3)
    assert r.fit_sizes == {"ar32": 2, "ar64": 2} and r.trustworthy is False
    assert "NOT trustworthy: a law is fitted on 2 sizes" in r.verdict


def test_a_variant_without_a_run_at_the_target_is_interpolated():
    a = _table("ar32", 2.0, -0.02)
    b = _table("ar64", 2.05, -0.025, sizes=SIZES[[0, 1, 2, 4]], seed=2)  # no run at SIZES[3]
    r = selection_report(pd.concat([a, b]), ("ar32", "ar64"), FitConfig(n_bootstrap=300),
                         n_held_out={"ar32": 2, "ar64": 1}, target_n=float(SIZES[3]))
    assert r.actual_source["ar32"] == "measured" and "interpolated" in r.actual_source["ar64"]
    expect = np.exp(np.interp(np.log(SIZES[3]), np.log(SIZES[[2, 4]]),
                              np.log([b[b.n_params == SIZES[i]].value.mean() for i in (2, 4)])))
    assert r.actual["ar64"] == pytest.approx(expect, rel=1e-3)


def test_bad_inputs_are_clear():
    a, b = _table("mlm", 2.0, -0.02), _table("pmi", 2.03, -0.02, sizes=SIZES[:2])
    with pytest.raises(ValueError, match="'pmi' has 2 size"):
        selection_report(pd.concat([a, b]), ("mlm", "pmi"), n_held_out=1)
    with pytest.raises(ValueError, match="has no runs"):
        selection_report(a, ("mlm", "gpt"))
    with pytest.raises(ValueError, match="exactly two variants"):
        selection_report(a, ("mlm",))
    with pytest.raises(ValueError, match="fewer than 2 to fit"):
        law_report(a, FitConfig(n_held_out=4))


def test_reports_round_trip_through_json():
    import json

    from workbench.front.outputs import _jsonable
    from workbench.laws.report import LawReport
    from workbench.laws.selection import SelectionReport

    table = pd.concat([_table("mlm", 2.0, -0.02), _table("pmi", 2.03, -0.02, seed=1)])
    sel = selection_report(table, ("mlm", "pmi"), FitConfig(n_bootstrap=100))
    back = SelectionReport.from_dict(json.loads(json.dumps(_jsonable(sel))))
    assert back.verdict == sel.verdict and back.curves["mlm"].interval(sel.target_n) == sel.curves["mlm"].interval(sel.target_n)
    law = law_report(table[table.variant == "mlm"], FitConfig(n_bootstrap=100))
    again = LawReport.from_dict(json.loads(json.dumps(_jsonable(law))))
    assert again.describe() == law.describe() and again.held_out == law.held_out


def test_a_flat_task_report_survives_json_and_still_describes_itself():
    """Every size at the majority class (BoolQ for tiny encoders): R^2 is NaN, which JSON writes as
    null; the study summary reads it back and must still say what the fit is."""
    import json

    from workbench.front.outputs import _jsonable
    from workbench.laws.report import LawReport

    flat = pd.DataFrame({"n_params": np.repeat(SIZES[:4], 2), "seed": [0, 1] * 4, "value": 0.376,
                         "variant": "boolq"})
    law = law_report(flat, FitConfig(n_bootstrap=50), metric=True)
    assert np.isnan(law.r2) and not law.trusted
    again = LawReport.from_dict(json.loads(json.dumps(_jsonable(law))))
    assert np.isnan(again.r2) and again.describe() == law.describe() and "R^2 = nan" not in again.describe()
    assert "R^2 undefined: the values do not change with N, so there is no law to fit" in again.describe()


def test_two_sizes_are_not_judged_and_no_held_out_size_is_no_error():
    """Two sizes always fit a line (R^2 = 1): the report says so rather than 'below the gate', and the
    study summary says no size was held out rather than an MRE of 0% over none."""
    from workbench.front.results import ExtrapolationResults
    from workbench.front.summary import _extrapolation

    two = _table("mlm", 4.0, -0.05, sizes=SIZES[:2], noise=0.0)
    law = law_report(two, FitConfig(n_bootstrap=50, n_held_out=0))
    assert law.r2 == pytest.approx(1.0) and not law.trusted and law.mre is None
    assert "two sizes: a line through them always fits" in law.describe() and "below" not in law.describe()
    text = "\n".join(_extrapolation(ExtrapolationResults(law=law)))
    assert "no size held out" in text and "MRE" not in text
    noisy = _table("mlm", 4.0, -0.05, noise=0.05, seed=1)
    law = law_report(noisy, FitConfig(n_bootstrap=50, r2_gate=0.9999))
    assert not law.trusted and "below the R^2 >= 0.9999 gate" in law.describe() and law.mre is not None
    assert "MRE on held-out sizes" in "\n".join(_extrapolation(ExtrapolationResults(law=law)))
