"""dbt build on a tiny warehouse with hand-written telemetry: exact mart contents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scaleahead.config import Settings
from scaleahead.transform import TransformError, build
from scaleahead.warehouse import connect, read_sql

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 1, 1)
LOADED = datetime(2024, 1, 2)

Row = tuple[str, str, datetime, float, str, str, datetime]


def _minute(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


def _sample(
    service: str, metric: str, m: int, value: float, batch: str = "b1", loaded: datetime = LOADED
) -> Row:
    return (service, metric, _minute(m), value, "{}", batch, loaded)


def _telemetry() -> list[Row]:
    rows: list[Row] = []
    # svc-a: all three metrics over 20 minutes; request_rate misses minutes 5..9 (a gap bucket)
    for m in range(20):
        if not 5 <= m <= 9:
            rows.append(_sample("svc-a", "request_rate", m, float(m)))
        rows.append(_sample("svc-a", "cpu_cores", m, 1.0))
        rows.append(_sample("svc-a", "latency_ms", m, 50.0))
    # A later re-delivery corrects minute 1: the later ingested_at must win.
    rows.append(_sample("svc-a", "request_rate", 1, 101.0, "b2", LOADED + timedelta(hours=1)))
    # svc-b: request_rate only, two bursts with three empty buckets between them.
    rows += [_sample("svc-b", "request_rate", m, 5.0) for m in range(5)]
    rows += [_sample("svc-b", "request_rate", m, 7.0) for m in range(20, 25)]
    # An older delivery of an existing sample must lose.
    rows.append(_sample("svc-b", "request_rate", 0, 999.0, "b0", LOADED - timedelta(hours=1)))
    return rows


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, dbt_project_dir=REPO / "dbt")


def _load(settings: Settings, rows: list[Row]) -> None:
    with connect(path=settings.warehouse_path) as con:
        con.executemany("INSERT INTO raw.telemetry VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _scaling_modes(settings: Settings) -> None:
    """Two scaling guard runs: svc-a promoted on the second, svc-b without evidence."""
    from scaleahead.domain.modes import Evidence, decide_mode
    from scaleahead.twin.modes_stage import decision_rows, write_rows

    win = Evidence(5.0, 10.0, 40.0, 4, 120.0, 100.0, "2024-01-01 00:00:00", "2024-01-05 23:55:00")
    lose = Evidence(5.0, 60.0, 40.0, 4, 120.0, 100.0, "2024-01-01 00:00:00", "2024-01-05 23:55:00")
    with connect(path=settings.warehouse_path) as con:
        for day, evidence, previous in ((6, lose, None), (7, win, "shadow")):
            as_of = datetime(2024, 1, day)
            decisions = {
                "svc-a": decide_mode(previous, evidence),
                "svc-b": decide_mode(previous, None),
            }
            write_rows(con, decision_rows(decisions, f"guard-{day}", as_of, as_of), as_of)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    settings = _settings(tmp_path_factory.mktemp("dbt"))
    _load(settings, _telemetry())
    _scaling_modes(settings)
    return settings, build(settings).as_dict()


def test_build_report(built: tuple[Settings, dict]) -> None:
    settings, report = built
    assert report["success"] is True
    assert report["models_ok"] == 19
    assert report["models_error"] == 0
    assert report["tests_failed"] == 0
    assert report["tests_passed"] > 20
    assert report["failures"] == []
    assert report["elapsed_s"] > 0
    # dbt artefacts land in the warehouse folder, never in the repo's dbt/ project.
    assert (settings.warehouse_dir / "dbt" / "target" / "manifest.json").exists()
    assert not (REPO / "dbt" / "target").exists()


def test_mart_contents_exact(built: tuple[Settings, dict]) -> None:
    settings, _ = built
    frame = read_sql(
        "SELECT * FROM marts.service_demand_5m ORDER BY service, ds",
        path=settings.warehouse_path,
    )
    assert list(frame.columns) == [
        "service",
        "ds",
        "request_rate",
        "cpu_cores",
        "latency_ms",
        "samples",
        "is_gap",
        "demand",
    ]
    nan = None
    got = [
        tuple(None if v != v else v for v in row)  # NaN -> None for exact comparison
        for row in frame.itertuples(index=False, name=None)
    ]
    got = [(s, ds.to_pydatetime(), *rest) for s, ds, *rest in got]
    expected = [
        # bucket 00:00 = mean(0, 101 [re-delivery], 2, 3, 4)
        ("svc-a", _minute(0), 22.0, 1.0, 50.0, 5, False, 22.0),
        ("svc-a", _minute(5), nan, 1.0, 50.0, 0, True, 22.0),
        ("svc-a", _minute(10), 12.0, 1.0, 50.0, 5, False, 12.0),
        ("svc-a", _minute(15), 17.0, 1.0, 50.0, 5, False, 17.0),
        ("svc-b", _minute(0), 5.0, nan, nan, 5, False, 5.0),
        ("svc-b", _minute(5), nan, nan, nan, 0, True, 5.0),
        ("svc-b", _minute(10), nan, nan, nan, 0, True, 5.0),
        ("svc-b", _minute(15), nan, nan, nan, 0, True, 5.0),
        ("svc-b", _minute(20), 7.0, nan, nan, 5, False, 7.0),
    ]
    assert got == expected


def test_scaling_mode_marts(built: tuple[Settings, dict]) -> None:
    settings, _ = built
    path = settings.warehouse_path
    latest = read_sql("SELECT * FROM marts.scaling_modes ORDER BY service", path=path)
    assert list(latest["service"]) == ["svc-a", "svc-b"]
    assert list(latest["mode"]) == ["predictive", "shadow"]
    assert list(latest["reason"]) == ["predictive_wins", "no_evidence"]
    a = latest.iloc[0]
    assert (a.previous_mode, bool(a.changed), a.ratio, a.minutes_saved) == (
        "shadow",
        True,
        0.25,
        30.0,
    )
    assert a.mode_since == datetime(2024, 1, 7) and latest.iloc[1].mode_since == datetime(
        2024, 1, 6
    )
    history = read_sql(
        "SELECT * FROM marts.scaling_mode_history ORDER BY service, as_of", path=path
    )
    assert len(history) == 4 and list(history["is_latest"]) == [False, True, False, True]
    assert list(history["mode"]) == ["shadow", "predictive", "shadow", "shadow"]


def test_staging_dedup_and_intermediate_gaps(built: tuple[Settings, dict]) -> None:
    settings, _ = built
    path = settings.warehouse_path
    winners = read_sql(
        "SELECT service, value, batch_id FROM staging.stg_raw__telemetry "
        "WHERE metric = 'request_rate' AND ts = ? ORDER BY service",
        [T0 + timedelta(minutes=1)],
        path=path,
    )
    assert winners.to_dict("records") == [
        {"service": "svc-a", "value": 101.0, "batch_id": "b2"},
        {"service": "svc-b", "value": 5.0, "batch_id": "b1"},
    ]
    gaps = read_sql(
        "SELECT service, metric, ds, value, samples FROM intermediate.int_telemetry_5m "
        "WHERE is_gap ORDER BY service, ds",
        path=path,
    )
    assert gaps[["service", "metric"]].values.tolist() == [
        ["svc-a", "request_rate"],
        ["svc-b", "request_rate"],
        ["svc-b", "request_rate"],
        ["svc-b", "request_rate"],
    ]
    assert gaps["value"].isna().all()
    assert (gaps["samples"] == 0).all()


def test_second_build_fails_on_bad_data(tmp_path: Path) -> None:
    """A second in-process build works and a failing data test raises TransformError."""
    settings = _settings(tmp_path)
    _load(settings, [*_telemetry(), _sample("svc-c", "request_rate", 0, -3.0)])
    with pytest.raises(TransformError, match="not_negative") as info:
        build(settings)
    report = info.value.report
    assert report is not None
    assert report.success is False
    assert report.tests_failed >= 1
    assert any("not_negative_service_demand_5m_request_rate" in f["node"] for f in report.failures)
    # The DuckDB handle was released: this process can open the file again.
    assert (
        read_sql("SELECT count(*) AS n FROM raw.telemetry", path=settings.warehouse_path)[
            "n"
        ].item()
        == len(_telemetry()) + 1
    )


def test_build_on_empty_warehouse(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    report = build(settings)
    assert report.success and report.models_ok == 19 and report.tests_failed == 0
    rows = read_sql(
        "SELECT count(*) AS n FROM marts.service_demand_5m", path=settings.warehouse_path
    )
    assert rows["n"].item() == 0


def test_select_and_vars(built: tuple[Settings, dict]) -> None:
    settings, _ = built
    report = build(settings, dbt_vars={"start": "2024-01-01"}, select="stg_raw__telemetry")
    assert report.models_ok == 1
    assert report.tests_failed == 0


def test_docs_and_source_freshness(built: tuple[Settings, dict]) -> None:
    from scaleahead.transform.dbt import docs_generate, source_freshness

    settings, _ = built
    page = docs_generate(settings)
    assert page.parent == settings.warehouse_dir / "dbt" / "target"
    html = page.read_text()
    # The static page embeds the manifest and the live catalog (column types from the lake).
    assert "model.scaleahead.service_demand_5m" in html and "int_telemetry_1m" in html
    # The hand-written telemetry was ingested in 2024: far past error_after (24 hours).
    assert source_freshness(settings)["raw.telemetry"] == "error"
    now = datetime.now(UTC).replace(tzinfo=None)
    fresh = _sample("svc-z", "request_rate", 0, 1.0, "fresh", now)
    _load(settings, [fresh])
    try:
        assert source_freshness(settings)["raw.telemetry"] == "pass"
    finally:
        with connect(path=settings.warehouse_path) as con:
            con.execute("DELETE FROM raw.telemetry WHERE batch_id = 'fresh'")


def _marts(settings: Settings) -> dict[str, list[tuple]]:
    tables = {
        "marts.service_demand_5m": "service, ds",
        "intermediate.int_telemetry_1m": "service, metric, ds",
        "intermediate.int_telemetry_5m": "service, metric, ds",
        "intermediate.int_telemetry_series": "service, metric",
        "marts.services": "service",
    }
    out = {}
    for table, order in tables.items():
        frame = read_sql(f"SELECT * FROM {table} ORDER BY {order}", path=settings.warehouse_path)
        out[table] = [
            tuple(None if v != v else v for v in row)
            for row in frame.itertuples(index=False, name=None)
        ]
    return out


def test_increments_equal_a_full_build(tmp_path: Path) -> None:
    """Two increments (with a gap spanning them, a late re-delivery and a new service), then
    a rerun of the same interval, give exactly what one full build over all rows gives."""
    later = LOADED + timedelta(days=1)
    first = _telemetry()
    second = [
        # svc-a resumes after a 10-minute request_rate gap: the fill must carry 17.0 -> 40.
        *[_sample("svc-a", "request_rate", m, 40.0, "b3", later) for m in range(30, 40)],
        *[_sample("svc-a", "cpu_cores", m, 2.0, "b3", later) for m in range(20, 40)],
        # A late correction of an old minute and a brand-new service.
        _sample("svc-b", "request_rate", 2, 55.0, "b3", later),
        *[_sample("svc-c", "request_rate", m, 3.0, "b3", later) for m in range(30, 35)],
    ]
    # Only the compared tables and everything upstream of them (with their data tests):
    # the other marts do not feed these, and skipping them saves ~40% of each build's nodes.
    compared = "+services +service_demand_5m"
    window = {"start": _minute(30).isoformat(), "end": _minute(40).isoformat()}
    inc = _settings(tmp_path / "inc")
    _load(inc, first)
    build(inc, select=compared)
    _load(inc, second)
    report = build(inc, dbt_vars=window, select=compared)
    assert report.success and report.models_ok == 7 and report.seeds_ok == 1
    assert report.tests_passed > 20 and report.tests_failed == 0
    incremental = _marts(inc)
    # A rerun of the same interval (nothing new ingested) changes nothing: idempotent.
    build(inc, dbt_vars=window, select=compared)
    assert _marts(inc) == incremental

    full = _settings(tmp_path / "full")
    _load(full, first + second)
    build(full, select=compared)
    assert incremental == _marts(full)
    demand = {(s, ds): d for s, ds, *_, d in incremental["marts.service_demand_5m"] if s == "svc-a"}
    assert demand[("svc-a", _minute(20))] == 17.0 and demand[("svc-a", _minute(30))] == 40.0


def test_plan_window_covers_late_rows_and_gaps(built: tuple[Settings, dict]) -> None:
    from scaleahead.warehouse.increments import plan_window

    settings, _ = built
    late = LOADED + timedelta(days=3)
    with connect(path=settings.warehouse_path) as con:
        # Nothing new: an empty window at the last bucket.
        start, end = plan_window(con)
        assert start == end
        con.execute(
            "INSERT INTO raw.telemetry VALUES (?, ?, ?, ?, ?, ?, ?)",
            _sample("svc-b", "request_rate", 31, 1.0, "late", late),
        )
        # svc-b's last sample was minute 24: the window reaches back to its bucket (20).
        assert plan_window(con) == (_minute(20), _minute(35))
        # A requested interval is widened to the pending rows, never narrowed.
        assert plan_window(con, (_minute(0), _minute(5))) == (_minute(0), _minute(35))
        con.execute("DELETE FROM raw.telemetry WHERE batch_id = 'late'")


def test_snowflake_emulator_runs_the_project(tmp_path: Path, monkeypatch) -> None:
    """dbt-snowflake builds every model against fakesnow's server (full build, executed); the
    incremental path is then compiled against the built relations and every compiled model
    is parsed with sqlglot's Snowflake dialect (fakesnow cannot run dbt-snowflake's
    delete+insert: it refuses the qualified TEMPORARY staging table)."""
    import fakesnow
    import snowflake.connector
    import sqlglot
    from dbt.cli.main import dbtRunner

    with fakesnow.server() as kwargs:
        con = snowflake.connector.connect(**kwargs)
        cur = con.cursor()
        for sql in _snowflake_sources():
            cur.execute(sql)
        monkeypatch.setenv("SCALEAHEAD_DBT_TARGET", "snowflake_emulator")
        monkeypatch.setenv("SNOWFLAKE_EMULATOR_PORT", str(kwargs["port"]))
        common = [
            "--project-dir", str(REPO / "dbt"), "--profiles-dir", str(REPO / "dbt"),
            "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
            "--no-send-anonymous-usage-stats", "--no-use-colors", "--no-partial-parse",
            # The seed is loaded above (fakesnow cannot run dbt-snowflake's seed batches);
            # `alerts` belongs to the anomaly stage and is not portable yet.
            "--exclude", "resource_type:seed", "alerts",
        ]  # fmt: skip
        full = dbtRunner().invoke(["run", *common])
        assert full.success, [r.message for r in full.result or []]
        assert len(full.result) == 18
        cur.execute(
            "SELECT is_gap, demand FROM scaleahead.marts.service_demand_5m "
            "WHERE service = 'a' ORDER BY ds"
        )
        assert [(r[0], float(r[1])) for r in cur.fetchall()] == [
            (False, 1.0), (True, 1.0), (False, 4.0)
        ]  # fmt: skip
        window = '{"start": "2024-01-01 00:05:00", "end": "2024-01-01 00:25:00"}'
        compiled = dbtRunner().invoke(["compile", *common, "--vars", window])
        assert compiled.success
        con.close()
    sources = {r.node.name: r.node.compiled_code for r in compiled.result}
    incremental = [
        n for n, sql in sources.items() if "DBT_INTERNAL" in sql or "2024-01-01 00:05:00" in sql
    ]
    assert {"int_telemetry_1m", "int_telemetry_5m", "service_demand_5m"} <= set(incremental)
    for name, sql in sources.items():
        parsed = sqlglot.parse_one(sql, read="snowflake", error_level=sqlglot.ErrorLevel.RAISE)
        assert parsed is not None, name
    # The adapter.dispatch'ed macros rendered their Snowflake variants.
    assert "time_slice(" in sources["int_telemetry_1m"].lower()
    assert "dayofweekiso(" in sources["demand_training_features"].lower()


def _snowflake_sources() -> list[str]:
    return [
        "CREATE DATABASE IF NOT EXISTS scaleahead",
        "USE DATABASE scaleahead",
        "CREATE SCHEMA IF NOT EXISTS raw",
        "CREATE SCHEMA IF NOT EXISTS serving",
        "CREATE SCHEMA IF NOT EXISTS staging",
        "CREATE TABLE raw.telemetry (service VARCHAR, metric VARCHAR, ts TIMESTAMP, value FLOAT, "
        "labels VARCHAR, batch_id VARCHAR, ingested_at TIMESTAMP)",
        "CREATE TABLE raw.ingest_batches (batch_id VARCHAR, source VARCHAR, path VARCHAR, "
        "content_hash VARCHAR, status VARCHAR, rows_read BIGINT, rows_loaded BIGINT, "
        "rows_quarantined BIGINT, rows_duplicate BIGINT, error VARCHAR, started_at TIMESTAMP, "
        "finished_at TIMESTAMP)",
        "CREATE TABLE raw.quarantine (batch_id VARCHAR, path VARCHAR, row_number BIGINT, "
        "record VARCHAR, reason VARCHAR, quarantined_at TIMESTAMP)",
        "CREATE TABLE raw.service_catalog (service VARCHAR, tier VARCHAR, "
        "capacity_per_replica FLOAT, min_replicas INT, max_replicas INT, source_file VARCHAR, "
        "updated_at TIMESTAMP)",
        "CREATE TABLE serving.forecasts (batch_id VARCHAR, service VARCHAR, metric VARCHAR, "
        "ds TIMESTAMP, step INT, p50 FLOAT, p90 FLOAT, p95 FLOAT, model_name VARCHAR, "
        "model_version VARCHAR, created_at TIMESTAMP)",
        "CREATE TABLE serving.capacity_simulations (run_id VARCHAR, as_of TIMESTAMP, "
        "service VARCHAR, policy VARCHAR, window_start TIMESTAMP, replay_start TIMESTAMP, "
        "underprovisioned_minutes FLOAT, unserved_demand FLOAT, replica_hours FLOAT, "
        "peak_replicas FLOAT, scaling_actions FLOAT, hpa_target FLOAT, "
        "underprovisioned_vs_reactive FLOAT, underprovisioned_vs_oracle FLOAT, "
        "replica_hours_vs_reactive FLOAT, replica_hours_vs_oracle FLOAT, created_at TIMESTAMP)",
        "CREATE TABLE serving.scaling_modes (run_id VARCHAR, as_of TIMESTAMP, service VARCHAR, "
        "mode VARCHAR, previous_mode VARCHAR, changed BOOLEAN, reason VARCHAR, "
        "window_start TIMESTAMP, window_end TIMESTAMP, evidence_days FLOAT, "
        "predictive_under_min FLOAT, matched_under_min FLOAT, ratio FLOAT, incidents INT, "
        "shadow_days FLOAT, "
        "minutes_saved FLOAT, extra_replica_hours FLOAT, created_at TIMESTAMP)",
        "CREATE TABLE staging.tier_defaults (tier VARCHAR, target_utilization FLOAT, "
        "min_replicas INT, max_replicas INT)",
        "INSERT INTO staging.tier_defaults VALUES ('critical', 0.5, 3, 60), "
        "('standard', 0.7, 2, 30), ('batch', 0.85, 1, 10)",
        "INSERT INTO raw.telemetry VALUES ('a', 'request_rate', '2024-01-01 00:00:00', 1.0, "
        "'{}', 'b1', '2024-01-02 00:00:00'), ('a', 'request_rate', '2024-01-01 00:10:00', "
        "4.0, '{}', 'b1', '2024-01-02 00:00:00')",
    ]
