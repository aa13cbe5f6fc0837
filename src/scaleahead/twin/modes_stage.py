"""The scheduled guard: replay each service's recent history through the twin and move it between
scaling modes (``scaleahead.domain.modes``), one row per service and run in
``serving.scaling_modes`` (dbt: ``marts.scaling_modes``, the latest per service, and
``marts.scaling_mode_history``). The API serves each service in its latest mode.

The replay reads the last ``guard_window_days`` of ``marts.service_demand_5m`` before ``as_of``
(the DAG run's data interval end; by default the mart's latest bucket), runs the twin once for
every service with at least two days of demand, and takes each service's evidence
(:func:`scaleahead.twin.guard.service_evidence`: predictive as if it had driven against the HPA
given the same replica-hours). :func:`decide_mode` then applies the guard's rule from settings
to the service's previous mode (its latest row before ``as_of``), pins from settings first.
Services without enough demand still get a row (no evidence: shadow for a new service).
Reruns for the same ``as_of`` replace their rows in one transaction; the previous mode is read
from earlier runs only, so a rerun decides the same.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from scaleahead.config import Settings, get_settings
from scaleahead.domain.modes import (
    Evidence,
    GuardRule,
    ModeDecision,
    ScalingMode,
    decide_mode,
    pinned_mode,
)
from scaleahead.forecasting.config import ForecastingError
from scaleahead.warehouse import connect
from scaleahead.warehouse.partitions import demand_end, replace_as_of

log = logging.getLogger("scaleahead.twin")

TABLE = "serving.scaling_modes"
COLUMNS = (
    "run_id", "as_of", "service", "mode", "previous_mode", "changed", "reason", "window_start",
    "window_end", "evidence_days", "predictive_under_min", "matched_under_min", "ratio",
    "incidents", "shadow_days", "minutes_saved", "extra_replica_hours", "created_at",
)  # fmt: skip
MIN_DEMAND_DAYS = 2.0  # what the twin needs to train and replay (as the weekly twin stage)
STEPS_PER_DAY = 288  # marts.service_demand_5m: 5-minute buckets


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _timestamp(value: str | None) -> datetime | None:
    return None if value is None else pd.Timestamp(value).to_pydatetime().replace(tzinfo=None)


def _float(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def previous_modes(con: duckdb.DuckDBPyConnection, before: datetime) -> dict[str, str]:
    """Each service's latest mode from runs with ``as_of < before`` (empty without the table)."""
    try:
        rows = con.execute(
            f"SELECT service, mode FROM {TABLE} WHERE as_of < $before "
            "QUALIFY row_number() OVER (PARTITION BY service ORDER BY as_of DESC, "
            "created_at DESC) = 1",
            {"before": before},
        ).fetchall()
    except duckdb.CatalogException:
        return {}
    return dict(rows)


def shadow_stays(
    con: duckdb.DuckDBPyConnection, before: datetime, waits_for_evidence: bool = False
) -> dict[str, datetime]:
    """For each service in shadow at its latest run before ``before``: the ``as_of`` of the first
    decision with evidence of its current stay in shadow (the rows since its last other mode),
    with ``waits_for_evidence`` (``GuardRule.trial_waits_for_evidence``) the first with enough
    evidence. The trial (``GuardRule.promote_within_days``) counts from there; a service in
    shadow with no such decision yet is missing (its next judged decision is its trial)."""
    try:
        rows = con.execute(
            f"""
            WITH h AS (SELECT service, as_of, mode, reason, evidence_days FROM {TABLE}
                       WHERE as_of < $before),
            other AS (SELECT service, max(as_of) AS as_of FROM h WHERE mode <> 'shadow'
                      GROUP BY service)
            SELECT h.service, min(h.as_of)
            FROM h LEFT JOIN other ON h.service = other.service
            WHERE h.mode = 'shadow' AND h.evidence_days IS NOT NULL
              AND (NOT $waits OR h.reason <> 'insufficient_evidence')
              AND (other.as_of IS NULL OR h.as_of > other.as_of)
            GROUP BY h.service
            """,
            {"before": before, "waits": waits_for_evidence},
        ).fetchall()
    except duckdb.CatalogException:
        return {}
    return dict(rows)


def latest_modes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The latest row per service (the mode in force), ordered by service."""
    return con.execute(
        f"SELECT * FROM {TABLE} QUALIFY row_number() OVER (PARTITION BY service "
        "ORDER BY as_of DESC, created_at DESC) = 1 ORDER BY service"
    ).df()


def history(con: duckdb.DuckDBPyConnection, service: str) -> pd.DataFrame:
    """Every run's row of one service, oldest first."""
    return con.execute(
        f"SELECT * FROM {TABLE} WHERE service = $service ORDER BY as_of, created_at",
        {"service": service},
    ).df()


def decide_all(
    services: Iterable[str],
    evidence: Mapping[str, Evidence],
    previous: Mapping[str, str],
    rule: GuardRule,
    pins: Mapping[str, str],
    as_of: datetime | None = None,
    stays: Mapping[str, datetime] | None = None,
) -> dict[str, ModeDecision]:
    """The guard's decision per service (pins from ``pins``, see :func:`pinned_mode`).

    With ``as_of`` and ``stays`` (:func:`shadow_stays`), the evidence of a service in shadow
    carries how long its stay in shadow has lasted (``Evidence.shadow_days``, the trial); a
    service whose reactive pin was removed starts a stay now (0 days)."""
    out = {}
    for s in services:
        e = evidence.get(s)
        if e is not None and as_of is not None and stays is not None:
            e = replace(e, shadow_days=_shadow_days(previous.get(s), stays.get(s), as_of))
        out[s] = decide_mode(previous.get(s), e, rule, pinned_mode(pins, s))
    return out


def _shadow_days(previous: str | None, since: datetime | None, as_of: datetime) -> float | None:
    if previous == ScalingMode.REACTIVE:
        return 0.0
    if previous != ScalingMode.SHADOW or since is None:
        return None  # predictive (no trial), or nothing judged in this stay yet
    return (as_of - since).total_seconds() / 86400.0


def decision_rows(
    decisions: Mapping[str, ModeDecision], run_id: str, as_of: datetime, created_at: datetime
) -> pd.DataFrame:
    """One ``serving.scaling_modes`` row per decision."""
    records: list[dict[str, Any]] = []
    for service, d in sorted(decisions.items()):
        e = d.evidence
        ratio = e.ratio if e is not None else None
        records.append(
            {
                "run_id": run_id,
                "as_of": as_of,
                "service": service,
                "mode": d.mode.value,
                "previous_mode": d.previous.value if d.previous is not None else None,
                "changed": d.changed,
                "reason": d.reason.value,
                "window_start": _timestamp(e.window_start) if e else None,
                "window_end": _timestamp(e.window_end) if e else None,
                "evidence_days": e.days if e else None,
                "predictive_under_min": e.predictive_under_min if e else None,
                "matched_under_min": e.matched_under_min if e else None,
                "ratio": ratio,  # inf: only predictive was short; NULL: neither was
                "incidents": e.incidents if e else None,
                "shadow_days": e.shadow_days if e else None,
                "minutes_saved": e.minutes_saved if e else None,
                "extra_replica_hours": _float(e.extra_replica_hours) if e else None,
                "created_at": created_at,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    return frame.astype(
        {
            "window_start": "datetime64[us]",
            "window_end": "datetime64[us]",
            "evidence_days": "float64",
            "predictive_under_min": "float64",
            "matched_under_min": "float64",
            "ratio": "float64",
            "incidents": "Int64",
            "shadow_days": "float64",
            "minutes_saved": "float64",
            "extra_replica_hours": "float64",
            "changed": "bool",
        }
    )


def write_rows(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, as_of: datetime) -> None:
    """Replace the rows of ``as_of`` with ``rows`` in one transaction."""
    replace_as_of(con, TABLE, COLUMNS, rows, as_of)


def replay_evidence(
    demand: pd.DataFrame, services: pd.DataFrame, rule: GuardRule, settings: Settings
) -> dict[str, Evidence]:
    """Evidence per service from one twin replay of ``demand`` (``unique_id, ds, y``)."""
    # The twin and the forecaster: imported here, so reading modes (the CLI) skips them.
    from scaleahead.twin.guard import service_evidence
    from scaleahead.twin.runner import DS, ID, TwinConfig, Y, simulate_frame
    from scaleahead.twin.stage import _bounds

    if demand.empty:
        return {}
    cfg = TwinConfig(**{f"guard_{k}": v for k, v in asdict(rule).items()})
    ids = sorted(demand[ID].unique())
    capacity, lo, hi = _bounds(ids, services, cfg)
    cfg = cfg.model_copy(update={"capacity_per_replica": capacity or None})
    result = simulate_frame(
        demand[[ID, DS, Y]], cfg, settings, min_replicas=lo, max_replicas=hi, evidence_only=True
    )
    first = demand.groupby(ID)[DS].min()
    step = timedelta(seconds=float(result.details["step_s"]))
    return {
        sid: _observed_only(e, first[sid], step)
        for sid, e in zip(result.ids, service_evidence(result), strict=True)
    }


def _observed_only(evidence: Evidence, first: datetime, step: timedelta) -> Evidence:
    """The twin puts every service on one grid, padding a younger service back to the grid's
    start with its first value: its evidence counts only the days it was observed."""
    if evidence.window_start is None or evidence.window_end is None:
        return evidence
    start = pd.Timestamp(evidence.window_start)
    first = pd.Timestamp(first)
    if first <= start:
        return evidence
    end = pd.Timestamp(evidence.window_end) + step
    days = max(0.0, (end - first).total_seconds() / 86400.0)
    return replace(evidence, days=days, window_start=str(first))


def run_guard(settings: Settings | None = None, as_of: datetime | None = None) -> dict[str, Any]:
    """Decide every service's mode from the ``guard_window_days`` before ``as_of`` and store it."""
    from scaleahead.twin.stage import read_demand, read_services

    settings = settings or get_settings()
    rule = settings.guard_rule()
    started = time.perf_counter()
    with connect(read_only=True, path=settings.warehouse_path) as con:
        as_of = as_of or demand_end(con)
        if as_of is None:
            return {"status": "skipped", "reason": "the demand mart is empty", "services": 0}
        end = _naive_utc(as_of)
        start = end - timedelta(days=rule.window_days)
        demand = read_demand(con, start, end)
        dimension = read_services(con)
        previous = previous_modes(con, end)
        stays = shadow_stays(con, end, rule.trial_waits_for_evidence)
    services = sorted(set(demand["unique_id"]) | set(dimension["service"].dropna()))
    if not services:
        return {"status": "skipped", "reason": f"no service in [{start}, {end})", "services": 0}
    sizes = demand.groupby("unique_id")["ds"].transform("size")
    eligible = demand[sizes >= MIN_DEMAND_DAYS * STEPS_PER_DAY].reset_index(drop=True)
    skipped = None
    try:
        evidence = replay_evidence(eligible, dimension, rule, settings)
    except ForecastingError as exc:  # e.g. no service has enough history to train on yet
        log.warning("scaling guard: no replay, every service without evidence: %s", exc)
        evidence, skipped = {}, str(exc)
    decisions = decide_all(
        services, evidence, previous, rule, settings.scaling_mode_pins, end, stays
    )
    run_id = f"guard-{end:%Y%m%dT%H%M}-{uuid.uuid4().hex[:8]}"
    rows = decision_rows(decisions, run_id, end, datetime.now(UTC).replace(tzinfo=None))
    with connect(path=settings.warehouse_path) as con:
        write_rows(con, rows, end)
    report = guard_report(decisions)
    report.update(
        run_id=run_id,
        as_of=end.isoformat(),
        window_start=start.isoformat(),
        services=len(services),
        services_with_evidence=len(evidence),
        replay_skipped=skipped,
        rule=asdict(rule),
        seconds=round(time.perf_counter() - started, 2),
    )
    log.info(
        "scaling guard %s: %d services, %d changed", run_id, len(services), len(report["changes"])
    )
    return report


def guard_report(decisions: Mapping[str, ModeDecision]) -> dict[str, Any]:
    """Counts per mode and reason, and the changes of the run."""
    modes = {m.value: 0 for m in ScalingMode}
    reasons: dict[str, int] = {}
    changes = []
    for service, d in sorted(decisions.items()):
        modes[d.mode.value] += 1
        reasons[d.reason.value] = reasons.get(d.reason.value, 0) + 1
        if d.changed:
            changes.append(
                {
                    "service": service,
                    "from": d.previous.value if d.previous else None,
                    "to": d.mode.value,
                    "reason": d.reason.value,
                    "ratio": _finite(d.evidence.ratio) if d.evidence else None,
                }
            )
    return {"status": "ok", "modes": modes, "reasons": reasons, "changes": changes}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def served_modes(settings: Settings | None = None) -> pd.DataFrame:
    """Each service with a guard decision, in the mode the API serves it (pins of ``settings``
    applied, :func:`scaleahead.domain.modes.serving_mode`) with the decision's evidence."""
    from scaleahead.domain.modes import serving_mode

    settings = settings or get_settings()
    with connect(read_only=True, path=settings.warehouse_path) as con:
        try:
            latest = latest_modes(con)
        except duckdb.CatalogException:
            latest = pd.DataFrame(columns=list(COLUMNS))
    rule, pins = settings.guard_rule(), settings.scaling_mode_pins
    served, reasons = [], []
    for row in latest.itertuples(index=False):
        evidence = None
        if pd.notna(row.evidence_days) and pd.notna(row.predictive_under_min):
            evidence = Evidence(
                days=float(row.evidence_days),
                predictive_under_min=float(row.predictive_under_min),
                matched_under_min=float(row.matched_under_min),
                incidents=int(row.incidents),
            )
        mode, reason = serving_mode(
            row.mode, row.reason, evidence, pinned_mode(pins, row.service), rule
        )
        served.append(mode.value)
        reasons.append(reason.value)
    out = pd.DataFrame(
        {
            "service": latest["service"],
            "mode": served,
            "reason": reasons,
            "decided_mode": latest["mode"],
            "previous_mode": latest["previous_mode"],
            "ratio": latest["ratio"],
            "minutes_saved": latest["minutes_saved"],
            "extra_replica_hours": latest["extra_replica_hours"],
            "incidents": latest["incidents"],
            "shadow_days": latest["shadow_days"],
            "evidence_days": latest["evidence_days"],
            "as_of": latest["as_of"],
            "decided_at": latest["created_at"],
        }
    )
    return out.reset_index(drop=True)
