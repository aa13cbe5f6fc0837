"""The guard in the twin and the online headroom calibration (pure kernels, no forecaster)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scaleahead.domain import headroom
from scaleahead.domain.modes import Evidence, GuardRule, ScalingMode, decide_mode
from scaleahead.domain.scaling import ScalingPolicy
from scaleahead.twin import guard, sim
from scaleahead.twin.runner import Prepared, TwinConfig, replay_policies

STEP = 300.0
DAY = 288


def test_calibrated_peaks_match_the_scalar_recursion() -> None:
    rng = np.random.default_rng(3)
    demand = rng.gamma(4.0, 25.0, size=(3, 400)) * np.array([[1.0], [1e-3], [1e4]])
    peaks = demand * rng.uniform(0.6, 1.4, size=demand.shape)
    peaks[1, 50:60] = np.nan  # no forecast there: nothing learnt
    rule = headroom.HeadroomRule(alpha=0.1, gamma=0.05)
    lag = 1
    got = sim.calibrated_peaks(peaks, demand, lag, rule.alpha, rule.gamma, rule.bound)
    for i in range(3):
        theta, thetas = 0.0, []
        for t in range(demand.shape[1]):
            s = t - lag - 1
            if s >= 0:
                theta = headroom.update(
                    theta, peaks[i, s] * math.exp(thetas[s]), demand[i, s + lag], rule
                )
            thetas.append(theta)
        np.testing.assert_allclose(got[i], peaks[i] * np.exp(thetas), equal_nan=True)
    # Scale-free: the same relative errors give the same margins at 1e-3 and 1e4.
    same = sim.calibrated_peaks(peaks[:1] * 1e4, demand[:1] * 1e4, lag, 0.1, 0.05, 1.5)
    np.testing.assert_allclose(same / 1e4, got[:1], rtol=1e-12)


def test_headroom_reaches_the_target_miss_rate_whatever_the_noise() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    for sigma in (0.05, 0.5):
        demand = 100 * np.exp(rng.normal(0, sigma, n))[None, :]
        peaks = np.full((1, n), 100.0)  # a point forecast with no band at all
        planned = sim.calibrated_peaks(peaks, demand, 1, 0.05, 0.01, 3.0)
        miss = np.mean(demand[0, 2000:] > planned[0, 1999:-1])
        assert abs(miss - 0.05) < 0.01, (sigma, miss)


def _prepared(demand: np.ndarray, peaks: np.ndarray, n_train: int = DAY) -> Prepared:
    n_series, n = demand.shape
    grid = pd.date_range("2024-01-01", periods=n, freq="5min")
    fleet = sim.Fleet(np.full(n_series, 10.0), np.ones(n_series), np.full(n_series, 100.0))
    replay_steps = n - n_train
    return Prepared(
        ids=[f"s{i}" for i in range(n_series)],
        grid=grid,
        values=demand,
        n_train=n_train,
        step_s=STEP,
        fleet=fleet,
        timing=sim.Timing(step_s=STEP),
        policy=ScalingPolicy(lead_time_s=STEP, window_s=STEP, step_s=STEP, recurring_days=0),
        peaks=peaks,
        level=np.zeros((n_series, replay_steps)),
        recurring=np.full((n_series, replay_steps), np.nan),
        details={"step_s": STEP, "slo_target_utilization": 0.7},
        timings={},
    )


def _bursty(days: int, seed: int) -> np.ndarray:
    """Twice a day a jump to 4x the base (at 09:00 and 18:00) on a noisy base."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    base = 40.0 * np.exp(rng.normal(0, 0.05, t.size))
    minute = t % DAY
    busy = ((minute >= 108) & (minute < 120)) | ((minute >= 216) & (minute < 228))
    ramp = np.where(busy, 4.0, 1.0)
    return (base * ramp)[None, :]


def test_guard_promotes_a_service_whose_forecast_wins_and_keeps_a_loser_in_shadow() -> None:
    days = 6
    demand = _bursty(days, 1)
    replay = demand[:, DAY:]
    # Winner: the forecast knows the ramp (the true demand of its target bucket).
    good = np.concatenate([replay[:, 1:], replay[:, -1:]], axis=1) * 1.05
    # Loser: a forecast that asks for 5x the demand at random times (cost, no benefit).
    rng = np.random.default_rng(2)
    bad = replay * np.where(rng.random(replay.shape) < 0.2, 5.0, 0.3)
    cfg = TwinConfig(headroom_gamma=0.0)
    win = replay_policies(_prepared(demand, good), cfg)
    lose = replay_policies(_prepared(demand, bad), cfg)
    assert win.modes is not None and lose.modes is not None
    # The winner is promoted at the first decision and stays predictive.
    assert win.modes.all()
    pm = win.metrics["predictive"].underprovisioned_minutes.sum()
    assert pm < 0.5 * win.metrics["reactive_cost_matched"].underprovisioned_minutes.sum()
    # The loser never leaves shadow: its guarded policy is the reactive HPA, step for step.
    assert not lose.modes.any()
    unguarded = lose.metrics[guard.UNGUARDED].underprovisioned_minutes.sum()
    assert unguarded > lose.metrics[guard.MATCHED_UNGUARDED].underprovisioned_minutes.sum()
    np.testing.assert_array_equal(
        lose.trajectories["predictive"].desired, lose.trajectories["reactive"].desired
    )


def test_a_regime_change_demotes_and_the_future_does_not_change_earlier_modes() -> None:
    days = 8
    demand = _bursty(days, 4)
    replay = demand[:, DAY:]
    good = np.concatenate([replay[:, 1:], replay[:, -1:]], axis=1) * 1.05
    rng = np.random.default_rng(5)
    changed = good.copy()
    flip = 4 * DAY  # from replay day 4 the forecast goes bad (a regime the model never saw)
    changed[:, flip:] = replay[:, flip:] * np.where(
        rng.random(replay[:, flip:].shape) < 0.2, 5.0, 0.3
    )
    cfg = TwinConfig(headroom_gamma=0.0, guard_window_days=1.0)
    result = replay_policies(_prepared(demand, changed), cfg)
    modes = result.modes
    assert modes is not None
    j0 = DAY  # the judged window starts after the one-day warm-up
    assert modes[0, : flip - j0].all()  # promoted while the forecast wins
    assert not modes[0, -DAY:].any()  # demoted once it loses
    # No look-ahead: perturbing demand from replay step `cut` on leaves the decisions taken
    # before it (modes up to the next decision time) and the trajectory up to it unchanged.
    cut = 3 * DAY + 50
    perturbed = demand.copy()
    perturbed[:, DAY + cut :] *= 3.0
    other = replay_policies(_prepared(perturbed, changed), cfg)
    next_decision = 4 * DAY - j0
    np.testing.assert_array_equal(other.modes[:, :next_decision], modes[:, :next_decision])
    for p in ("predictive", guard.UNGUARDED, "reactive"):
        np.testing.assert_array_equal(
            other.trajectories[p].desired[:, : cut - j0 + 1],
            result.trajectories[p].desired[:, : cut - j0 + 1],
        )


def test_grid_matched_hpa_agrees_with_the_bisection() -> None:
    demand = _bursty(5, 7)
    replay = demand[:, DAY:]
    prep = _prepared(demand, np.full(replay.shape, np.nan))
    last = demand[:, DAY - 1]
    grid = guard.hpa_grid(replay, last, prep.fleet, prep.timing, 0.7)
    rh = np.array([grid.replica_hours[:, 0, -1].min() * 1.3])
    minutes, _ = grid.matched(rh, 0, replay.shape[1])
    targets, traj = sim.cost_matched_targets(replay, last, prep.fleet, prep.timing, rh)
    exact = sim.metrics(traj, replay, prep.fleet, 0.7, STEP).underprovisioned_minutes
    # The grid interpolates between targets 0.05 apart: within a step's worth of minutes.
    assert abs(minutes[0] - exact[0]) <= max(30.0, 0.25 * exact[0])


def test_decide_mode_rules() -> None:
    rule = GuardRule(promote_ratio=0.7, demote_ratio=1.0, min_days=1.0, min_incidents=2)

    def ev(p: float, m: float, days: float = 3.0, inc: int = 5) -> Evidence:
        return Evidence(days=days, predictive_under_min=p, matched_under_min=m, incidents=inc)

    assert decide_mode(None, None, rule).mode is ScalingMode.SHADOW
    assert decide_mode(None, ev(10, 100), rule).mode is ScalingMode.PREDICTIVE
    assert decide_mode("shadow", ev(10, 100, days=0.5), rule).mode is ScalingMode.SHADOW
    assert decide_mode("shadow", ev(10, 100, inc=1), rule).mode is ScalingMode.SHADOW
    assert decide_mode("shadow", ev(120, 100), rule).mode is ScalingMode.SHADOW
    # Between the thresholds the mode is kept either way (no flapping).
    assert decide_mode("shadow", ev(85, 100), rule).mode is ScalingMode.SHADOW
    assert decide_mode("predictive", ev(85, 100), rule).mode is ScalingMode.PREDICTIVE
    assert decide_mode("predictive", ev(101, 100), rule).mode is ScalingMode.SHADOW
    assert decide_mode("predictive", ev(5, 0), rule).mode is ScalingMode.SHADOW
    assert decide_mode("predictive", ev(5, 100), rule, pinned="reactive").mode is (
        ScalingMode.REACTIVE
    )
    with pytest.raises(ValueError):
        GuardRule(promote_ratio=1.2, demote_ratio=1.0)


def test_the_trial_promotes_early_or_after_a_whole_fresh_window() -> None:
    rule = GuardRule(promote_ratio=0.9, min_incidents=1, promote_within_days=1.0, retrial_days=14.0)
    win = {"days": 3.0, "predictive_under_min": 10.0, "matched_under_min": 100.0, "incidents": 4}
    assert decide_mode(None, Evidence(**win), rule).mode is ScalingMode.PREDICTIVE
    assert decide_mode("shadow", Evidence(**win, shadow_days=1.0), rule).mode is (
        ScalingMode.PREDICTIVE
    )
    late = decide_mode("shadow", Evidence(**win, shadow_days=3.0), rule)
    assert late.mode is ScalingMode.SHADOW and late.reason.value == "trial_over"
    assert decide_mode("shadow", Evidence(**win, shadow_days=14.0), rule).mode is (
        ScalingMode.PREDICTIVE
    )
    once = GuardRule(promote_ratio=0.9, min_incidents=1, promote_within_days=1.0)
    assert decide_mode("shadow", Evidence(**win, shadow_days=14.0), once).mode is (
        ScalingMode.SHADOW
    )


def test_a_trial_that_waits_for_evidence_judges_a_service_quiet_at_first() -> None:
    # Two quiet days (flat demand: nobody is short, no evidence), then the bursts begin.
    days = 7
    demand = _bursty(days, 6)
    demand[:, : 3 * DAY] = 40.0
    replay = demand[:, DAY:]
    good = np.concatenate([replay[:, 1:], replay[:, -1:]], axis=1) * 1.05
    prep = _prepared(demand, good)
    waits = replay_policies(
        prep, TwinConfig(headroom_gamma=0.0, guard_trial_waits_for_evidence=True)
    )
    plain = replay_policies(prep, TwinConfig(headroom_gamma=0.0))
    assert waits.modes is not None and plain.modes is not None
    assert not waits.modes[0, :DAY].any() and waits.modes[0, -DAY:].all()  # promoted later
    assert not plain.modes.any()  # the trial was the quiet first day


def test_the_guard_task_replay_reads_what_the_full_replay_does() -> None:
    demand = _bursty(5, 7)
    replay = demand[:, DAY:]
    prep = _prepared(demand, np.concatenate([replay[:, 1:], replay[:, -1:]], axis=1))
    full = replay_policies(prep, TwinConfig(headroom_gamma=0.0))
    lean = replay_policies(prep, TwinConfig(headroom_gamma=0.0), evidence_only=True)
    assert set(lean.metrics) == {"reactive", guard.UNGUARDED, guard.MATCHED_UNGUARDED}
    assert lean.modes is None
    assert guard.service_evidence(lean) == guard.service_evidence(full)
