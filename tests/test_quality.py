"""Quality gate: clean data passes; injected defects are caught at their configured severity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from scaleahead.config import Settings
from scaleahead.quality import QualityConfigError, QualityError, run_gate
from scaleahead.quality.suites import load_config
from scaleahead.warehouse import connect, read_sql

T0 = datetime(2024, 1, 1)
LOADED = T0 + timedelta(hours=1)
SERVICES = ("svc-a", "svc-b")
METRICS = {"request_rate": 10.0, "cpu_cores": 2.0, "latency_ms": 80.0}
WINDOW = {"window_start": T0, "window_end": T0 + timedelta(minutes=30)}

RawRow = tuple[str, str, datetime, float, str, str, datetime]
MartRow = tuple[str, datetime, float | None, float, float, int, bool, float | None]


def _raw_rows() -> list[RawRow]:
    return [
        (svc, metric, T0 + timedelta(minutes=m), value, "{}", "b1", LOADED)
        for svc in SERVICES
        for metric, value in METRICS.items()
        for m in range(30)
    ]


def _mart_rows() -> list[MartRow]:
    return [
        (svc, T0 + timedelta(minutes=5 * i), 10.0, 2.0, 80.0, 5, False, 10.0)
        for svc in SERVICES
        for i in range(6)
    ]


def _seed(settings: Settings, raw: list[RawRow], mart: list[MartRow]) -> None:
    """Write raw rows and a hand-made mart (the gate must not depend on a dbt run)."""
    with connect(path=settings.warehouse_path) as con:
        con.executemany("INSERT INTO raw.telemetry VALUES (?, ?, ?, ?, ?, ?, ?)", raw)
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(
            "CREATE OR REPLACE TABLE marts.service_demand_5m (service VARCHAR, ds TIMESTAMP, "
            "request_rate DOUBLE, cpu_cores DOUBLE, latency_ms DOUBLE, samples BIGINT, "
            "is_gap BOOLEAN, demand DOUBLE)"
        )
        if mart:
            con.executemany(
                "INSERT INTO marts.service_demand_5m VALUES (?, ?, ?, ?, ?, ?, ?, ?)", mart
            )


def _failed(report_dict: dict) -> dict[tuple[str, str], str]:
    return {(f["suite"], f["expectation"]): f["severity"] for f in report_dict["failures"]}


def _with_config(settings: Settings, tmp_path: Path, edit: Callable[[dict], None]) -> Settings:
    data = yaml.safe_load(settings.quality_config.read_text())
    edit(data)
    path = tmp_path / "quality.yaml"
    path.write_text(yaml.safe_dump(data))
    return settings.model_copy(update={"quality_config": path})


def test_clean_data_passes(settings: Settings) -> None:
    _seed(settings, _raw_rows(), _mart_rows())
    report = run_gate(settings=settings, run_id="clean", **WINDOW).as_dict()
    assert report["blocking"] is False
    assert report["failures"] == []
    assert report["checks_evaluated"] == report["checks_passed"] > 15
    suites = {s["name"]: s for s in report["suites"]}
    assert set(suites) == {"raw_telemetry", "service_demand_5m"}
    assert suites["raw_telemetry"]["rows"] == len(_raw_rows())
    assert suites["service_demand_5m"]["rows"] == len(_mart_rows())
    assert report["data_docs"] and Path(report["data_docs"]).exists()


def test_defects_are_caught_at_configured_severity(settings: Settings) -> None:
    raw = _raw_rows()
    raw += [
        ("svc-a", "request_rate", T0 + timedelta(minutes=3), float("nan"), "{}", "b2", LOADED),
        ("svc-a", "cpu_cores", T0 + timedelta(minutes=4), -1.0, "{}", "b2", LOADED),
        # Ingested inside the window but stamped three days after it.
        (
            "svc-b",
            "latency_ms",
            T0 + timedelta(days=3),
            80.0,
            "{}",
            "b2",
            T0 + timedelta(minutes=5),
        ),
        ("svc-b", "disk_iops", T0 + timedelta(minutes=1), 5.0, "{}", "b2", LOADED),
    ]
    mart = _mart_rows()
    mart[1] = ("svc-a", T0 + timedelta(minutes=5), None, 2.0, 80.0, 0, True, None)
    mart.append(mart[3])  # duplicate (service, ds)
    mart.append(("svc-b", T0 + timedelta(minutes=30), 10.0, 2.0, 80.0, 5, False, -4.0))
    _seed(settings, raw, mart)

    report = run_gate(settings=settings, run_id="dirty", **WINDOW).as_dict()

    assert report["blocking"] is True
    assert _failed(report) == {
        ("raw_telemetry", "value_not_null"): "error",
        ("raw_telemetry", "value_finite"): "error",
        ("raw_telemetry", "cpu_cores_non_negative"): "error",
        ("raw_telemetry", "ts_not_in_future"): "error",
        ("raw_telemetry", "metric_known"): "warn",
        ("service_demand_5m", "demand_not_null"): "error",
        ("service_demand_5m", "service_ds_unique"): "error",
    }
    suites = {s["name"]: s for s in report["suites"]}
    assert suites["raw_telemetry"]["failed_error"] == 4
    assert suites["raw_telemetry"]["failed_warn"] == 1
    assert suites["service_demand_5m"]["failed_error"] == 2
    # The bucket at 00:30 is outside the window, so its negative demand is not under test.
    assert ("service_demand_5m", "demand_non_negative") not in _failed(report)


def test_warn_severity_records_without_blocking(settings: Settings, tmp_path: Path) -> None:
    raw = _raw_rows() + [("svc-a", "cpu_cores", T0, -1.0, "{}", "b2", LOADED)]
    mart = [r for r in _mart_rows() if r[0] == "svc-a" or r[1] <= T0 + timedelta(minutes=5)]
    _seed(settings, raw, mart)

    def edit(data: dict) -> None:
        data["suites"]["raw_telemetry"]["cpu_cores_non_negative"] = "warn"
        data["thresholds"]["recent_data_max_age_minutes"] = 15

    report = run_gate(settings=_with_config(settings, tmp_path, edit)).as_dict()

    assert report["blocking"] is False
    assert _failed(report) == {
        ("raw_telemetry", "cpu_cores_non_negative"): "warn",
        ("service_demand_5m", "service_recent_data"): "warn",
    }


def test_service_missing_from_window_is_warned(settings: Settings) -> None:
    mart = [r for r in _mart_rows() if r[0] == "svc-a" or r[1] < T0 + timedelta(minutes=10)]
    _seed(settings, _raw_rows(), mart)
    report = run_gate(
        settings=settings, window_start=T0 + timedelta(minutes=10), window_end=WINDOW["window_end"]
    ).as_dict()
    assert report["blocking"] is False
    assert _failed(report) == {("service_demand_5m", "services_present"): "warn"}
    assert "svc-b" in report["failures"][0]["observed"]


def test_results_persisted_and_replaced_on_rerun(settings: Settings) -> None:
    _seed(settings, _raw_rows() + [("svc-a", "cpu_cores", T0, -1.0, "{}", "b2", LOADED)], [])
    first = run_gate(settings=settings, run_id="run-1").as_dict()
    run_gate(settings=settings, run_id="run-1")

    rows = read_sql(
        "SELECT * FROM quality.quality_results WHERE run_id = 'run-1' ORDER BY suite, expectation",
        path=settings.warehouse_path,
    )
    assert len(rows) == first["checks_evaluated"]
    assert set(rows["severity"]) <= {"error", "warn"}
    assert rows["checked_at"].notna().all()
    bad = rows[rows.expectation == "cpu_cores_non_negative"].iloc[0]
    assert bool(bad.success) is False
    assert bad.column_name == "value"
    assert '"unexpected_count": 1' in bad.observed_value
    # An empty mart blocks (rows_present is an error) and is recorded as such.
    empty = rows[(rows.suite == "service_demand_5m") & (rows.expectation == "rows_present")]
    assert bool(empty.iloc[0].success) is False
    assert first["blocking"] is True


def test_missing_mart_raises(settings: Settings) -> None:
    with connect(path=settings.warehouse_path) as con:
        con.executemany("INSERT INTO raw.telemetry VALUES (?, ?, ?, ?, ?, ?, ?)", _raw_rows())
    with pytest.raises(QualityError, match="service_demand_5m"):
        run_gate(settings=settings)


def test_config_rejects_unknown_checks(tmp_path: Path) -> None:
    path = tmp_path / "quality.yaml"
    path.write_text(yaml.safe_dump({"suites": {"raw_telemetry": {"value_positive": "error"}}}))
    with pytest.raises(QualityConfigError, match="value_positive"):
        load_config(path)
    path.write_text(yaml.safe_dump({"suites": {"raw_telemetry": {"value_finite": "fatal"}}}))
    with pytest.raises(QualityConfigError, match="severity"):
        load_config(path)
