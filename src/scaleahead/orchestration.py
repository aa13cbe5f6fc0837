"""Airflow glue shared by the DAG files: Assets that chain the pipelines and default task args.

Kept in the package so DAG files stay thin and the Asset names have one definition.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset

RAW_TELEMETRY = Asset(name="raw_telemetry", uri="scaleahead://warehouse/raw/telemetry")
DEMAND_MART = Asset(name="service_demand_5m", uri="scaleahead://warehouse/marts/service_demand_5m")
CHAMPION_MODEL = Asset(name="demand_model_champion", uri="scaleahead://mlflow/demand/champion")
FORECASTS = Asset(name="forecasts", uri="scaleahead://warehouse/serving/forecasts")
ALERTS = Asset(name="alerts", uri="scaleahead://warehouse/serving/alerts")

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def on_task_failure(context: dict[str, Any]) -> None:
    """Alert through Alertmanager once a task has failed its last retry."""
    # Imported here: DAG parsing should not pay for the alerting client.
    from scaleahead.failure_alerts import notify_failure

    notify_failure(context)


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "scaleahead",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": on_task_failure,
}


def schedule(name: str) -> str | None:
    """The schedule of a pipeline from settings (``SCALEAHEAD_<NAME>_SCHEDULE``); "none" = None."""
    from scaleahead.config import get_settings

    value = str(getattr(get_settings(), f"{name}_schedule")).strip()
    return None if value.lower() in {"", "none"} else value


def interval(context: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The run's data interval; asset-triggered runs have none and fall back to run_after."""
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if end is None:
        dag_run = context.get("dag_run")
        end = getattr(dag_run, "run_after", None) or context.get("logical_date")
    return start, end
