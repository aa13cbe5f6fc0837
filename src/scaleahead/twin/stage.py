"""The weekly twin stage: replay each service's latest days of demand from the mart against
every scaling policy and store the per-service outcome in ``serving.capacity_simulations``
(dbt exposes the latest run as ``marts.capacity_simulations``).

Capacity and replica bounds come from ``marts.services`` (the service dimension the API uses);
services missing there get the twin's defaults. Reruns for the same ``as_of`` replace their
rows in one transaction, so a retried or backfilled run never duplicates.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from scaleahead.config import Settings, get_settings
from scaleahead.twin.runner import DS, ID, POLICIES, TwinConfig, TwinResult, Y, simulate_frame
from scaleahead.twin.verdicts import service_verdicts
from scaleahead.warehouse import connect
from scaleahead.warehouse.partitions import demand_end, replace_as_of

log = logging.getLogger("scaleahead.twin")

DEFAULT_DAYS = 14.0
TABLE = "serving.capacity_simulations"
COLUMNS = (
    "run_id", "as_of", "service", "policy", "window_start", "replay_start",
    "underprovisioned_minutes", "unserved_demand", "replica_hours", "peak_replicas",
    "scaling_actions", "hpa_target", "underprovisioned_vs_reactive", "underprovisioned_vs_oracle",
    "replica_hours_vs_reactive", "replica_hours_vs_oracle", "created_at",
)  # fmt: skip


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def read_demand(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pd.DataFrame:
    """``unique_id, ds, y``: the mart's gap-filled demand in ``[start, end)``."""
    return con.execute(
        "SELECT service AS unique_id, ds, demand AS y FROM marts.service_demand_5m "
        "WHERE ds >= $start AND ds < $end AND demand IS NOT NULL ORDER BY service, ds",
        {"start": start, "end": end},
    ).df()


def read_services(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    try:
        return con.execute(
            "SELECT service, capacity_per_replica, min_replicas, max_replicas FROM marts.services"
        ).df()
    except duckdb.CatalogException:
        return pd.DataFrame(
            columns=["service", "capacity_per_replica", "min_replicas", "max_replicas"]
        )


def _bounds(
    ids: list[str], services: pd.DataFrame, cfg: TwinConfig
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    dim = services.set_index("service").reindex(ids)
    capacity = {
        s: float(c) for s, c in dim["capacity_per_replica"].items() if pd.notna(c) and c > 0
    }
    lo = dim["min_replicas"].fillna(cfg.min_replicas).to_numpy(dtype=float)
    hi = np.maximum(dim["max_replicas"].fillna(cfg.max_replicas).to_numpy(dtype=float), lo)
    return capacity, lo, hi


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(b > 0, a / np.where(b > 0, b, 1.0), np.where(a > 0, np.nan, 1.0))
    return out


def result_rows(
    result: TwinResult, run_id: str, as_of: datetime, window_start: datetime, now: datetime
) -> pd.DataFrame:
    """One row per (service, policy) with the twin's per-service metrics and ratios."""
    base = result.metrics["reactive"]
    oracle = result.metrics["oracle"]
    frames = []
    for policy in POLICIES:
        m = result.metrics[policy]
        targets = result.hpa_targets.get(policy)
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "as_of": as_of,
                    "service": result.ids,
                    "policy": policy,
                    "window_start": window_start,
                    "replay_start": result.ds[0].to_pydatetime(),
                    "underprovisioned_minutes": m.underprovisioned_minutes,
                    "unserved_demand": m.unserved_demand,
                    "replica_hours": m.replica_hours,
                    "peak_replicas": m.peak_replicas,
                    "scaling_actions": m.scaling_actions,
                    "hpa_target": (
                        np.broadcast_to(targets, len(result.ids)) if targets is not None else None
                    ),
                    "underprovisioned_vs_reactive": _ratio(
                        m.underprovisioned_minutes, base.underprovisioned_minutes
                    ),
                    "underprovisioned_vs_oracle": _ratio(
                        m.underprovisioned_minutes, oracle.underprovisioned_minutes
                    ),
                    "replica_hours_vs_reactive": _ratio(m.replica_hours, base.replica_hours),
                    "replica_hours_vs_oracle": _ratio(m.replica_hours, oracle.replica_hours),
                    "created_at": now,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def run_twin(
    settings: Settings | None = None,
    as_of: datetime | None = None,
    days: float = DEFAULT_DAYS,
    config: TwinConfig | None = None,
) -> dict[str, Any]:
    """Replay the ``days`` before ``as_of`` (default: the mart's latest bucket) and store it."""
    settings = settings or get_settings()
    cfg = config or TwinConfig()
    started = time.perf_counter()
    with connect(read_only=True, path=settings.warehouse_path) as con:
        as_of = as_of or demand_end(con)
        if as_of is None:
            return {"status": "skipped", "reason": "the demand mart is empty", "services": 0}
        end = _naive_utc(as_of)
        start = end - timedelta(days=days)
        demand = read_demand(con, start, end)
        services = read_services(con)
    # A series needs training and replay rows: at least two days of the window.
    sizes = demand.groupby(ID)[DS].transform("size")
    demand = demand[sizes >= 2 * 288].reset_index(drop=True)
    if demand.empty:
        return {
            "status": "skipped",
            "reason": f"no service has two days of demand in [{start}, {end})",
            "services": 0,
        }
    ids = sorted(demand[ID].unique())
    capacity, lo, hi = _bounds(ids, services, cfg)
    cfg = cfg.model_copy(update={"capacity_per_replica": capacity or None})
    result = simulate_frame(demand[[ID, DS, Y]], cfg, settings, min_replicas=lo, max_replicas=hi)
    now = datetime.now(UTC).replace(tzinfo=None)
    run_id = f"twin-{end:%Y%m%dT%H%M}-{uuid.uuid4().hex[:8]}"
    rows = result_rows(result, run_id, end, start, now)
    with connect(path=settings.warehouse_path) as con:
        replace_as_of(con, TABLE, COLUMNS, rows, end)
    summary = result.summary()
    report = {
        "status": "ok",
        "run_id": run_id,
        "as_of": end.isoformat(),
        "window_start": start.isoformat(),
        "services": len(ids),
        "rows": len(rows),
        "fleet": {
            p: {
                k: summary[p][k]
                for k in ("underprovisioned_minutes", "replica_hours", "scaling_actions")
            }
            for p in POLICIES
        },
        "predictive_vs_cost_matched": service_verdicts(result).as_dict(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info("capacity twin %s: %d services, %d rows", run_id, len(ids), len(rows))
    return report
