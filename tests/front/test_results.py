"""Typed notebook results: written by a notebook through `Outputs.results`, read back by the summary
with the same types."""

import numpy as np
import pandas as pd

from workbench.config import FitConfig
from workbench.front.outputs import Outputs, read_results
from workbench.front.results import RESULTS, FinetuneResults, SweepResults
from workbench.laws.report import LawReport, law_report


def _report() -> LawReport:
    n = np.repeat([1e4, 1e5, 1e6, 1e7], 2)
    y = np.exp(3.0 - 0.05 * np.log(n)) * (1 + np.random.default_rng(0).normal(0, 0.002, len(n)))
    return law_report(pd.DataFrame(dict(n_params=n, value=y, seed=np.tile([0, 1], 4))), FitConfig(n_bootstrap=50))


def test_results_round_trip_with_their_reports_typed(tmp_path):
    report = _report()
    out = Outputs(tmp_path, "sweep")
    out.results(SweepResults(label="ar32/mlm", layers=[1, 2], root="runs", law=report, losses={"10000": 5.5},
                             stop_reasons={"converged": 8}))
    back = SweepResults.from_dict(read_results(tmp_path, "sweep"))
    assert isinstance(back.law, LawReport) and back.law.describe() == report.describe()
    assert back.label == "ar32/mlm" and back.losses == {"10000": 5.5} and back.stop_reasons == {"converged": 8}


def test_reports_by_name_unknown_keys_and_notebooks_that_did_not_run():
    report = _report()
    d = dict(tasks=["trec"], laws={"trec": report.to_dict()}, something_older=1, unavailable={"boolq": "why"})
    ft = FinetuneResults.from_dict(d)
    assert isinstance(ft.laws["trec"], LawReport) and ft.unavailable == {"boolq": "why"} and ft.tuning is None
    assert all(RESULTS[nb].from_dict({}) is None for nb in RESULTS)
