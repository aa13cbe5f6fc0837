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
        )
