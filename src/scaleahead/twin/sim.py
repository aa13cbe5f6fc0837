"""Vectorised replay kernels of the capacity twin (pure NumPy, no I/O).

Every array is ``(services, steps)`` over the replay period; one Python loop runs over time and
each step is a handful of NumPy operations over all services, so 1,000 services cost about as
much as one. The per-step rules are the scalar ones of :mod:`scaleahead.domain.scaling`
(``reactive_replicas``, ``recommend``'s ``max(predictive, reactive)``, ``Stabilizer``); the
tests check the two agree step by step.

Timing model (per trace step of ``dt`` seconds; the HPA's 15 s sync is folded into the step):

- the controller decides at the start of step ``t`` from the demand of step ``t - 1`` (the last
  complete bucket: no look-ahead);
- the decided count is paid for at once (starting replicas cost money) but a replica only
  serves ``delay_steps = ceil(startup_delay / dt)`` steps later; scale-in removes starting
  replicas first (as a ReplicaSet does), so ``ready[t] = min(desired[t - delay_steps .. t])``;
- scale-down stabilization keeps the maximum raw recommendation of the last
  ``floor(window / dt) + 1`` decisions (the window reaches back into the previous bucket's syncs);
- scale-up rate policy (Kubernetes default: max(100 %, 4 pods) per 15 s) is applied once per
  folded sync; the default scale-down policy (100 % per 15 s) never binds above min replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaleahead.domain.scaling import DEFAULT_RECURRING_GATE, DEFAULT_TOLERANCE

_EPS = 1e-9  # the same float guard as scaling._ceil


def ceil_replicas(demand: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``ceil(demand / usable)`` with the float guard of the scalar policy (never negative)."""
    return np.maximum(0.0, np.ceil(np.maximum(demand, 0.0) / usable - _EPS))


@dataclass(frozen=True, slots=True)
class Fleet:
    """Capacity model per service (arrays of shape ``(services,)``)."""

    capacity: np.ndarray
    min_replicas: np.ndarray
    max_replicas: np.ndarray

    def bound(self, replicas: np.ndarray) -> np.ndarray:
        lo = self.min_replicas.reshape((-1,) + (1,) * (replicas.ndim - 1))
        hi = self.max_replicas.reshape((-1,) + (1,) * (replicas.ndim - 1))
        return np.clip(replicas, lo, hi)


@dataclass(frozen=True, slots=True)
class Timing:
    step_s: float
    startup_delay_s: float = 300.0
    stabilization_s: float = 300.0
    sync_s: float = 15.0
    tolerance: float = DEFAULT_TOLERANCE
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4

    @property
    def delay_steps(self) -> int:
        return int(np.ceil(self.startup_delay_s / self.step_s - _EPS))

    @property
    def stabilization_steps(self) -> int:
        return int(self.stabilization_s // self.step_s) + 1

    @property
    def syncs_per_step(self) -> int:
        return max(1, int(round(self.step_s / self.sync_s)))


@dataclass(frozen=True, slots=True)
class Trajectory:
    desired: np.ndarray  # paid replicas (ready + starting), (S, T)
    ready: np.ndarray  # serving replicas, (S, T)


def hpa_raw(
    observed: np.ndarray, current: np.ndarray, usable: np.ndarray, tolerance: float
) -> np.ndarray:
    """Kubernetes' ``ceil(current * ratio)`` with the tolerance band (unbounded); the vector
    form of :func:`scaleahead.domain.scaling.reactive_replicas` with a known current count."""
    ratio = np.maximum(observed, 0.0) / (current * usable)
    within = np.abs(ratio - 1.0) <= tolerance
    return np.where(within, current, ceil_replicas(current * ratio, 1.0))


def scale_up_limit(
    current: np.ndarray, timing: Timing, cap: np.ndarray, need: np.ndarray | None = None
) -> np.ndarray:
    """The most replicas the default scale-up rate policies allow after one step's syncs.

    With ``need``, stops early once every service's limit reaches it: the limit only grows
    from sync to sync, so ``min(need, limit)`` is the same (the replay loop's hot path)."""
    limit = current.astype(float)
    for _ in range(timing.syncs_per_step):
        if need is not None and (limit >= need).all():
            break
        limit = np.maximum(
            np.floor(limit * (1 + timing.scale_up_percent / 100.0)), limit + timing.scale_up_pods
        )
        limit = np.minimum(limit, cap)
    return limit


def ready_from_desired(desired: np.ndarray, initial: np.ndarray, delay_steps: int) -> np.ndarray:
    """``ready[t] = min(desired[t - d .. t])``; before the replay the initial count was ready."""
    ready = desired.copy()
    for k in range(1, delay_steps + 1):
        shifted = np.concatenate([np.repeat(initial[:, None], k, axis=1), desired[:, :-k]], axis=1)
        ready = np.minimum(ready, shifted)
    return ready


def run_controller(
    demand: np.ndarray,
    last_train: np.ndarray,
    fleet: Fleet,
    hpa_target: np.ndarray,
    timing: Timing,
    floor: np.ndarray | None = None,
    hold: np.ndarray | None = None,
) -> Trajectory:
    """Replay the HPA (optionally under a per-step floor: the predictive replicas) on ``demand``.

    ``floor[:, t]`` is the policy's other recommendation for step ``t`` (0 where there is none,
    i.e. the fallback to reactive); the raw recommendation is ``max(floor, hpa)`` as in
    :func:`scaleahead.domain.scaling.recommend`, then stabilized and rate-limited. With
    ``hold`` (:func:`predictive_floor` with a hysteresis), the predictive side scales in from
    the current count only as far as ``hold``: ``max(floor, min(current, hold))``, the
    scale-in hysteresis of :func:`scaleahead.domain.scaling.predictive_replicas`.
    """
    n_services, n_steps = demand.shape
    usable = fleet.capacity * hpa_target
    current = fleet.bound(ceil_replicas(last_train, usable)).astype(float)
    initial = current.copy()
    window = np.repeat(current[None, :], timing.stabilization_steps, axis=0)
    desired = np.empty((n_services, n_steps))
    observed = last_train
    for t in range(n_steps):
        raw = fleet.bound(hpa_raw(observed, current, usable, timing.tolerance))
        if floor is not None:
            predictive = floor[:, t]
            if hold is not None:
                predictive = np.maximum(predictive, np.minimum(current, hold[:, t]))
            raw = np.maximum(raw, predictive)
        window[t % timing.stabilization_steps] = raw
        stabilized = window.max(axis=0)
        nxt = np.minimum(
            stabilized, scale_up_limit(current, timing, fleet.max_replicas, need=stabilized)
        )
        nxt = fleet.bound(nxt)
        desired[:, t] = nxt
        current = nxt
        observed = demand[:, t]
    return Trajectory(desired, ready_from_desired(desired, initial, timing.delay_steps))


def oracle(demand: np.ndarray, fleet: Fleet, slo_target: float, timing: Timing) -> Trajectory:
    """Perfect foresight with the same start-up delay: exactly the replicas each step needs are
    ready, started ``delay_steps`` ahead (and paid for while starting)."""
    need = fleet.bound(ceil_replicas(demand, (fleet.capacity * slo_target)[:, None]))
    paid = need.copy()
    for k in range(1, timing.delay_steps + 1):
        ahead = np.concatenate([need[:, k:], need[:, -1:].repeat(k, axis=1)], axis=1)
        paid = np.maximum(paid, ahead)
    return Trajectory(paid, need)


def static(
    train: np.ndarray, n_steps: int, fleet: Fleet, slo_target: float, percentile: float
) -> Trajectory:
    level = np.nanpercentile(train, percentile, axis=1)
    replicas = fleet.bound(ceil_replicas(level, fleet.capacity * slo_target))
    grid = np.repeat(replicas[:, None], n_steps, axis=1).astype(float)
    return Trajectory(grid, grid.copy())


def planned_peaks(
    peaks: np.ndarray,
    observed: np.ndarray | None = None,
    recurring: np.ndarray | None = None,
    gate: float = DEFAULT_RECURRING_GATE,
) -> np.ndarray:
    """:func:`scaleahead.domain.scaling.planned_peak` per step: the forecast peak, never below
    the demand the controller has seen (``observed``: the previous bucket's), replaced by the
    recurring peak where that is more than ``gate`` times it. NaN where ``peaks`` is NaN."""
    planned = peaks if observed is None else np.fmax(peaks, np.maximum(observed, 0.0))
    if recurring is not None:
        planned = np.where(recurring > gate * planned, recurring, planned)
    return np.where(np.isnan(peaks), np.nan, planned)


def predictive_floor(
    peaks: np.ndarray,
    fleet: Fleet,
    usable: np.ndarray,
    observed: np.ndarray | None = None,
    recurring: np.ndarray | None = None,
    gate: float = DEFAULT_RECURRING_GATE,
    hysteresis: float = 0.0,
) -> np.ndarray:
    """``predictive_replicas`` per step, ``ceil(planned / usable + hysteresis)``; NaN peaks (no
    usable forecast) give 0 (fallback). The peak is :func:`planned_peaks`' (``observed``,
    ``recurring``: as in the scalar ``recommend``). With ``hysteresis`` it is the count the
    predictive side may scale in to (``run_controller``'s ``hold``)."""
    planned = np.nan_to_num(planned_peaks(peaks, observed, recurring, gate), nan=0.0)
    need = np.maximum(planned, 0.0) / usable[:, None] + hysteresis
    replicas = fleet.bound(ceil_replicas(need, 1.0))
    return np.where(np.isnan(peaks), 0.0, replicas)


def recurring_peaks(
    history: np.ndarray, n_known: int, step_s: float, horizon_s: float, days: int, pad_s: float
) -> np.ndarray:
    """:func:`scaleahead.domain.scaling.recurring_peak` for every replay step: ``history``
    ``(S, n_known + T)`` is the whole trace (training then replay) on a regular grid; step
    ``t`` decides at row ``g = n_known + t`` for the window ``[now, now + horizon_s]`` (lead
    time + window). Per day ``d`` the maximum of the rows whose buckets overlap that window
    moved back ``d`` days and widened by ``pad_s`` on each side (rows ``g + first_d ..
    g + last_d``, complete before ``g``), then the minimum over the days. NaN where a day's rows
    start before the trace or no recurring peak is asked for (``days = 0``)."""
    n_series, n_rows = history.shape
    n_replay = n_rows - n_known
    out = np.full((n_series, n_replay), np.nan)
    if days <= 0:
        return out
    rows = n_known + np.arange(n_replay)
    day_peaks = []
    by_width: dict[int, np.ndarray] = {}  # the days share one width when a step divides a day
    for d in range(1, days + 1):
        back = d * 86400.0
        # Buckets [ds, ds + step) with ds = now + k step overlapping
        # [now - back - pad, now + horizon - back + pad] and ended by now (k <= -1).
        first = int(np.floor(-(back + pad_s) / step_s - 1 + _EPS)) + 1
        last = min(int(np.floor((horizon_s - back + pad_s) / step_s + _EPS)), -1)
        if last < first:
            return out
        width = last - first + 1
        if width not in by_width:
            view = np.lib.stride_tricks.sliding_window_view(history, width, axis=1)
            by_width[width] = view.max(axis=2)
        windowed = by_width[width]
        start = rows + first  # windowed[:, i] = max of rows i .. i + width - 1
        valid = start >= 0
        peak = np.full(out.shape, np.nan)
        peak[:, valid] = windowed[:, start[valid]]
        day_peaks.append(peak)
    return np.min(day_peaks, axis=0)  # NaN if any day is missing


def observed_demand(demand: np.ndarray, last_train: np.ndarray) -> np.ndarray:
    """What the controller has seen at each replay step: the previous step's demand (the last
    training value at the first step), as ``run_controller``'s ``observed``."""
    return np.concatenate([last_train[:, None], demand[:, :-1]], axis=1)


@dataclass(frozen=True, slots=True)
class Metrics:
    underprovisioned_minutes: np.ndarray
    unserved_demand: np.ndarray
    replica_hours: np.ndarray
    peak_replicas: np.ndarray
    scaling_actions: np.ndarray


def metrics(
    traj: Trajectory,
    demand: np.ndarray,
    fleet: Fleet,
    slo_target: float,
    step_s: float,
    initial: np.ndarray | None = None,
) -> Metrics:
    """Per-service metrics. Under-provisioned: demand above ready x capacity x the SLO target
    (fixed, whatever target the HPA itself uses); unserved demand is the excess integrated over
    time (demand unit x seconds, e.g. requests for requests/s)."""
    served = traj.ready * (fleet.capacity * slo_target)[:, None]
    excess = np.maximum(demand - served, 0.0)
    under = excess > _EPS * np.maximum(1.0, served)
    prev = traj.desired[:, :1] if initial is None else initial[:, None]
    changes = np.diff(np.concatenate([prev, traj.desired], axis=1), axis=1) != 0
    return Metrics(
        underprovisioned_minutes=under.sum(axis=1) * step_s / 60.0,
        unserved_demand=excess.sum(axis=1) * step_s,
        replica_hours=traj.desired.sum(axis=1) * step_s / 3600.0,
        peak_replicas=traj.desired.max(axis=1),
        scaling_actions=changes.sum(axis=1).astype(float),
    )


def cost_matched_targets(
    demand: np.ndarray,
    last_train: np.ndarray,
    fleet: Fleet,
    timing: Timing,
    replica_hours: np.ndarray,
    lo: float = 0.02,
    hi: float = 1.0,
    iterations: int = 22,
) -> tuple[np.ndarray, Trajectory]:
    """Per-service bisection of the HPA target until its replica-hours match ``replica_hours``
    (lower target = more replicas). Returns the targets and their trajectory; the bracket end
    whose replica-hours are nearest the goal wins."""
    n = demand.shape[0]
    low, high = np.full(n, lo), np.full(n, hi)
    step_h = timing.step_s / 3600.0
    for _ in range(iterations):
        mid = (low + high) / 2
        rh = run_controller(demand, last_train, fleet, mid, timing).desired.sum(axis=1) * step_h
        too_costly = rh > replica_hours
        low = np.where(too_costly, mid, low)
        high = np.where(too_costly, high, mid)
    t_low = run_controller(demand, last_train, fleet, low, timing)
    t_high = run_controller(demand, last_train, fleet, high, timing)
    d_low = np.abs(t_low.desired.sum(axis=1) * step_h - replica_hours)
    d_high = np.abs(t_high.desired.sum(axis=1) * step_h - replica_hours)
    pick = d_high <= d_low
    targets = np.where(pick, high, low)
    desired = np.where(pick[:, None], t_high.desired, t_low.desired)
    ready = np.where(pick[:, None], t_high.ready, t_low.ready)
    return targets, Trajectory(desired, ready)
