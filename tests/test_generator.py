"""The synthetic telemetry generator: determinism, no overwrite, realistic shape."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from scaleahead.config import Settings
from scaleahead.synth.telemetry import DEFAULT_START, generate


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(run_dir: Path) -> duckdb.DuckDBPyConnection:
    """All generated rows (malformed CSV rows dropped) as a DuckDB relation named ``t``."""
    con = duckdb.connect()
    con.execute(
        f"""
        CREATE TABLE t AS
        SELECT service, metric, TRY_CAST(timestamp AS TIMESTAMP) AS ts,
               TRY_CAST(value AS DOUBLE) AS value, labels, filename
        FROM read_csv('{run_dir}/*.csv', all_varchar = true, filename = true)
        UNION ALL BY NAME
        SELECT service, metric, TRY_CAST(timestamp AS TIMESTAMP) AS ts,
               TRY_CAST(value AS DOUBLE) AS value, labels, filename
        FROM read_json('{run_dir}/*.ndjson', columns = {{service: 'VARCHAR', metric: 'VARCHAR',
             timestamp: 'VARCHAR', value: 'VARCHAR', labels: 'VARCHAR'}}, filename = true)
        UNION ALL BY NAME
        SELECT service, metric, TRY_CAST(timestamp AS TIMESTAMP) AS ts, value, labels, filename
        FROM read_parquet('{run_dir}/*.parquet', filename = true)
        """
    )
    con.execute("DELETE FROM t WHERE service = '' OR ts IS NULL OR value IS NULL")
    return con


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, object]:
    settings = Settings(home=tmp_path_factory.mktemp("week"))
    return settings, generate(12, 7, seed=3, settings=settings)


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    a = Settings(home=tmp_path / "a")
    b = Settings(home=tmp_path / "b")
    ra, rb = generate(4, 2, seed=11, settings=a), generate(4, 2, seed=11, settings=b)
    assert ra.run_id == rb.run_id == "gen-s11-0000"
    assert _digest(a.landing_dir) == _digest(b.landing_dir)
    assert _digest(a.warehouse_dir / "labels") == _digest(b.warehouse_dir / "labels")
    c = Settings(home=tmp_path / "c")
    generate(4, 2, seed=12, settings=c)
    assert _digest(c.landing_dir).values() != _digest(a.landing_dir).values()


def test_each_call_adds_a_new_run_and_never_overwrites(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = generate(3, 1, seed=5, settings=settings)
    before = _digest(first.run_dir)
    second = generate(3, 1, seed=5, settings=settings)
    assert second.run_dir != first.run_dir and second.run_id == "gen-s5-0001"
    assert _digest(first.run_dir) == before
    assert not (settings.landing_dir / "labels").exists()  # ground truth stays out of landing
    assert (settings.warehouse_dir / "labels" / second.run_id / "incidents.csv").exists()
    assert second.as_dict()["rows_written"] == first.rows_written


def test_files_in_three_formats_with_late_and_redelivery(week) -> None:
    _, result = week
    suffixes = {p.suffix for p in result.files}
    assert suffixes == {".csv", ".ndjson", ".parquet"}
    names = {p.name for p in result.files}
    assert {"part-0007-late.csv", "part-0007-redelivery.parquet"} <= names
    assert result.services == 12 and result.incidents > 0
    first = (result.run_dir / "part-0000.csv").read_text().splitlines()
    assert first[0] == "service,metric,timestamp,value,labels"
    row = next(csv.reader([first[1]]))
    assert row[2].startswith(DEFAULT_START.strftime("%Y-%m-%dT")) and row[2].endswith("Z")
    assert set(json.loads(row[4])) == {"region", "tier"}


def test_malformed_gaps_late_and_duplicates_are_present(week) -> None:
    _, result = week
    con = _rows(result.run_dir)
    total = con.execute("SELECT count(*) FROM t").fetchone()[0]
    assert result.rows_written - total >= 3  # malformed CSV rows
    keys = con.execute("SELECT count(*), count(DISTINCT (service, metric, ts)) FROM t").fetchone()
    assert keys[0] > keys[1]  # re-delivered rows
    assert keys[1] < 12 * 3 * 7 * 1440  # gaps
    late_min = con.execute("SELECT min(ts) FROM t WHERE filename LIKE '%late%'").fetchone()[0]
    last_day = con.execute("SELECT max(ts)::DATE FROM t").fetchone()[0]
    assert late_min.date() < last_day  # late file carries old records
    (mismatch,) = con.execute(
        """
        SELECT count(*) FROM t r WHERE r.filename LIKE '%redelivery%' AND NOT EXISTS (
            SELECT 1 FROM t o WHERE o.filename NOT LIKE '%redelivery%' AND o.service = r.service
              AND o.metric = r.metric AND o.ts = r.ts AND o.value = r.value)
        """
    ).fetchone()
    assert mismatch <= 3  # identical copies (a malformed original may be the only exception)


def test_scales_seasonality_and_coupling(week) -> None:
    settings, result = week
    con = _rows(result.run_dir)
    means = dict(
        con.execute(
            "SELECT service, avg(value) FROM t WHERE metric = 'request_rate' GROUP BY 1"
        ).fetchall()
    )
    assert max(means.values()) / min(means.values()) > 50  # orders of magnitude apart
    services = {r["service"]: r for r in csv.DictReader(
        (settings.warehouse_dir / "labels" / result.run_id / "services.csv").open()
    )}  # fmt: skip
    for service, row in services.items():
        hourly = [
            v
            for (v,) in con.execute(
                "SELECT avg(value) FROM t WHERE service = ? AND metric = 'request_rate' "
                "GROUP BY hour(ts)",
                [service],
            ).fetchall()
        ]
        assert max(hourly) / min(hourly) > 1.3, service  # daily cycle
        weekday, weekend = con.execute(
            "SELECT avg(value) FILTER (dayofweek(ts) BETWEEN 1 AND 5), "
            "avg(value) FILTER (dayofweek(ts) IN (0, 6)) FROM t "
            "WHERE service = ? AND metric = 'request_rate'",
            [service],
        ).fetchone()
        if row["tier"] != "batch":
            assert weekend < weekday, service
        corr, peak = con.execute(
            """
            SELECT corr(r.value, c.value), quantile_cont(r.value, 0.99)
            FROM t r JOIN t c USING (service, ts)
            WHERE r.metric = 'request_rate' AND c.metric = 'cpu_cores' AND service = ?
            """,
            [service],
        ).fetchone()
        assert corr > 0.6, service  # cpu follows requests (saturates in spikes)
        replicas = peak / float(row["capacity_per_replica"])
        assert 7 <= replicas <= 30, (service, replicas)
        assert int(row["min_replicas"]) <= int(row["max_replicas"])


def test_incident_labels_are_well_formed(week) -> None:
    settings, result = week
    path = settings.warehouse_dir / "labels" / result.run_id / "incidents.csv"
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == result.incidents
    assert {r["kind"] for r in rows} <= {"spike", "level_shift", "outage"}
    assert {r["metric"] for r in rows} <= {"request_rate", "cpu_cores", "latency_ms"}
    assert all(r["start"] < r["end"] for r in rows)
