"""The guard in the twin: per-service evidence from a replay, and the guarded predictive policy.

Evidence (what :func:`scaleahead.domain.modes.decide_mode` reads) is predictive *as if it had
driven* (the unguarded policy) against the HPA cost-matched to it, over a window of the replay.
:func:`service_evidence` takes it over a whole replay (the scheduled guard task); the guarded
replay takes it causally, at each decision time, over the replay so far (the twin's default
``predictive`` policy: a new service starting in shadow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scaleahead.domain.modes import Evidence, GuardRule, ModeReason, ScalingMode, decide_mode
from scaleahead.twin import sim

if TYPE_CHECKING:
    from scaleahead.twin.runner import TwinResult

UNGUARDED = "predictive_unguarded"
MATCHED_UNGUARDED = "reactive_cost_matched_unguarded"
_EPS = 1e-9


def short_steps(
    ready: np.ndarray, demand: np.ndarray, capacity: np.ndarray, slo_target: float
) -> np.ndarray:
    """Per step: demand above ready x capacity x SLO target (``sim.metrics``' definition)."""
    served = ready * (capacity * slo_target)[:, None]
    return (demand - served) > _EPS * np.maximum(1.0, served)


def episode_starts(short: np.ndarray) -> np.ndarray:
    """True where a run of short steps begins (an incident)."""
    before = np.concatenate([np.zeros((short.shape[0], 1), dtype=bool), short[:, :-1]], axis=1)
    return short & ~before


def service_evidence(result: TwinResult) -> list[Evidence]:
    """One :class:`Evidence` per service of ``result`` (in ``result.ids`` order) over its whole
    replay: the unguarded predictive policy against the HPA cost-matched to it."""
    slo = float(result.details["slo_target_utilization"])
    step_s = float(result.details["step_s"])
    pred = result.metrics[UNGUARDED]
    matched = result.metrics[MATCHED_UNGUARDED]
    reactive = result.metrics["reactive"]
    short = short_steps(
        result.trajectories[MATCHED_UNGUARDED].ready, result.demand, result.capacity, slo
    )
    incidents = episode_starts(short).sum(axis=1)
    days = result.demand.shape[1] * step_s / 86400.0
    start, end = str(result.ds[0]), str(result.ds[-1])
    return [
        Evidence(
            days=days,
            predictive_under_min=float(pred.underprovisioned_minutes[i]),
            matched_under_min=float(matched.underprovisioned_minutes[i]),
            incidents=int(incidents[i]),
            predictive_replica_hours=float(pred.replica_hours[i]),
            reactive_replica_hours=float(reactive.replica_hours[i]),
            window_start=start,
            window_end=end,
        )
        for i in range(len(result.ids))
    ]


# HPA targets whose replays stand in for "the HPA cost-matched to predictive over a window":
# replica-hours fall as the target rises, so the best HPA for a budget is read off this grid
# by interpolation at predictive's replica-hours (one replay per target instead of a bisection
# per decision time).
HPA_GRID = np.array([0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
                     0.75, 0.8, 0.85, 0.9, 0.95, 1.0])  # fmt: skip


def _cumulative(values: np.ndarray) -> np.ndarray:
    """(S, T) -> (S, T + 1) running sums with a leading zero: window sums are differences."""
    return np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(values, axis=1)], axis=1)


@dataclass(frozen=True, slots=True)
class HpaGrid:
    """The HPA replayed at every target of :data:`HPA_GRID`: running replica-hours,
    under-provisioned minutes and incidents, ``(K, S, T + 1)``."""

    replica_hours: np.ndarray
    minutes: np.ndarray
    incidents: np.ndarray

    def matched(
        self, budget: np.ndarray, a: int | np.ndarray, b: int | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Under-provisioned minutes and incidents, over steps ``[a, b)``, of the HPA whose
        replica-hours there equal ``budget`` (interpolated between grid targets)."""
        idx = np.arange(self.replica_hours.shape[1])
        rh = self.replica_hours[:, idx, b] - self.replica_hours[:, idx, a]  # (K, S)
        mins = self.minutes[:, idx, b] - self.minutes[:, idx, a]
        inc = self.incidents[:, idx, b] - self.incidents[:, idx, a]
        out_min, out_inc = np.empty(len(idx)), np.empty(len(idx))
        for i in idx:
            # Ascending replica-hours: the grid from the highest target to the lowest.
            x = np.maximum.accumulate(rh[::-1, i])
            out_min[i] = np.interp(budget[i], x, mins[::-1, i])
            out_inc[i] = np.interp(budget[i], x, inc[::-1, i])
        return out_min, np.rint(out_inc)


def hpa_grid(
    demand: np.ndarray,
    last_train: np.ndarray,
    fleet: sim.Fleet,
    timing: sim.Timing,
    slo_target: float,
) -> HpaGrid:
    n_services = demand.shape[0]
    step_min, step_h = timing.step_s / 60.0, timing.step_s / 3600.0
    rh, mins, inc = [], [], []
    targets = [np.full(n_services, target) for target in HPA_GRID]
    for traj in sim.replay_targets(demand, last_train, fleet, timing, targets):
        short = short_steps(traj.ready, demand, fleet.capacity, slo_target)
        rh.append(_cumulative(traj.desired * step_h))
        mins.append(_cumulative(short * step_min))
        inc.append(_cumulative(episode_starts(short).astype(float)))
    return HpaGrid(np.stack(rh), np.stack(mins), np.stack(inc))


def guarded_modes(
    unguarded: sim.Trajectory,
    demand: np.ndarray,
    grid: HpaGrid,
    fleet: sim.Fleet,
    timing: sim.Timing,
    slo_target: float,
    rule: GuardRule,
    period_steps: int,
    previous: list[ScalingMode | None] | None = None,
) -> np.ndarray:
    """(S, T) True where the guard runs the service in predictive mode (else shadow).

    Every ``period_steps`` from the replay's start the guard decides (:func:`decide_mode`) on
    the last ``rule.window_days`` of the replay so far: only complete steps (``< τ``), so no
    decision reads the future. Before the first decision every service is in shadow (new)."""
    n_services, n_steps = demand.shape
    window = max(1, int(round(rule.window_days * 86400.0 / timing.step_s)))
    pred_short = short_steps(unguarded.ready, demand, fleet.capacity, slo_target)
    pred_rh = _cumulative(unguarded.desired * (timing.step_s / 3600.0))
    pred_min = _cumulative(pred_short * (timing.step_s / 60.0))
    modes = np.zeros((n_services, n_steps), dtype=bool)
    state: list[ScalingMode | None] = list(previous) if previous else [None] * n_services
    shadow_since = np.zeros(n_services, dtype=int)  # the step the current stay in shadow began
    for tau in range(period_steps, n_steps, period_steps):
        a = max(0, tau - window)
        days = (tau - a) * timing.step_s / 86400.0
        p_rh = pred_rh[:, tau] - pred_rh[:, a]
        p_min = pred_min[:, tau] - pred_min[:, a]
        m_min, m_inc = grid.matched(p_rh, a, tau)
        for i in range(n_services):
            evidence = Evidence(
                days=days,
                predictive_under_min=float(p_min[i]),
                matched_under_min=float(m_min[i]),
                incidents=int(m_inc[i]),
                shadow_days=(tau - shadow_since[i]) * timing.step_s / 86400.0,
            )
            decision = decide_mode(state[i], evidence, rule)
            if decision.mode is not ScalingMode.PREDICTIVE and (
                state[i] is ScalingMode.PREDICTIVE
                or (
                    rule.trial_waits_for_evidence
                    and decision.reason is ModeReason.INSUFFICIENT_EVIDENCE
                )
            ):
                shadow_since[i] = tau
            state[i] = decision.mode
            modes[i, tau : tau + period_steps] = decision.mode is ScalingMode.PREDICTIVE
    return modes
