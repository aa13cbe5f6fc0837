"""Prometheus exposition: forecast/recommendation gauges per service and request metrics.

Gauges are produced at scrape time from the cache by a custom collector (no state to keep in
sync). Request metrics come from a pure ASGI middleware labelled by route template, so the
label cardinality is bounded by the number of routes, not by service names in URLs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from scaleahead.api.recommender import Recommender

_QUANTILE_LABELS = ("p50", "p90", "p95")
_MODES = ("shadow", "predictive", "reactive")
# The scaling guard's latest evidence per service (serving.scaling_modes).
_GUARD_GAUGES = {
    "minutes_saved": "Under-provisioned minutes predictive saved against the HPA given the "
    "same replica-hours, over the guard's replay.",
    "extra_replica_hours": "Replica-hours predictive spent beyond the default HPA over the "
    "guard's replay.",
    "underprovisioned_ratio": "Predictive / cost-matched HPA under-provisioned minutes "
    "(absent when not finite).",
    "incidents": "Episodes in which the cost-matched HPA was under-provisioned in the replay.",
    "evidence_days": "Days of history the guard's latest decision rests on.",
    "decided_timestamp_seconds": "When the guard wrote its latest decision (Unix time).",
}


class ForecastCollector(Collector):
    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rec = self.recommender
        forecast = GaugeMetricFamily(
            "scaleahead_forecast",
            "Peak forecast demand over [now, now + lead time + window] per quantile.",
            labels=["service", "metric", "quantile"],
        )
        next_step = GaugeMetricFamily(
            "scaleahead_forecast_next",
            "Forecast demand of the first step of the latest batch per quantile.",
            labels=["service", "metric", "quantile"],
        )
        age = GaugeMetricFamily(
            "scaleahead_forecast_age_seconds",
            "Age of the served forecast batch at decision time.",
            labels=["service", "metric"],
        )
        replicas = GaugeMetricFamily(
            "scaleahead_recommended_replicas",
            "Recommended replicas (after scale-in stabilization); mode label says how.",
            labels=["service", "mode"],
        )
        predictive = GaugeMetricFamily(
            "scaleahead_predictive_replicas",
            "Replicas the forecast alone asks for (absent when unusable).",
            labels=["service"],
        )
        reactive = GaugeMetricFamily(
            "scaleahead_reactive_replicas",
            "Replicas the HPA rule on the latest actual asks for.",
            labels=["service"],
        )
        actual = GaugeMetricFamily(
            "scaleahead_actual_demand", "Latest actual demand.", labels=["service"]
        )
        scaling_mode = GaugeMetricFamily(
            "scaleahead_scaling_mode",
            "1 for the scaling mode the service is served in (shadow, predictive, reactive), "
            "0 for the others.",
            labels=["service", "mode"],
        )
        guard = {
            name: GaugeMetricFamily(f"scaleahead_guard_{name}", doc, labels=["service"])
            for name, doc in _GUARD_GAUGES.items()
        }
        metric = rec.settings.demand_metric
        context = rec.cache.context
        for service in rec.services():
            try:
                decision, stable, inputs = rec.decide(service, metric)
            except KeyError:
                continue
            series, now = inputs["series"], inputs["now"]
            if series is not None:
                for q, value in rec.peaks(series, now).items():
                    if value is not None:
                        forecast.add_metric([service, metric, q], value)
                first = series.points[0]
                for q in _QUANTILE_LABELS:
                    next_step.add_metric([service, metric, q], getattr(first, q))
                age.add_metric([service, metric], (now - series.created_at).total_seconds())
            replicas.add_metric([service, decision.mode.value], stable)
            if decision.predictive_replicas is not None:
                predictive.add_metric([service], decision.predictive_replicas)
            reactive.add_metric([service], decision.reactive_replicas)
            if service in context.actuals:
                actual.add_metric([service], context.actuals[service].value)
            mode, _, record = inputs["scaling_mode"]
            for m in _MODES:
                scaling_mode.add_metric([service, m], float(m == mode.value))
            if record is not None:
                guard["decided_timestamp_seconds"].add_metric(
                    [service], record.decided_at.timestamp()
                )
                for name, value in (
                    ("minutes_saved", record.minutes_saved),
                    ("extra_replica_hours", record.extra_replica_hours),
                    ("underprovisioned_ratio", record.ratio),
                    ("incidents", record.incidents),
                    ("evidence_days", record.days),
                ):
                    if value is not None and math.isfinite(value):
                        guard[name].add_metric([service], float(value))
        stale = GaugeMetricFamily(
            "scaleahead_cache_stale", "1 when the cache could not refresh recently."
        )
        stale.add_metric([], float(rec.cache.status().stale))
        yield from (forecast, next_step, age, replicas, predictive, reactive, actual, stale)
        yield scaling_mode
        yield from guard.values()


class _RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "scaleahead_api_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "scaleahead_api_request_duration_seconds",
            "HTTP request duration by route template.",
            ["method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
            registry=registry,
        )


def build_registry(recommender: Recommender) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ForecastCollector(recommender))
    registry._scaleahead_requests = _RequestMetrics(registry)  # type: ignore[attr-defined]
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI, no response buffering)."""

    def __init__(self, app, registry: CollectorRegistry) -> None:
        self.app = app
        self.metrics: _RequestMetrics = registry._scaleahead_requests  # type: ignore[attr-defined]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status[0])).inc()
            self.metrics.duration.labels(method, template).observe(time.perf_counter() - started)
