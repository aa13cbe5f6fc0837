"""Recommendations from the cache: the scaling policy applied to cached forecasts and context.

Shared by REST, the KEDA metrics-api endpoint, the gRPC external scaler and ``/metrics``; no
warehouse access (everything comes from :class:`~scaleahead.api.cache.ForecastCache`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scaleahead.api.cache import ForecastCache, SeriesForecast
from scaleahead.api.context import QUANTILES, ModeRecord, ServiceInfo, default_spec
from scaleahead.config import Settings
from scaleahead.domain.modes import ModeReason, ScalingMode, pinned_mode, serving_mode
from scaleahead.domain.scaling import (
    ForecastSignal,
    Recommendation,
    ScalingPolicy,
    Stabilizer,
    forecast_peak,
    recommend,
    recurring_peak,
)


class UnknownService(KeyError):
    pass


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts is not None else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class Recommender:
    def __init__(
        self,
        cache: ForecastCache,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if settings.scaling_quantile not in QUANTILES:
            raise ValueError(f"scaling_quantile must be one of {QUANTILES}")
        if settings.scaling_clock not in ("wall", "data"):
            raise ValueError("scaling_clock must be 'wall' or 'data'")
        self.cache = cache
        self.settings = settings
        self.policy = ScalingPolicy(
            lead_time_s=settings.scaling_lead_time_s,
            window_s=settings.scaling_window_s,
            tolerance=settings.scaling_tolerance,
            stabilization_window_s=settings.scaling_stabilization_s,
            forecast_max_age_s=settings.forecast_max_age_s,
            scale_in_hysteresis=settings.scaling_scale_in_hysteresis,
            recurring_days=settings.scaling_recurring_days,
            recurring_gate=settings.scaling_recurring_gate,
        )
        self.stabilizer = Stabilizer(settings.scaling_stabilization_s)
        self._clock = clock
        # Pins (service -> mode, "*" for all; dry-run services are pinned shadow) and the
        # guard's rule, for a stored decision taken under a pin removed since.
        self._pins = settings.scaling_mode_pins
        self._rule = settings.guard_rule()

    def now(self) -> datetime:
        if self.settings.scaling_clock == "data":
            data_end = self.cache.context.data_end
            if data_end is not None:
                return data_end
        return self._clock()

    def services(self) -> list[str]:
        return sorted(set(self.cache.snapshot.services()) | self.cache.context.known_services)

    def scaling_mode(self, service: str) -> tuple[ScalingMode, ModeReason, ModeRecord | None]:
        """The mode ``service`` is served in, why, and the guard's latest decision (if any):
        a pin from settings wins; without a decision a service is in shadow (``new_service``)."""
        record = self.cache.context.modes.get(service)
        pin = pinned_mode(self._pins, service)
        if record is None:
            mode, reason = serving_mode(None, None, None, pin, self._rule)
            return mode, reason, None
        try:
            mode, reason = serving_mode(
                record.mode, record.reason, record.evidence, pin, self._rule
            )
        except ValueError:  # a row no release of the guard writes: treat as no decision
            mode, reason = serving_mode(None, None, None, pin, self._rule)
        return mode, reason, record

    def is_dry_run(self, service: str) -> bool:
        """Shadow mode (the older name: dry-run): scalers get the reactive value."""
        return self.scaling_mode(service)[0] is ScalingMode.SHADOW

    def service_info(self, service: str) -> ServiceInfo:
        info = self.cache.context.services.get(service)
        if info is not None:
            return info
        return ServiceInfo(default_spec(None), "api_default")

    def decide(
        self,
        service: str,
        metric: str | None = None,
        quantile: str | None = None,
        current_replicas: int | None = None,
    ) -> tuple[Recommendation, int, dict[str, Any]]:
        """(raw decision, stabilized replicas, inputs used) for one service."""
        metric = metric or self.settings.demand_metric
        quantile = quantile or self.settings.scaling_quantile
        snapshot, context = self.cache.snapshot, self.cache.context
        series = snapshot.get(service, metric)
        if series is None and service not in context.known_services:
            raise UnknownService(service)
        now = self.now()
        info = self.service_info(service)
        firing = context.firing(service)
        signal = None
        if series is not None:
            signal = ForecastSignal(
                created_at=series.created_at,
                points=[(p.ds, getattr(p, quantile)) for p in series.points],
                quality_failed=context.quality.service_failed(service),
                low_confidence=bool(firing),
            )
        actual = context.actuals.get(service) if metric == self.settings.demand_metric else None
        recurring = None
        history = context.history.get(service) if metric == self.settings.demand_metric else None
        if history is not None:
            recurring = recurring_peak(history[0], history[1], now, self.policy)
        scaling_mode = self.scaling_mode(service)
        decision = recommend(
            info.spec,
            now,
            signal,
            actual.value if actual else None,
            current_replicas=current_replicas,
            policy=self.policy,
            recurring=recurring,
            scaling_mode=scaling_mode[0].value,
        )
        stable = self.stabilizer.stabilize(
            f"{service}\x00{metric}\x00{quantile}", now, decision.replicas
        )
        inputs = {
            "now": now,
            "metric": metric,
            "quantile": quantile,
            "series": series,
            "info": info,
            "actual": actual,
            "firing": firing,
            "current_replicas": current_replicas,
            "recurring_peak": recurring,
            "scaling_mode": scaling_mode,
        }
        return decision, stable, inputs

    def peaks(self, series: SeriesForecast | None, now: datetime) -> dict[str, float | None]:
        if series is None:
            return dict.fromkeys(QUANTILES)
        return {
            q: _finite(
                forecast_peak([(p.ds, getattr(p, q)) for p in series.points], now, self.policy)
            )
            for q in QUANTILES
        }

    def recommendation(
        self,
        service: str,
        metric: str | None = None,
        quantile: str | None = None,
        current_replicas: int | None = None,
    ) -> dict[str, Any]:
        """The full JSON body of ``/v1/services/{service}/recommendation``."""
        decision, stable, inputs = self.decide(service, metric, quantile, current_replicas)
        now, series, info = inputs["now"], inputs["series"], inputs["info"]
        context = self.cache.context
        accuracy = context.accuracy.get(service)
        notes = list(context.notes) if info.source == "api_default" else []
        if context.quality.failed:
            notes.append("latest quality-gate run failed: " + ", ".join(context.quality.failures))
        quarantine = context.quality.quarantined.get(service)
        if quarantine:
            notes.append(f"service quarantined by the quality gate: {quarantine}")
        for alert in inputs["firing"]:
            notes.append(f"anomaly firing: {alert.kind} ({alert.severity}): {alert.reason}")
        spec = info.spec
        scaling_mode, scaling_reason, record = inputs["scaling_mode"]
        return {
            "service": service,
            "metric": inputs["metric"],
            "quantile": inputs["quantile"],
            "replicas": stable,
            "desired_replicas": decision.replicas,
            "mode": decision.mode.value,
            "reasons": [r.value for r in decision.reasons],
            "notes": notes,
            "predictive_replicas": decision.predictive_replicas,
            "reactive_replicas": decision.reactive_replicas,
            "current_replicas": inputs["current_replicas"],
            "dry_run": scaling_mode is ScalingMode.SHADOW,
            "scaling_mode": scaling_mode.value,
            "scaling_mode_reason": scaling_reason.value,
            "scaling_evidence": evidence_body(record),
            "forecast": self.peaks(series, now),
            "forecast_batch": None
            if series is None
            else {
                "batch_id": series.batch_id,
                "model_version": series.model_version,
                "created_at": _iso(series.created_at),
                "age_s": round((now - series.created_at).total_seconds(), 3),
            },
            "actual": None
            if inputs["actual"] is None
            else {"ds": _iso(inputs["actual"].ds), "value": inputs["actual"].value},
            "recurring_peak": inputs["recurring_peak"],
            "service_spec": {
                "capacity_per_replica": spec.capacity_per_replica,
                "target_utilization": spec.target_utilization,
                "min_replicas": spec.min_replicas,
                "max_replicas": spec.max_replicas,
                "source": info.source,
            },
            "accuracy": None
            if accuracy is None
            else {
                "points": accuracy.points,
                "wape": accuracy.wape,
                "upper_coverage": accuracy.upper_coverage,
            },
            "window": {"start": _iso(decision.window_start), "end": _iso(decision.window_end)},
            "computed_at": _iso(now),
            "stale": self.cache.is_stale() or bool(quarantine),
            "stale_reason": "service quarantined by the quality gate: " + quarantine
            if quarantine and not self.cache.is_stale()
            else self.cache.stale_reason(),
            "quarantined": bool(quarantine),
        }


def evidence_body(record: ModeRecord | None) -> dict[str, Any] | None:
    """The guard's latest decision and its evidence (``scaling_evidence`` of a recommendation)."""
    if record is None:
        return None
    window = None
    if record.window_start is not None and record.window_end is not None:
        window = {"start": _iso(record.window_start), "end": _iso(record.window_end)}
    return {
        "decided_at": _iso(record.decided_at),
        "as_of": _iso(record.as_of),
        "decided_mode": record.mode,
        "decided_reason": record.reason,
        "previous_mode": record.previous_mode,
        "window": window,
        "days": _finite(record.days),
        "predictive_underprovisioned_minutes": _finite(record.predictive_under_min),
        "cost_matched_underprovisioned_minutes": _finite(record.matched_under_min),
        "ratio": _finite(record.ratio),
        "incidents": record.incidents,
        "shadow_days": _finite(record.shadow_days),
        "minutes_saved": _finite(record.minutes_saved),
        "extra_replica_hours": _finite(record.extra_replica_hours),
    }
