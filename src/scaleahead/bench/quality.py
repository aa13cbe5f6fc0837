"""Quality-gate benchmark: what the Great Expectations gate costs per pipeline cycle.

A scratch DuckLake gets 1,000 services (``SCALEAHEAD_BENCH_QUALITY_SERVICES`` overrides) of
raw telemetry for one day plus one 5-minute increment (3 metrics, 1-minute samples, generated
in SQL) and eight days of the 5-minute demand mart (so the volume check has last week). Timed,
each as the DAGs run it:

- ``ingest_5m``: the ``ingest`` checkpoint on the 5-minute batch just loaded (15k raw rows);
- ``transform_5m``: the ``transform`` checkpoint on the latest 5-minute interval;
- ``transform_dag_window``: the same on the window the Airflow task uses (12 intervals);
- ``publish_5m``: the forecast suite on a candidate batch (1,000 services x 24 steps);
- ``ingest_day`` / ``transform_day``: the same checkpoints on a full day.

``cycle_s`` = ingest_5m + transform_dag_window + publish_5m; ``cycle_fraction`` is that over the
300 s pipeline cycle. Baseline measured in the same run: reading the same rows from the
warehouse into pandas (the I/O floor); ``*_vs_read`` are the gate/read ratios.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from scaleahead.bench.runner import scratch_root
from scaleahead.config import Settings
from scaleahead.warehouse import connect, read_sql

CYCLE_S = 300.0
DAY_END = datetime(2024, 3, 8)
HORIZON = 24


def _services() -> int:
    return int(os.environ.get("SCALEAHEAD_BENCH_QUALITY_SERVICES", "1000"))


def _seed(settings: Settings, services: int) -> None:
    """Raw telemetry: batch 'day' (the day before DAY_END) and batch 'incr' (the next 5 min);
    the mart: 8 days of 5-minute buckets, last bucket at DAY_END."""
    raw = """
        INSERT INTO raw.telemetry
        SELECT printf('svc-%04d', s), m, ts, 10 + s % 7 + (epoch(ts) / 60) % 13, '{}', ?, ?
        FROM range(?) t(s), (VALUES ('request_rate'), ('cpu_cores'), ('latency_ms')) v(m),
             generate_series(?::TIMESTAMP, ?::TIMESTAMP - INTERVAL 1 MINUTE,
                             INTERVAL 1 MINUTE) g(ts)
    """
    day_start = DAY_END - timedelta(days=1)
    incr_end = DAY_END + timedelta(minutes=5)
    with connect(path=settings.warehouse_path) as con:
        con.execute(raw, ["day", DAY_END, services, day_start, DAY_END])
        con.execute(raw, ["incr", incr_end, services, DAY_END, incr_end])
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(
            """
            CREATE TABLE marts.service_demand_5m AS
            SELECT printf('svc-%04d', s) AS service, ds,
                   (10 + s % 7 + (epoch(ds) / 300) % 13)::DOUBLE AS request_rate,
                   2.0 AS cpu_cores, 80.0 AS latency_ms, 5::BIGINT AS samples,
                   false AS is_gap, (10 + s % 7 + (epoch(ds) / 300) % 13)::DOUBLE AS demand
            FROM range(?) t(s),
                 generate_series(?::TIMESTAMP, ?::TIMESTAMP, INTERVAL 5 MINUTE) g(ds)
            """,
            [services, DAY_END - timedelta(days=8), DAY_END],
        )


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def _forecasts(services: int) -> pd.DataFrame:
    start = DAY_END + timedelta(minutes=5)
    rows = [
        (f"svc-{s:04d}", start + timedelta(minutes=5 * h), h + 1, 10.0, 12.0, 13.0)
        for s in range(services)
        for h in range(HORIZON)
    ]
    return pd.DataFrame(rows, columns=["service", "ds", "step", "p50", "p90", "p95"])


def run(settings: Settings) -> dict[str, Any]:
    from scaleahead.quality.gate import check_forecasts, run_gate
    from scaleahead.quality.suites import load_config

    services = _services()
    scratch = Path(tempfile.mkdtemp(prefix="quality-", dir=scratch_root(settings)))
    local = Settings(home=settings.home, warehouse_dir=scratch)
    try:
        local.ensure_dirs()
        seed_s, _ = _timed(lambda: _seed(local, services))
        window = timedelta(minutes=5 * load_config(local.quality_config).mart_window_intervals)
        last = DAY_END + timedelta(minutes=5)  # end of the latest mart bucket
        figures: dict[str, Any] = {"services": services, "seed_s": round(seed_s, 2)}

        # Warm-up: GX imports and the first context are a one-off per worker process.
        warm_s, _ = _timed(lambda: run_gate(local, "warmup", checkpoint="ingest", batch_ids=[]))
        figures["warmup_s"] = round(warm_s, 3)

        runs = {
            "ingest_5m": lambda: run_gate(local, "i5", checkpoint="ingest", batch_ids=["incr"]),
            "transform_5m": lambda: run_gate(
                local, "t5", last - timedelta(minutes=5), last, checkpoint="transform"
            ),
            "transform_dag_window": lambda: run_gate(
                local, "tw", last - window, last, checkpoint="transform"
            ),
            "publish_5m": lambda: check_forecasts(
                _forecasts(services),
                [f"svc-{s:04d}" for s in range(services)],
                HORIZON,
                "p5",
                local,
            ),
            "ingest_day": lambda: run_gate(local, "id", checkpoint="ingest", batch_ids=["day"]),
            "transform_day": lambda: run_gate(
                local, "td", last - timedelta(days=1), last, checkpoint="transform"
            ),
        }
        for name, fn in runs.items():
            seconds, report = _timed(fn)
            figures[f"{name}_s"] = round(seconds, 3)
            figures[f"{name}_rows"] = sum(s.rows for s in report.suites)
            figures[f"{name}_blocking"] = int(report.blocking)
            figures[f"{name}_quarantined"] = len(report.quarantined)

        reads = {
            "ingest_5m": ("SELECT * FROM raw.telemetry WHERE batch_id = 'incr'", []),
            "ingest_day": ("SELECT * FROM raw.telemetry WHERE batch_id = 'day'", []),
            "transform_day": (
                "SELECT * FROM marts.service_demand_5m WHERE ds >= ? AND ds < ?",
                [last - timedelta(days=1), last],
            ),
        }
        for name, (sql, params) in reads.items():
            seconds, _ = _timed(
                lambda sql=sql, params=params: read_sql(sql, params, path=local.warehouse_path)
            )
            figures[f"{name}_read_s"] = round(seconds, 3)
            figures[f"{name}_vs_read"] = round(figures[f"{name}_s"] / max(seconds, 1e-9), 1)

        cycle = figures["ingest_5m_s"] + figures["transform_dag_window_s"] + figures["publish_5m_s"]
        figures["cycle_s"] = round(cycle, 3)
        figures["cycle_fraction"] = round(cycle / CYCLE_S, 4)
        figures["day_s"] = round(figures["ingest_day_s"] + figures["transform_day_s"], 3)
        figures["day_fraction_of_cycle"] = round(figures["day_s"] / CYCLE_S, 4)
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
