"""Scaling modes and the guard that moves a service between them (pure, no I/O).

A service runs in one of three modes:

- ``shadow`` — the reactive (HPA) recommendation drives; the predictive one is computed, stored
  and scored. Every new service starts here.
- ``predictive`` — ``max(predictive, reactive)`` drives (the policy of
  :func:`scaleahead.domain.scaling.recommend`).
- ``reactive`` — forced by the user: predictive is neither served nor promoted.

The guard reads :class:`Evidence` — a causal replay of the service's own recent history: the
under-provisioned minutes predictive would have had, had it driven, against the HPA given the
same replica-hours (the cost-matched HPA) — and applies :func:`decide_mode`. It promotes only on
a clear win with enough evidence (days, and incidents: episodes where the cost-matched HPA was
short) and demotes when predictive stops winning; the two thresholds differ, so a service whose
ratio wanders between them keeps its mode (no flapping). A pin in config overrides everything.
The same rule runs in the scheduled guard task and in the twin's guarded replay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum


class ScalingMode(StrEnum):
    SHADOW = "shadow"
    PREDICTIVE = "predictive"
    REACTIVE = "reactive"


class ModeReason(StrEnum):
    PINNED = "pinned"
    NEW_SERVICE = "new_service"
    NO_EVIDENCE = "no_evidence"
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"
    PREDICTIVE_WINS = "predictive_wins"
    PREDICTIVE_STOPPED_WINNING = "predictive_stopped_winning"
    STILL_WINNING = "still_winning"
    NOT_WINNING_ENOUGH = "not_winning_enough"
    TRIAL_OVER = "trial_over"


# Defaults: chosen by leave-one-trace-out over the twin's traces (``scaleahead bench twin``,
# ``guard_selection`` in benchmarks/results/twin.json); the selection is reported there.
DEFAULT_PROMOTE_RATIO = 0.7
DEFAULT_DEMOTE_RATIO = 1.5
DEFAULT_MIN_DAYS = 1.0
DEFAULT_MIN_INCIDENTS = 1
DEFAULT_WINDOW_DAYS = 14.0
DEFAULT_PROMOTE_WITHIN_DAYS = 1.0
DEFAULT_TRIAL_WAITS_FOR_EVIDENCE = False


@dataclass(frozen=True, slots=True)
class GuardRule:
    """When the guard promotes and demotes.

    Promote ``shadow -> predictive`` when, over at least ``min_days`` of evidence with at least
    ``min_incidents`` incidents, predictive's under-provisioned minutes are at most
    ``promote_ratio`` times the cost-matched HPA's. Demote ``predictive -> shadow`` when they
    exceed ``demote_ratio`` times (predictive loses). ``promote_ratio < demote_ratio`` is the
    hysteresis band."""

    promote_ratio: float = DEFAULT_PROMOTE_RATIO
    demote_ratio: float = DEFAULT_DEMOTE_RATIO
    min_days: float = DEFAULT_MIN_DAYS
    min_incidents: int = DEFAULT_MIN_INCIDENTS
    window_days: float = DEFAULT_WINDOW_DAYS
    # The trial: promote only while the service's current stay in shadow is at most this many
    # days old (None: any time), or, with ``retrial_days``, once the stay has lasted that long.
    # Measured on the twin: services promoted after days in shadow lost to the HPA given the
    # same replica-hours over the period (they paid those days at the default HPA's shortfall),
    # and late wins were mostly noise (``guard_selection`` in twin.json). A service whose trial
    # is over stays in shadow until a pin to ``reactive`` is removed (a new trial).
    promote_within_days: float | None = DEFAULT_PROMOTE_WITHIN_DAYS
    retrial_days: float | None = None
    # True: the trial counts from the first decision with enough evidence (days, incidents), so
    # a service whose first days had no incident is still judged once; False: from the first
    # decision with any evidence.
    trial_waits_for_evidence: bool = DEFAULT_TRIAL_WAITS_FOR_EVIDENCE

    @classmethod
    def from_prefixed(cls, source: object, prefix: str = "guard_") -> GuardRule:
        """The rule from an object holding each field as ``<prefix><field>`` (the settings,
        the twin's config)."""
        return cls(**{f.name: getattr(source, prefix + f.name) for f in fields(cls)})

    def __post_init__(self) -> None:
        if not 0 <= self.promote_ratio <= self.demote_ratio:
            raise ValueError(
                f"need 0 <= promote_ratio ({self.promote_ratio}) <= demote_ratio "
                f"({self.demote_ratio})"
            )
        if self.min_days < 0 or self.min_incidents < 0 or self.window_days <= 0:
            raise ValueError("min_days, min_incidents must be >= 0 and window_days > 0")


@dataclass(frozen=True, slots=True)
class Evidence:
    """A causal replay of one service's recent history (predictive as if it had driven)."""

    days: float
    predictive_under_min: float
    matched_under_min: float
    incidents: int  # episodes (runs of short steps) of the cost-matched HPA
    predictive_replica_hours: float = math.nan
    reactive_replica_hours: float = math.nan
    window_start: str | None = None
    window_end: str | None = None
    # How long the service has been in shadow (this stay) when the evidence is taken; None: a
    # service the guard has not decided on yet (its trial).
    shadow_days: float | None = None

    @property
    def ratio(self) -> float | None:
        """Predictive / cost-matched under-provisioned minutes; None when neither was short."""
        if self.matched_under_min > 0:
            return self.predictive_under_min / self.matched_under_min
        return None if self.predictive_under_min == 0 else math.inf

    @property
    def minutes_saved(self) -> float:
        return self.matched_under_min - self.predictive_under_min

    @property
    def extra_replica_hours(self) -> float:
        return self.predictive_replica_hours - self.reactive_replica_hours

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        out["ratio"] = self.ratio
        out["minutes_saved"] = self.minutes_saved
        out["extra_replica_hours"] = self.extra_replica_hours
        return out


@dataclass(frozen=True, slots=True)
class ModeDecision:
    mode: ScalingMode
    previous: ScalingMode | None
    reason: ModeReason
    evidence: Evidence | None = None

    @property
    def changed(self) -> bool:
        return self.previous is not None and self.mode != self.previous


def decide_mode(
    previous: ScalingMode | str | None,
    evidence: Evidence | None,
    rule: GuardRule = GuardRule(),
    pinned: ScalingMode | str | None = None,
) -> ModeDecision:
    """The guard's decision for one service. ``previous`` None: a new service (starts in
    shadow). ``pinned``: the user's mode from config, returned as is."""
    prev = ScalingMode(previous) if previous is not None else None
    if pinned is not None:
        return ModeDecision(ScalingMode(pinned), prev, ModeReason.PINNED, evidence)
    # A mode forced by a pin that was removed since falls back to shadow: only evidence promotes.
    current = ScalingMode.SHADOW if prev in (None, ScalingMode.REACTIVE) else prev
    if evidence is None:
        reason = ModeReason.NEW_SERVICE if prev is None else ModeReason.NO_EVIDENCE
        return ModeDecision(current, prev, reason, None)
    ratio = evidence.ratio
    if current is ScalingMode.PREDICTIVE:
        if ratio is not None and ratio > rule.demote_ratio:
            return ModeDecision(
                ScalingMode.SHADOW, prev, ModeReason.PREDICTIVE_STOPPED_WINNING, evidence
            )
        return ModeDecision(current, prev, ModeReason.STILL_WINNING, evidence)
    if evidence.days < rule.min_days or evidence.incidents < rule.min_incidents:
        return ModeDecision(current, prev, ModeReason.INSUFFICIENT_EVIDENCE, evidence)
    if not _in_trial(evidence.shadow_days, rule):
        return ModeDecision(current, prev, ModeReason.TRIAL_OVER, evidence)
    if ratio is not None and ratio <= rule.promote_ratio:
        return ModeDecision(ScalingMode.PREDICTIVE, prev, ModeReason.PREDICTIVE_WINS, evidence)
    return ModeDecision(current, prev, ModeReason.NOT_WINNING_ENOUGH, evidence)


def _in_trial(shadow_days: float | None, rule: GuardRule) -> bool:
    if rule.promote_within_days is None or shadow_days is None:
        return True
    if shadow_days <= rule.promote_within_days:
        return True
    return rule.retrial_days is not None and shadow_days >= rule.retrial_days


def count_incidents(short: list[bool] | tuple[bool, ...]) -> int:
    """Episodes in a per-step under-provisioned flag sequence (runs of True)."""
    runs, before = 0, False
    for flag in short:
        if flag and not before:
            runs += 1
        before = bool(flag)
    return runs


def pinned_mode(pins: Mapping[str, str], service: str) -> ScalingMode | None:
    """The mode ``pins`` (service -> mode, ``*`` for every service) force on ``service``: its
    own entry, else ``*``, else None (the guard decides)."""
    mode = pins.get(service, pins.get("*"))
    return ScalingMode(mode) if mode is not None else None


def serving_mode(
    stored: ScalingMode | str | None,
    stored_reason: ModeReason | str | None,
    evidence: Evidence | None,
    pinned: ScalingMode | str | None = None,
    rule: GuardRule = GuardRule(),
) -> tuple[ScalingMode, ModeReason]:
    """The mode a service is served in from its latest stored decision (``serving.scaling_modes``)
    and the pin in force where it is served: a pin wins; no decision yet -> shadow
    (``new_service``); a decision made under a pin that has since been removed is taken again
    without it (:func:`decide_mode` on the stored mode and evidence, what the guard's next run
    decides); otherwise the stored decision."""
    if pinned is not None:
        return ScalingMode(pinned), ModeReason.PINNED
    if stored is None:
        return ScalingMode.SHADOW, ModeReason.NEW_SERVICE
    if stored_reason == ModeReason.PINNED:
        decision = decide_mode(stored, evidence, rule)
        return decision.mode, decision.reason
    return ScalingMode(stored), ModeReason(stored_reason)
