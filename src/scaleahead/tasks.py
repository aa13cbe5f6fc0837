"""The pipeline's task functions: what each Airflow task and each CLI stage command calls.

They bind a stage to its data interval, save the stage report and return it as a JSON-able
dict (an XCom in Airflow). Business logic lives in the stage modules, not here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
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


def gate(
    checkpoint: str = "full",
    run_id: str | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    batch_ids: list[str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """One quality-gate checkpoint; the verdict is recorded, never raised (DAGs decide)."""
    from scaleahead.quality.gate import run_gate

    settings = settings or get_settings()
    report = run_gate(
        settings=settings,
        run_id=run_id,
        window_start=window_start,
        window_end=window_end,
        checkpoint=checkpoint,
        batch_ids=batch_ids,
    )
    return reports.save("check", report, settings)


def mart_window(settings: Settings | None = None) -> timedelta:
    """How far back from a run's end the transform checkpoint validates the mart."""
    from scaleahead.quality.suites import load_config

    settings = settings or get_settings()
    return timedelta(minutes=5 * load_config(settings.quality_config).mart_window_intervals)


def check(
    run_id: str | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    data = gate("full", run_id, window_start, window_end, settings=settings)
    if data.get("blocking"):
        raise GateBlocked(f"quality gate blocked downstream stages: {data.get('reason')}")
    return data


def gate_block_reason(settings: Settings | None = None) -> str | None:
    """Why training/publishing must skip now (the latest gate runs block), else None."""
    from scaleahead.quality.status import block_reason

    return block_reason(settings or get_settings())


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


def twin(as_of: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    from scaleahead.twin.stage import run_twin

    settings = settings or get_settings()
    return reports.save("twin", run_twin(settings=settings, as_of=as_of), settings)


def guard(as_of: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """The scaling guard: each service's mode from a twin replay of its recent history."""
    from scaleahead.twin.modes_stage import run_guard

    settings = settings or get_settings()
    return reports.save("guard", run_guard(settings=settings, as_of=as_of), settings)
