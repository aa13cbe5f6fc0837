"""Vectorised replay kernels of the capacity twin (pure NumPy, no I/O).

Every array is ``(services, steps)`` over the replay period; one Python loop runs over time and
each step is a handful of NumPy operations over all services, so 1,000 services cost about as
much as one. The per-step rules are the scalar ones of :mod:`scaleahead.domain.scaling`
(``reactive_replicas``, ``recommend``'s ``max(predictive, reactive)``, ``Stabilizer``); the
tests check the two agree step by step.

Timing model (per trace step of ``dt`` seconds; the HPA's 15 s syncs are folded into the step;
docs/hpa-reference.md compares each rule with Kubernetes' controller):

- the controller decides at the start of step ``t`` from the demand of step ``t - 1`` (the last
  complete bucket: no look-ahead), from the count step ``t - 1`` ended with;
- the decided count is paid for at once (starting replicas cost money) but a replica only
  serves ``delay_steps = ceil(startup_delay / dt)`` steps later; scale-in removes starting
  replicas first (as a ReplicaSet does), so ``ready[t]`` is the minimum of the counts since
  ``t - delay_steps``;
- scale-down stabilization (``behavior`` defaults): below the current count the count is held
  at the maximum recommendation of the window (``min(current, max)``); the step pays for the
  count held during most of its syncs and the recommendations that leave the window during the
  step (at its last sync when the window is a multiple of the step) release the count the next
  step starts from;
- scale-up rate policy (default: max(+100 %, +4 pods) per 15 s) applied sync by sync, each sync
  re-evaluating the HPA at the new count; the default scale-down policy (100 % per 15 s) never
  binds above min replicas.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from scaleahead.domain.scaling import DEFAULT_RECURRING_GATE, DEFAULT_TOLERANCE

_EPS = 1e-9  # the same float guard as scaling._ceil
METRIC_TYPES = ("external", "pods")


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
    """How the HPA is folded into the trace's steps, and its settings.

    Defaults are the Kubernetes controller's: 15 s sync (``--horizontal-pod-autoscaler-sync-
    period``), tolerance 0.1, ``behavior`` with the API server's default rules (scale-up:
    ``max(+100 %, +4 pods)`` per 15 s period, no scale-up stabilization; scale-down: 300 s
    stabilization, 100 % per 15 s). ``behavior=False`` is an HPA without ``spec.behavior``:
    ``normalizeDesiredReplicas``, whose stabilization keeps the window's maximum whatever the
    direction and whose scale-up limit is ``max(2 x current, 4)`` per sync.

    ``metric``: how the replica calculator counts pods (:func:`hpa_raw`). ``"external"``: an
    External/Object ``AverageValue`` target, the ratio over every pod (KEDA's default);
    ``"pods"``: a Pods metric or CPU utilization, averaged over the ready pods, starting pods
    treated as Kubernetes treats unready ones. The two agree whenever no pod is starting at a
    decision (start-up no longer than a step).
    """

    step_s: float
    startup_delay_s: float = 300.0
    stabilization_s: float = 300.0
    sync_s: float = 15.0
    tolerance: float = DEFAULT_TOLERANCE
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    behavior: bool = True
    metric: str = "external"

    def __post_init__(self) -> None:
        if self.metric not in METRIC_TYPES:
            raise ValueError(f"metric must be one of {METRIC_TYPES}, got {self.metric!r}")

    @property
    def delay_steps(self) -> int:
        return int(np.ceil(self.startup_delay_s / self.step_s - _EPS))

    @property
    def syncs_per_step(self) -> int:
        return max(1, int(round(self.step_s / self.sync_s)))

    def _window_rows(self) -> tuple[int, int]:
        """(decisions the window holds for most of a step, decisions it holds at the step's last
        sync). A recommendation made at a step's syncs leaves the window ``stabilization_s``
        after its last sync (``rec.timestamp.After(now - window)``); the previous steps' syncs
        drop out during the step. With the window a multiple of the step (300 s at 5 min: the
        previous step's recommendations go at the step's last sync) the step pays for the count
        they held, and the next step starts from the released count."""
        dt, n = self.step_s, self.syncs_per_step
        sync = dt / n
        window = max(self.stabilization_s, 0.0)
        at_end = max(0, int(np.ceil(window / dt - _EPS)) - 1)
        at_first = max(at_end, int(np.ceil((window + (n - 1) * sync) / dt - _EPS)) - 1)
        if at_first == at_end:
            return at_end + 1, at_end + 1
        # Syncs of this step during which the oldest step is still in the window.
        held = int(np.ceil((window + (n - 1) * sync - at_first * dt) / sync - _EPS))
        return (at_first + 1 if 2 * min(max(held, 0), n) >= n else at_end + 1), at_end + 1

    @property
    def stabilization_steps(self) -> int:
        """Decisions whose maximum a scale-down is held at during a step (the paid count)."""
        return self._window_rows()[0]

    @property
    def stabilization_end_steps(self) -> int:
        """Decisions in the window at the step's last sync (the count the next step starts
        from)."""
        return self._window_rows()[1]


@dataclass(frozen=True, slots=True)
class Trajectory:
    desired: np.ndarray  # paid replicas (ready + starting), (S, T)
    ready: np.ndarray  # serving replicas, (S, T)


def _within(ratio: np.ndarray, tolerance: float) -> np.ndarray:
    """Kubernetes' ``Tolerances.isWithin``: ``1 - tolerance <= ratio <= 1 + tolerance`` (not
    ``abs(ratio - 1) <= tolerance``, which float rounding puts outside at exactly 1.1)."""
    return (ratio >= 1.0 - tolerance) & (ratio <= 1.0 + tolerance)


def hpa_raw(
    observed: np.ndarray,
    current: np.ndarray,
    usable: np.ndarray,
    tolerance: float,
    ready: np.ndarray | None = None,
) -> np.ndarray:
    """Kubernetes' ``ceil(current * ratio)`` with the tolerance band (unbounded); the vector
    form of :func:`scaleahead.domain.scaling.reactive_replicas` with a known current count.

    Without ``ready``: ``replica_calculator.go`` ``GetExternalPerPodMetricReplicas`` (an
    External or Object metric with an ``AverageValue`` target): ``ratio = total / (target per
    pod x current)`` where ``current`` counts every pod, ready or starting
    (``scale.Status.Replicas``); within ``1 +- tolerance`` the count stays, else
    ``ceil(total / target per pod)``.

    With ``ready`` (the pods serving; the others are starting): ``calcPlainMetricReplicas`` /
    ``GetResourceReplicas`` (a Pods metric or CPU utilization, averaged over the pods that
    report it): the ratio is over the ready pods, ``total / (target x ready)``; on a scale-up
    (ratio > 1) with starting pods these count at 0 usage, i.e. the ratio over every pod, and
    the count stays if that ratio is within the tolerance or below 1 (no change of direction).
    Starting pods are unready (Pending, or not Ready within the CPU initialization period).
    No ready pod: no metrics, the controller keeps the count."""
    demand = np.maximum(observed, 0.0)
    ratio = demand / (current * usable)
    within = _within(ratio, tolerance)
    plain = np.where(within, current, ceil_replicas(current * ratio, 1.0))
    if ready is None:
        return plain
    ready = np.minimum(ready, current)
    usage = demand / (np.maximum(ready, 1.0) * usable)
    simple = np.where(
        _within(usage, tolerance),
        current,
        ceil_replicas(np.maximum(ready, 1.0) * usage, 1.0),
    )
    rebalanced = np.where(within | (ratio < 1.0), current, np.maximum(plain, current))
    out = np.where((current > ready) & (usage > 1.0), rebalanced, simple)
    return np.where(ready < 1.0, current, out)


def sync_scale_up_limit(current: np.ndarray, timing: Timing) -> np.ndarray:
    """The most replicas one sync may scale up to from ``current``.

    With ``behavior`` (``calculateScaleUpLimitWithScalingRules``, the ``Max`` select policy):
    ``max(ceil(start x (1 + percent / 100)), start + pods)`` where ``start`` is the count at
    the start of the 15 s period, i.e. ``current`` at a 15 s sync (the previous sync's event is
    no longer ``After(now - period)``). Without (``calculateScaleUpLimit``):
    ``max(2 x current, 4)``. Never below ``current``."""
    current = np.asarray(current, dtype=float)
    if not timing.behavior:
        return np.maximum(current, np.maximum(2.0 * current, 4.0))
    by_percent = np.ceil(current * (1 + timing.scale_up_percent / 100.0) - _EPS)
    return np.maximum(current, np.maximum(by_percent, current + timing.scale_up_pods))


def scale_up_limit(
    current: np.ndarray, timing: Timing, cap: np.ndarray, need: np.ndarray | None = None
) -> np.ndarray:
    """The most replicas the scale-up rate policies allow after one step's syncs
    (:func:`sync_scale_up_limit` once per folded sync, capped at ``cap``).

    With ``need``, stops early once every service's limit reaches it: the limit only grows
    from sync to sync, so ``min(need, limit)`` is the same (the replay loop's hot path)."""
    limit = current.astype(float)
    for _ in range(timing.syncs_per_step):
        if need is not None and (limit >= need).all():
            break
        limit = np.minimum(sync_scale_up_limit(limit, timing), cap)
    return limit


def ready_from_desired(
    desired: np.ndarray,
    initial: np.ndarray,
    delay_steps: int,
    released: np.ndarray | None = None,
) -> np.ndarray:
    """``ready[t] = min(desired[t - d .. t])``; before the replay the initial count was ready.

    A scale-in deletes starting pods first (the ReplicaSet's ``ActivePods`` ordering: not-ready
    before ready), so the pods that survive are the oldest and the ready ones at ``t`` are those
    that lived through every count since ``t - d`` (a pod started at step ``s`` serves from
    ``s + d``). ``released[:, t]``: the count step ``t`` ends with when it differs from the
    count it paid for (:func:`run_controller`'s scale-down at the step's last sync); the pods it
    deleted are not ready later."""
    ready = desired.copy()
    ends = desired if released is None else np.minimum(desired, released)
    n_steps = desired.shape[1]
    for k in range(1, min(delay_steps, n_steps) + 1):
        shifted = np.concatenate([np.repeat(initial[:, None], k, axis=1), ends[:, :-k]], axis=1)
        ready = np.minimum(ready, shifted)
    if delay_steps >= n_steps:
        ready = np.minimum(ready, initial[:, None])
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

    Per step, as the controller's syncs of that step would (docs/hpa-reference.md):

    - the raw recommendation from the count the previous step ended with;
    - ``behavior`` (``stabilizeRecommendationWithBehaviors``): a recommendation above the count
      applies at once; below it, the count is clamped to the maximum recommendation in the
      window (``min(current, max(window))``); without ``behavior``, the window's maximum;
    - a scale-up is rate-limited sync by sync and re-evaluated at each new count (a count
      within the tolerance band of the demand stops it);
    - the step pays for the count held during most of its syncs; the previous steps'
      recommendations leave the window at the step's last sync, so the next step starts from
      the count the window allows then.
    """
    n_services, n_steps = demand.shape
    usable = fleet.capacity * hpa_target
    current = fleet.bound(ceil_replicas(last_train, usable)).astype(float)
    initial = current.copy()
    size, at_end = timing.stabilization_steps, timing.stabilization_end_steps
    n_sync = timing.syncs_per_step
    sync = timing.step_s / n_sync
    window_s = timing.stabilization_s - _EPS
    # Each step's recommendations: the first sync's (from the count the step started with) and
    # the later syncs' (from the count it then held). A step ``a`` steps back is in the window
    # at a step's first sync with its later syncs, with its first one while ``a dt < window``;
    # at the step's last sync the last ``at_end`` steps are, their first syncs while
    # ``a dt + (n - 1) sync < window``. Initially: recordInitialRecommendation.
    first = np.repeat(current[None, :], size, axis=0)
    later = first.copy()
    paid_first = [a for a in range(1, size) if a * timing.step_s < window_s]
    end_first = [a for a in range(at_end) if a * timing.step_s + (n_sync - 1) * sync < window_s]
    # The oldest step leaves the window before the last sync unless the window is a multiple
    # of the step.
    early_release = n_sync > 1 and at_end * timing.step_s > timing.stabilization_s + _EPS
    desired = np.empty((n_services, n_steps))
    released = np.empty((n_services, n_steps))
    observed = last_train
    # Pods metric: the pods ready at a step's decision lived through the counts the last
    # ``delay_steps`` steps ended with (the initial ones were ready).
    by_ready = timing.metric == "pods"
    ends = np.repeat(current[None, :], max(1, timing.delay_steps), axis=0)
    ready_now = current

    lo, hi = fleet.min_replicas, fleet.max_replicas

    def recommend(count: np.ndarray, t: int) -> np.ndarray:
        ready = np.minimum(ready_now, count) if by_ready else None
        raw = np.minimum(
            np.maximum(hpa_raw(observed, count, usable, timing.tolerance, ready), lo), hi
        )
        if floor is not None:
            predictive = floor[:, t]
            if hold is not None:
                predictive = np.maximum(predictive, np.minimum(count, hold[:, t]))
            raw = np.maximum(raw, predictive)
        return raw

    def rows(slot: int, ages: list[int] | range) -> np.ndarray:
        return np.array([(slot - a) % size for a in ages], dtype=int)

    paid_later = [rows(slot, range(1, size)) for slot in range(size)]
    paid_earlier = [rows(slot, paid_first) for slot in range(size)]
    end_later = [rows(slot, range(at_end)) for slot in range(size)]
    end_earlier = [rows(slot, end_first) for slot in range(size)]
    for t in range(n_steps):
        if by_ready:
            ready_now = ends.min(axis=0) if timing.delay_steps > 0 else current
        raw = recommend(current, t)
        slot = t % size
        first[slot] = raw
        held = raw
        if size > 1:
            held = np.maximum(held, later[paid_later[slot]].max(axis=0))
        if paid_first:
            held = np.maximum(held, first[paid_earlier[slot]].max(axis=0))
        if timing.behavior:
            target = np.where(raw > current, raw, np.minimum(current, held))
        else:
            target = held
        count = np.minimum(target, current)  # a scale-down (or hold) applies at the first sync
        grow = target > current
        if grow.any():
            count = np.where(grow, current, count)
            for k in range(1, n_sync + 1):
                if not grow.any():
                    break
                limit = np.minimum(sync_scale_up_limit(count, timing), fleet.max_replicas)
                count = np.where(grow, np.minimum(target, limit), count)
                # Sync k re-evaluates at the new count; without behavior the window's maximum
                # (this step's first recommendation while it is in the window) still counts.
                again = np.maximum(recommend(count, t), count)
                if not timing.behavior and k * sync < window_s:
                    again = np.maximum(again, target)
                target = np.where(grow, again, target)
                grow = target > count
        desired[:, t] = count  # within bounds: raw, current and the limit are
        # The step's later syncs recommend from the count it holds; at its last sync the count
        # is clamped to the window then (a scale-down held by the window is released).
        changed = count != current
        later[slot] = np.where(changed, recommend(count, t), raw) if changed.any() else raw
        end = later[end_later[slot]].max(axis=0)
        if end_first:
            end = np.maximum(end, first[end_earlier[slot]].max(axis=0))
        current = np.minimum(count, end)
        if early_release:
            # Released before the step's last sync: the syncs after recommend from the
            # released count (within the tolerance band: that count, which the window keeps).
            later[slot] = np.maximum(later[slot], recommend(current, t))
        released[:, t] = current
        ends[t % len(ends)] = current
        observed = demand[:, t]
    ready = ready_from_desired(desired, initial, timing.delay_steps, released)
    return Trajectory(desired, ready)


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


# Rows per controller run when several target vectors share one (replay_targets): the
# kernel's per-step NumPy overhead is paid once per run, so 1,000-service runs stacked a few
# at a time cost less per row; far beyond that the per-row work and memory dominate.
ROWS_PER_RUN = 8192


def replay_targets(
    demand: np.ndarray,
    last_train: np.ndarray,
    fleet: Fleet,
    timing: Timing,
    targets: Sequence[np.ndarray],
) -> Iterator[Trajectory]:
    """The HPA (no floor) at each per-service target vector of ``targets``, in order: the
    trajectories of one :func:`run_controller` each, replayed several per run (services are
    independent rows of the kernel, so stacking them changes no number)."""
    n = demand.shape[0]
    per_run = max(1, ROWS_PER_RUN // max(1, n))
    for first in range(0, len(targets), per_run):
        chunk = [np.asarray(t, dtype=float) for t in targets[first : first + per_run]]
        k = len(chunk)
        if k == 1:
            yield run_controller(demand, last_train, fleet, chunk[0], timing)
            continue
        wide = Fleet(
            np.tile(fleet.capacity, k),
            np.tile(fleet.min_replicas, k),
            np.tile(fleet.max_replicas, k),
        )
        traj = run_controller(
            np.tile(demand, (k, 1)), np.tile(last_train, k), wide, np.concatenate(chunk), timing
        )
        for j in range(k):
            rows = slice(j * n, (j + 1) * n)
            yield Trajectory(traj.desired[rows], traj.ready[rows])


def cost_matched_targets(
    demand: np.ndarray,
    last_train: np.ndarray,
    fleet: Fleet,
    timing: Timing,
    replica_hours: np.ndarray,
    lo: float = 0.02,
    hi: float = 1.0,
    iterations: int = 16,
    start: int = 0,
    grid: int = 64,
) -> tuple[np.ndarray, Trajectory]:
    """Per service, the lowest HPA target (the most replicas, so the least under-provisioning)
    whose replica-hours do not exceed ``replica_hours``: the best reactive HPA that budget
    buys. Returns the targets and their trajectory.

    Replica-hours fall with the target but not strictly (the tolerance band makes the replay
    path-dependent: a slightly higher target can sit at a higher count for hours), so a plain
    bisection can stop at a local boundary. The targets on a ``grid`` over ``[lo, hi]`` are
    replayed first; the lowest affordable one and the grid point below it (too costly) are then
    bisected ``iterations`` times, keeping the affordable end: the result is within budget
    and a target ``(hi - lo) / (grid - 1) / 2**iterations`` lower is not. ``lo`` when that is
    affordable; ``hi`` (over budget) when nothing is. ``start``: replica-hours count from that
    replay step on (the twin's judged window); the controller runs from the replay's start."""
    return cost_matched_many(
        demand, last_train, fleet, timing, [replica_hours], lo, hi, iterations, start, grid
    )[0]


def cost_matched_many(
    demand: np.ndarray,
    last_train: np.ndarray,
    fleet: Fleet,
    timing: Timing,
    budgets: list[np.ndarray],
    lo: float = 0.02,
    hi: float = 1.0,
    iterations: int = 16,
    start: int = 0,
    grid: int = 64,
) -> list[tuple[np.ndarray, Trajectory]]:
    """:func:`cost_matched_targets` for several budgets (one per policy): the grid's replays do
    not depend on the budget, so they run once, and the budgets' bisections run side by side
    (one controller run per step of the bisection)."""
    n = demand.shape[0]
    step_h = timing.step_s / 3600.0

    def hours(traj: Trajectory) -> np.ndarray:
        return traj.desired[:, start:].sum(axis=1) * step_h

    def replay(targets: Sequence[np.ndarray]) -> Iterator[Trajectory]:
        return replay_targets(demand, last_train, fleet, timing, targets)

    levels = np.linspace(lo, hi, max(2, grid))
    level_hours = np.column_stack([hours(t) for t in replay([np.full(n, v) for v in levels])])
    budget = np.asarray(budgets, dtype=float)  # (B, n)
    affordable = level_hours[None, :, :] <= budget[:, :, None]
    some = affordable.any(axis=2)
    lowest = np.argmax(affordable, axis=2)
    high = np.where(some, levels[lowest], hi)
    low = np.where(some & (lowest > 0), levels[np.maximum(lowest - 1, 0)], high)
    for _ in range(iterations):
        active = low < high
        bisected = np.flatnonzero(active.any(axis=1))  # budgets with a bracket left
        if len(bisected) == 0:
            break
        mid = np.where(active, (low + high) / 2, high)
        for b, traj in zip(bisected, replay([mid[b] for b in bisected]), strict=True):
            too_costly = hours(traj) > budget[b]
            low[b] = np.where(active[b] & too_costly, mid[b], low[b])
            high[b] = np.where(active[b] & ~too_costly, mid[b], high[b])
    return list(zip(list(high), replay(list(high)), strict=True))


def calibrated_peaks(
    peaks: np.ndarray, demand: np.ndarray, lag: int, alpha: float, gamma: float, bound: float
) -> np.ndarray:
    """:mod:`scaleahead.domain.headroom` per step for every service: ``peaks x exp(theta)``.

    The peak decided at step ``s`` is for the bucket ``s + lag`` (the start-up delay ahead);
    it is realised once that bucket is complete, so step ``t`` has learnt from the decisions
    up to ``t - lag - 1`` only (no look-ahead). NaN peaks (no forecast) learn nothing."""
    n_series, n_steps = peaks.shape
    theta = np.zeros(n_series)
    thetas = np.zeros((n_series, n_steps))
    for t in range(n_steps):
        s = t - lag - 1
        if s >= 0 and gamma > 0:
            planned = peaks[:, s] * np.exp(thetas[:, s])
            missed = (demand[:, s + lag] > planned).astype(float)
            step = np.where(np.isnan(planned), 0.0, gamma * (missed - alpha))
            theta = np.clip(theta + step, -bound, bound)
        thetas[:, t] = theta
    return peaks * np.exp(thetas)
