"""Pipeline failures as Alertmanager alerts (the DAGs' ``on_failure_callback``).

A task that fails after its last retry posts one ``ScaleaheadPipelineFailure`` alert through the
same Alertmanager client as the anomaly stage (retries with backoff, never raises: a broken
alert path must not hide the task's own failure). Without ``SCALEAHEAD_ALERTMANAGER_URL`` the
failure is only logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from scaleahead.anomaly.alertmanager import AlertmanagerClient, DeliveryReport
from scaleahead.config import Settings, get_settings

log = logging.getLogger("scaleahead.failure_alerts")

ALERTNAME = "ScaleaheadPipelineFailure"
# Alertmanager resolves the alert itself after this long unless the task fails again.
RESOLVE_AFTER = timedelta(hours=4)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def failure_alert(
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int,
    error: str,
    now: datetime,
    log_url: str | None = None,
) -> dict[str, Any]:
    """One Alertmanager v2 alert for a failed task (labels identify the task, not the run, so
    repeated failures of a task group into one notification)."""
    alert: dict[str, Any] = {
        "labels": {
            "alertname": ALERTNAME,
            "severity": "critical",
            "dag_id": dag_id,
            "task_id": task_id,
        },
        "annotations": {
            "summary": f"{dag_id}.{task_id} failed (try {try_number})",
            "description": error[:1000],
            "run_id": run_id,
        },
        "startsAt": _iso(now),
        "endsAt": _iso(now + RESOLVE_AFTER),
    }
    if log_url:
        alert["generatorURL"] = log_url
    return alert


def alert_from_context(context: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The alert for an Airflow task-failure callback context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exception = context.get("exception")
    return failure_alert(
        dag_id=str(getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "unknown")),
        task_id=str(getattr(ti, "task_id", "unknown")),
        run_id=str(getattr(ti, "run_id", None) or getattr(dag_run, "run_id", "")),
        try_number=int(getattr(ti, "try_number", 0) or 0),
        error=f"{type(exception).__name__}: {exception}" if exception else "unknown error",
        now=now,
        log_url=getattr(ti, "log_url", None),
    )


def notify_failure(
    context: dict[str, Any], settings: Settings | None = None, now: datetime | None = None
) -> DeliveryReport:
    """Post the failure to Alertmanager (if configured); never raises."""
    settings = settings or get_settings()
    alert = alert_from_context(context, now or datetime.now(UTC))
    log.error("pipeline failure: %s", alert["annotations"]["summary"])
    if not settings.alertmanager_url:
        return DeliveryReport(attempted=False, delivered=False)
    return AlertmanagerClient(settings.alertmanager_url).send([alert])
