"""Warehouse benchmark: incremental dbt builds over growing history, and analyst latency.

For each history size (1M, 10M, 50M rows by default; ``SCALEAHEAD_BENCH_WAREHOUSE_SIZES``,
comma-separated, overrides) a scratch DuckLake gets that many telemetry rows generated in SQL
directly into ``raw.telemetry`` (50 services x 3 metrics at 1-minute resolution), one full
``dbt build`` (timed for 10M), then one new 5-minute increment ingested and built with the
increment as the window (``incr_build_s_<size>``). On the 10M warehouse an analyst query (p95
of one service's 5-minute demand over 7 days) is timed idle and while another process runs
ingest + incremental builds in a loop.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

from scaleahead.bench.runner import scratch_root
from scaleahead.config import Settings

SERVICES = 50
METRICS = ("request_rate", "cpu_cores", "latency_ms")
HISTORY_END = datetime(2024, 3, 1)
CHUNK_ROWS = 5_000_000
ANALYST_SQL = """
SELECT quantile_cont(demand, 0.95) AS p95
FROM marts.service_demand_5m
WHERE service = 'svc-007'
  AND ds >= (SELECT max(ds) FROM marts.service_demand_5m WHERE service = 'svc-007')
            - INTERVAL 7 DAY
"""


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows >= 1_000_000 else f"{rows // 1000}k"


def _insert_minutes(con, first_minute: int, minutes: int, ingested_at: datetime) -> None:
    """Rows for ``minutes`` minutes from HISTORY_END - first_minute, all services/metrics."""
    con.execute(
        f"""
        INSERT INTO raw.telemetry
        SELECT
            'svc-' || lpad(CAST(s AS VARCHAR), 3, '0') AS service,
            m.metric,
            ts,
            CASE m.metric
                WHEN 'request_rate' THEN 100 + 20 * s % 7
                    + 30 * sin(2 * pi() * epoch(ts) / 86400) + random()
                WHEN 'cpu_cores' THEN 2 + random()
                ELSE 50 + 10 * random()
            END AS value,
            '{{}}' AS labels,
            'bench' AS batch_id,
            ?::TIMESTAMP AS ingested_at
        FROM range(?) AS t(i),
             (SELECT unnest({list(METRICS)}) AS metric) AS m,
             range({SERVICES}) AS r(s),
             LATERAL (SELECT ?::TIMESTAMP + to_minutes(i) AS ts)
        ORDER BY ts
        """,
        [ingested_at, minutes, HISTORY_END - timedelta(minutes=first_minute)],
    )


def _history(settings: Settings, rows: int) -> datetime:
    """Generate ~rows of history ending at HISTORY_END; return the end (exclusive)."""
    from scaleahead.warehouse import connect

    per_minute = SERVICES * len(METRICS)
    total = max(rows // per_minute, 10)
    chunk = max(CHUNK_ROWS // per_minute, 1)
    loaded = datetime(2024, 3, 2)
    with connect(settings=settings) as con:
        done = 0
        while done < total:
            n = min(chunk, total - done)
            _insert_minutes(con, total - done, n, loaded)
            done += n
    return HISTORY_END


def _increment(settings: Settings, start: datetime, minutes: int = 5) -> None:
    from scaleahead.warehouse import connect

    with connect(settings=settings) as con:
        first = int((HISTORY_END - start).total_seconds() // 60)
        # Ingested after the history (and after earlier increments): the build's watermark.
        _insert_minutes(con, first, minutes, datetime(2030, 1, 1) + (start - HISTORY_END))


def _build(settings: Settings, start: datetime | None = None, end: datetime | None = None):
    from scaleahead.transform.dbt import build

    dbt_vars = None
    if start is not None and end is not None:
        dbt_vars = {"start": start.isoformat(), "end": end.isoformat()}
    t0 = time.perf_counter()
    build(settings=settings, dbt_vars=dbt_vars)
    return round(time.perf_counter() - t0, 3)


def _query_ms(settings: Settings, repeats: int) -> float:
    from scaleahead.warehouse import connect

    times = []
    with connect(read_only=True, settings=settings) as con:
        con.execute(ANALYST_SQL).fetchall()  # warm the session
        for _ in range(repeats):
            t0 = time.perf_counter()
            con.execute(ANALYST_SQL).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


PIPELINE = textwrap.dedent(
    """
    import os, sys
    from datetime import datetime, timedelta
    from scaleahead.config import Settings
    from scaleahead.bench.warehouse import _increment, _build, HISTORY_END
    settings = Settings(home=sys.argv[1], warehouse_dir=sys.argv[2])
    stop = sys.argv[3]
    start = HISTORY_END + timedelta(minutes=5)
    while not os.path.exists(stop):
        _increment(settings, start)
        _build(settings, start, start + timedelta(minutes=5))
        start += timedelta(minutes=5)
    """
)


def _during_pipeline(settings: Settings, scratch: Path, repeats: int) -> float:
    stop = scratch / "stop"
    proc = subprocess.Popen(
        [sys.executable, "-c", PIPELINE, str(settings.home), str(settings.warehouse_dir), str(stop)]
    )
    try:
        time.sleep(5.0)  # let the writer get going (dbt start-up)
        return _query_ms(settings, repeats)
    finally:
        stop.touch()
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(settings: Settings) -> dict[str, float | int | str]:
    sizes = [
        int(float(s))
        for s in os.environ.get(
            "SCALEAHEAD_BENCH_WAREHOUSE_SIZES", "1000000,10000000,50000000"
        ).split(",")
    ]
    repeats = int(os.environ.get("SCALEAHEAD_BENCH_WAREHOUSE_QUERIES", "30"))
    figures: dict[str, float | int | str] = {"services": SERVICES, "metrics": len(METRICS)}
    root = Path(tempfile.mkdtemp(prefix="bench-warehouse-", dir=scratch_root(settings)))
    try:
        for rows in sizes:
            label = _label(rows)
            scratch = root / label
            local = Settings(home=settings.home, warehouse_dir=scratch / "warehouse")
            local.ensure_dirs()
            t0 = time.perf_counter()
            end = _history(local, rows)
            figures[f"generate_s_{label}"] = round(time.perf_counter() - t0, 3)
            full = _build(local)
            figures[f"full_build_s_{label}"] = full
            start = end
            _increment(local, start)
            figures[f"incr_build_s_{label}"] = _build(local, start, start + timedelta(minutes=5))
            if label == "10m" or rows == sizes[0] and len(sizes) == 1:
                figures["analyst_query_ms_idle"] = _query_ms(local, repeats)
                figures["analyst_query_ms_during_pipeline"] = _during_pipeline(
                    local, scratch, repeats
                )
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # The target: an increment costs the increment, so the largest history's figure stays
    # within 2x of the smallest's.
    labels = [_label(rows) for rows in sorted(sizes)]
    if len(labels) > 1:
        first, last = figures[f"incr_build_s_{labels[0]}"], figures[f"incr_build_s_{labels[-1]}"]
        figures[f"incr_ratio_{labels[-1]}_to_{labels[0]}"] = round(last / first, 2)
    return figures
