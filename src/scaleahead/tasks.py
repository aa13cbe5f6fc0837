"""The pipeline's task functions: what each Airflow task and each CLI stage command calls.

They bind a stage to its data interval, save the stage report and return it as a JSON-able
dict (an XCom in Airflow). Business logic lives in the stage modules, not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scaleahead import reports
from scaleahead.config import Settings, get_settings


class GateBlocked(RuntimeError):
    """The quality gate found an error-severity failure: downstream stages must not run."""


def ingest(as_of: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Landing folder + configured Prometheus sources + service catalog (``ingest.run_ingest``)."""
    from scaleahead.ingest.loader import run_ingest

    settings = settings or get_settings()
    return reports.save("ingest", run_ingest(settings=settings, as_of=as_of), settings)


def transform(
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    from scaleahead.transform.dbt import build

    settings = settings or get_settings()
    dbt_vars = {}
    if window_start is not None and window_end is not None:
        dbt_vars = {"start": window_start.isoformat(), "end": window_end.isoformat()}
    return reports.save("transform", build(settings=settings, dbt_vars=dbt_vars or None), settings)


def check(
    run_id: str | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    from scaleahead.quality.gate import run_gate

    settings = settings or get_settings()
    report = run_gate(
        settings=settings, run_id=run_id, window_start=window_start, window_end=window_end
    )
    data = reports.save("check", report, settings)
    if data.get("blocking"):
        failed = [f.get("expectation", str(f)) for f in data.get("failures", [])][:5]
        raise GateBlocked(f"quality gate blocked downstream stages: {', '.join(map(str, failed))}")
    return data


def train(settings: Settings | None = None) -> dict[str, Any]:
    from scaleahead.forecasting.pipeline import train as train_model

    settings = settings or get_settings()
    return reports.save("train", train_model(settings=settings), settings)


def publish(created_at: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    from scaleahead.forecasting.pipeline import publish as publish_forecasts

    settings = settings or get_settings()
    report = publish_forecasts(settings=settings, created_at=created_at)
    return reports.save("publish", report, settings)


def alerts(now: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    from scaleahead.anomaly.stage import run_alerts

    settings = settings or get_settings()
    return reports.save("alerts", run_alerts(settings=settings, now=now), settings)
