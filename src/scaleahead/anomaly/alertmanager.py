"""Delivery of alerts to a Prometheus Alertmanager over its v2 API (``POST /api/v2/alerts``).

One Alertmanager alert per *service* (the service's firing series are summarised in it), so a
fleet-wide shift does not page once per series; above ``storm_services`` firing services a
single fleet alert replaces the per-service ones. Firing alerts are re-sent on every run with
``endsAt`` a few resend intervals ahead (Alertmanager resolves them itself if we stop), resolved
ones once more with their real ``endsAt``. Failures retry with exponential backoff and are
reported, never raised: delivery must not block the pipeline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from scaleahead.anomaly.alerts import Alert

log = logging.getLogger("scaleahead.anomaly.alertmanager")

ALERTNAME = "ScaleaheadAnomaly"
STORM_ALERTNAME = "ScaleaheadAnomalyStorm"
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def _iso(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class DeliveryReport:
    attempted: bool
    delivered: bool
    alerts_sent: int = 0
    attempts: int = 0
    error: str | None = None
    storm: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class AlertmanagerClient:
    url: str
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    generator_url: str = "http://127.0.0.1:8000/v1/services"
    resend_interval: timedelta = timedelta(minutes=5)
    storm_services: int = 25
    extra_labels: dict[str, str] = field(default_factory=dict)

    def payload(self, alerts: list[Alert], now: datetime) -> tuple[list[dict], bool]:
        """Alertmanager alerts for the current state; True when the storm rollup applies."""
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        firing: dict[str, list[Alert]] = {}
        resolved: dict[str, list[Alert]] = {}
        for alert in alerts:
            (firing if alert.status == "firing" else resolved).setdefault(alert.service, []).append(
                alert
            )
        out: list[dict] = []
        storm = len(firing) > self.storm_services
        ends_firing = _iso(now + 4 * self.resend_interval)
        if storm:
            everything = [a for group in firing.values() for a in group]
            top = max(everything, key=lambda a: a.score)
            out.append(
                self._one(
                    STORM_ALERTNAME,
                    "fleet",
                    top.metric,
                    max((a.severity for a in everything), key=_SEVERITY_RANK.get),
                    f"{len(firing)} services anomalous together",
                    "Services: " + ", ".join(sorted(firing)[:50]),
                    min(a.starts_at for a in everything),
                    ends_firing,
                )
            )
        else:
            for service, group in sorted(firing.items()):
                out.append(self._service_alert(service, group, ends_firing))
        for service, group in sorted(resolved.items()):
            if service in firing:
                continue
            last = max(group, key=lambda a: a.ends_at or a.starts_at)
            out.append(self._service_alert(service, group, _iso(last.ends_at or now)))
        return out, storm

    def _service_alert(self, service: str, group: list[Alert], ends_at: str) -> dict:
        top = max(group, key=lambda a: a.score)
        severity = max((a.severity for a in group), key=_SEVERITY_RANK.get)
        others = sorted({a.metric for a in group} - {top.metric})
        summary = f"{service}: {top.reason}"
        description = "; ".join(f"{a.metric} [{a.kind}] {a.reason}" for a in group)
        if others:
            summary += f" (+{len(others)} more: {', '.join(others)})"
        return self._one(
            ALERTNAME,
            service,
            top.metric,
            severity,
            summary,
            description,
            min(a.starts_at for a in group),
            ends_at,
        )

    def _one(self, name, service, metric, severity, summary, description, starts_at, ends_at):
        return {
            "labels": {
                "alertname": name,
                "service": service,
                "metric": metric,
                "severity": severity,
                **self.extra_labels,
            },
            "annotations": {"summary": summary, "description": description},
            "startsAt": _iso(starts_at),
            "endsAt": ends_at,
            "generatorURL": f"{self.generator_url.rstrip('/')}/{service}",
        }

    def send(self, body: list[dict]) -> DeliveryReport:
        """POST with retries and exponential backoff; never raises."""
        report = DeliveryReport(attempted=True, delivered=False, alerts_sent=0)
        if not body:
            report.delivered = True
            return report
        endpoint = f"{self.url.rstrip('/')}/api/v2/alerts"
        delay = self.backoff_s
        for attempt in range(1, self.retries + 1):
            report.attempts = attempt
            try:
                response = httpx.post(endpoint, json=body, timeout=self.timeout_s)
                if response.status_code < 300:
                    report.delivered = True
                    report.alerts_sent = len(body)
                    report.error = None
                    return report
                report.error = f"HTTP {response.status_code}: {response.text[:200]}"
                if 400 <= response.status_code < 500:
                    break  # the payload is wrong; retrying will not help
            except httpx.HTTPError as exc:
                report.error = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        log.warning("alert delivery to %s failed: %s", endpoint, report.error)
        return report

    def deliver(self, alerts: list[Alert], now: datetime | None = None) -> DeliveryReport:
        body, storm = self.payload(alerts, now or datetime.now(UTC))
        report = self.send(body)
        report.storm = storm
        return report
