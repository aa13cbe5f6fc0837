"""End to end: the small pipeline through real Airflow runs, then the warehouse, the MLflow
registry and the API are checked."""

from __future__ import annotations

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from scaleahead import reports
from scaleahead.airflow_runner import PIPELINE_DAGS
from scaleahead.demo import run_pipeline
from scaleahead.warehouse import read_sql

SERVICES, DAYS = 4, 4


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    import os

    from scaleahead.config import get_settings

    warehouse = tmp_path_factory.mktemp("e2e") / "warehouse"
    old = os.environ.get("SCALEAHEAD_WAREHOUSE_DIR")
    os.environ["SCALEAHEAD_WAREHOUSE_DIR"] = str(warehouse)
    get_settings.cache_clear()
    settings = get_settings()
    timings = run_pipeline(services=SERVICES, days=DAYS, seed=3, settings=settings)
    yield settings, timings
    if old is None:
        os.environ.pop("SCALEAHEAD_WAREHOUSE_DIR", None)
    else:
        os.environ["SCALEAHEAD_WAREHOUSE_DIR"] = old
    get_settings.cache_clear()


pytestmark = pytest.mark.e2e


def test_every_dag_ran_through_airflow(pipeline) -> None:
    settings, timings = pipeline
    logs = sorted((settings.airflow_home / "cli-logs").glob("*.log"))
    for dag_id in PIPELINE_DAGS:
        assert dag_id in timings
        log = next(p for p in logs if p.name.startswith(dag_id)).read_text()
        assert "state=success" in log


def test_raw_layer_accounts_for_every_row(pipeline) -> None:
    settings, _ = pipeline
    batches = read_sql("SELECT * FROM raw.ingest_batches", path=settings.warehouse_path)
    assert len(batches) > 0
    assert (
        batches.rows_read == batches.rows_loaded + batches.rows_quarantined + batches.rows_duplicate
    ).all()
    loaded = read_sql("SELECT count(*) AS n FROM raw.telemetry", path=settings.warehouse_path)
    assert loaded.n.iloc[0] == batches.rows_loaded.sum()
    generated = reports.load("generate", settings)
    assert batches.rows_read.sum() == generated["rows_written"]
    services = read_sql(
        "SELECT count(DISTINCT service) AS n FROM raw.telemetry", path=settings.warehouse_path
    )
    assert services.n.iloc[0] == SERVICES


def test_dbt_mart_is_a_regular_5_minute_grid(pipeline) -> None:
    settings, _ = pipeline
    mart = read_sql(
        "SELECT service, count(*) AS n, min(ds) AS first, max(ds) AS last, "
        "count(*) FILTER (WHERE demand IS NULL) AS missing "
        "FROM marts.service_demand_5m GROUP BY service",
        path=settings.warehouse_path,
    )
    assert len(mart) == SERVICES
    expected = ((mart["last"] - mart["first"]).dt.total_seconds() // 300 + 1).astype(int)
    assert (mart.n == expected).all()
    assert (mart.missing == 0).all()
    transform = reports.load("transform", settings)
    assert transform["success"] and transform["tests_failed"] == 0 and transform["tests_passed"] > 0


def test_quality_results_persisted(pipeline) -> None:
    settings, _ = pipeline
    results = read_sql(
        "SELECT suite, count(*) AS n, bool_and(success) AS ok FROM quality.quality_results "
        "GROUP BY suite",
        path=settings.warehouse_path,
    )
    assert len(results) >= 2
    assert results.n.min() > 0


def test_champion_registered_in_mlflow(pipeline) -> None:
    settings, _ = pipeline
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(settings.model_name(), "champion")
    train = reports.load("train", settings)
    assert str(version.version) == str(train["version"])
    run = client.get_run(version.run_id)
    assert "mase" in run.data.metrics and "snaive_mase" in run.data.metrics


def test_forecasts_published_and_served(pipeline) -> None:
    settings, _ = pipeline
    forecasts = read_sql(
        "SELECT service, count(*) AS n, bool_and(p50 <= p90 AND p90 <= p95) AS ordered "
        "FROM serving.forecasts GROUP BY service",
        path=settings.warehouse_path,
    )
    assert len(forecasts) == SERVICES
    assert (forecasts.n == 12).all() and forecasts.ordered.all()

    from scaleahead.api.app import create_app

    with TestClient(create_app(settings)) as client:
        services = client.get("/v1/services").json()
        names = sorted(s["service"] for s in services["services"])
        assert names == sorted(forecasts.service)
        body = client.get(f"/v1/forecasts/{names[0]}").json()
        assert len(body["points"]) == 12
        assert body["model_version"] == str(reports.load("train", settings)["version"])
