"""Alerts from anomaly scores: episodes with hysteresis, dedup, severity and a reason.

Pure functions over one series' detection; the warehouse and Alertmanager sides live in
``stage.py`` and ``alertmanager.py``.

Lifecycle per (service, metric): an episode *opens* on the first row whose (unsuppressed)
score reaches ``fire_above``; its kind comes from the component that dominated that row. It
stays *firing* while the values stay away from the pre-episode baseline (more than
``band_sigmas`` robust scales) and *resolves* only after ``resolve_rows`` consecutive calm
rows (hysteresis: opening needs a high score, closing needs a sustained return). A new trigger
within ``cooldown_rows`` of a resolution re-opens the same alert instead of raising another
(no flapping). An episode lasting ``max_rows`` resolves as "adapted to a new level".
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from scaleahead.anomaly.detector import Detection

KIND_BY_COMPONENT = {
    "residual": "spike",
    "likelihood": "forecast_residual",
    "level": "level_shift",
    "variance": "variance_change",
    "drop": "signal_loss",
    "multivariate": "multivariate",
}


@dataclass(frozen=True)
class AlertPolicy:
    fire_above: float = 0.5
    critical_above: float = 0.8
    band_sigmas: float = 3.0
    resolve_rows: int = 6  # 30 minutes of 5-minute buckets
    cooldown_rows: int = 12
    max_rows: int = 288
    baseline_rows: int = 288


@dataclass
class Alert:
    alert_id: str
    service: str
    metric: str
    kind: str
    severity: str
    status: str  # firing | resolved
    starts_at: datetime
    ends_at: datetime | None
    observed: float
    expected: float
    score: float
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def alert_id(service: str, metric: str, kind: str, starts_at: datetime) -> str:
    key = f"{service}|{metric}|{kind}|{pd.Timestamp(starts_at).isoformat()}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _fmt(value: float) -> str:
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def reason_text(kind: str, metric: str, observed: float, expected: float, sigmas: float) -> str:
    direction = "above" if observed >= expected else "below"
    ratio = observed / expected if expected else float("inf")
    what = {
        "spike": "sudden deviation",
        "forecast_residual": "sustained deviation from forecast",
        "level_shift": "level shift",
        "variance_change": "variance change",
        "signal_loss": "signal lost",
        "multivariate": "unusual combination of metrics",
    }.get(kind, kind)
    return (
        f"{what}: {metric} {_fmt(observed)} vs expected {_fmt(expected)} "
        f"({ratio:.2f}x, {sigmas:.1f} sigma {direction})"
    )


def series_alerts(
    service: str,
    metric: str,
    timestamps: pd.Series,
    values: np.ndarray,
    detection: Detection,
    policy: AlertPolicy | None = None,
) -> list[Alert]:
    """Alert episodes of one series, oldest first; the last may still be firing."""
    policy = policy or AlertPolicy()
    ts = pd.to_datetime(pd.Series(timestamps)).reset_index(drop=True)
    x = np.asarray(values, dtype=float)
    n = len(x)
    raw = detection.raw_score
    dominant = detection.dominant() if detection.surprise else np.array(["residual"] * n)
    resid = pd.Series(x - detection.expected)
    past = resid.shift(1).rolling(policy.baseline_rows, min_periods=12)
    scale = ((past.quantile(0.75) - past.quantile(0.25)) / 1.349).to_numpy()
    level = pd.Series(x).shift(1).rolling(policy.baseline_rows, min_periods=12).median().to_numpy()

    alerts: list[Alert] = []
    i = 0
    last_end = -(10**9)
    while i < n:
        if not (raw[i] >= policy.fire_above):
            i += 1
            continue
        start = i
        kind = KIND_BY_COMPONENT.get(str(dominant[i]), "forecast_residual")
        base = level[i] if np.isfinite(level[i]) else detection.expected[i]
        sig = scale[i] if np.isfinite(scale[i]) and scale[i] > 0 else max(abs(base) * 0.05, 1e-9)
        peak = float(raw[i])
        calm = 0
        j = i + 1
        while j < n and j - start < policy.max_rows:
            away = abs(x[j] - base) > policy.band_sigmas * sig
            fresh = raw[j] >= policy.fire_above
            peak = max(peak, float(raw[j]))
            calm = 0 if (away or fresh) else calm + 1
            if calm >= policy.resolve_rows:
                break
            j += 1
        end = j  # row index where it resolved (n if still firing)
        observed = float(x[start])
        expected = float(detection.expected[start])
        sigmas = abs(observed - expected) / sig
        severity = "critical" if peak >= policy.critical_above else "warning"
        if alerts and start - last_end <= policy.cooldown_rows and alerts[-1].kind == kind:
            # Re-trigger right after resolution: same alert, extended (anti-flapping).
            prev = alerts[-1]
            prev.status = "firing" if end >= n else "resolved"
            prev.ends_at = None if end >= n else ts[min(end, n - 1)].to_pydatetime()
            prev.score = max(prev.score, peak)
            if peak >= policy.critical_above:
                prev.severity = "critical"
        else:
            starts_at = ts[start].to_pydatetime()
            alerts.append(
                Alert(
                    alert_id=alert_id(service, metric, kind, starts_at),
                    service=service,
                    metric=metric,
                    kind=kind,
                    severity=severity,
                    status="firing" if end >= n else "resolved",
                    starts_at=starts_at,
                    ends_at=None if end >= n else ts[min(end, n - 1)].to_pydatetime(),
                    observed=observed,
                    expected=expected,
                    score=peak,
                    reason=reason_text(kind, metric, observed, expected, sigmas),
                )
            )
        last_end = end
        i = end + 1
    return alerts


def group_by_service(alerts: list[Alert]) -> dict[str, list[Alert]]:
    """Firing alerts per service: one notification per service, not one per series."""
    groups: dict[str, list[Alert]] = {}
    for alert in alerts:
        if alert.status == "firing":
            groups.setdefault(alert.service, []).append(alert)
    return groups
