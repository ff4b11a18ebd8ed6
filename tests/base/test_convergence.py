"""The convergence verdict of every pretraining run, and the learning-curve forecast."""

import numpy as np
import pandas as pd
import pytest
from helpers import FIXTURES, QUIET, TINY_DATA, TINY_TRAIN

from workbench.base.convergence import forecast, verdict
from workbench.config import PretrainConfig
from workbench.front.closing import convergence_counts, not_converged


@pytest.mark.parametrize("args, converged, words", [
    (("horizon", 1000, 1000, 0.0, 1e-3), False, "horizon"),
    (("horizon", 950, 1000, 5e-5, 1e-3), False, "horizon"),
    (("early_stopped", 600, 900, 4e-4, 1e-3), False, "decayed LR"),  # best on a decayed LR: only looks converged
    (("early_stopped", 600, 900, 1e-3, 1e-3), True, "no improvement for 300 steps"),
    (("early_stopped", 600, 900, 5e-4, 1e-3), True, "early-stopped"),  # exactly half the peak is not decayed
    (("diverged", -1, 40, None, 1e-3, "diverged"), False, "diverged"),
])
def test_verdict(args, converged, words):
    ok, why = verdict(*args)
    assert ok is converged and words in why


def test_the_old_recipe_is_never_called_converged(tmp_path, tiny_data):
    """A linear decay to a step horizon (the old default recipe): converged false, with the reason,
    in summary.json, in the run table, and in the warning every result carries."""
    from workbench.runs.pretrain import pretrain
    from workbench.runs.tables import load_runs

    s = pretrain(PretrainConfig("ar32", 1, 0, TINY_DATA, TINY_TRAIN), tmp_path, QUIET)
    assert s["stop_reason"] == "horizon" and s["converged"] is False and "horizon" in s["convergence"]
    assert s["lr_at_best"] is not None and "forecast_loss" in s
    runs = load_runs(tmp_path)
    counts = convergence_counts(runs)
    assert counts == {"horizon": 1}
    assert "NOT converged" in not_converged(counts) and "step horizon" in not_converged(counts)


def test_counts_of_runs_without_a_verdict_fall_back_to_the_stop_reason():
    old = pd.DataFrame(dict(status=["completed"] * 3, stop_reason=["early_stopped", "horizon", "horizon"]))
    assert convergence_counts(old) == {"horizon": 2, "converged": 1}
    assert not_converged({"converged": 3}) is None and not_converged({"early_stopped": 2}) is None


def _curve(l_inf, a, b, steps, sigma, seed):
    rng = np.random.default_rng(seed)
    return l_inf + a * steps ** -b + rng.normal(0, sigma, len(steps))


def test_forecast_recovers_known_asymptotes_and_its_interval_covers_them():
    steps = np.arange(100, 3001, 100).astype(float)
    covered, errors = 0, []
    for seed in range(20):
        y = _curve(3.0, 8.0, 0.6, steps, 0.003, seed)
        f = forecast(steps, y, n_boot=100, seed=seed)
        errors.append(abs(f.loss - 3.0) / 3.0)
        covered += f.low <= 3.0 <= f.high
    assert np.median(errors) < 0.02  # a flattening tail with noise pins the asymptote only loosely
    assert covered >= 14  # 95% intervals, loosely: a short tail makes the bootstrap optimistic


def test_forecast_says_how_far_a_curve_still_has_to_go():
    steps = np.arange(50, 1001, 50).astype(float)
    far = forecast(steps, 4.0 + 20.0 * steps ** -0.5, n_boot=50)  # still falling fast at step 1000
    near = forecast(steps, 4.0 + 20.0 * steps ** -2.0, n_boot=50)  # flat long before step 1000
    assert far.steps_needed > 10_000 and near.steps_needed == 0
    assert abs(far.loss - 4.0) < 0.05 and abs(near.loss - 4.0) < 0.01


def test_forecast_ignores_the_flattening_of_a_decayed_lr():
    """A linear decay flattens the curve early; fitted only where the LR is still >= half its peak,
    the forecast stays below the last loss instead of calling the plateau converged."""
    steps = np.arange(50, 1001, 50).astype(float)
    lr = np.clip((1000 - steps) / 950, 0, 1) * 1e-3
    progress = np.cumsum(lr) / lr.sum() * 1000  # the curve advances with the LR it gets
    y = 4.0 + 20.0 * np.maximum(progress, 1) ** -0.5
    f_all = forecast(steps, y, n_boot=50)
    f_peak = forecast(steps, y, lr, n_boot=50)
    assert f_peak.loss < f_all.loss and f_peak.loss < y[-1] - 0.05
    assert forecast(steps[:3], y[:3]) is None and forecast([], []) is None  # too few points


def test_forecast_interval_covers_the_converged_loss_on_real_curves():
    """Real eval curves of three runs trained to convergence (AR32 L1-3 on sotu, vocab 1,024, constant
    LR 1e-3, patience 500; tests/data/converged_curves.csv). Each curve cut at a step horizon well
    before its early stop is a horizon-stopped run; the forecast from the cut curve should bracket the
    best loss the same run reached once converged."""

    import pandas as pd

    curves = pd.read_csv(FIXTURES / "converged_curves.csv")
    covered, cases = 0, 0
    for _, run in curves.groupby("run"):
        converged = run.eval_loss.min()
        for cut in (1000, 1500, 2000, 2500, 3000):
            if cut >= run.step.max():
                continue
            seen = run[run.step <= cut]
            f = forecast(seen.step, seen.eval_loss, seen.lr)
            assert f.loss <= seen.eval_loss.min()  # an asymptote below every loss seen so far
            cases += 1
            covered += f.low <= converged <= f.high
    assert cases == 15 and covered >= 12, covered  # 13 of 15 when written; the misses by < 0.01 nats
