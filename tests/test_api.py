"""Forecast API: cache refresh semantics, endpoints, problem details and a real uvicorn run."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from scaleahead.api.app import create_app, resolve_refresh_interval
from scaleahead.api.cache import ForecastCache
from scaleahead.config import Settings
from scaleahead.warehouse import connect

ORIGIN = datetime(2024, 1, 1, 12, 0)
T0 = datetime(2024, 1, 1, 11, 0)
PROBLEM_JSON = "application/problem+json"


def publish(
    path: Path,
    batch_id: str,
    created_at: datetime,
    services: tuple[str, ...] = ("checkout", "search"),
    metric: str = "request_rate",
    steps: int = 12,
    base: float = 100.0,
    model_version: str = "1",
) -> None:
    """Write one forecast batch the way the publisher does (rows shuffled to test ordering)."""
    rows = [
        (
            batch_id,
            service,
            metric,
            ORIGIN + timedelta(minutes=5 * step),
            step,
            base + step,
            base + step + 10,
            base + step + 20,
            f"scaleahead-demand-{metric}",
            model_version,
            created_at,
        )
        for service in services
        for step in range(1, steps + 1)
    ]
    random.Random(0).shuffle(rows)
    with connect(path=path) as con:
        con.executemany(
            "INSERT INTO serving.forecasts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )


def remove_warehouse(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        candidate.unlink(missing_ok=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def warehouse(settings: Settings) -> Path:
    publish(settings.warehouse_path, "b1", T0)
    return settings.warehouse_path


def make_client(settings: Settings) -> TestClient:
    # A long interval keeps the background thread out of the way; tests refresh explicitly.
    return TestClient(create_app(settings, refresh_interval_s=3600))


@pytest.fixture
def client(settings: Settings, warehouse: Path) -> Iterator[TestClient]:
    with make_client(settings) as c:
        yield c


def cache_of(client: TestClient) -> ForecastCache:
    return client.app.state.forecast_cache


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body


# --- endpoints -------------------------------------------------------------------------------


def test_services_lists_each_service_with_window(client: TestClient) -> None:
    body = client.get("/v1/services").json()
    assert body["stale"] is False and body["last_refresh_error"] is None
    assert [s["service"] for s in body["services"]] == ["checkout", "search"]
    (info,) = body["services"][0]["metrics"]
    assert info["metric"] == "request_rate"
    assert info["horizon"] == 12
    assert info["first_ds"] == "2024-01-01T12:05:00Z"
    assert info["last_ds"] == "2024-01-01T13:00:00Z"
    assert info["model_version"] == "1"
    assert info["batch_id"] == "b1"


def test_forecast_points_are_ordered_by_step(client: TestClient) -> None:
    response = client.get("/v1/forecasts/checkout")
    assert response.status_code == 200
    body = response.json()
    assert body["service"] == "checkout"
    assert body["metric"] == "request_rate"
    assert body["model_name"] == "scaleahead-demand-request_rate"
    assert body["model_version"] == "1"
    assert body["batch_id"] == "b1"
    assert body["created_at"] == "2024-01-01T11:00:00Z"
    assert body["stale"] is False
    assert [p["step"] for p in body["points"]] == list(range(1, 13))
    assert body["points"][0] == {
        "ds": "2024-01-01T12:05:00Z",
        "step": 1,
        "p50": 101.0,
        "p90": 111.0,
        "p95": 121.0,
    }


def test_horizon_truncates_points(client: TestClient) -> None:
    body = client.get("/v1/forecasts/checkout", params={"horizon": 3}).json()
    assert body["horizon"] == 3
    assert [p["step"] for p in body["points"]] == [1, 2, 3]
    full = client.get("/v1/forecasts/checkout", params={"horizon": 12}).json()
    assert len(full["points"]) == 12


def test_unknown_service_and_metric_are_404_problems(client: TestClient) -> None:
    body = assert_problem(client.get("/v1/forecasts/nope"), 404)
    assert body["type"].endswith("unknown-service")
    assert "nope" in body["detail"]
    body = assert_problem(client.get("/v1/forecasts/checkout", params={"metric": "cpu"}), 404)
    assert body["type"].endswith("unknown-metric")


@pytest.mark.parametrize("horizon", ["0", "-1", "abc", "13"])
def test_bad_horizon_is_422_problem(client: TestClient, horizon: str) -> None:
    response = client.get("/v1/forecasts/checkout", params={"horizon": horizon})
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["query", "horizon"]
    assert "horizon" in body["detail"]


def test_unknown_route_is_problem(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)


def test_readyz_and_forecasts_before_and_after_data(settings: Settings) -> None:
    with make_client(settings) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready"
        assert "does not exist" in ready.json()["last_refresh_error"]
        body = assert_problem(client.get("/v1/forecasts/checkout"), 503)
        assert body["type"].endswith("no-forecasts")
        assert_problem(client.get("/v1/services"), 503)

        publish(settings.warehouse_path, "b1", T0)
        assert cache_of(client).refresh() is True

        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["batches"] == {"request_rate": "b1"}
        assert client.get("/v1/forecasts/checkout").status_code == 200


def test_openapi_document(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "scaleahead forecast API"
    assert spec["info"]["version"]
    assert spec["info"]["description"]
    assert {"/v1/services", "/v1/forecasts/{service}", "/healthz", "/readyz"} <= set(spec["paths"])
    params = spec["paths"]["/v1/forecasts/{service}"]["get"]["parameters"]
    metric = next(p for p in params if p["name"] == "metric")
    assert metric["schema"]["default"] == "request_rate"
    not_found = spec["paths"]["/v1/forecasts/{service}"]["get"]["responses"]["404"]
    assert list(not_found["content"]) == [PROBLEM_JSON]


# --- refresh semantics -----------------------------------------------------------------------


def test_newer_batch_replaces_old_after_refresh(client: TestClient, warehouse: Path) -> None:
    cache = cache_of(client)
    assert cache.refresh() is False  # unchanged max(created_at): no reload

    publish(warehouse, "b2", T0 + timedelta(hours=1), services=("checkout",), base=500.0)
    assert client.get("/v1/forecasts/checkout").json()["batch_id"] == "b1"  # cached until refresh
    assert cache.refresh() is True

    body = client.get("/v1/forecasts/checkout").json()
    assert body["batch_id"] == "b2"
    assert body["points"][0]["p50"] == 501.0
    # The latest batch is the whole truth for its metric: services it lacks drop out.
    assert_problem(client.get("/v1/forecasts/search"), 404)


def test_latest_batch_is_chosen_per_metric(client: TestClient, warehouse: Path) -> None:
    publish(warehouse, "cpu1", T0 - timedelta(hours=1), metric="cpu_cores", base=2.0)
    cache_of(client).refresh()
    cpu = client.get("/v1/forecasts/checkout", params={"metric": "cpu_cores"}).json()
    assert cpu["batch_id"] == "cpu1"
    assert client.get("/v1/forecasts/checkout").json()["batch_id"] == "b1"
    metrics = client.get("/v1/services").json()["services"][0]["metrics"]
    assert [m["metric"] for m in metrics] == ["cpu_cores", "request_rate"]


def test_background_refresher_picks_up_new_batch(settings: Settings, warehouse: Path) -> None:
    with TestClient(create_app(settings, refresh_interval_s=0.05)) as client:
        publish(warehouse, "b2", T0 + timedelta(hours=1))
        deadline = time.monotonic() + 10
        while client.get("/v1/forecasts/checkout").json()["batch_id"] != "b2":
            assert time.monotonic() < deadline, "refresher never loaded the new batch"
            time.sleep(0.05)
        assert client.app.state.refresher.running
    assert not client.app.state.refresher.running  # lifespan shutdown stopped the thread


def test_refresh_holds_no_connection(client: TestClient, warehouse: Path) -> None:
    cache_of(client).refresh()
    # A read-only connection left open would make this read-write open fail in-process.
    with connect(path=warehouse) as con:
        assert con.execute("SELECT count(*) FROM serving.forecasts").fetchone() == (24,)


def test_deleted_warehouse_keeps_serving_last_batch_as_stale(
    client: TestClient, warehouse: Path
) -> None:
    remove_warehouse(warehouse)
    assert cache_of(client).refresh() is False

    body = client.get("/v1/forecasts/checkout").json()
    assert body["batch_id"] == "b1" and body["stale"] is True
    services = client.get("/v1/services").json()
    assert services["stale"] is True
    assert "does not exist" in services["last_refresh_error"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["stale"] is True

    publish(warehouse, "b3", T0 + timedelta(hours=2))
    assert cache_of(client).refresh() is True
    body = client.get("/v1/forecasts/checkout").json()
    assert body["batch_id"] == "b3" and body["stale"] is False


def test_locked_warehouse_keeps_serving_last_batch_as_stale(
    client: TestClient, warehouse: Path
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # The warehouse is a DuckLake: an exclusive lock on its SQLite catalog makes it
            # unavailable (DuckLake readers no longer take locks themselves).
            "import sys, sqlite3; con = sqlite3.connect(sys.argv[1], isolation_level=None);"
            " con.execute('PRAGMA locking_mode=EXCLUSIVE'); con.execute('BEGIN EXCLUSIVE');"
            " con.execute('CREATE TABLE IF NOT EXISTS _lock_probe (x)');"
            " print('locked', flush=True); sys.stdin.readline()",
            str(warehouse),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert cache_of(client).refresh() is False
        body = client.get("/v1/forecasts/checkout").json()
        assert body["batch_id"] == "b1" and body["stale"] is True
        assert "lock" in client.get("/readyz").json()["last_refresh_error"].lower()
    finally:
        holder.communicate("\n", timeout=10)
    cache_of(client).refresh()
    assert client.get("/v1/forecasts/checkout").json()["stale"] is False


def test_emptied_table_keeps_previous_batch(client: TestClient, warehouse: Path) -> None:
    with connect(path=warehouse) as con:
        con.execute("DELETE FROM serving.forecasts")
    assert cache_of(client).refresh() is False
    body = client.get("/v1/forecasts/checkout").json()
    assert body["batch_id"] == "b1" and body["stale"] is True


def test_stale_when_refreshes_stop_succeeding(warehouse: Path) -> None:
    now = [datetime(2024, 1, 1)]
    cache = ForecastCache(warehouse, stale_after_s=30, clock=lambda: now[0])
    assert cache.refresh() is True
    assert cache.status().stale is False
    now[0] += timedelta(seconds=31)
    assert cache.status().stale is True


def test_refresh_interval_resolution(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALEAHEAD_API_REFRESH_INTERVAL_S", raising=False)
    assert resolve_refresh_interval(Settings()) == 15.0
    monkeypatch.setenv("SCALEAHEAD_API_REFRESH_INTERVAL_S", "2.5")
    assert resolve_refresh_interval(Settings()) == 2.5
    assert resolve_refresh_interval(Settings(), 1.0) == 1.0


# --- real server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_runs_real_uvicorn(tmp_path: Path, warehouse: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SCALEAHEAD_HOME": str(tmp_path),
        "SCALEAHEAD_API_HOST": "127.0.0.1",
        "SCALEAHEAD_API_PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "from scaleahead.api.app import serve; serve()"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.1)
        response = httpx.get(f"{url}/v1/forecasts/search", params={"horizon": 2}, timeout=5)
        assert response.status_code == 200
        assert [p["step"] for p in response.json()["points"]] == [1, 2]
        missing = httpx.get(f"{url}/v1/forecasts/nope", timeout=5)
        assert missing.headers["content-type"].startswith(PROBLEM_JSON)
    finally:
        server.terminate()
        server.wait(timeout=10)
