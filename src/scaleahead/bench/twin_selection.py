"""Leave-one-trace-out choice of the guard's rule and the headroom calibration.

Every candidate (headroom ``alpha``, ``gamma`` x guard rule) is replayed on every trace's
prepared forecasts (:func:`scaleahead.twin.runner.prepare`: the forecasts do not depend on the
candidates, so each trace is forecast once). Per candidate and trace: the guarded policy's
under-provisioned minutes over the judged window and the cost-matched HPA's, read off the
HPA target grid (:class:`scaleahead.twin.guard.HpaGrid`; the bench's headline figures use the
exact bisection). A candidate is better when it loses (guarded > cost-matched) on fewer traces,
then when its summed minutes over the cost-matched HPA's are lower. For each trace the best
candidate on all the *other* traces is chosen and scored on the one left out; the left-out
figures are the headline, the in-sample best is reported beside them.
"""

from __future__ import annotations

from dataclasses import asdict
from itertools import product
from typing import Any

import numpy as np

from scaleahead.domain import headroom
from scaleahead.domain.modes import GuardRule
from scaleahead.twin import guard, sim
from scaleahead.twin.runner import Prepared, TwinConfig, judged_start

HEADROOM = ((0.05, 0.0), (0.05, 0.01))  # (alpha, gamma); gamma 0: off
# ``trial_waits_for_evidence`` is not among the candidates: added, it lowered the left-out total
# (0.861 -> 0.821) but made one more trace lose left out (ambient temperature, its fold chose
# it: promoted after 11 days without an incident, it never made up for them), docs/twin.md.
RULES = tuple(
    GuardRule(
        promote_ratio=p, demote_ratio=d, min_incidents=i, promote_within_days=w, retrial_days=r
    )
    for p, d, i, w, r in product((0.5, 0.7, 0.9), (1.0, 1.5), (1, 2), (None, 1.0), (None, 14.0))
    if w is not None or r is None  # a re-trial only means something after a trial
)
Candidate = tuple[tuple[float, float], GuardRule]


def candidates() -> list[Candidate]:
    return [(h, r) for h in HEADROOM for r in RULES]


def score_trace(prep: Prepared, cfg: TwinConfig) -> dict[Candidate, tuple[float, float]]:
    """(guarded minutes, cost-matched minutes) over the judged window, per candidate."""
    replay, last, fleet, timing = prep.replay, prep.train[:, -1], prep.fleet, prep.timing
    slo = cfg.target_utilization
    usable = fleet.capacity * slo
    targets = np.full(len(prep.ids), slo)
    observed = sim.observed_demand(replay, last)
    gate = prep.policy.recurring_gate
    j0, n_steps = judged_start(replay.shape[1], prep.step_s, cfg), replay.shape[1]
    period = max(1, int(round(cfg.guard_period_s / prep.step_s)))
    grid = guard.hpa_grid(replay, last, fleet, timing, slo)
    step_min, step_h = prep.step_s / 60.0, prep.step_s / 3600.0
    out: dict[Candidate, tuple[float, float]] = {}
    for alpha, gamma in HEADROOM:
        peaks = sim.calibrated_peaks(
            prep.peaks, replay, timing.delay_steps, alpha, gamma, headroom.DEFAULT_BOUND
        )
        floor = sim.predictive_floor(peaks, fleet, usable, observed, prep.recurring, gate)
        hold = sim.predictive_floor(
            peaks, fleet, usable, observed, prep.recurring, gate, prep.policy.scale_in_hysteresis
        )
        unguarded = sim.run_controller(replay, last, fleet, targets, timing, floor, hold)
        for rule in RULES:
            modes = guard.guarded_modes(unguarded, replay, grid, fleet, timing, slo, rule, period)
            on = modes.astype(float)
            traj = sim.run_controller(replay, last, fleet, targets, timing, floor * on, hold * on)
            short = guard.short_steps(traj.ready, replay, fleet.capacity, slo)[:, j0:]
            matched, _ = grid.matched(traj.desired[:, j0:].sum(axis=1) * step_h, j0, n_steps)
            out[((alpha, gamma), rule)] = (float(short.sum() * step_min), float(matched.sum()))
    return out


def _objective(
    scores: dict[str, dict[Candidate, tuple[float, float]]], cand: Candidate, keys: list[str]
) -> tuple[int, float]:
    losses = sum(scores[k][cand][0] > scores[k][cand][1] + 1e-6 for k in keys)
    pred = sum(scores[k][cand][0] for k in keys)
    matched = sum(scores[k][cand][1] for k in keys)
    return losses, (pred / matched if matched else 1.0)


def describe(cand: Candidate) -> dict[str, Any]:
    (alpha, gamma), rule = cand
    return {"headroom_alpha": alpha, "headroom_gamma": gamma, **asdict(rule)}


def select(scores: dict[str, dict[Candidate, tuple[float, float]]]) -> dict[str, Any]:
    """Leave-one-trace-out over ``scores`` (trace -> candidate -> minutes)."""
    keys = sorted(scores)
    cands = candidates()
    best = min(cands, key=lambda c: _objective(scores, c, keys))
    per_trace: dict[str, Any] = {}
    pred = matched = 0.0
    losses = []
    for k in keys:
        rest = [x for x in keys if x != k]
        pick = min(cands, key=lambda c: _objective(scores, c, rest))
        p, m = scores[k][pick]
        pred, matched = pred + p, matched + m
        if p > m + 1e-6:
            losses.append(k)
        per_trace[k] = {"chosen": describe(pick), "guarded_min": p, "matched_min": m}
    in_losses, in_ratio = _objective(scores, best, keys)
    return {
        "traces": len(keys),
        "candidates": len(cands),
        "left_out_pred_vs_matched_under_total": round(pred / matched, 4) if matched else None,
        "left_out_traces_worse_than_matched": losses,
        "in_sample_best": describe(best),
        "in_sample_pred_vs_matched_under_total": round(in_ratio, 4),
        "in_sample_traces_worse_than_matched": in_losses,
        "per_trace": per_trace,
    }
