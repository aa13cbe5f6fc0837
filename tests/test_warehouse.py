"""The DuckLake warehouse: sessions, read-only refusal, time travel, and analysts reading while
ingest + dbt write (SQLite and PostgreSQL catalogs)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from scaleahead.config import Settings, get_settings
from scaleahead.warehouse import connect, current_snapshot_id, read_sql
from scaleahead.warehouse.connection import WarehouseError, close_all
from scaleahead.warehouse.lake import Lake, install_extensions, lake_for

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

_ROW = ("svc", "request_rate", "2024-01-01 00:00:00", 1.0, "{}", "b1", "2024-01-02 00:00:00")


def test_sessions_time_travel_and_read_only(settings: Settings) -> None:
    lake = lake_for(settings)
    assert lake.backend == "sqlite" and lake.catalog_file == settings.warehouse_path
    with pytest.raises(WarehouseError, match="does not exist yet"), connect(read_only=True):
        pass
    with connect() as con:
        names = "SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'lake'"
        schemas = {r[0] for r in con.execute(names).fetchall()}
        assert {"raw", "serving", "quality"} <= schemas
        before = current_snapshot_id(con)
        con.execute("INSERT INTO raw.telemetry VALUES (?, ?, ?, ?, ?, ?, ?)", list(_ROW))
        after = current_snapshot_id(con)
        assert after > before
        # DuckLake refuses the constraints a plain DuckDB file had (hence schema.py has none).
        with pytest.raises(duckdb.Error, match="PRIMARY KEY"):
            con.execute("CREATE TABLE raw.pk_probe (id VARCHAR PRIMARY KEY)")
    # Data files are Parquet under the lake's data folder once inlined rows are flushed.
    assert settings.warehouse_path.exists() and lake.data_path.is_dir()

    with connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.telemetry").fetchone() == (1,)
        old = con.execute(
            f"SELECT count(*) FROM lake.raw.telemetry AT (VERSION => {before})"
        ).fetchone()
        assert old == (0,)
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("INSERT INTO raw.telemetry VALUES (?, ?, ?, ?, ?, ?, ?)", list(_ROW))
    frame = read_sql("SELECT service FROM raw.telemetry")
    assert frame["service"].tolist() == ["svc"]


def test_writer_sessions_create_the_schema_once_per_attached_catalog(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scaleahead.warehouse import connection

    runs: list[int] = []
    real = connection.ensure_schema

    def counting(con: duckdb.DuckDBPyConnection) -> None:
        runs.append(1)
        real(con)

    monkeypatch.setattr(connection, "ensure_schema", counting)
    close_all()  # a fresh process: nothing attached yet
    for _ in range(3):
        with connect() as con:
            con.execute("SELECT count(*) FROM raw.telemetry").fetchone()
    with connect(read_only=True) as con:
        con.execute("SELECT count(*) FROM raw.telemetry").fetchone()
    assert len(runs) == 1
    close_all()  # the next attach (another process, or after a reset) checks again
    with connect() as con:
        assert con.execute("SELECT count(*) FROM quality.gate_runs").fetchone() == (0,)
    assert len(runs) == 2


def test_extensions_come_from_the_wheels(tmp_path: Path) -> None:
    lake = Lake("sqlite", "sqlite:x", tmp_path / "data", tmp_path / "ext", tmp_path / "x")
    install_extensions(lake)
    con = duckdb.connect(config=lake.duckdb_config())
    rows = dict(
        con.execute(
            "SELECT extension_name, install_path FROM duckdb_extensions() "
            "WHERE extension_name IN ('ducklake', 'sqlite_scanner')"
        ).fetchall()
    )
    assert set(rows) == {"ducklake", "sqlite_scanner"}
    assert all(str(tmp_path / "ext") in p for p in rows.values())


def test_compaction_merges_small_files_and_keeps_time_travel(settings: Settings) -> None:
    from scaleahead.warehouse.maintenance import compact

    insert = """
        INSERT INTO raw.telemetry
        SELECT 'svc', 'request_rate', TIMESTAMP '2024-01-01' + to_minutes(? * 1000 + i),
               i, '{}', 'b' || ?, TIMESTAMP '2024-02-01'
        FROM range(1000) AS t(i)
    """
    with connect() as con:
        for batch in range(5):  # one small file per commit, like 5-minute increments
            con.execute(insert, [batch, batch])
        con.execute("DELETE FROM raw.telemetry WHERE batch_id = 'b1' AND value < 500")
        before_delete = current_snapshot_id(con) - 1
        expected = con.execute("SELECT sum(value), count(*) FROM raw.telemetry").fetchone()
    report = compact(settings)
    assert report.data_files_before >= 5
    assert report.data_files_after < report.data_files_before
    assert report.snapshots_expired == 0
    with connect(read_only=True) as con:
        assert con.execute("SELECT sum(value), count(*) FROM raw.telemetry").fetchone() == expected
        old = f"SELECT count(*) FROM lake.raw.telemetry AT (VERSION => {before_delete})"
        assert con.execute(old).fetchone() == (5000,)
    # Expiring with a retention of 0 drops the old snapshots (time travel to them is gone).
    assert compact(settings, expire_older_than=timedelta(0)).snapshots_expired > 0
    with connect(read_only=True) as con, pytest.raises(duckdb.Error):
        con.execute(old).fetchone()
    assert read_sql("SELECT count(*) AS n FROM raw.telemetry")["n"].item() == expected[1]


def test_shell_and_sql_are_read_only(settings: Settings) -> None:
    from typer.testing import CliRunner

    from scaleahead.cli import app
    from scaleahead.warehouse.shell import run_shell

    with connect() as con:
        con.execute("INSERT INTO raw.telemetry VALUES (?, ?, ?, ?, ?, ?, ?)", list(_ROW))
    out = io.StringIO()
    failures = run_shell(
        stdin=io.StringIO(
            "SELECT count(*) AS n\nFROM raw.telemetry;\n.snapshot\n"
            "DELETE FROM raw.telemetry;\nSELECT count(*) AS m FROM raw.telemetry;\n"
        ),
        stdout=out,
    )
    text = out.getvalue()
    assert failures == 1 and "read-only" in text
    assert text.count("│     1 │") == 2  # both counts still 1: the DELETE was refused

    result = CliRunner().invoke(
        app, ["sql", "SELECT count(*) AS n FROM raw.telemetry", "-f", "csv"]
    )
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "1"
    result = CliRunner().invoke(app, ["sql", "DROP TABLE raw.telemetry"])
    assert result.exit_code == 1 and "read-only" in result.output


ANALYST = textwrap.dedent(
    """
    import json, os, sys, time
    from scaleahead.warehouse import connect, current_snapshot_id
    stop, out = sys.argv[1], open(sys.argv[2], "w")
    CHECK = '''SELECT (SELECT count(*) FROM raw.telemetry),
                      (SELECT coalesce(sum(rows_loaded), 0) FROM raw.ingest_batches),
                      (SELECT count(*) FROM raw.ingest_batches)'''
    with connect(read_only=True) as con:   # one session held open for the whole run
        done = False
        while not done:
            done = os.path.exists(stop)
            # Autocommit query: the latest snapshot, and telemetry always matches its batches.
            rows, loaded, batches = con.execute(CHECK).fetchone()
            # A pinned snapshot: repeated reads agree while writers commit in between.
            con.execute("BEGIN")
            snap = current_snapshot_id(con)
            first = con.execute(CHECK).fetchone()
            time.sleep(0.05)
            second = con.execute(CHECK).fetchone()
            con.execute("COMMIT")
            out.write(json.dumps({"rows": rows, "loaded": loaded, "batches": batches,
                                  "snap": snap, "pinned_equal": first == second,
                                  "final": done}) + "\\n")
            out.flush()
    """
)


def _analyst_while_pipeline_runs(settings: Settings, tmp_path: Path) -> None:
    from scaleahead.ingest.loader import ingest_landing
    from scaleahead.synth.telemetry import generate
    from scaleahead.transform.dbt import build

    with connect():  # create the (empty) lake so the analyst can attach it
        pass
    generate(services=3, days=1, seed=7, settings=settings)
    stop, log = tmp_path / "stop", tmp_path / "analyst.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST, str(stop), str(log)], env=env)
    try:
        # Wait until the analyst holds its session and has read the empty warehouse.
        for _ in range(600):
            if log.exists() and log.read_text().strip():
                break
            if analyst.poll() is not None:
                break
            import time

            time.sleep(0.1)
        ingest = ingest_landing(settings=settings)
        report = build(settings=settings)
        stop.touch()
        assert analyst.wait(timeout=120) == 0
    finally:
        if analyst.poll() is None:
            analyst.kill()
    assert ingest.rows_loaded > 0 and report.success

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["rows"] == 0  # started before anything was loaded
    assert len(records) >= 2
    for r in records:
        # Never a half-written state: telemetry rows always equal the committed batches' count.
        assert r["rows"] == r["loaded"], r
        assert r["pinned_equal"], r
    snaps = [r["snap"] for r in records]
    assert snaps == sorted(snaps)
    final = records[-1]
    assert final["final"] and final["rows"] == ingest.rows_loaded  # sees the new data
    # The analyst's session never blocked the writers, and the marts are readable.
    mart = read_sql("SELECT count(*) AS n FROM marts.service_demand_5m")
    assert mart["n"].item() > 0


def test_analyst_reads_while_pipeline_writes_sqlite(settings: Settings, tmp_path: Path) -> None:
    _analyst_while_pipeline_runs(settings, tmp_path)


def _postgres_available() -> bool:
    try:
        lake = Lake(
            "postgres", "postgres:", Path("/nonexistent"), get_settings().duckdb_extension_dir
        )
        install_extensions(lake)
        con = duckdb.connect(config=lake.duckdb_config())
        con.execute(f"ATTACH '{PG_ADMIN}' AS pg (TYPE postgres)")
        con.close()
        return True
    except duckdb.Error:
        return False


@pytest.fixture
def postgres_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    if not _postgres_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    name = f"scaleahead_test_{uuid.uuid4().hex[:10]}"
    lake = Lake("postgres", "postgres:", Path("/nonexistent"), settings.duckdb_extension_dir)
    admin = duckdb.connect(config=lake.duckdb_config())
    admin.execute(f"ATTACH '{PG_ADMIN}' AS pg (TYPE postgres)")
    admin.execute(f"CALL postgres_execute('pg', 'CREATE DATABASE {name}', use_transaction=false)")
    monkeypatch.setenv("SCALEAHEAD_CATALOG_URL", f"postgresql://postgres@127.0.0.1:5432/{name}")
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        close_all()
        get_settings.cache_clear()
        admin.execute(
            f"CALL postgres_execute('pg', 'DROP DATABASE {name} WITH (FORCE)', "
            "use_transaction=false)"
        )
        admin.close()


def test_analyst_reads_while_pipeline_writes_postgres(
    postgres_settings: Settings, tmp_path: Path
) -> None:
    lake = lake_for(postgres_settings)
    assert lake.backend == "postgres" and lake.catalog_file is None
    _analyst_while_pipeline_runs(postgres_settings, tmp_path)
    assert not postgres_settings.warehouse_path.exists()  # no SQLite catalog was made
