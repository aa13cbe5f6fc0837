"""Production hardening through real Airflow: failure alerts reach a real Alertmanager, and a
backfill of a past day run twice leaves the warehouse as after the first run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from scaleahead.airflow_runner import AirflowError, dag_test, migrate
from scaleahead.config import Settings, get_settings
from scaleahead.failure_alerts import ALERTNAME, alert_from_context, failure_alert
from scaleahead.orchestration import DEFAULT_ARGS, on_task_failure

FAILING_DAG = """
from airflow.sdk import dag, task

from scaleahead.orchestration import DEFAULT_ARGS, START_DATE


@dag(schedule=None, start_date=START_DATE, catchup=False,
     default_args={**DEFAULT_ARGS, "retries": 0})
def always_fails():
    @task
    def explode() -> None:
        raise RuntimeError("disk on fire")

    explode()


always_fails()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager missing: run scripts/install-system-deps.sh")
    config = tmp_path / "am.yml"
    config.write_text("route:\n  receiver: sink\nreceivers:\n  - name: sink\n")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "alertmanager down"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_failure_alert_payload() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    alert = failure_alert("telemetry_ingest", "ingest_landing", "r1", 3, "boom", now)
    assert alert["labels"] == {
        "alertname": ALERTNAME,
        "severity": "critical",
        "dag_id": "telemetry_ingest",
        "task_id": "ingest_landing",
    }
    assert alert["startsAt"] == "2026-03-01T12:00:00Z"
    assert alert["endsAt"] > alert["startsAt"]
    assert "try 3" in alert["annotations"]["summary"]

    class TI:
        dag_id, task_id, run_id, try_number, log_url = "d", "t", "r", 2, "http://x/log"

    built = alert_from_context({"ti": TI(), "exception": ValueError("bad")}, now)
    assert built["annotations"]["description"] == "ValueError: bad"
    assert built["generatorURL"] == "http://x/log"


def test_dags_share_the_hardened_defaults() -> None:
    assert DEFAULT_ARGS["on_failure_callback"] is on_task_failure
    assert DEFAULT_ARGS["retries"] >= 1 and DEFAULT_ARGS["retry_exponential_backoff"]
    assert DEFAULT_ARGS["execution_timeout"].total_seconds() > 0


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_failed_task_alerts_through_alertmanager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alertmanager: str
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "always_fails.py").write_text(FAILING_DAG)
    monkeypatch.setenv("SCALEAHEAD_WAREHOUSE_DIR", str(tmp_path / "warehouse"))
    monkeypatch.setenv("SCALEAHEAD_DAGS_DIR", str(dags))
    monkeypatch.setenv("SCALEAHEAD_ALERTMANAGER_URL", alertmanager)
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    try:
        migrate(settings)
        with pytest.raises(AirflowError):
            dag_test("always_fails", datetime(2026, 2, 1, tzinfo=UTC), settings)
    finally:
        get_settings.cache_clear()
    alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    ours = [a for a in alerts if a["labels"].get("alertname") == ALERTNAME]
    assert len(ours) == 1, alerts
    assert ours[0]["labels"]["dag_id"] == "always_fails"
    assert ours[0]["labels"]["task_id"] == "explode"
    assert "disk on fire" in ours[0]["annotations"]["description"]


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_backfill_of_a_past_day_twice_is_idempotent(settings: Settings) -> None:
    from scaleahead.synth.telemetry import generate
    from scaleahead.warehouse import read_sql

    generate(2, 2, seed=5, settings=settings, start=datetime(2026, 2, 1, tzinfo=UTC))
    migrate(settings)
    day = datetime(2026, 2, 2, tzinfo=UTC)
    query = (
        "SELECT count(*) AS n, count(DISTINCT (service, metric, ts)) AS keys, "
        "max(ts) AS last FROM raw.telemetry"
    )
    dag_test("telemetry_ingest", day, settings)
    first = read_sql(query, settings=settings).iloc[0]
    assert first["n"] > 0 and first["n"] == first["keys"]
    dag_test("telemetry_ingest", day, settings)
    second = read_sql(query, settings=settings).iloc[0]
    assert (second["n"], second["keys"], second["last"]) == (
        first["n"],
        first["keys"],
        first["last"],
    )


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    binary = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(binary),
            "server",
            "--host=127.0.0.1",
            f"--port={port}",
            "--workers=1",
            f"--backend-store-uri=sqlite:///{tmp_path / 'mlflow-server.db'}",
            "--serve-artifacts",
            f"--artifacts-destination={tmp_path / 'mlflow-artifacts'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "mlflow.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "mlflow.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_tracking_on_an_mlflow_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: str
) -> None:
    import mlflow

    from scaleahead.forecasting.registry import ensure_experiment, tracking

    monkeypatch.setenv("SCALEAHEAD_WAREHOUSE_DIR", str(tmp_path / "warehouse"))
    monkeypatch.setenv("SCALEAHEAD_MLFLOW_SERVER_URL", mlflow_server)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.mlflow_tracking_uri == mlflow_server
        with tracking(settings) as client:
            exp_id = ensure_experiment(client, "prod-check", settings.mlflow_artifact_location)
            with mlflow.start_run(experiment_id=exp_id) as run:
                mlflow.log_metric("mase", 0.5)
                mlflow.log_text("hello", "note.txt")
            # The server chose the artifact store (proxied), not a local path of this host.
            assert client.get_experiment(exp_id).artifact_location.startswith("mlflow-artifacts:")
            assert client.get_run(run.info.run_id).data.metrics["mase"] == 0.5
    finally:
        get_settings.cache_clear()
    assert list((tmp_path / "mlflow-artifacts").rglob("note.txt"))
    assert not (tmp_path / "warehouse" / "mlflow" / "mlflow.db").exists()
