"""dbt build on a tiny warehouse with hand-written telemetry: exact mart contents."""

from __future__ import annotations

from datetime import datetime, timedelta
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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    settings = _settings(tmp_path_factory.mktemp("dbt"))
    _load(settings, _telemetry())
    return settings, build(settings).as_dict()


def test_build_report(built: tuple[Settings, dict]) -> None:
    settings, report = built
    assert report["success"] is True
    assert report["models_ok"] == 5
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
    assert report.success and report.models_ok == 5 and report.tests_failed == 0
    rows = read_sql(
        "SELECT count(*) AS n FROM marts.service_demand_5m", path=settings.warehouse_path
    )
    assert rows["n"].item() == 0


def test_select_and_vars(built: tuple[Settings, dict]) -> None:
    settings, _ = built
    report = build(settings, dbt_vars={"start": "2024-01-01"}, select="stg_raw__telemetry")
    assert report.models_ok == 1
    assert report.tests_failed == 0
