"""The increment a dbt build processes.

Incremental models rebuild the 5-minute buckets in ``[var('start'), var('end'))``. Before a
build, :func:`plan_window` widens the requested window (the Airflow data interval, if any) to
every row ingested since the last build — late and re-delivered samples included — found
through the ``last_ingested_at`` watermark of ``intermediate.int_telemetry_series``, and back
to the previous last bucket of each affected series so gaps between increments are filled.
The window is aligned to the 5-minute grid. Costs follow the increment: raw rows are found by
``ingested_at`` (DuckLake prunes data files on their min/max statistics).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

BUCKET = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1)
SERIES = "intermediate.int_telemetry_series"


def floor_bucket(ts: datetime) -> datetime:
    return ts - (ts - _EPOCH) % BUCKET


def ceil_bucket(ts: datetime) -> datetime:
    floor = floor_bucket(ts)
    return floor if floor == ts else floor + BUCKET


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    (n,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return n > 0


def plan_window(
    con: duckdb.DuckDBPyConnection, requested: tuple[datetime, datetime] | None = None
) -> tuple[datetime, datetime] | None:
    """The aligned ``(start, end)`` to build, or None for a full build (nothing built yet)."""
    if not _table_exists(con, SERIES):
        return None
    watermark, last_ts = con.execute(
        f"SELECT max(last_ingested_at), max(last_ts) FROM {SERIES}"
    ).fetchone()
    if watermark is None:
        return None
    pending_min, pending_max, prior_last = con.execute(
        f"""
        WITH pending AS (
            SELECT service, metric, ts FROM raw.telemetry WHERE ingested_at > ?
        ),
        affected AS (SELECT DISTINCT service, metric FROM pending)
        SELECT
            (SELECT min(ts) FROM pending),
            (SELECT max(ts) FROM pending),
            (SELECT min(s.last_ts) FROM {SERIES} AS s JOIN affected USING (service, metric))
        """,
        [watermark],
    ).fetchone()
    starts = [t for t in (pending_min, prior_last) if t is not None]
    ends = [pending_max + timedelta(minutes=1)] if pending_max is not None else []
    if requested is not None:
        starts.append(requested[0])
        ends.append(requested[1])
    if not starts or not ends:
        # Nothing new and no interval asked for: an empty window (the build checks, no-ops).
        anchor = floor_bucket(last_ts)
        return anchor, anchor
    return floor_bucket(min(starts)), ceil_bucket(max(ends))


def window_vars(window: tuple[datetime, datetime] | None) -> dict[str, str]:
    if window is None:
        return {}
    return {"start": _fmt(window[0]), "end": _fmt(window[1])}


def parse_ts(value: object) -> datetime:
    """A var value (ISO string or datetime) as a naive UTC datetime."""
    if isinstance(value, datetime):
        ts = value
    else:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts
