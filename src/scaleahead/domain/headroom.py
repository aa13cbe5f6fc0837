"""Online headroom calibration: adaptive conformal inference on the scaling quantile (pure).

The policy plans for ``peak x exp(theta)``, where ``peak`` is the forecast's scaling quantile
and ``theta`` a per-service log margin learnt from that service's own realised errors: after
every realised bucket, ``theta += gamma x (missed - alpha)`` (Gibbs & Candès 2021, on a log
scale so it is free of the series' units), clipped to ``[-bound, bound]``. A service whose
demand exceeds the plan more often than ``alpha`` gets more headroom, one whose forecast band is
wider than it needs gets less, whatever its noise level; nothing is a constant per trace.
``alpha`` and ``gamma`` are chosen by leave-one-trace-out over the twin's traces
(``guard_selection`` in benchmarks/results/twin.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_ALPHA = 0.05
DEFAULT_GAMMA = 0.01
DEFAULT_BOUND = 1.5  # exp(1.5) ~ 4.5x: the margin never plans for less than a fifth of the peak


@dataclass(frozen=True, slots=True)
class HeadroomRule:
    alpha: float = DEFAULT_ALPHA  # target miss rate: demand above the plan
    gamma: float = DEFAULT_GAMMA  # learning rate of the log margin (0: off)
    bound: float = DEFAULT_BOUND

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1 or self.gamma < 0 or self.bound < 0:
            raise ValueError("need 0 < alpha < 1, gamma >= 0, bound >= 0")


def update(theta: float, planned: float, realised: float, rule: HeadroomRule) -> float:
    """One step of the recursion: ``planned`` was ``peak x exp(theta)`` for the bucket whose
    demand turned out ``realised``. Non-finite inputs leave ``theta`` unchanged."""
    if not (math.isfinite(planned) and math.isfinite(realised)):
        return theta
    missed = 1.0 if realised > planned else 0.0
    return min(rule.bound, max(-rule.bound, theta + rule.gamma * (missed - rule.alpha)))


def replay(peaks: list[float], realised: list[float], rule: HeadroomRule) -> float:
    """The margin after a history of (forecast peak, realised demand) pairs, oldest first."""
    theta = 0.0
    for peak, value in zip(peaks, realised, strict=True):
        theta = update(theta, peak * math.exp(theta), value, rule)
    return theta
