"""The anomaly stage: score the demand mart per service and metric, keep ``serving.alerts``
current (firing / resolved, one open alert per (service, metric, kind)), deliver to
Alertmanager when ``settings.alertmanager_url`` is set.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from scaleahead.anomaly.alertmanager import AlertmanagerClient
from scaleahead.anomaly.alerts import Alert, AlertPolicy, alert_id, reason_text, series_alerts
from scaleahead.anomaly.detector import DetectorConfig, detect
from scaleahead.anomaly.multivariate import residual_z, service_scores
from scaleahead.config import Settings, get_settings
from scaleahead.warehouse import connect

log = logging.getLogger("scaleahead.anomaly")

METRICS = ("request_rate", "cpu_cores", "latency_ms")
# The mart is on a 5-minute grid: a shorter history window than NAB's default fits its days.
# ``drop`` (signal loss) is on here: the novelty scores judge a fall to zero against the largest
# recent deviation, so an outage after a burst scored 0.4-0.5 and did not fire
# (`scaleahead bench anomaly`: outage recall 0.333 without it, 0.738 with it).
STAGE_DETECTOR = DetectorConfig(
    components=("residual", "level", "drop"),
    long_window=576,
    novelty_window=576,
    min_history=72,
)


@dataclass
class AlertsReport:
    series: int = 0
    rows_scored: int = 0
    alerts_total: int = 0
    firing: int = 0
    resolved: int = 0
    firing_services: int = 0
    multivariate_alerts: int = 0
    delivery: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def read_mart(settings: Settings, lookback_days: float) -> pd.DataFrame:
    with connect(read_only=True, path=settings.warehouse_path) as con:
        return con.execute(
            f"""
            SELECT service, ds, {", ".join(METRICS)}
            FROM marts.service_demand_5m
            WHERE ds >= (SELECT max(ds) FROM marts.service_demand_5m)
                        - INTERVAL {float(lookback_days) * 24 * 60:.0f} MINUTE
            ORDER BY service, ds
            """
        ).df()


def detect_alerts(
    frame: pd.DataFrame,
    config: DetectorConfig = STAGE_DETECTOR,
    policy: AlertPolicy | None = None,
    multivariate: bool = False,  # the per-service forest: settings.anomaly_multivariate
) -> tuple[list[Alert], dict[str, int]]:
    """Alerts for every (service, metric) of a mart frame, plus the per-service forest view."""
    policy = policy or AlertPolicy()
    alerts: list[Alert] = []
    counts = {"series": 0, "rows": 0, "multivariate": 0}
    for service, group in frame.groupby("service", sort=True):
        group = group.sort_values("ds").reset_index(drop=True)
        zs = []
        for metric in METRICS:
            if metric not in group or group[metric].notna().sum() < config.min_history:
                continue
            values = group[metric].astype(float).ffill().bfill().to_numpy()
            detection = detect(values, group["ds"], config)
            alerts += series_alerts(str(service), metric, group["ds"], values, detection, policy)
            zs.append(residual_z(values, detection.expected))
            counts["series"] += 1
            counts["rows"] += len(values)
        if multivariate and len(zs) >= 2:
            mv = multivariate_alerts(str(service), group, np.column_stack(zs), policy)
            counts["multivariate"] += len(mv)
            alerts += mv
    return alerts, counts


def multivariate_alerts(
    service: str, group: pd.DataFrame, features: np.ndarray, policy: AlertPolicy
) -> list[Alert]:
    """Episodes of the per-service IsolationForest score (fitted on the first half)."""
    scores = service_scores(features, fit_rows=len(group) // 2)
    out: list[Alert] = []
    i, n = 0, len(scores)
    while i < n:
        if scores[i] < policy.fire_above:
            i += 1
            continue
        j, calm = i + 1, 0
        while j < n and calm < policy.resolve_rows:
            calm = 0 if scores[j] >= policy.fire_above / 2 else calm + 1
            j += 1
        k = int(np.argmax(np.abs(features[i])))
        metric = METRICS[k] if k < len(METRICS) else "request_rate"
        starts = pd.Timestamp(group["ds"].iloc[i]).to_pydatetime()
        firing = j >= n and calm < policy.resolve_rows
        observed = float(group[metric].iloc[i]) if metric in group else float("nan")
        out.append(
            Alert(
                alert_id=alert_id(service, "service", "multivariate", starts),
                service=service,
                metric="service",
                kind="multivariate",
                severity="critical" if scores[i:j].max() >= policy.critical_above else "warning",
                status="firing" if firing else "resolved",
                starts_at=starts,
                ends_at=None if firing else pd.Timestamp(group["ds"].iloc[j - 1]).to_pydatetime(),
                observed=observed,
                expected=float("nan"),
                score=float(scores[i:j].max()),
                reason=reason_text(
                    "multivariate", metric, observed, observed, float(features[i, k])
                ).split(" vs ")[0]
                + f" ({features[i, k]:+.1f} sigma on {metric})",
            )
        )
        i = j
    return out


def write_alerts(settings: Settings, alerts: list[Alert], now: datetime, window_start) -> None:
    """Upsert by alert_id; alerts that vanished from the scored window are resolved."""
    rows = pd.DataFrame([a.as_dict() for a in alerts])
    naive_now = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    with connect(path=settings.warehouse_path) as con:
        con.execute("BEGIN")
        try:
            ids = list(rows["alert_id"]) if len(rows) else []
            if window_start is not None:
                con.execute(
                    """
                    UPDATE serving.alerts SET status = 'resolved', ends_at = ?, updated_at = ?
                    WHERE status = 'firing' AND starts_at >= ?
                      AND NOT list_contains(?, alert_id)
                    """,
                    [naive_now, naive_now, window_start, ids],
                )
            if len(rows):
                rows["updated_at"] = naive_now
                con.register("new_alerts", rows)
                con.execute(
                    "DELETE FROM serving.alerts WHERE alert_id IN (SELECT alert_id FROM new_alerts)"
                )
                con.execute(
                    """
                    INSERT INTO serving.alerts
                    SELECT alert_id, service, metric, kind, severity, status, starts_at, ends_at,
                           observed, expected, score, reason, updated_at
                    FROM new_alerts
                    """
                )
                con.unregister("new_alerts")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


def run_alerts(
    settings: Settings | None = None,
    now: datetime | None = None,
    lookback_days: float = 7.0,
    client: AlertmanagerClient | None = None,
) -> AlertsReport:
    import time

    settings = settings or get_settings()
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    frame = read_mart(settings, lookback_days)
    alerts, counts = detect_alerts(frame, multivariate=settings.anomaly_multivariate)
    window_start = frame["ds"].min() if len(frame) else None
    write_alerts(settings, alerts, now, window_start)
    report = AlertsReport(
        series=counts["series"],
        rows_scored=counts["rows"],
        alerts_total=len(alerts),
        firing=sum(a.status == "firing" for a in alerts),
        resolved=sum(a.status == "resolved" for a in alerts),
        firing_services=len({a.service for a in alerts if a.status == "firing"}),
        multivariate_alerts=counts["multivariate"],
    )
    url = getattr(settings, "alertmanager_url", None)
    if client is None and url:
        client = AlertmanagerClient(url=url)
    if client is None:
        log.info("no Alertmanager configured (SCALEAHEAD_ALERTMANAGER_URL): delivery skipped")
        report.delivery = {"attempted": False, "delivered": False}
    else:
        # Firing alerts, plus those resolved recently enough that Alertmanager may hold them.
        recent = now.replace(tzinfo=None) - timedelta(hours=1)
        live = [
            a
            for a in alerts
            if a.status == "firing" or (a.ends_at is not None and a.ends_at >= recent)
        ]
        report.delivery = client.deliver(live, now).as_dict()
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def evaluate_incidents(
    alerts: list[Alert], incidents: pd.DataFrame, slack: timedelta = timedelta(minutes=30)
) -> dict[str, float]:
    """Precision/recall of alerts against labelled incidents (same service, overlapping time)."""
    inc = incidents.copy()
    inc["start"] = pd.to_datetime(inc["start"], utc=True).dt.tz_localize(None)
    inc["end"] = pd.to_datetime(inc["end"], utc=True).dt.tz_localize(None)
    matched_alerts = 0
    found: set[int] = set()
    for alert in alerts:
        start = pd.Timestamp(alert.starts_at)
        cand = inc[
            (inc["service"] == alert.service)
            & (inc["start"] - slack <= start)
            & (start <= inc["end"] + slack)
        ]
        if len(cand):
            matched_alerts += 1
            found.update(cand.index.tolist())
    precision = matched_alerts / len(alerts) if alerts else 0.0
    recall = len(found) / len(inc) if len(inc) else 0.0
    return {
        "alerts": len(alerts),
        "incidents": len(inc),
        "precision": round(precision, 3),
        "recall": round(recall, 3),
    }


def latest_incidents(settings: Settings) -> pd.DataFrame | None:
    labels = Path(settings.warehouse_dir) / "labels"
    files = sorted(labels.glob("*/incidents.csv"))
    return pd.read_csv(files[-1]) if files else None
