"""DagBag integrity: the DAG files import cleanly and follow the project's conventions."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from scaleahead.airflow_runner import PIPELINE_DAGS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_pipeline_dags_present(dagbag: DagBag) -> None:
    assert set(PIPELINE_DAGS) <= set(dagbag.dag_ids)


def test_every_dag_follows_the_conventions(dagbag: DagBag) -> None:
    assert len(dagbag.dags) >= len(PIPELINE_DAGS)
    for dag in dagbag.dags.values():
        _check_conventions(dag)


def _check_conventions(dag) -> None:
    assert "scaleahead" in dag.tags
    assert dag.catchup is False
    assert dag.doc_md and dag.doc_md.strip()
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries >= 0
        assert task.execution_timeout is not None


def test_assets_chain_the_pipelines(dagbag: DagBag) -> None:
    ingest = dagbag.dags["telemetry_ingest"]
    transform = dagbag.dags["warehouse_transform"]
    publish = dagbag.dags["forecast_publish"]
    outlets = {a.name for t in ingest.tasks for a in t.outlets}
    assert "raw_telemetry" in outlets
    assert "raw_telemetry" in {a.name for a in transform.timetable.asset_condition.objects}
    assert {a.name for t in transform.tasks for a in t.outlets} == {"service_demand_5m"}
    assert {a.name for t in publish.tasks for a in t.outlets} == {"forecasts"}


def test_ingest_retries(dagbag: DagBag) -> None:
    task = dagbag.dags["telemetry_ingest"].get_task("ingest_landing")
    assert task.retries == 2


def test_capacity_twin_dag_is_weekly_and_thin(dagbag: DagBag) -> None:
    dag = dagbag.dags["capacity_twin"]
    assert dag.schedule == "@weekly"
    assert [t.task_id for t in dag.tasks] == ["simulate"]
    assert dag.get_task("simulate").retries == 2
    source = (REPO / "dags" / "capacity_twin.py").read_text()
    assert "from airflow.sdk import" in source
    assert "tasks.twin(as_of=end)" in source and "now()" not in source


def test_scaling_guard_dag_is_daily_and_thin(dagbag: DagBag) -> None:
    dag = dagbag.dags["scaling_guard"]
    assert dag.schedule == "@daily"
    assert [t.task_id for t in dag.tasks] == ["decide_modes"]
    assert dag.get_task("decide_modes").retries == 2
    source = (REPO / "dags" / "scaling_guard.py").read_text()
    assert "from airflow.sdk import" in source
    assert "tasks.guard(as_of=end)" in source and "now()" not in source
