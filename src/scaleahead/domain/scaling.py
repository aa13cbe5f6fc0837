"""The scaling policy: forecast + latest actual -> recommended replicas (pure, no I/O).

Stable API (used by the forecast API and the digital twin):

- :class:`ServiceSpec` — a service's capacity model (capacity per replica, min/max replicas,
  target utilization); ``usable_capacity = capacity_per_replica * target_utilization``.
- :class:`ScalingPolicy` — lead time, horizon window, HPA tolerance, stabilization window,
  maximum forecast age.
- :class:`ForecastSignal` — the upper-quantile forecast per bucket plus its quality flags.
- :func:`recommend` — one decision at time ``now``; returns a :class:`Recommendation`.
- :class:`Stabilizer` — scale-in stabilization across decisions (stateful, like the HPA's).
- :func:`predictive_replicas`, :func:`planned_peak`, :func:`recurring_peak`,
  :func:`reactive_replicas`, :func:`forecast_peak` — the pieces.

Rules (documented in README "Scaling policy"):

1. Predictive: ``ceil(max(peak, actual) / usable_capacity)`` where ``peak`` is the maximum
   upper-quantile forecast over the buckets overlapping ``[now, now + lead_time + window]`` and
   ``actual`` the latest observed demand (persistence: a forecast below what is being served now
   does not plan for less), bounded by ``[min_replicas, max_replicas]``. Pass
   ``target_utilization=1`` for the literal ``ceil(peak / capacity_per_replica)``.
   Recurring peak: where the demand of the same window on each of the last
   ``recurring_days`` days (widened by ``recurring_pad_s`` on each side) peaked at more than
   ``recurring_gate`` times the planned peak (the lowest of the days' peaks counts), the
   predictive side plans for that recurring peak instead. A daily job whose spike starts at a
   jittered minute is invisible to a per-step quantile forecast but recurs in the history.
   Scale-in hysteresis: with a known current count, the predictive side scales in only to a
   count that holds the planned peak with ``scale_in_hysteresis`` of a replica to spare, so a
   forecast hovering at a replica boundary does not flap between two counts.
2. Reactive (Kubernetes HPA): ``ceil(current * actual / target)`` where the utilization ratio is
   ``actual / (current * usable_capacity)``; a ratio within ``1 ± tolerance`` keeps ``current``.
   Without a known current replica count the steady-state form ``ceil(actual / usable)`` is used.
3. Recommendation = ``max(predictive, reactive)``: never scale in on the forecast alone.
4. Forecast missing, stale (older than ``forecast_max_age_s`` at ``now``), quality-failed,
   low-confidence (active anomaly), invalid (non-finite) or not covering the window: fall back
   to reactive with ``mode="reactive"`` and the reasons.
5. Scaling mode (:mod:`scaleahead.domain.modes`): in ``shadow`` (the older name: dry-run,
   forecast-only) the reactive value is ``replicas`` with ``mode="dry_run"`` and the predictive
   value is still reported; in ``reactive`` (forced by the user) the reactive value is
   ``replicas`` with ``mode="reactive"`` and reason ``scaling_mode_reactive``; ``predictive``
   applies rules 1-4.
6. :class:`Stabilizer`: the applied value is the maximum of the raw recommendations within the
   stabilization window (default 300 s), so scale-out is immediate and scale-in waits; given the
   current count, Kubernetes' ``behavior`` rule ``min(current, max)`` below it.
7. The result is always within ``[min_replicas, max_replicas]`` and ``min_replicas >= 1``:
   never zero, never an exception for missing data.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

DEFAULT_LEAD_TIME_S = 300.0
DEFAULT_WINDOW_S = 300.0
DEFAULT_STEP_S = 300.0
DEFAULT_TOLERANCE = 0.1
DEFAULT_STABILIZATION_WINDOW_S = 300.0
DEFAULT_FORECAST_MAX_AGE_S = 1800.0
# Replicas of headroom the predictive side needs before it scales in: the HPA's tolerance
# (0.1) in replica units. Measured on the twin: EC2 CPU 24ae8d's p90 hovered at 0.93-1.03 of one
# replica and the count flapped 1 <-> 2 (98 steps at 1, 8 of them short).
DEFAULT_SCALE_IN_HYSTERESIS = 0.1
DEFAULT_RECURRING_DAYS = 3
DEFAULT_RECURRING_PAD_S = 1800.0
DEFAULT_RECURRING_GATE = 2.0

# Guard against float noise such as 100.00000000000001 / 10 -> 11 replicas.
_EPS = 1e-9


class Mode(StrEnum):
    PREDICTIVE = "predictive"
    REACTIVE = "reactive"
    DRY_RUN = "dry_run"


class Reason(StrEnum):
    FORECAST_MISSING = "forecast_missing"
    FORECAST_STALE = "forecast_stale"
    FORECAST_INVALID = "forecast_invalid"
    FORECAST_WINDOW_UNCOVERED = "forecast_window_uncovered"
    QUALITY_FAILED = "quality_failed"
    LOW_CONFIDENCE = "low_confidence"
    ACTUAL_MISSING = "actual_missing"
    DRY_RUN = "dry_run"
    SCALING_MODE_REACTIVE = "scaling_mode_reactive"


_SCALING_MODES = ("shadow", "predictive", "reactive")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Capacity model of one service (from ``marts.services``)."""

    capacity_per_replica: float
    min_replicas: int = 1
    max_replicas: int = 100
    target_utilization: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_per_replica) and self.capacity_per_replica > 0):
            raise ValueError(f"capacity_per_replica must be > 0, got {self.capacity_per_replica}")
        if self.min_replicas < 1:
            raise ValueError(f"min_replicas must be >= 1, got {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})"
            )
        if not (0 < self.target_utilization <= 1):
            raise ValueError(f"target_utilization must be in (0, 1], got {self.target_utilization}")

    @property
    def usable_capacity(self) -> float:
        """Demand one replica should carry: capacity at the target utilization."""
        return self.capacity_per_replica * self.target_utilization

    def bound(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    lead_time_s: float = DEFAULT_LEAD_TIME_S
    window_s: float = DEFAULT_WINDOW_S
    step_s: float = DEFAULT_STEP_S
    tolerance: float = DEFAULT_TOLERANCE
    stabilization_window_s: float = DEFAULT_STABILIZATION_WINDOW_S
    forecast_max_age_s: float = DEFAULT_FORECAST_MAX_AGE_S
    scale_in_hysteresis: float = DEFAULT_SCALE_IN_HYSTERESIS
    recurring_days: int = DEFAULT_RECURRING_DAYS  # 0: no recurring-peak floor
    recurring_pad_s: float = DEFAULT_RECURRING_PAD_S
    recurring_gate: float = DEFAULT_RECURRING_GATE

    def __post_init__(self) -> None:
        for name in (
            "lead_time_s",
            "window_s",
            "tolerance",
            "stabilization_window_s",
            "scale_in_hysteresis",
            "recurring_days",
            "recurring_pad_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.step_s <= 0 or self.forecast_max_age_s <= 0:
            raise ValueError("step_s and forecast_max_age_s must be > 0")
        if self.recurring_gate < 1:
            raise ValueError("recurring_gate must be >= 1")


DEFAULT_POLICY = ScalingPolicy()


@dataclass(frozen=True, slots=True)
class ForecastSignal:
    """Upper-quantile forecast per bucket (bucket start, value) and its quality flags."""

    created_at: datetime
    points: Sequence[tuple[datetime, float]]
    quality_failed: bool = False
    low_confidence: bool = False


@dataclass(frozen=True, slots=True)
class Recommendation:
    replicas: int
    mode: Mode
    reasons: tuple[Reason, ...]
    predictive_replicas: int | None
    reactive_replicas: int
    forecast_peak: float | None
    window_start: datetime
    window_end: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "replicas": self.replicas,
            "mode": self.mode.value,
            "reasons": [r.value for r in self.reasons],
            "predictive_replicas": self.predictive_replicas,
            "reactive_replicas": self.reactive_replicas,
            "forecast_peak": self.forecast_peak,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
        }


def _ceil(value: float) -> int:
    return max(0, math.ceil(value - _EPS))


def forecast_window(
    now: datetime, policy: ScalingPolicy = DEFAULT_POLICY
) -> tuple[datetime, datetime]:
    return now, now + timedelta(seconds=policy.lead_time_s + policy.window_s)


def forecast_peak(
    points: Iterable[tuple[datetime, float]],
    now: datetime,
    policy: ScalingPolicy = DEFAULT_POLICY,
) -> float | None:
    """Max value over buckets ``[ds, ds + step)`` overlapping ``[now, now + lead + window]``.

    None when no bucket overlaps (the forecast does not cover the window).
    """
    start, end = forecast_window(now, policy)
    step = timedelta(seconds=policy.step_s)
    values = [v for ds, v in points if ds <= end and ds + step > start]
    return max(values) if values else None


def planned_peak(
    peak: float,
    actual: float | None,
    recurring: float | None = None,
    gate: float = DEFAULT_RECURRING_GATE,
) -> float:
    """The demand the predictive side provisions for: the forecast peak, never below the latest
    actual. The HPA's 10 % tolerance lets a service run up to 10 % over its target
    utilization, and after a level shift beyond its training range the forecast climbs to the
    new level over hours (NAB EC2 CPU ac20cd: p90 37 against a demand of 99, 15 hours to catch
    up); without this the predictive policy rode the tolerance band above the SLO's
    utilization all that time.

    ``recurring`` (see :func:`recurring_peak`) replaces the result where it is more than
    ``gate`` times it: only a recurring peak the forecast clearly misses counts, so a forecast
    that already follows the daily cycle is not padded with last days' noise."""
    planned = peak
    if actual is not None and math.isfinite(actual):
        planned = max(peak, actual)
    if recurring is not None and math.isfinite(recurring) and recurring > gate * planned:
        return recurring
    return planned


def recurring_peak(
    times_s: Sequence[float],
    values: Sequence[float],
    now: datetime,
    policy: ScalingPolicy = DEFAULT_POLICY,
) -> float | None:
    """The peak the decision window has had on each of the last ``policy.recurring_days`` days:
    per day ``d`` the maximum observed demand over the buckets overlapping the window
    ``[now, now + lead + window]`` moved back ``d`` days and widened by ``recurring_pad_s`` on
    each side, then the minimum over the days (it must have recurred every day).

    ``times_s``: bucket starts in POSIX seconds, sorted; ``values``: the demand of each bucket
    (any sequences: the API keeps ``array.array``; no NumPy in the serving process). Only
    buckets that ended by ``now`` are read. None without ``recurring_days`` or when a day has
    no observed bucket in its window."""
    days = policy.recurring_days
    if days <= 0 or len(times_s) == 0:
        return None
    start, end = forecast_window(now, policy)
    t_start, t_end, t_now = start.timestamp(), end.timestamp(), now.timestamp()
    step, pad = policy.step_s, policy.recurring_pad_s
    peaks = []
    for d in range(1, days + 1):
        lo, hi = t_start - d * 86400.0 - pad, t_end - d * 86400.0 + pad
        # Buckets [ds, ds + step) overlapping [lo, hi] that were complete at ``now``.
        first = bisect_right(times_s, lo - step)
        last = bisect_right(times_s, min(hi, t_now - step))
        window = [float(v) for v in values[first:last] if math.isfinite(v)]
        if not window:
            return None
        peaks.append(max(window))
    return min(peaks)


def predictive_replicas(
    peak: float,
    spec: ServiceSpec,
    current_replicas: int | None = None,
    hysteresis: float = 0.0,
) -> int:
    """``ceil(peak / usable_capacity)`` bounded by the spec; negative peaks count as zero.

    With ``current_replicas`` above that count, scale in only as far as a count that holds the
    peak with ``hysteresis`` of a replica to spare: ``min(current, ceil(peak / usable +
    hysteresis))``. Never more than ``current`` (hysteresis does not scale out)."""
    need = max(peak, 0.0) / spec.usable_capacity
    replicas = _ceil(need)
    if current_replicas is not None and current_replicas > replicas and hysteresis > 0:
        replicas = max(replicas, min(current_replicas, _ceil(need + hysteresis)))
    return spec.bound(replicas)


def _within(ratio: float, tolerance: float) -> bool:
    """Kubernetes' ``Tolerances.isWithin``: ``1 - tolerance <= ratio <= 1 + tolerance`` (not
    ``abs(ratio - 1) <= tolerance``, which float rounding puts outside at exactly 1.1)."""
    return 1.0 - tolerance <= ratio <= 1.0 + tolerance


def reactive_replicas(
    actual: float | None,
    spec: ServiceSpec,
    current_replicas: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    ready_replicas: int | None = None,
) -> int:
    """The Kubernetes HPA rule on the latest actual demand, bounded by the spec.

    Without an actual, hold ``current_replicas`` (or ``min_replicas`` when that is unknown too).
    The ratio is over every pod (``current_replicas``), as Kubernetes computes an External or
    Object metric with an ``AverageValue`` target (``GetExternalPerPodMetricReplicas``). With
    ``ready_replicas`` (fewer than ``current_replicas`` while pods start), as it computes a Pods
    metric or CPU utilization (``calcPlainMetricReplicas``): the ratio over the ready pods; on
    a scale-up the starting pods count at zero usage, and the count stays when that ratio is
    within the tolerance or below 1. docs/hpa-reference.md compares the rules line by line.
    """
    if actual is None or not math.isfinite(actual):
        return spec.bound(current_replicas if current_replicas else spec.min_replicas)
    actual = max(actual, 0.0)
    if not current_replicas or current_replicas < 1:
        return spec.bound(_ceil(actual / spec.usable_capacity))
    ratio = actual / (current_replicas * spec.usable_capacity)
    if ready_replicas is not None and ready_replicas < current_replicas:
        if ready_replicas < 1:
            return spec.bound(current_replicas)  # no metrics: the controller does not scale
        usage = actual / (ready_replicas * spec.usable_capacity)
        if usage > 1.0:  # scale-up with unready pods: they count at 0 usage
            if _within(ratio, tolerance) or ratio < 1.0:
                return spec.bound(current_replicas)
            return spec.bound(max(_ceil(current_replicas * ratio), current_replicas))
        if _within(usage, tolerance):
            return spec.bound(current_replicas)
        return spec.bound(_ceil(ready_replicas * usage))
    if _within(ratio, tolerance):
        return spec.bound(current_replicas)
    return spec.bound(_ceil(current_replicas * ratio))


def recommend(
    spec: ServiceSpec,
    now: datetime,
    forecast: ForecastSignal | None,
    actual: float | None,
    current_replicas: int | None = None,
    policy: ScalingPolicy = DEFAULT_POLICY,
    dry_run: bool = False,
    recurring: float | None = None,
    scaling_mode: str = "predictive",
) -> Recommendation:
    """One scaling decision at ``now`` (before stabilization; see :class:`Stabilizer`).

    ``recurring``: the window's recurring peak (:func:`recurring_peak` of the observed demand),
    None when unknown. ``scaling_mode``: the service's mode (``shadow`` | ``predictive`` |
    ``reactive``, :class:`scaleahead.domain.modes.ScalingMode`); ``dry_run=True`` is
    ``scaling_mode="shadow"``."""
    if scaling_mode not in _SCALING_MODES:
        raise ValueError(f"scaling_mode must be one of {_SCALING_MODES}, got {scaling_mode!r}")
    start, end = forecast_window(now, policy)
    reactive = reactive_replicas(actual, spec, current_replicas, policy.tolerance)
    reasons: list[Reason] = []
    if actual is None or not math.isfinite(actual):
        reasons.append(Reason.ACTUAL_MISSING)

    peak: float | None = None
    predictive: int | None = None
    usable = forecast is not None
    if forecast is None:
        reasons.append(Reason.FORECAST_MISSING)
    else:
        age_s = (now - forecast.created_at).total_seconds()
        if age_s > policy.forecast_max_age_s:
            reasons.append(Reason.FORECAST_STALE)
            usable = False
        if forecast.quality_failed:
            reasons.append(Reason.QUALITY_FAILED)
            usable = False
        if forecast.low_confidence:
            reasons.append(Reason.LOW_CONFIDENCE)
            usable = False
        peak = forecast_peak(forecast.points, now, policy)
        if peak is None:
            reasons.append(Reason.FORECAST_WINDOW_UNCOVERED)
            usable = False
        elif not math.isfinite(peak):
            reasons.append(Reason.FORECAST_INVALID)
            usable = False
            peak = None
        if peak is not None:
            planned = planned_peak(peak, actual, recurring, policy.recurring_gate)
            predictive = predictive_replicas(
                planned, spec, current_replicas, policy.scale_in_hysteresis
            )

    if dry_run or scaling_mode == "shadow":
        reasons.insert(0, Reason.DRY_RUN)
        return Recommendation(
            reactive, Mode.DRY_RUN, tuple(reasons), predictive, reactive, peak, start, end
        )
    if scaling_mode == "reactive":
        reasons.insert(0, Reason.SCALING_MODE_REACTIVE)
        return Recommendation(
            reactive, Mode.REACTIVE, tuple(reasons), predictive, reactive, peak, start, end
        )
    if usable and predictive is not None:
        return Recommendation(
            max(predictive, reactive),
            Mode.PREDICTIVE,
            tuple(reasons),
            predictive,
            reactive,
            peak,
            start,
            end,
        )
    return Recommendation(
        reactive, Mode.REACTIVE, tuple(reasons), predictive, reactive, peak, start, end
    )


@dataclass
class _History:
    # (time_s, replicas), values strictly decreasing from front to back: a monotonic max-queue.
    entries: deque[tuple[float, int]] = field(default_factory=deque)


class Stabilizer:
    """Scale-in stabilization (HPA ``behavior.scaleDown.stabilizationWindowSeconds``).

    ``stabilize(key, now, replicas)`` records the raw recommendation and returns the maximum of
    the raw recommendations recorded for ``key`` within ``(now - window, now]``: increases apply
    at once, decreases only after every higher recommendation has left the window. Memory per
    key is bounded by the number of distinct decreasing values in the window. Thread-safe.

    That maximum is Kubernetes' ``stabilizeRecommendation`` (an HPA without ``spec.behavior``).
    With ``current_replicas``, ``stabilizeRecommendationWithBehaviors`` with the default rules
    (no scale-up window): a recommendation at or above the current count applies, below it the
    count is clamped to the window's maximum, ``min(current, max)`` (never a scale-up on a
    falling recommendation).
    """

    def __init__(self, window_s: float = DEFAULT_STABILIZATION_WINDOW_S) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        self.window_s = window_s
        self._histories: dict[str, _History] = {}
        self._lock = threading.Lock()

    def stabilize(
        self, key: str, now: datetime, replicas: int, current_replicas: int | None = None
    ) -> int:
        stabilized = self._record(key, now, replicas)
        if current_replicas is None or replicas >= current_replicas:
            return stabilized if current_replicas is None else replicas
        return min(current_replicas, stabilized)

    def _record(self, key: str, now: datetime, replicas: int) -> int:
        t = now.timestamp()
        with self._lock:
            history = self._histories.get(key)
            if history is None:
                history = self._histories[key] = _History()
            entries = history.entries
            # Recommendations made at this same instant stay, even with a zero window.
            while entries and entries[0][0] <= t - self.window_s and entries[0][0] < t:
                entries.popleft()
            while entries and entries[-1][1] <= replicas:
                entries.pop()
            entries.append((t, replicas))
            return entries[0][1]

    def peek(self, key: str, now: datetime) -> int | None:
        """The stabilized value without recording a new recommendation."""
        t = now.timestamp()
        with self._lock:
            history = self._histories.get(key)
            if history is None:
                return None
            live = [r for ts, r in history.entries if ts > t - self.window_s or ts == t]
            return max(live) if live else None


@dataclass(frozen=True, slots=True)
class Accuracy:
    """How a service's past forecasts did against the actuals (for dry-run reports)."""

    points: int
    wape: float | None  # sum |actual - p50| / sum |actual|
    upper_coverage: float | None  # share of actuals <= the upper quantile


def forecast_accuracy(pairs: Iterable[tuple[float, float, float]]) -> Accuracy:
    """``pairs`` of (actual, p50, upper) -> :class:`Accuracy`."""
    n = 0
    abs_err = 0.0
    abs_actual = 0.0
    covered = 0
    for actual, p50, upper in pairs:
        if not (math.isfinite(actual) and math.isfinite(p50) and math.isfinite(upper)):
            continue
        n += 1
        abs_err += abs(actual - p50)
        abs_actual += abs(actual)
        covered += actual <= upper
    if n == 0:
        return Accuracy(0, None, None)
    wape = abs_err / abs_actual if abs_actual > 0 else None
    return Accuracy(n, wape, covered / n)
