"""Benchmark area `anomaly`: alerts on synthetic telemetry vs the generator's labelled incidents.

Generates telemetry into a scratch folder, aggregates it to the mart's 5-minute shape, then
runs the anomaly stage's detection with and without the multivariate (IsolationForest) view,
and reports precision / recall of alerts against ``warehouse/labels/<run>/incidents.csv``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd

from scaleahead.bench.runner import scratch_root
from scaleahead.config import Settings


def frame_from_landing(run_dir: Path) -> pd.DataFrame:
    """The demand mart's shape (service, ds, metrics as 5-minute means) straight from a
    generator run folder, so the detector can be judged without the ingest/dbt stages."""
    run = str(run_dir)
    cols = "service::VARCHAR AS service, metric::VARCHAR AS metric, "
    cols += "TRY_CAST(timestamp AS TIMESTAMPTZ) AS ts, TRY_CAST(value AS DOUBLE) AS value"
    query = f"""
        WITH raw AS (
            SELECT {cols} FROM read_csv('{run}/*.csv', all_varchar = true, ignore_errors = true)
            UNION ALL SELECT {cols} FROM read_json(
                '{run}/*.ndjson', format = 'newline_delimited',
                columns = {{service: 'VARCHAR', metric: 'VARCHAR', timestamp: 'VARCHAR',
                           value: 'VARCHAR'}})
            UNION ALL SELECT {cols} FROM read_parquet('{run}/*.parquet')
        ), clean AS (
            SELECT DISTINCT service, metric, (ts AT TIME ZONE 'UTC') AS ts, value FROM raw
            WHERE ts IS NOT NULL AND value IS NOT NULL AND isfinite(value) AND value >= 0
        )
        SELECT service, time_bucket(INTERVAL 5 MINUTE, ts) AS ds,
               avg(value) FILTER (metric = 'request_rate') AS request_rate,
               avg(value) FILTER (metric = 'cpu_cores') AS cpu_cores,
               avg(value) FILTER (metric = 'latency_ms') AS latency_ms
        FROM clean GROUP BY ALL ORDER BY service, ds
    """
    return duckdb.sql(query).df()


def synthetic_alert_quality(
    settings: Settings, services: int, days: int, seed: int = 7
) -> dict[str, float | int]:
    from scaleahead.anomaly.stage import detect_alerts, evaluate_incidents, latest_incidents
    from scaleahead.synth.telemetry import generate

    result = generate(services=services, days=days, seed=seed, settings=settings)
    frame = frame_from_landing(result.run_dir)
    incidents = latest_incidents(settings)
    figures: dict[str, float | int] = {"services": services, "days": days}
    for label, multivariate in (("univariate", False), ("with_multivariate", True)):
        started = time.perf_counter()
        alerts, counts = detect_alerts(frame, multivariate=multivariate)
        figures[f"{label}_detect_s"] = round(time.perf_counter() - started, 2)
        if multivariate:
            figures["multivariate_alerts_all_days"] = counts["multivariate"]
        # The detector warms up on the first day: judge alerts and incidents after it.
        warm = frame["ds"].min() + timedelta(days=1)
        alerts = [a for a in alerts if a.starts_at >= warm]
        scored = incidents[incidents["start"].map(lambda s: s[:19]) >= warm.isoformat()[:19]]
        for key, value in evaluate_incidents(alerts, scored).items():
            figures[f"{label}_{key}"] = value
        for kind, incidents_of_kind in scored.groupby("kind"):
            recall = evaluate_incidents(alerts, incidents_of_kind)["recall"]
            figures[f"{label}_recall_{kind}"] = recall
    return figures


def run(settings: Settings) -> dict[str, float | int]:
    services = int(os.environ.get("SCALEAHEAD_BENCH_SERVICES", "50"))
    days = int(os.environ.get("SCALEAHEAD_BENCH_DAYS", "14"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-anomaly-", dir=scratch_root(settings)))
    try:
        local = Settings(home=settings.home, warehouse_dir=scratch / "warehouse")
        local.ensure_dirs()
        return synthetic_alert_quality(local, services, days)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
