"""Task metrics from task loss (the two-stage route) beside the direct law, on synthetic tasks with
known curves."""

import numpy as np
import pandas as pd
import pytest

from workbench.base.errors import FitError
from workbench.config import FitConfig
from workbench.laws.twostage import Sigmoid, two_stage_report

SIG = dict(floor=0.2, ceiling=0.9, slope=12.0, midpoint=0.9)  # a task that emerges near loss 0.9
LOSS = (1.2, -0.08)  # task loss = e^1.2 N^-0.08: 1.7 at N = 1e4, 0.98 at 1e7


def sigmoid(loss, p=SIG):
    return p["floor"] + (p["ceiling"] - p["floor"]) / (1 + np.exp(p["slope"] * (loss - p["midpoint"])))


def task_loss(n):
    return np.exp(LOSS[0]) * n ** LOSS[1]


def study(rng, sizes=np.geomspace(1e4, 1e7, 6), seeds=3, trials=4, noise=0.01, loss_noise=0.02):
    """Every finetuning run of a tuned study: per size and seed, `trials` settings of which the
    first (lowest loss) is the selected one; metric = sigmoid(task loss) + noise."""
    rng = np.random.default_rng(rng)
    rows = []
    for n in sizes:
        for s in range(seeds):
            base = task_loss(n) * np.exp(rng.normal(0, loss_noise))
            for t in range(trials):
                loss = base * (1 + 0.05 * t)
                rows.append(dict(task="emerging", n_params=n, seed=s, task_loss=loss, selected=t == 0,
                                 metric=float(np.clip(sigmoid(loss) + rng.normal(0, noise), 0, 1))))
    return pd.DataFrame(rows)


def test_the_sigmoid_recovers_a_known_curve():
    rng = np.random.default_rng(0)
    loss = rng.uniform(0.3, 1.6, 200)
    fitted = Sigmoid().fit(loss, np.clip(sigmoid(loss) + rng.normal(0, 0.01, 200), 0, 1))
    p = fitted.params_
    assert p["floor"] == pytest.approx(0.2, abs=0.01) and p["ceiling"] == pytest.approx(0.9, abs=0.01)
    assert p["slope"] == pytest.approx(12.0, rel=0.1) and p["midpoint"] == pytest.approx(0.9, abs=0.01)
    assert fitted.r2_ > 0.99 and (np.diff(fitted.predict(np.sort(loss))) <= 0).all()  # a lower loss, a higher metric


@pytest.mark.parametrize("loss, metric, says", [
    ([1.0, 0.9, 0.8, 0.7], [0.2, 0.3, 1.4, 0.6], "must lie in \\[0, 1\\]"),
    ([1.0, 1.0, 0.8, 0.8], [0.2, 0.3, 0.5, 0.6], "at least 4 distinct task losses"),
    ([1.0, np.nan, 0.8, 0.7], [0.2, 0.3, 0.5, 0.6], "not finite"),
])
def test_bad_sigmoid_inputs_are_one_line_errors(loss, metric, says):
    with pytest.raises(FitError, match=says):
        Sigmoid().fit(loss, metric)


def test_runs_without_a_task_loss_say_how_to_get_one():
    df = study(1).assign(task_loss=np.nan)
    with pytest.raises(FitError, match="no run has a task loss; `run_finetune_study` fills it in"):
        two_stage_report(df[df.selected], FitConfig(n_bootstrap=20), points=df)


def test_on_an_emerging_task_the_two_stage_route_predicts_better_and_covers_the_truth():
    """The metric sits at chance on the small sizes and rises at the held-out one: a power law of
    1 - metric cannot see it coming, the loss can."""
    df = study(2)
    rep = two_stage_report(df[df.selected], FitConfig(n_bootstrap=200), points=df)
    (h,) = rep.held_out
    truth = sigmoid(task_loss(h.n_params))
    assert rep.better == "two-stage" and abs(h.two_stage_re) < abs(h.direct_re)
    assert h.two_stage_low <= truth <= h.two_stage_high and not h.direct_low <= truth <= h.direct_high
    assert h.task_loss_pred == pytest.approx(task_loss(h.n_params), rel=0.03)
    assert rep.n_sigmoid_points == 5 * 3 * 4 and "two-stage route predicted better" in rep.describe()


def test_both_routes_are_judged_on_the_same_held_out_sizes():
    df = study(3)
    rep = two_stage_report(df[df.selected], FitConfig(n_bootstrap=50, n_held_out=2), points=df)
    assert [h.n_params for h in rep.held_out] == pytest.approx(np.geomspace(1e4, 1e7, 6)[-2:])
    assert len(rep.fit_sizes) == 4 and rep.to_dict()["held_out"][0]["direct_re"] == rep.held_out[0].direct_re
    with pytest.raises(FitError, match="n_held_out >= 1"):
        two_stage_report(df[df.selected], FitConfig(n_bootstrap=50, n_held_out=0), points=df)


@pytest.mark.slow
def test_the_two_stage_interval_covers_the_truth_in_about_95_percent_of_200_studies():
    hits = 0
    for i in range(200):
        df = study(1000 + i)
        h = two_stage_report(df[df.selected], FitConfig(n_bootstrap=100, random_state=i), points=df).held_out[0]
        hits += h.two_stage_low <= sigmoid(task_loss(h.n_params)) <= h.two_stage_high
    assert 170 <= hits <= 200, hits  # 95% intervals, loosely


def test_stage_one_takes_size_and_tokens_through_the_joint_law():
    """With a tokens column and `fit.law=joint`, stage 1 is L(N, D) and each held-out run is
    predicted at its own tokens."""
    rng = np.random.default_rng(7)
    rows = []
    for n in np.geomspace(1e4, 1e7, 5):
        for d in (2e8, 1e9, 5e9):
            loss = (0.6 + 40 * n ** -0.3 + 30 * d ** -0.2) * np.exp(rng.normal(0, 0.005))
            rows.append(dict(task="t", n_params=n, tokens=d, seed=int(d), task_loss=loss,
                             metric=float(np.clip(sigmoid(loss) + rng.normal(0, 0.01), 0, 1))))
    df = pd.DataFrame(rows)
    rep = two_stage_report(df, FitConfig(law="joint", n_bootstrap=30))
    assert rep.law == "joint" and set(rep.loss_law) == {"E", "A", "alpha", "B", "beta"}
    assert len(rep.held_out) == 1 and rep.held_out[0].task_loss_pred == pytest.approx(
        rep.held_out[0].task_loss_actual, rel=0.02)
