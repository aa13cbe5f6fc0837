"""Everything besides forecasts that a recommendation needs, loaded at refresh time.

- Service dimension from ``marts.services`` (capacity per replica, min/max replicas, target
  utilization). While that table does not exist, defaults are derived from the data the same
  way the dbt model does (capacity such that the recent peak needs ~10 replicas) and every
  response says so (``service_spec.source``).
- Latest actual demand per service from ``marts.service_demand_5m``, and the last days of it
  (``history``: the scaling policy's recurring peak, as arrays per service).
- Alerts from ``serving.alerts``: a ``firing`` alert marks its service low-confidence.
- The quality gate in force (``scaleahead.quality.status``: the latest run of each data
  checkpoint): a blocking gate marks every forecast failed-gate and the responses stale; a
  quarantined service's forecast alone is failed-gate (reactive scaling for that service).
- Past forecast accuracy per service (forecasts joined with actuals over the last 7 days).
- The scaling mode per service: the latest decision of the scaling guard in
  ``serving.scaling_modes`` with its evidence (the recommender applies pins and serves a
  service without a decision in shadow).

Each part is optional: a missing table leaves that part empty and is recorded in ``notes``.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from scaleahead.domain.modes import Evidence
from scaleahead.domain.scaling import DEFAULT_RECURRING_DAYS, Accuracy, ServiceSpec

log = logging.getLogger(__name__)

BUCKET = timedelta(minutes=5)
DEFAULT_MAX_REPLICAS = 100
# The peak of recent demand should need about this many replicas (same rule as dbt's default).
DEFAULT_PEAK_REPLICAS = 10
ACCURACY_DAYS = 7
QUANTILES = ("p50", "p90", "p95")


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    spec: ServiceSpec
    source: str  # capacity_source from marts.services, or "api_default"
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class Actual:
    ds: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Alert:
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

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = (
                value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
            )
        return out


@dataclass(frozen=True, slots=True)
class QualityState:
    run_id: str | None = None
    checked_at: datetime | None = None
    failed: bool = False  # the gate blocks: every forecast is held to be stale
    failures: tuple[str, ...] = ()
    reason: str | None = None
    quarantined: dict[str, str] = field(default_factory=dict)  # service -> failed checks

    def service_failed(self, service: str) -> bool:
        return self.failed or service in self.quarantined


@dataclass(frozen=True, slots=True)
class ModeRecord:
    """A service's latest row of ``serving.scaling_modes`` (the scaling guard's decision)."""

    mode: str
    reason: str
    previous_mode: str | None
    changed: bool
    as_of: datetime
    decided_at: datetime  # created_at of the row
    window_start: datetime | None = None
    window_end: datetime | None = None
    days: float | None = None
    predictive_under_min: float | None = None
    matched_under_min: float | None = None
    ratio: float | None = None
    incidents: int | None = None
    shadow_days: float | None = None
    minutes_saved: float | None = None
    extra_replica_hours: float | None = None

    @property
    def evidence(self) -> Evidence | None:
        """The guard's evidence (what :func:`scaleahead.domain.modes.decide_mode` reads)."""
        if self.days is None or self.predictive_under_min is None:
            return None
        return Evidence(
            days=self.days,
            predictive_under_min=self.predictive_under_min,
            matched_under_min=self.matched_under_min or 0.0,
            incidents=self.incidents or 0,
        )


@dataclass(frozen=True, slots=True)
class ServingContext:
    services: dict[str, ServiceInfo] = field(default_factory=dict)
    services_table: bool = False
    actuals: dict[str, Actual] = field(default_factory=dict)
    data_end: datetime | None = None  # end of the latest actual bucket
    # service -> (bucket starts in POSIX seconds, demand): the last days of observed demand.
    history: dict[str, tuple[array, array]] = field(default_factory=dict)
    alerts: tuple[Alert, ...] = ()
    quality: QualityState = field(default_factory=QualityState)
    accuracy: dict[str, Accuracy] = field(default_factory=dict)
    modes: dict[str, ModeRecord] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    fingerprint: tuple = ()

    def firing(self, service: str) -> list[Alert]:
        return [a for a in self.alerts if a.service == service and a.status == "firing"]

    @property
    def known_services(self) -> set[str]:
        return set(self.services) | set(self.actuals)


_FINGERPRINT_QUERIES = {
    "demand": "SELECT max(ds), count(*) FROM marts.service_demand_5m",
    "services": "SELECT count(*), sum(hash(service, capacity_per_replica, min_replicas, "
    "max_replicas, target_utilization)) FROM marts.services",
    "alerts": "SELECT max(updated_at), count(*) FROM serving.alerts",
    "quality": "SELECT max(checked_at), count(*) FROM quality.gate_runs",
    "modes": "SELECT max(created_at), count(*) FROM serving.scaling_modes",
}


def _no_python_scans(con: duckdb.DuckDBPyConnection) -> None:
    # Otherwise a missing table such as marts.services resolves to a Python variable named
    # `services` in some caller's frame (DuckDB's replacement scans).
    con.execute("SET python_enable_replacements = false")


def context_fingerprint(con: duckdb.DuckDBPyConnection) -> tuple:
    _no_python_scans(con)
    parts: list[Any] = []
    for name, sql in _FINGERPRINT_QUERIES.items():
        try:
            parts.append((name, con.execute(sql).fetchone()))
        except duckdb.CatalogException:
            parts.append((name, None))
    return tuple(parts)


def load_context(
    con: duckdb.DuckDBPyConnection,
    fingerprint: tuple,
    metric: str,
    quantile: str,
    forecast_services: set[str] | None = None,
    history_days: int = DEFAULT_RECURRING_DAYS,
) -> ServingContext:
    if quantile not in QUANTILES:
        raise ValueError(f"quantile must be one of {QUANTILES}")
    _no_python_scans(con)
    notes: list[str] = []
    actuals, data_end, peaks = _load_actuals(con, notes)
    services, table = _load_services(con, notes, peaks, set(actuals) | (forecast_services or set()))
    return ServingContext(
        services=services,
        services_table=table,
        actuals=actuals,
        data_end=data_end,
        history=_load_history(con, history_days) if actuals else {},
        alerts=_load_alerts(con, notes),
        quality=_load_quality(con, notes),
        accuracy=_load_accuracy(con, notes, metric, quantile),
        modes=_load_modes(con, notes),
        notes=tuple(notes),
        fingerprint=fingerprint,
    )


def _load_actuals(
    con: duckdb.DuckDBPyConnection, notes: list[str]
) -> tuple[dict[str, Actual], datetime | None, dict[str, float]]:
    try:
        rows = con.execute(
            """
            WITH recent AS (
                SELECT service, ds, demand FROM marts.service_demand_5m
                WHERE ds >= (SELECT max(ds) FROM marts.service_demand_5m) - INTERVAL 7 DAY
                  AND demand IS NOT NULL
            )
            SELECT service, arg_max(ds, ds), arg_max(demand, ds), max(demand)
            FROM recent GROUP BY service
            """
        ).fetchall()
    except duckdb.CatalogException:
        notes.append("marts.service_demand_5m not found: no actual demand (reactive holds)")
        return {}, None, {}
    actuals = {s: Actual(_utc(ds), float(v)) for s, ds, v, _ in rows}
    peaks = {s: float(p) for s, _, _, p in rows}
    data_end = max((a.ds for a in actuals.values()), default=None)
    return actuals, (data_end + BUCKET if data_end else None), peaks


def _load_history(con: duckdb.DuckDBPyConnection, days: int) -> dict[str, tuple[array, array]]:
    """The last ``days`` days (plus one, for the padded windows) of observed demand per service,
    as compact float arrays (about 1,200 buckets per service at 5 minutes; one query for the
    fleet, aggregated per service so no per-row Python objects are kept)."""
    if days <= 0:
        return {}
    cursor = con.execute(
        f"""
        SELECT service, list(epoch(ds) ORDER BY ds), list(demand ORDER BY ds)
        FROM marts.service_demand_5m
        WHERE ds >= (SELECT max(ds) FROM marts.service_demand_5m) - INTERVAL {int(days) + 1} DAY
          AND demand IS NOT NULL
        GROUP BY service
        """
    )
    history: dict[str, tuple[array, array]] = {}
    # A few services at a time: the lists of Python floats are the transient cost.
    while rows := cursor.fetchmany(50):
        for service, times, values in rows:
            history[service] = (array("d", times), array("d", values))
    return history


def default_spec(peak: float | None) -> ServiceSpec:
    """Capacity such that the recent peak needs ~10 replicas; 1 demand unit when unknown."""
    capacity = peak / DEFAULT_PEAK_REPLICAS if peak and peak > 0 else 1.0
    return ServiceSpec(capacity, 1, DEFAULT_MAX_REPLICAS, 1.0)


def _load_services(
    con: duckdb.DuckDBPyConnection,
    notes: list[str],
    peaks: dict[str, float],
    observed: set[str],
) -> tuple[dict[str, ServiceInfo], bool]:
    services: dict[str, ServiceInfo] = {}
    table = True
    try:
        rows = con.execute(
            "SELECT service, tier, capacity_per_replica, min_replicas, max_replicas, "
            "target_utilization, capacity_source FROM marts.services"
        ).fetchall()
    except duckdb.CatalogException:
        table = False
        rows = []
        notes.append(
            "marts.services not found: capacity derived from observed demand "
            f"(recent 7-day peak = {DEFAULT_PEAK_REPLICAS} replicas), min 1, "
            f"max {DEFAULT_MAX_REPLICAS}, target utilization 1.0"
        )
    for service, tier, capacity, lo, hi, util, source in rows:
        try:
            lo_i = max(1, int(lo or 1))
            spec = ServiceSpec(
                float(capacity),
                lo_i,
                max(lo_i, int(hi or DEFAULT_MAX_REPLICAS)),
                float(util) if util else 1.0,
            )
            services[service] = ServiceInfo(spec, str(source or "marts.services"), tier)
        except (TypeError, ValueError) as exc:
            notes.append(f"marts.services row for {service!r} unusable ({exc}); default used")
    for service in observed - set(services):
        services[service] = ServiceInfo(default_spec(peaks.get(service)), "api_default")
    return services, table


def _load_alerts(con: duckdb.DuckDBPyConnection, notes: list[str]) -> tuple[Alert, ...]:
    try:
        rows = con.execute(
            """
            SELECT alert_id, service, metric, kind, severity, status, starts_at, ends_at,
                   observed, expected, score, reason, updated_at
            FROM serving.alerts
            QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY updated_at DESC) = 1
            ORDER BY status = 'firing' DESC, updated_at DESC
            LIMIT 5000
            """
        ).fetchall()
    except duckdb.CatalogException:
        notes.append("serving.alerts not found: no anomaly flags")
        return ()
    return tuple(
        Alert(*r[:6], _utc(r[6]), _utc(r[7]), r[8], r[9], r[10], r[11], _utc(r[12])) for r in rows
    )


def _load_quality(con: duckdb.DuckDBPyConnection, notes: list[str]) -> QualityState:
    from scaleahead.quality.status import read_status

    status = read_status(con)
    if not status.known:
        notes.append("no quality-gate run recorded: quality gate unknown")
        return QualityState()
    return QualityState(
        run_id=",".join(status.run_ids),
        checked_at=_utc(status.checked_at),
        failed=status.blocking,
        failures=(status.reason,) if status.reason else (),
        reason=status.reason,
        quarantined=dict(status.quarantined),
    )


def _literal(text: str) -> str:
    """A SQL string literal. The serving process binds no parameters on purpose: DuckDB's
    Python parameter binding imports pandas (+ numpy, pyarrow), ~180 MB of the API's RSS."""
    return "'" + text.replace("'", "''") + "'"


def _load_accuracy(
    con: duckdb.DuckDBPyConnection, notes: list[str], metric: str, quantile: str
) -> dict[str, Accuracy]:
    try:
        rows = con.execute(
            f"""
            SELECT f.service, count(*), sum(abs(d.demand - f.p50)), sum(abs(d.demand)),
                   sum(CASE WHEN d.demand <= f.{quantile} THEN 1 ELSE 0 END)
            FROM serving.forecasts AS f
            JOIN marts.service_demand_5m AS d ON d.service = f.service AND d.ds = f.ds
            WHERE f.metric = {_literal(metric)} AND NOT d.is_gap AND d.demand IS NOT NULL
              AND d.ds >= (SELECT max(ds) FROM marts.service_demand_5m)
                          - INTERVAL {ACCURACY_DAYS} DAY
            GROUP BY f.service
            """
        ).fetchall()
    except duckdb.CatalogException:
        return {}
    return {
        service: Accuracy(int(n), (err / tot) if tot else None, covered / n if n else None)
        for service, n, err, tot, covered in rows
    }


def _load_modes(con: duckdb.DuckDBPyConnection, notes: list[str]) -> dict[str, ModeRecord]:
    try:
        rows = con.execute(
            """
            SELECT service, mode, reason, previous_mode, changed, as_of, created_at,
                   window_start, window_end, evidence_days, predictive_under_min,
                   matched_under_min, ratio, incidents, minutes_saved, extra_replica_hours,
                   shadow_days
            FROM serving.scaling_modes
            QUALIFY row_number() OVER (PARTITION BY service ORDER BY as_of DESC,
                                       created_at DESC) = 1
            """
        ).fetchall()
    except duckdb.CatalogException:
        notes.append("serving.scaling_modes not found: every service in shadow unless pinned")
        return {}
    return {
        r[0]: ModeRecord(
            mode=r[1],
            reason=r[2],
            previous_mode=r[3],
            changed=bool(r[4]),
            as_of=_utc(r[5]),
            decided_at=_utc(r[6]),
            window_start=_utc(r[7]),
            window_end=_utc(r[8]),
            days=r[9],
            predictive_under_min=r[10],
            matched_under_min=r[11],
            ratio=r[12],
            incidents=None if r[13] is None else int(r[13]),
            minutes_saved=r[14],
            extra_replica_hours=r[15],
            shadow_days=r[16],
        )
        for r in rows
    }
