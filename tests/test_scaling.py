"""Scaling policy: predictive/reactive rules, fallbacks, stabilization, and their invariants."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleahead.domain.scaling import (
    ForecastSignal,
    Mode,
    Reason,
    ScalingPolicy,
    ServiceSpec,
    Stabilizer,
    forecast_accuracy,
    forecast_peak,
    planned_peak,
    predictive_replicas,
    reactive_replicas,
    recommend,
    recurring_peak,
)

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
SPEC = ServiceSpec(capacity_per_replica=10.0, min_replicas=2, max_replicas=50)


def signal(values: list[float], start: datetime = NOW, created_at: datetime = NOW, **kw):
    points = [(start + timedelta(minutes=5 * i), v) for i, v in enumerate(values)]
    return ForecastSignal(created_at=created_at, points=points, **kw)


# --- pieces ----------------------------------------------------------------------------------


def test_predictive_is_ceil_of_peak_over_capacity() -> None:
    assert predictive_replicas(95.0, SPEC) == 10
    assert predictive_replicas(100.0, SPEC) == 10
    assert predictive_replicas(100.0000000001, SPEC) == 10  # float noise is not a replica
    assert predictive_replicas(101.0, SPEC) == 11
    assert predictive_replicas(0.0, SPEC) == 2  # min bound
    assert predictive_replicas(-5.0, SPEC) == 2
    assert predictive_replicas(10_000.0, SPEC) == 50  # max bound


def test_target_utilization_shrinks_usable_capacity() -> None:
    spec = ServiceSpec(capacity_per_replica=10.0, target_utilization=0.5, max_replicas=100)
    assert spec.usable_capacity == 5.0
    assert predictive_replicas(100.0, spec) == 20


def test_peak_covers_lead_time_plus_window() -> None:
    # Buckets at now, +5, +10, +15 min; window [now, now+10min] overlaps the first three.
    points = signal([10, 20, 30, 999]).points
    assert forecast_peak(points, NOW) == 30
    assert forecast_peak(points, NOW + timedelta(minutes=2)) == 30
    # A bucket that started before now but is still running counts.
    assert forecast_peak(points, NOW + timedelta(minutes=4)) == 30
    policy = ScalingPolicy(lead_time_s=0, window_s=0)
    assert forecast_peak(points, NOW + timedelta(minutes=6), policy) == 20
    assert forecast_peak(points, NOW + timedelta(hours=2)) is None


def test_reactive_follows_hpa_rule_with_tolerance() -> None:
    # current 10 replicas x 10 capacity = 100 target; actual 105 -> ratio 1.05: within tolerance
    assert reactive_replicas(105.0, SPEC, current_replicas=10) == 10
    assert reactive_replicas(95.0, SPEC, current_replicas=10) == 10
    # ratio 1.2 -> ceil(10 * 1.2) = 12
    assert reactive_replicas(120.0, SPEC, current_replicas=10) == 12
    # ratio 0.5 -> 5
    assert reactive_replicas(50.0, SPEC, current_replicas=10) == 5
    # no current replica count: steady-state form
    assert reactive_replicas(123.0, SPEC) == 13
    # no actual: hold current, else min
    assert reactive_replicas(None, SPEC, current_replicas=7) == 7
    assert reactive_replicas(None, SPEC) == 2
    assert reactive_replicas(float("nan"), SPEC) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity_per_replica": 0},
        {"capacity_per_replica": float("nan")},
        {"capacity_per_replica": 1, "min_replicas": 0},
        {"capacity_per_replica": 1, "min_replicas": 5, "max_replicas": 4},
        {"capacity_per_replica": 1, "target_utilization": 0},
        {"capacity_per_replica": 1, "target_utilization": 1.5},
    ],
)
def test_invalid_specs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ServiceSpec(**kwargs)


# --- decisions -------------------------------------------------------------------------------


def test_predictive_recommendation_scales_out_ahead_of_demand() -> None:
    rec = recommend(SPEC, NOW, signal([80, 150, 300]), actual=80.0, current_replicas=8)
    assert rec.mode is Mode.PREDICTIVE
    assert rec.reasons == ()
    assert rec.forecast_peak == 300
    assert rec.predictive_replicas == 30
    assert rec.reactive_replicas == 8
    assert rec.replicas == 30
    assert rec.window_end - rec.window_start == timedelta(minutes=10)


def test_forecast_never_scales_in_below_reactive() -> None:
    rec = recommend(SPEC, NOW, signal([10, 10, 10]), actual=200.0, current_replicas=20)
    assert rec.mode is Mode.PREDICTIVE
    assert rec.forecast_peak == 10
    assert rec.predictive_replicas == 20  # planned for the observed 200, not the forecast 10
    assert rec.replicas == rec.reactive_replicas == 20


def test_forecast_below_demand_does_not_ride_the_hpa_tolerance() -> None:
    # 108 on 10 replicas of 10 is 8 % over target: inside the HPA's tolerance, so reactive keeps
    # 10; a lagging forecast (80) must not hold the service there either.
    rec = recommend(SPEC, NOW, signal([80, 80, 80]), actual=108.0, current_replicas=10)
    assert rec.reactive_replicas == 10
    assert rec.predictive_replicas == rec.replicas == 11
    assert planned_peak(80.0, 108.0) == 108.0
    assert planned_peak(80.0, None) == planned_peak(80.0, float("nan")) == 80.0
    # A forecast above the demand is what predictive plans for (scale out ahead).
    assert planned_peak(300.0, 108.0) == 300.0


def test_scale_in_hysteresis_hand_computed() -> None:
    spec = ServiceSpec(capacity_per_replica=10.0, min_replicas=1, max_replicas=50)
    # Peak 9.5 is 0.95 of a replica: from 2 it stays at 2 (1 would leave 0.05 < 0.1 to spare).
    assert predictive_replicas(9.5, spec, current_replicas=2, hysteresis=0.1) == 2
    # 8.9 leaves 0.11 of a replica: scale in to 1.
    assert predictive_replicas(8.9, spec, current_replicas=2, hysteresis=0.1) == 1
    # From 5 it scales in as far as the count that holds the peak with the margin: 2.
    assert predictive_replicas(9.5, spec, current_replicas=5, hysteresis=0.1) == 2
    # It never scales out (15 needs 2; the margin would say 3) nor holds above current.
    assert predictive_replicas(15.0, spec, current_replicas=1, hysteresis=0.1) == 2
    assert predictive_replicas(19.5, spec, current_replicas=2, hysteresis=0.1) == 2
    # Unknown current count, or no hysteresis: the plain ceil.
    assert predictive_replicas(9.5, spec) == 1
    assert predictive_replicas(9.5, spec, current_replicas=2, hysteresis=0.0) == 1
    # Through recommend (default policy: 0.1): a forecast at 0.95 of a replica holds 2.
    rec = recommend(spec, NOW, signal([9.5, 9.0, 9.5]), actual=5.0, current_replicas=2)
    assert rec.predictive_replicas == 2 and rec.reactive_replicas == 1
    rec = recommend(
        spec,
        NOW,
        signal([9.5, 9.0, 9.5]),
        actual=5.0,
        current_replicas=2,
        policy=ScalingPolicy(scale_in_hysteresis=0.0),
    )
    assert rec.predictive_replicas == 1


def _daily_history(spikes: dict[int, int], days: int = 4, base: float = 1.0):
    """5-minute buckets over ``days`` days before NOW; ``spikes``: day -> minute past 12:00 of
    a 100 spike (day 1 = yesterday)."""
    start = NOW - timedelta(days=days)
    times = [start + timedelta(minutes=5 * i) for i in range(days * 288)]
    values = np.full(len(times), base)
    for day, minute in spikes.items():
        at = NOW - timedelta(days=day) + timedelta(minutes=minute)
        values[times.index(at)] = 100.0
    return np.array([t.timestamp() for t in times]), values


def test_recurring_peak_hand_computed() -> None:
    policy = ScalingPolicy()  # window [12:00, 12:10], padded 30 min: [11:30, 12:40] each day
    # A spike inside every day's padded window (jittered: 12:05, 11:35, 12:35).
    times, values = _daily_history({1: 5, 2: -25, 3: 35})
    assert recurring_peak(times, values, NOW, policy) == 100.0
    # Day 2's spike at 12:45 is outside its window (the last bucket read starts at 12:40):
    # the spike did not recur every day, so the recurring peak is the base level.
    times, values = _daily_history({1: 5, 2: 45, 3: 35})
    assert recurring_peak(times, values, NOW, policy) == 1.0
    # Two days of history only: unknown.
    times, values = _daily_history({1: 5, 2: 5}, days=2)
    assert recurring_peak(times, values, NOW, policy) is None
    # Off, or no history.
    assert recurring_peak(times, values, NOW, ScalingPolicy(recurring_days=0)) is None
    assert recurring_peak(np.zeros(0), np.zeros(0), NOW, policy) is None
    # A NaN bucket is skipped, not propagated.
    times, values = _daily_history({1: 5, 2: -25, 3: 35})
    values[times == (NOW - timedelta(days=1, minutes=-10)).timestamp()] = np.nan
    assert recurring_peak(times, values, NOW, policy) == 100.0


def test_recurring_peak_gates_the_planned_peak() -> None:
    assert planned_peak(10.0, 8.0, recurring=25.0) == 25.0  # 2.5x the plan: a missed spike
    assert planned_peak(10.0, 8.0, recurring=15.0) == 10.0  # 1.5x: the forecast's business
    assert planned_peak(10.0, 12.0, recurring=20.0) == 12.0  # not above 2x the actual 12
    assert planned_peak(10.0, 8.0, recurring=float("nan")) == 10.0
    spec = ServiceSpec(capacity_per_replica=10.0, min_replicas=1, max_replicas=50)
    rec = recommend(spec, NOW, signal([9.0, 9.0, 9.0]), actual=8.0, recurring=100.0)
    assert rec.predictive_replicas == rec.replicas == 10
    assert rec.forecast_peak == 9.0  # the forecast itself is reported unchanged


@pytest.mark.parametrize(
    ("forecast", "reason"),
    [
        (None, Reason.FORECAST_MISSING),
        (signal([500], created_at=NOW - timedelta(hours=1)), Reason.FORECAST_STALE),
        (signal([500], quality_failed=True), Reason.QUALITY_FAILED),
        (signal([500], low_confidence=True), Reason.LOW_CONFIDENCE),
        (signal([500], start=NOW - timedelta(hours=3)), Reason.FORECAST_WINDOW_UNCOVERED),
        (signal([float("inf")]), Reason.FORECAST_INVALID),
    ],
)
def test_unusable_forecast_falls_back_to_reactive(forecast, reason: Reason) -> None:
    rec = recommend(SPEC, NOW, forecast, actual=120.0, current_replicas=10)
    assert rec.mode is Mode.REACTIVE
    assert reason in rec.reasons
    assert rec.replicas == rec.reactive_replicas == 12


def test_dry_run_reports_prediction_but_applies_reactive() -> None:
    rec = recommend(SPEC, NOW, signal([300]), actual=120.0, current_replicas=10, dry_run=True)
    assert rec.mode is Mode.DRY_RUN
    assert rec.reasons[0] is Reason.DRY_RUN
    assert rec.predictive_replicas == 30
    assert rec.replicas == 12


def test_no_data_at_all_still_returns_min_replicas() -> None:
    rec = recommend(SPEC, NOW, None, actual=None)
    assert rec.replicas == 2
    assert set(rec.reasons) == {Reason.ACTUAL_MISSING, Reason.FORECAST_MISSING}


def test_as_dict_is_json_friendly() -> None:
    out = recommend(SPEC, NOW, signal([55]), actual=50.0).as_dict()
    assert out["mode"] == "predictive" and out["replicas"] == 6
    assert out["window_start"] == NOW.isoformat()


# --- stabilization ---------------------------------------------------------------------------


def test_stabilizer_scales_out_at_once_and_in_after_window() -> None:
    stab = Stabilizer(window_s=300)
    assert stab.stabilize("a", NOW, 10) == 10
    assert stab.stabilize("a", NOW + timedelta(seconds=10), 20) == 20  # out: immediate
    assert stab.stabilize("a", NOW + timedelta(seconds=60), 5) == 20  # in: held
    assert stab.stabilize("a", NOW + timedelta(seconds=309), 5) == 20
    assert stab.stabilize("a", NOW + timedelta(seconds=311), 5) == 5  # 20 left the window
    assert stab.stabilize("b", NOW, 3) == 3  # per key
    assert stab.peek("a", NOW + timedelta(seconds=311)) == 5
    assert stab.peek("zzz", NOW) is None


def test_stabilizer_intermediate_values_step_down() -> None:
    stab = Stabilizer(window_s=100)
    stab.stabilize("a", NOW, 30)
    stab.stabilize("a", NOW + timedelta(seconds=50), 20)
    assert stab.stabilize("a", NOW + timedelta(seconds=120), 10) == 20
    assert stab.stabilize("a", NOW + timedelta(seconds=151), 10) == 10


# --- properties ------------------------------------------------------------------------------

specs = st.builds(
    lambda cap, lo, extra, util: ServiceSpec(cap, lo, lo + extra, util),
    st.floats(0.01, 1e4),
    st.integers(1, 20),
    st.integers(0, 200),
    st.floats(0.05, 1.0),
)
values = st.floats(-1e3, 1e7, allow_nan=False)
maybe_actual = st.one_of(st.none(), values, st.just(float("nan")))
forecasts = st.one_of(
    st.none(),
    st.builds(
        lambda vs, offset, age, qf, lc: signal(
            vs,
            start=NOW + timedelta(minutes=offset),
            created_at=NOW - timedelta(seconds=age),
            quality_failed=qf,
            low_confidence=lc,
        ),
        st.lists(st.one_of(values, st.just(float("inf"))), min_size=0, max_size=12),
        st.integers(-120, 60),
        st.integers(0, 7200),
        st.booleans(),
        st.booleans(),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    spec=specs,
    forecast=forecasts,
    actual=maybe_actual,
    current=st.one_of(st.none(), st.integers(0, 500)),
    dry_run=st.booleans(),
)
def test_recommendation_invariants(spec, forecast, actual, current, dry_run) -> None:
    rec = recommend(spec, NOW, forecast, actual, current_replicas=current, dry_run=dry_run)
    assert spec.min_replicas <= rec.replicas <= spec.max_replicas  # bounds, never zero
    assert rec.replicas >= 1
    assert rec.replicas >= rec.reactive_replicas  # never below reactive
    assert rec.reactive_replicas == reactive_replicas(actual, spec, current)
    if rec.mode is Mode.PREDICTIVE:
        assert rec.predictive_replicas is not None
        assert rec.replicas == max(rec.predictive_replicas, rec.reactive_replicas)
        assert rec.reasons in ((), (Reason.ACTUAL_MISSING,))
    else:
        assert rec.replicas == rec.reactive_replicas
        assert rec.reasons  # a fallback always says why
    if dry_run:
        assert rec.mode is Mode.DRY_RUN
    if forecast is None or forecast.quality_failed or forecast.low_confidence:
        assert rec.mode is not Mode.PREDICTIVE


@settings(max_examples=200, deadline=None)
@given(spec=specs, peak=values)
def test_predictive_covers_peak(spec, peak) -> None:
    n = predictive_replicas(peak, spec)
    assert spec.min_replicas <= n <= spec.max_replicas
    if n < spec.max_replicas:  # enough replicas for the peak at target utilization
        assert n * spec.usable_capacity >= peak - 1e-6 * max(1.0, abs(peak))
    if n > spec.min_replicas:  # and not one more than needed
        assert (n - 1) * spec.usable_capacity < peak


@settings(max_examples=200, deadline=None)
@given(spec=specs, actual=values, current=st.integers(1, 500))
def test_reactive_tolerance_holds_current(spec, actual, current) -> None:
    ratio = max(actual, 0.0) / (current * spec.usable_capacity)
    result = reactive_replicas(actual, spec, current)
    if abs(ratio - 1) <= 0.1:
        assert result == spec.bound(current)
    else:
        assert result == spec.bound(max(0, math.ceil(current * ratio - 1e-9)))


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 100)), min_size=1, max_size=40),
    window=st.integers(0, 600),
)
def test_stabilizer_is_windowed_max(steps, window) -> None:
    stab = Stabilizer(window_s=window)
    t = 0
    seen: list[tuple[int, int]] = []
    for dt, replicas in steps:
        t += dt
        seen.append((t, replicas))
        out = stab.stabilize("s", NOW + timedelta(seconds=t), replicas)
        expected = max(r for ts, r in seen if ts > t - window or ts == t)
        assert out == expected
        assert out >= replicas


def test_forecast_accuracy() -> None:
    acc = forecast_accuracy([(100, 90, 120), (100, 110, 95), (float("nan"), 1, 1)])
    assert acc.points == 2
    assert acc.wape == pytest.approx(0.1)
    assert acc.upper_coverage == 0.5
    assert forecast_accuracy([]).wape is None
