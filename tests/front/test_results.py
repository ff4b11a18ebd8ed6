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


def test_the_summary_says_when_a_flagged_run_passed_its_certificate():
    """Above the law of the other sizes yet certified: the summary says the two checks disagree and
    that re-training with 3x the patience settles it; an uncertified or unflagged run gets no line."""
    from workbench.front.results import ConvergenceResults
    from workbench.front.summary import _convergence

    line = ("certified: continuing as with 3x its patience (steps 4900..5900, where that run stops: no new best within "
            "4,500 steps of its best) lowered the best eval loss by 0.38% (< 1%)")
    verdicts = [dict(name="ar16-L3", converged=True, convergence="early-stopped; " + line, certificate=line),
                dict(name="ar16-L2", converged=True, convergence="early-stopped", certificate="")]
    names = {"run-3": "ar16-L3", "run-2": "ar16-L2"}
    cv = ConvergenceResults(run_ids=list(names), names=names, n_runs=2, flagged=["run-3"], verdicts=verdicts,
                            stop_reasons={"converged": 2})
    text = "\n".join(_convergence(cv))
    assert "**ar16-L3: above the law of the other sizes, yet certified.**" in text
    assert "a plateau longer than 3x the patience" in text and "Re-training it with more patience" in text
    for flagged in (["run-2"], []):  # flagged without a certificate, or nothing flagged
        text = "\n".join(_convergence(ConvergenceResults(run_ids=list(names), names=names, n_runs=2, flagged=flagged,
                                                         verdicts=verdicts, stop_reasons={"converged": 2})))
        assert "yet certified" not in text


def test_the_summary_gives_a_forecast_s_steps_as_a_whole_number_and_skips_a_missing_one():
    from workbench.front.results import ConvergenceResults
    from workbench.front.summary import _convergence

    forecast = dict(forecast_loss=5.95, forecast_low=5.78, forecast_high=6.01)
    verdicts = [dict(name="ar16-L2", converged=True, convergence="early-stopped", forecast_steps_needed=5739.0,
                     **forecast),
                dict(name="ar16-L3", converged=True, convergence="early-stopped", forecast_steps_needed=float("nan"),
                     **forecast)]
    text = "\n".join(_convergence(ConvergenceResults(run_ids=["a", "b"], names={}, n_runs=2, flagged=[],
                                                     verdicts=verdicts, stop_reasons={"converged": 2})))
    assert "5,739 more steps to within 0.5%" in text and "5,739.0" not in text
    assert text.count("more steps to within") == 1


def test_the_summary_gives_each_size_s_loss_above_a_known_floor():
    from workbench.front.summary import _sweep

    n = np.repeat([1e4, 1e5, 1e6], 2)
    table = pd.DataFrame(dict(n_params=n, value=1.5 + 4 * n ** -0.2, seed=np.tile([0, 1], 3), floor=1.5))
    report = law_report(table, FitConfig(law="floored", n_bootstrap=50, n_held_out=0))
    losses = {"10000": 1.5 + 4 * 1e4 ** -0.2, "1000000": 1.5 + 4 * 1e6 ** -0.2}
    lines, _ = _sweep(SweepResults(label="ar16/mlm", law=report, losses=losses, stop_reasons={"converged": 6}))
    line = next(x for x in lines if "known floor" in x)
    assert "E = 1.5000" in line and f"10,000: {4 * 1e4 ** -0.2:.4f}" in line and "1,000,000: 0.2524" in line
    lines, _ = _sweep(SweepResults(label="ar16/mlm", law=_report(), losses=losses, stop_reasons={"converged": 6}))
    assert not any("known floor" in x for x in lines)  # real text: no floor to state


def test_the_summary_counts_verdicts_in_words_and_names_flagged_runs():
    from workbench.front.closing import counts_text
    from workbench.front.results import ConvergenceResults
    from workbench.front.summary import _convergence

    assert counts_text({"converged": 2, "certificate": 2}) == "2 converged, 2 NOT converged (failed the certificate)"
    assert counts_text({"converged": 4}) == "4 converged"
    assert counts_text({"horizon": 3, "diverged": 1}) == "4 NOT converged (3 stopped at the horizon, 1 diverged)"
    assert counts_text({"early_stopped": 2}) == "2 converged" and counts_text({}) == "no runs"
    names = {"pretrain-ar16-L1-mlm-s0-958e": "ar16-L1"}
    forecast = dict(forecast_loss=5.46, forecast_low=5.42, forecast_high=5.80)
    verdicts = [dict(name="ar16-L1", converged=False, convergence="NOT converged: ...", steps=13_850,
                     forecast_steps_needed=73_317_877, **forecast),
                dict(name="ar16-L2", converged=True, convergence="early-stopped", steps=15_950,
                     forecast_steps_needed=5_739, **forecast)]
    text = "\n".join(_convergence(ConvergenceResults(run_ids=list(names), names=names, n_runs=2, flagged=list(names),
                                                     verdicts=verdicts, stop_reasons={"converged": 1, "certificate": 1})))
    assert "2 runs (1 converged, 1 NOT converged (failed the certificate)); flagged: ar16-L1." in text  # no flags kept
    assert "{" not in text and "958e" not in text
    assert "73,317,877 more steps to within 0.5% (5,294x the 13,850 it trained: far past what its curve can tell)" in text
    assert "5,739 more steps to within 0.5%\n" in text + "\n" and text.count("far past") == 1


def test_a_run_below_the_law_of_the_others_is_not_called_above_it():
    """The check flags runs on both sides; only one above the law is an under-training suspect whose
    certificate disagrees (measured: a certified L1 below the law was reported 'above ..., yet certified')."""
    from workbench.front.results import ConvergenceResults
    from workbench.front.summary import _convergence

    line = "certified: continuing as with 3x its patience ... lowered the best eval loss by 0.89% (< 1%)"
    verdicts = [dict(name="ar16-L1", converged=True, convergence="early-stopped; " + line, certificate=line),
                dict(name="ar16-L2", converged=False, convergence="NOT converged: ...", certificate="NOT converged")]
    names = {"r1": "ar16-L1", "r2": "ar16-L2"}
    for l1, said in (("below", False), ("above", True)):
        cv = ConvergenceResults(run_ids=list(names), names=names, n_runs=2, flagged=["r1", "r2"], verdicts=verdicts,
                                flags={"r1": l1, "r2": "above"}, stop_reasons={"converged": 1, "certificate": 1})
        text = "\n".join(_convergence(cv))
        assert f"flagged: ar16-L1 ({l1}), ar16-L2 (above)." in text
        assert ("**ar16-L1: above the law of the other sizes, yet certified.**" in text) is said
        assert "ar16-L2: above the law of the other sizes, yet certified" not in text  # not certified
