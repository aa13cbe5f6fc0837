"""Pydantic response models of the forecast API (all timestamps are UTC)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from scaleahead.api.cache import CacheStatus, SeriesForecast


class Problem(BaseModel):
    """RFC 7807 problem details, served as ``application/problem+json``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="URI reference identifying the problem type.")
    title: str = Field(description="Short, human-readable summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(None, description="Explanation specific to this occurrence.")
    instance: str | None = Field(None, description="The request path that caused the problem.")


class ForecastPointOut(BaseModel):
    ds: datetime = Field(description="Start of the forecast bucket (UTC).")
    step: int = Field(description="1-based step ahead of the forecast origin.")
    p50: float = Field(description="Median forecast.")
    p90: float = Field(description="90th percentile forecast.")
    p95: float = Field(description="95th percentile forecast.")


class ForecastOut(BaseModel):
    service: str
    metric: str
    model_name: str
    model_version: str
    batch_id: str
    created_at: datetime = Field(description="When the batch was published (UTC).")
    stale: bool = Field(description="True when the last refresh from the warehouse failed.")
    horizon: int = Field(description="Number of points returned.")
    points: list[ForecastPointOut]

    @classmethod
    def from_series(
        cls, series: SeriesForecast, stale: bool, horizon: int | None = None
    ) -> ForecastOut:
        points = series.points[:horizon] if horizon is not None else series.points
        return cls(
            service=series.service,
            metric=series.metric,
            model_name=series.model_name,
            model_version=series.model_version,
            batch_id=series.batch_id,
            created_at=series.created_at,
            stale=stale,
            horizon=len(points),
            points=[
                ForecastPointOut(ds=p.ds, step=p.step, p50=p.p50, p90=p.p90, p95=p.p95)
                for p in points
            ],
        )


class MetricForecastInfo(BaseModel):
    metric: str
    horizon: int = Field(description="Number of forecast steps available.")
    first_ds: datetime
    last_ds: datetime
    model_name: str
    model_version: str
    batch_id: str
    created_at: datetime

    @classmethod
    def from_series(cls, series: SeriesForecast) -> MetricForecastInfo:
        return cls(
            metric=series.metric,
            horizon=series.horizon,
            first_ds=series.first_ds,
            last_ds=series.last_ds,
            model_name=series.model_name,
            model_version=series.model_version,
            batch_id=series.batch_id,
            created_at=series.created_at,
        )


class ServiceOut(BaseModel):
    service: str
    metrics: list[MetricForecastInfo]
    dry_run: bool = Field(
        False, description="Shadow mode (forecast-only): scalers get reactive values."
    )
    scaling_mode: str = Field(
        "shadow", description="'shadow', 'predictive' or 'reactive' (see the recommendation)."
    )
    scaling_mode_reason: str = Field(
        "new_service", description="Why the service is in that mode (see the recommendation)."
    )


class ServicesOut(BaseModel):
    stale: bool
    last_refresh_error: str | None
    services: list[ServiceOut]


class HealthOut(BaseModel):
    status: str = "ok"


class ReadinessOut(BaseModel):
    status: str = Field(description="'ready' once a forecast batch is loaded.")
    stale: bool
    last_refresh_at: datetime | None
    last_success_at: datetime | None
    last_refresh_error: str | None
    loaded_at: datetime | None
    batches: dict[str, str] = Field(description="metric -> batch_id being served.")
    stale_reason: str | None = Field(None, description="Why `stale` is true.")

    @classmethod
    def from_status(cls, status: CacheStatus) -> ReadinessOut:
        return cls(
            status="ready" if status.loaded else "not_ready",
            stale=status.stale,
            last_refresh_at=status.last_refresh_at,
            last_success_at=status.last_success_at,
            last_refresh_error=status.last_refresh_error,
            loaded_at=status.loaded_at,
            batches=status.batches,
            stale_reason=status.stale_reason,
        )


# --- recommendations, alerts (issue #8) ------------------------------------------------------


class QuantilePeaks(BaseModel):
    p50: float | None = Field(description="Peak p50 forecast over the decision window.")
    p90: float | None = Field(description="Peak p90 forecast over the decision window.")
    p95: float | None = Field(description="Peak p95 forecast over the decision window.")


class ForecastBatchOut(BaseModel):
    batch_id: str
    model_version: str
    created_at: datetime
    age_s: float = Field(description="Age of the batch at decision time (seconds).")


class ActualOut(BaseModel):
    ds: datetime = Field(description="Start of the latest 5-minute bucket with demand (UTC).")
    value: float = Field(description="Demand in that bucket (marts.service_demand_5m.demand).")


class ServiceSpecOut(BaseModel):
    capacity_per_replica: float = Field(description="Demand one replica serves at 100 %.")
    target_utilization: float = Field(description="Planned utilization in (0, 1].")
    min_replicas: int = Field(ge=1)
    max_replicas: int = Field(ge=1)
    source: str = Field(
        description="Where the values come from: marts.services' capacity_source, or "
        "'api_default' (derived by the API while marts.services is missing; see notes)."
    )


class AccuracyOut(BaseModel):
    points: int = Field(description="Past forecast points matched with actuals (last 7 days).")
    wape: float | None = Field(description="sum|actual - p50| / sum|actual|.")
    upper_coverage: float | None = Field(
        description="Share of actuals at or below the configured upper quantile."
    )


class WindowOut(BaseModel):
    start: datetime
    end: datetime


class ScalingEvidenceOut(BaseModel):
    """The scaling guard's latest decision for the service (a row of serving.scaling_modes)."""

    decided_at: datetime = Field(description="When the guard wrote the decision (UTC).")
    as_of: datetime = Field(description="End of the history the guard replayed (UTC).")
    decided_mode: str = Field(description="The mode the guard decided (before pins here).")
    decided_reason: str = Field(description="The guard's reason.")
    previous_mode: str | None = Field(description="The mode before that run; null: new.")
    window: WindowOut | None = Field(description="The replayed steps; null: no evidence.")
    days: float | None = Field(description="Days of evidence.")
    predictive_underprovisioned_minutes: float | None = Field(
        description="Under-provisioned minutes of predictive, as if it had driven."
    )
    cost_matched_underprovisioned_minutes: float | None = Field(
        description="Under-provisioned minutes of the HPA given the same replica-hours."
    )
    ratio: float | None = Field(
        description="Predictive / cost-matched under-provisioned minutes; null when neither "
        "was short or only predictive was."
    )
    incidents: int | None = Field(
        description="Episodes in which the cost-matched HPA was under-provisioned."
    )
    shadow_days: float | None = Field(
        None,
        description="Days of the stay in shadow when decided (the trial: promotion only early "
        "in a stay or after a whole window); null: a first judged decision, or predictive.",
    )
    minutes_saved: float | None = Field(
        description="Cost-matched minus predictive under-provisioned minutes."
    )
    extra_replica_hours: float | None = Field(
        description="Predictive minus default-HPA replica-hours over the window."
    )


class RecommendationOut(BaseModel):
    """A scaling recommendation; also the KEDA metrics-api payload (see examples/)."""

    service: str
    metric: str
    quantile: str = Field(description="Upper quantile the predictive rule used.")
    replicas: int = Field(
        ge=1,
        description="Replicas to run now: the decision after scale-in stabilization. "
        "KEDA metrics-api valueLocation: `replicas`.",
    )
    desired_replicas: int = Field(ge=1, description="The decision before stabilization.")
    mode: str = Field(
        description="How `replicas` was obtained: 'predictive', 'reactive' (fallback, or "
        "scaling_mode reactive) or 'dry_run' (scaling_mode shadow: the reactive value)."
    )
    reasons: list[str] = Field(
        description="Why the forecast was not used or what is missing: forecast_missing, "
        "forecast_stale, forecast_invalid, forecast_window_uncovered, quality_failed, "
        "low_confidence, actual_missing, dry_run (shadow mode), scaling_mode_reactive."
    )
    notes: list[str] = Field(description="Human-readable context (defaults, alerts, gate).")
    predictive_replicas: int | None
    reactive_replicas: int = Field(ge=1)
    current_replicas: int | None
    dry_run: bool = Field(description="Shadow mode (the older name): true when shadow.")
    scaling_mode: str = Field(
        description="The service's scaling mode: 'shadow' (the reactive value drives; the "
        "predictive one is computed and reported), 'predictive' (max(predictive, reactive) "
        "drives) or 'reactive' (forced)."
    )
    scaling_mode_reason: str = Field(
        description="Why: pinned (settings), new_service, no_evidence, insufficient_evidence, "
        "predictive_wins, still_winning, not_winning_enough, trial_over, "
        "predictive_stopped_winning."
    )
    scaling_evidence: ScalingEvidenceOut | None = Field(
        description="The scaling guard's latest decision and its evidence; null before the "
        "guard has decided on the service."
    )
    forecast: QuantilePeaks = Field(
        description="Peak forecast per quantile over the window; KEDA valueLocation `forecast.p90`."
    )
    forecast_batch: ForecastBatchOut | None
    actual: ActualOut | None
    recurring_peak: float | None = Field(
        None,
        description="Lowest, over the last days, of the day's peak demand in this window "
        "(+-30 min): where it is more than twice the planned peak, the predictive rule plans "
        "for it (a recurring spike the forecast misses). Null without enough history.",
    )
    service_spec: ServiceSpecOut
    accuracy: AccuracyOut | None
    window: WindowOut = Field(description="[now, now + lead time + window].")
    computed_at: datetime = Field(description="Decision time ('now').")
    stale: bool = Field(
        description="True when the cache could not refresh recently, the quality gate blocks "
        "new forecasts, or this service is quarantined by it."
    )
    stale_reason: str | None = Field(None, description="Why `stale` is true.")
    quarantined: bool = Field(
        False, description="The quality gate quarantined this service: reactive scaling."
    )


class AlertOut(BaseModel):
    alert_id: str
    service: str
    metric: str
    kind: str
    severity: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    observed: float | None
    expected: float | None
    score: float | None
    reason: str
    updated_at: datetime


class AlertsOut(BaseModel):
    stale: bool
    alerts: list[AlertOut]


class RefreshOut(BaseModel):
    changed: bool = Field(description="True when a newer forecast batch was loaded.")
    last_refresh_error: str | None
