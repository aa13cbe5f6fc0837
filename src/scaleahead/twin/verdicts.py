"""Per-service triage of a twin run: where predictive scaling beats the reactive HPA given the
same replica-hours, and where it does not (pure, on a :class:`TwinResult`'s metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scaleahead.twin.runner import TwinResult

# The bar for "predictive earns its place": at most 0.7x the same-cost HPA's minutes.
TARGET_RATIO = 0.7


@dataclass(frozen=True)
class ServiceVerdicts:
    """Per service, predictive against the HPA cost-matched to it (a fleet report's triage)."""

    services: int
    better: int  # fewer under-provisioned minutes than the cost-matched HPA
    meets_target: int  # ... by at least 30 % (predictive <= 0.7 x the cost-matched HPA)
    same: int  # as many (incl. services neither policy ever under-provisioned)
    never_short: int
    worse: int
    worst: list[dict[str, Any]]  # the services where predictive loses most, largest loss first

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def service_verdicts(result: TwinResult, top: int = 10) -> ServiceVerdicts:
    pred = result.metrics["predictive"].underprovisioned_minutes
    matched = result.metrics["reactive_cost_matched"].underprovisioned_minutes
    react = result.metrics["reactive"].underprovisioned_minutes
    targets = result.hpa_targets["reactive_cost_matched"]
    worse = np.flatnonzero(pred > matched)
    worse = worse[np.argsort(-(pred[worse] - matched[worse]), kind="stable")]
    return ServiceVerdicts(
        services=len(result.ids),
        better=int(np.sum(pred < matched)),
        meets_target=int(np.sum((matched > 0) & (pred <= TARGET_RATIO * matched))),
        same=int(np.sum(pred == matched)),
        never_short=int(np.sum((pred == 0) & (matched == 0))),
        worse=len(worse),
        worst=[
            {
                "service": result.ids[i],
                "predictive": float(pred[i]),
                "cost_matched": float(matched[i]),
                "cost_matched_target": float(targets[i]),
                "reactive": float(react[i]),
            }
            for i in worse[:top]
        ],
    )
