"""DDL for the tables the Python side of the platform owns.

The warehouse is a DuckLake (``warehouse/lake.py``): NOT NULL and literal DEFAULTs work, but
PRIMARY KEY / UNIQUE constraints and indexes are refused, so uniqueness is the writer's job
(and a dbt/GX test's). dbt owns ``staging``, ``intermediate`` and ``marts``; everything here
is written by ingest, the quality gate and the forecast publisher, and documented for analysts
in ``warehouse/README.md``.
"""

from __future__ import annotations

import duckdb

DDL: tuple[str, ...] = (
    "CREATE SCHEMA IF NOT EXISTS raw",
    "CREATE SCHEMA IF NOT EXISTS serving",
    "CREATE SCHEMA IF NOT EXISTS quality",
    """
    CREATE TABLE IF NOT EXISTS raw.telemetry (
        service VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        ts TIMESTAMP NOT NULL,          -- UTC, no zone
        value DOUBLE NOT NULL,
        labels VARCHAR NOT NULL DEFAULT '{}',   -- JSON object, keys sorted
        batch_id VARCHAR NOT NULL,
        ingested_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS raw.ingest_batches (
        batch_id VARCHAR NOT NULL,      -- unique (DuckLake has no PRIMARY KEY: ingest ensures it)
        source VARCHAR NOT NULL,        -- e.g. 'landing'
        path VARCHAR,                   -- relative to the landing folder
        content_hash VARCHAR,           -- sha256 of the file bytes
        status VARCHAR NOT NULL,        -- 'loaded' | 'file_quarantined'
        rows_read BIGINT NOT NULL,
        rows_loaded BIGINT NOT NULL,
        rows_quarantined BIGINT NOT NULL,
        rows_duplicate BIGINT NOT NULL,
        error VARCHAR,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS raw.quarantine (
        batch_id VARCHAR NOT NULL,
        path VARCHAR,
        row_number BIGINT,              -- 1-based data row in the file; NULL for a whole file
        record VARCHAR,                 -- the offending row as text
        reason VARCHAR NOT NULL,
        quarantined_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS raw.schema_drift (
        batch_id VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        path VARCHAR,                   -- batch key: landing path, Prometheus query + range
        column_name VARCHAR NOT NULL,
        change VARCHAR NOT NULL,        -- 'new_column' | 'changed_type'
        detail VARCHAR,                 -- the column's type as read
        action VARCHAR NOT NULL,        -- 'mapped_to_label' | 'quarantined'
        detected_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS raw.source_watermarks (
        source VARCHAR NOT NULL,        -- e.g. 'prometheus'
        stream VARCHAR NOT NULL,        -- e.g. the query name
        high_water TIMESTAMP NOT NULL,  -- UTC; the next pull starts at high_water - overlap
        updated_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS raw.service_catalog (
        service VARCHAR NOT NULL,
        tier VARCHAR,
        capacity_per_replica DOUBLE,    -- demand units (req/s) one replica serves at 100%
        min_replicas INTEGER,
        max_replicas INTEGER,
        source_file VARCHAR,
        updated_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS serving.forecasts (
        batch_id VARCHAR NOT NULL,
        service VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        ds TIMESTAMP NOT NULL,
        step INTEGER NOT NULL,          -- 1..horizon
        p50 DOUBLE NOT NULL,
        p90 DOUBLE NOT NULL,
        p95 DOUBLE NOT NULL,
        model_name VARCHAR NOT NULL,
        model_version VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS serving.alerts (
        alert_id VARCHAR NOT NULL,      -- stable per (service, metric, kind, starts_at)
        service VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,          -- e.g. 'level_shift', 'spike', 'forecast_residual'
        severity VARCHAR NOT NULL,      -- 'critical' | 'warning' | 'info'
        status VARCHAR NOT NULL,        -- 'firing' | 'resolved'
        starts_at TIMESTAMP NOT NULL,
        ends_at TIMESTAMP,              -- NULL while firing
        observed DOUBLE,
        expected DOUBLE,
        score DOUBLE,                   -- anomaly score in [0, 1]
        reason VARCHAR NOT NULL,        -- short human-readable reason
        updated_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS serving.capacity_simulations (
        run_id VARCHAR NOT NULL,
        as_of TIMESTAMP NOT NULL,       -- end of the replayed window (the DAG's data interval)
        service VARCHAR NOT NULL,
        policy VARCHAR NOT NULL,        -- reactive | reactive_cost_matched | predictive | ...
        window_start TIMESTAMP NOT NULL,
        replay_start TIMESTAMP NOT NULL,
        underprovisioned_minutes DOUBLE NOT NULL,
        unserved_demand DOUBLE NOT NULL,
        replica_hours DOUBLE NOT NULL,
        peak_replicas DOUBLE NOT NULL,
        scaling_actions DOUBLE NOT NULL,
        hpa_target DOUBLE,              -- reactive policies only
        underprovisioned_vs_reactive DOUBLE,
        underprovisioned_vs_oracle DOUBLE,
        replica_hours_vs_reactive DOUBLE,
        replica_hours_vs_oracle DOUBLE,
        created_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS serving.scaling_modes (
        run_id VARCHAR NOT NULL,
        as_of TIMESTAMP NOT NULL,       -- end of the replayed history (the DAG's data interval)
        service VARCHAR NOT NULL,
        mode VARCHAR NOT NULL,          -- shadow | predictive | reactive
        previous_mode VARCHAR,          -- the service's latest mode before this run; NULL: new
        changed BOOLEAN NOT NULL,       -- mode != previous_mode (a new service: false)
        reason VARCHAR NOT NULL,        -- scaleahead.domain.modes.ModeReason
        window_start TIMESTAMP,         -- the evidence: the replayed steps (NULL: no evidence)
        window_end TIMESTAMP,
        evidence_days DOUBLE,
        predictive_under_min DOUBLE,    -- predictive as if it had driven
        matched_under_min DOUBLE,       -- the HPA given the same replica-hours
        ratio DOUBLE,                   -- predictive / matched; NULL: neither short (or inf)
        incidents INTEGER,              -- episodes the cost-matched HPA was short
        shadow_days DOUBLE,             -- the stay in shadow so far (the trial); NULL: none
        minutes_saved DOUBLE,           -- matched_under_min - predictive_under_min
        extra_replica_hours DOUBLE,     -- predictive - default HPA replica-hours
        created_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS quality.quality_results (
        run_id VARCHAR NOT NULL,
        suite VARCHAR NOT NULL,
        expectation VARCHAR NOT NULL,
        column_name VARCHAR,
        success BOOLEAN NOT NULL,
        observed_value VARCHAR,
        severity VARCHAR NOT NULL,      -- 'error' | 'warn'
        checked_at TIMESTAMP NOT NULL
    )
    """,
    # Per-service rows of a failed per-service expectation (issue 5); NULL for the check's row.
    "ALTER TABLE quality.quality_results ADD COLUMN IF NOT EXISTS service VARCHAR",
    """
    CREATE TABLE IF NOT EXISTS quality.gate_runs (
        run_id VARCHAR NOT NULL,
        checkpoint VARCHAR NOT NULL,    -- 'ingest' | 'transform' | 'full' | 'publish'
        suites VARCHAR NOT NULL,        -- comma-separated suite names
        blocking BOOLEAN NOT NULL,      -- an error blocks training and publishing
        reason VARCHAR,                 -- why it blocks (NULL when it does not)
        services_checked INTEGER NOT NULL,
        services_quarantined INTEGER NOT NULL,
        window_start VARCHAR,
        window_end VARCHAR,
        checked_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS quality.quarantined_services (
        run_id VARCHAR NOT NULL,
        checkpoint VARCHAR NOT NULL,
        service VARCHAR NOT NULL,       -- held back from publishing; served reactively
        reasons VARCHAR NOT NULL,       -- the failed checks, 'suite.expectation, ...'
        quarantined_at TIMESTAMP NOT NULL
    )
    """,
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)
