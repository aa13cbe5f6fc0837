"""Quality gate: clean data passes; each injected defect is caught at its configured severity,
and downstream stages obey the verdict (skip, stale, per-service exclusion)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from scaleahead import tasks
from scaleahead.api.app import create_app
from scaleahead.config import Settings
from scaleahead.forecasting.pipeline import _quality_screen
from scaleahead.quality import QualityConfigError, QualityError, run_gate
from scaleahead.quality.gate import check_forecasts
from scaleahead.quality.status import gate_status
from scaleahead.quality.suites import load_config
from scaleahead.warehouse import connect, read_sql

LAST_WEEK = datetime(2024, 1, 1)
T1 = LAST_WEEK + timedelta(days=7)
LOADED = T1 + timedelta(hours=1)
SERVICES = ("svc-a", "svc-b", "svc-c", "svc-d", "svc-e", "svc-f")
METRICS = {"request_rate": 10.0, "cpu_cores": 2.0, "latency_ms": 80.0}
WINDOW = {"window_start": T1, "window_end": T1 + timedelta(minutes=30)}

RawRow = tuple[str, str, datetime, float, str, str, datetime]
MartRow = tuple[str, datetime, float | None, float, float, int, bool, float | None]


def _raw_rows(batch: str = "b1", services: tuple[str, ...] = SERVICES) -> list[RawRow]:
    return [
        (svc, metric, T1 + timedelta(minutes=m), value, "{}", batch, LOADED)
        for svc in services
        for metric, value in METRICS.items()
        for m in range(30)
    ]


def _bucket(svc: str, ds: datetime, demand: float | None = 10.0) -> MartRow:
    gap = demand is None
    return (svc, ds, demand, 2.0, 80.0, 0 if gap else 5, gap, demand)


def _mart_rows() -> list[MartRow]:
    """Six buckets per service in the window and the same six buckets one week earlier."""
    return [
        _bucket(svc, start + timedelta(minutes=5 * i))
        for start in (LAST_WEEK, T1)
        for svc in SERVICES
        for i in range(6)
    ]


def _seed(settings: Settings, raw: list[RawRow], mart: list[MartRow]) -> None:
    """Write raw rows and a hand-made mart (the gate must not depend on a dbt run)."""
    with connect(path=settings.warehouse_path) as con:
        if raw:
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


def _failed(report: dict) -> dict[tuple[str, str], str]:
    return {(f["suite"], f["expectation"]): f["severity"] for f in report["failures"]}


def _with_config(settings: Settings, tmp_path: Path, edit: Callable[[dict], None]) -> Settings:
    data = yaml.safe_load(settings.quality_config.read_text())
    edit(data)
    path = tmp_path / "quality.yaml"
    path.write_text(yaml.safe_dump(data))
    return settings.model_copy(update={"quality_config": path})


def _forecasts(services: tuple[str, ...], horizon: int = 3) -> pd.DataFrame:
    start = T1 + timedelta(minutes=30)
    return pd.DataFrame(
        [
            (svc, start + timedelta(minutes=5 * s), s + 1, 10.0, 12.0, 13.0)
            for svc in services
            for s in range(horizon)
        ],
        columns=["service", "ds", "step", "p50", "p90", "p95"],
    )


def _serve_forecasts(settings: Settings) -> None:
    """A last good batch in serving.forecasts, as the publisher writes it."""
    fc = _forecasts(SERVICES).assign(
        batch_id="b-1",
        metric="request_rate",
        model_name="demand",
        model_version="1",
        created_at=T1 + timedelta(minutes=30),
    )
    with connect(path=settings.warehouse_path) as con:
        con.register("fc", fc)
        con.execute(
            "INSERT INTO serving.forecasts (batch_id, service, metric, ds, step, p50, p90, p95, "
            "model_name, model_version, created_at) SELECT batch_id, service, metric, ds, step, "
            "p50, p90, p95, model_name, model_version, created_at FROM fc"
        )


def test_clean_data_passes(settings: Settings) -> None:
    _seed(settings, _raw_rows(), _mart_rows())
    report = run_gate(settings=settings, run_id="clean", **WINDOW).as_dict()
    assert report["blocking"] is False and report["reason"] is None
    assert report["failures"] == [] and report["quarantined"] == {}
    assert report["checks_evaluated"] == report["checks_passed"] > 20
    suites = {s["name"]: s for s in report["suites"]}
    assert set(suites) == {"raw_telemetry", "service_demand_5m"}
    assert suites["raw_telemetry"]["rows"] == len(_raw_rows())
    assert suites["service_demand_5m"]["rows"] == 6 * len(SERVICES)  # the window only
    assert report["data_docs"] and Path(report["data_docs"]).exists()
    runs = read_sql("SELECT * FROM quality.gate_runs", path=settings.warehouse_path)
    assert list(runs.run_id) == ["clean"] and not runs.blocking.iloc[0]
    assert tasks.gate_block_reason(settings) is None


def test_raw_increment_defects_quarantine_their_services(settings: Settings) -> None:
    # Batch b1 was validated when it landed: its defect is not under test any more.
    old = _raw_rows("b1")[:-1] + [("svc-e", "cpu_cores", T1, -5.0, "{}", "b1", LOADED)]
    new = _raw_rows("b2") + [
        ("svc-a", "request_rate", T1 + timedelta(minutes=3), float("nan"), "{}", "b2", LOADED),
        ("svc-b", "cpu_cores", T1 + timedelta(minutes=4), -1.0, "{}", "b2", LOADED),
        ("svc-c", "latency_ms", T1 + timedelta(days=3), 80.0, "{}", "b2", LOADED),  # future
        ("svc-d", "disk_iops", T1 + timedelta(minutes=1), 5.0, "{}", "b2", LOADED),
    ]
    _seed(settings, old + new, _mart_rows())

    report = run_gate(
        settings=settings, checkpoint="ingest", batch_ids=["b2"], window_end=T1 + timedelta(hours=1)
    ).as_dict()

    assert [s["name"] for s in report["suites"]] == ["raw_telemetry"]
    assert report["suites"][0]["rows"] == len(new)
    assert _failed(report) == {
        ("raw_telemetry", "value_not_null"): "error",  # NaN is a null to pandas and GX
        ("raw_telemetry", "value_finite"): "error",
        ("raw_telemetry", "cpu_cores_non_negative"): "error",
        ("raw_telemetry", "ts_not_in_future"): "error",
        ("raw_telemetry", "metric_known"): "warn",
    }
    # Three of six services quarantined (not more than half): the others go on.
    assert report["blocking"] is False
    assert set(report["quarantined"]) == {"svc-a", "svc-b", "svc-c"}
    rows = read_sql(
        "SELECT service, expectation, severity FROM quality.quality_results "
        "WHERE service IS NOT NULL ORDER BY service, expectation",
        path=settings.warehouse_path,
    )
    assert list(zip(rows.service, rows.expectation, rows.severity, strict=True)) == [
        ("svc-a", "value_finite", "error"),
        ("svc-a", "value_not_null", "error"),
        ("svc-b", "cpu_cores_non_negative", "error"),
        ("svc-c", "ts_not_in_future", "error"),
        ("svc-d", "metric_known", "warn"),
    ]


def test_monotonic_batches_flag_a_series_going_back_in_time(
    settings: Settings, tmp_path: Path
) -> None:
    """A batch whose newest sample of a series is older than what was loaded (beyond the
    tolerance) fails monotonic_batches for that service only: warn by default, and at error
    it quarantines that service; late rows within the tolerance pass."""
    old = _raw_rows("b1")
    replay = T1 - timedelta(hours=3)  # svc-a re-sent three hours behind its high-water mark
    late = T1 + timedelta(minutes=5)  # svc-b 24 minutes late: within the 1 h tolerance
    new = [
        *[("svc-a", "request_rate", replay + timedelta(minutes=m), 1.0, "{}", "b2", LOADED)
          for m in range(3)],
        ("svc-b", "request_rate", late, 1.0, "{}", "b2", LOADED),
        ("svc-c", "request_rate", T1 + timedelta(minutes=40), 1.0, "{}", "b2", LOADED),
        # another series of svc-a (other labels) has no history: nothing to be behind
        ("svc-a", "request_rate", replay, 1.0, '{"pod":"new"}', "b2", LOADED),
    ]  # fmt: skip
    _seed(settings, old + new, _mart_rows())
    gate = {"checkpoint": "ingest", "batch_ids": ["b2"], "window_end": T1 + timedelta(hours=1)}

    report = run_gate(settings=settings, **gate).as_dict()
    assert _failed(report) == {("raw_telemetry", "monotonic_batches"): "warn"}
    assert report["blocking"] is False and report["quarantined"] == {}
    rows = read_sql(
        "SELECT service, observed_value FROM quality.quality_results "
        "WHERE expectation = 'monotonic_batches' AND service IS NOT NULL",
        path=settings.warehouse_path,
    )
    assert list(rows.service) == ["svc-a"]

    strict = _with_config(
        settings, tmp_path, lambda c: c["suites"]["raw_telemetry"].update(monotonic_batches="error")
    )
    report = run_gate(settings=strict, **gate).as_dict()
    assert _failed(report) == {("raw_telemetry", "monotonic_batches"): "error"}
    assert set(report["quarantined"]) == {"svc-a"} and report["blocking"] is False


def test_mart_defects_quarantine_only_the_services_at_fault(
    settings: Settings, tmp_path: Path
) -> None:
    mart = [r for r in _mart_rows() if not (r[0] == "svc-b" and r[1] > T1 + timedelta(minutes=5))]
    mart.append(_bucket("svc-a", T1 + timedelta(minutes=10)))  # duplicate key
    jump = T1 + timedelta(minutes=20)  # svc-c: 10x last week's volume in one bucket
    mart = [_bucket("svc-c", jump, 100.0) if r[:2] == ("svc-c", jump) else r for r in mart]
    # svc-d: a NULL demand after its series started (gap-fill broken).
    mart = [
        ("svc-d", r[1], 10.0, 2.0, 80.0, 5, False, None)
        if r[0] == "svc-d" and r[1] == T1 + timedelta(minutes=15)
        else r
        for r in mart
    ]
    _seed(settings, [], mart)

    def edit(data: dict) -> None:
        data["thresholds"]["freshness_intervals"] = 2
        data["thresholds"]["max_quarantine_fraction"] = 0.9

    cfg = _with_config(settings, tmp_path, edit)
    report = run_gate(settings=cfg, checkpoint="transform", **WINDOW).as_dict()

    assert _failed(report) == {
        ("service_demand_5m", "service_ds_unique"): "error",
        ("service_demand_5m", "service_recent_data"): "error",
        ("service_demand_5m", "volume_jump"): "error",
        ("service_demand_5m", "demand_not_null"): "error",
        ("service_demand_5m", "bucket_complete"): "warn",
    }
    assert report["blocking"] is False
    assert {s: sorted(v) for s, v in report["quarantined"].items()} == {
        "svc-a": ["service_demand_5m.service_ds_unique"],
        "svc-b": ["service_demand_5m.service_recent_data"],
        "svc-c": ["service_demand_5m.volume_jump"],
        "svc-d": ["service_demand_5m.demand_not_null"],
    }
    status = gate_status(cfg)
    assert status.blocking is False and set(status.quarantined) == {
        "svc-a",
        "svc-b",
        "svc-c",
        "svc-d",
    }
    assert tasks.gate_block_reason(cfg) is None
    _serve_forecasts(cfg)
    served = cfg.model_copy(update={"scaling_modes_pinned": {"*": "predictive"}})
    with TestClient(create_app(served, refresh_interval_s=3600)) as client:
        quarantined = client.get("/v1/services/svc-a/recommendation").json()
        healthy = client.get("/v1/services/svc-f/recommendation").json()
    assert quarantined["quarantined"] is True and quarantined["stale"] is True
    assert quarantined["mode"] == "reactive" and "quality_failed" in quarantined["reasons"]
    assert "service_ds_unique" in quarantined["stale_reason"]
    assert healthy["quarantined"] is False and healthy["stale"] is False
    assert "quality_failed" not in healthy["reasons"]

    # Publishing drops the quarantined services and, after the forecast suite, svc-e whose
    # p50 > p90; svc-f alone is published.
    candidates = _forecasts(SERVICES)
    candidates.loc[candidates.service == "svc-e", "p50"] = 50.0
    history = pd.DataFrame({"unique_id": SERVICES * 10, "ds": T1, "y": 1.0})
    rows, held_back, run_id = _quality_screen(cfg, candidates, history, 5, 3, "batch-1")
    assert set(rows.service) == {"svc-f"}
    assert set(held_back) == {"svc-a", "svc-b", "svc-c", "svc-d", "svc-e"}
    assert "p50_le_p90" in held_back["svc-e"]
    publish_run = read_sql(
        "SELECT * FROM quality.gate_runs WHERE run_id = ?", [run_id], path=cfg.warehouse_path
    )
    assert publish_run.checkpoint.iloc[0] == "publish" and not publish_run.blocking.iloc[0]


def test_forecast_suite_catches_each_defect(settings: Settings) -> None:
    fc = _forecasts(("svc-a", "svc-b", "svc-c", "svc-d", "svc-e"))
    fc.loc[(fc.service == "svc-a") & (fc.step == 2), "p50"] = 20.0  # p50 > p90
    fc.loc[fc.service == "svc-b", ["p50", "p90", "p95"]] = -1.0  # negative
    fc = fc[~((fc.service == "svc-c") & (fc.step == 3))]  # horizon incomplete
    # svc-f is active but has no forecast at all.
    report = check_forecasts(fc, SERVICES, 3, "fc-1", settings).as_dict()
    assert _failed(report) == {
        ("forecasts", "p50_le_p90"): "error",
        ("forecasts", "p50_non_negative"): "error",
        ("forecasts", "horizon_complete"): "error",
        ("forecasts", "quantiles_not_null"): "error",
    }
    assert set(report["quarantined"]) == {"svc-a", "svc-b", "svc-c", "svc-f"}
    assert report["blocking"] is True  # four of six: systemic
    assert "4 of 6 services quarantined" in report["reason"]


def test_global_error_blocks_training_publishing_and_marks_api_stale(
    settings: Settings,
) -> None:
    _seed(settings, [], _mart_rows())
    _serve_forecasts(settings)
    app_settings = settings.model_copy(
        update={"scaling_clock": "data", "scaling_modes_pinned": {"*": "predictive"}}
    )
    with TestClient(create_app(app_settings, refresh_interval_s=3600)) as client:
        before = client.get("/v1/services/svc-a/recommendation").json()
        assert before["stale"] is False and "quality_failed" not in before["reasons"]

        # The mart has not moved for a day: a global error, not one service's problem.
        report = run_gate(
            settings=settings,
            checkpoint="transform",
            window_start=T1 + timedelta(days=1),
            window_end=T1 + timedelta(days=1, minutes=30),
        ).as_dict()
        assert report["blocking"] is True
        assert _failed(report)[("service_demand_5m", "mart_fresh")] == "error"
        reason = tasks.gate_block_reason(settings)
        assert reason and "mart_fresh" in reason
        _assert_dag_tasks_skip(reason)

        client.app.state.forecast_cache.refresh()
        body = client.get("/v1/services/svc-a/recommendation").json()
        assert body["stale"] is True and "mart_fresh" in body["stale_reason"]
        assert body["mode"] == "reactive" and "quality_failed" in body["reasons"]
        # The last good forecast is still served, marked stale.
        forecast = client.get("/v1/services/svc-a/forecast").json()
        assert forecast["batch_id"] == "b-1" and forecast["stale"] is True
        assert "mart_fresh" in client.get("/readyz").json()["stale_reason"]


def _assert_dag_tasks_skip(reason: str) -> None:
    """The training and publishing DAG tasks end skipped with the gate's reason."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowSkipException

    dags = DagBag(dag_folder=str(Path(__file__).resolve().parents[1] / "dags"))
    for dag_id, task_id in (
        ("forecast_train", "train_and_register"),
        ("forecast_publish", "publish_forecasts"),
    ):
        task = dags.dags[dag_id].get_task(task_id)
        with pytest.raises(AirflowSkipException) as skipped:
            task.python_callable()
        assert str(skipped.value) == reason


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
