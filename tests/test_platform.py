"""Production mode: `scaleahead up` starts the scheduled platform on PostgreSQL, the scheduler
runs two ingest -> transform -> publish cycles on its own, the API serves the newer forecast
each time, and `scaleahead down` leaves no process behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from scaleahead import platform, tasks
from scaleahead.api.keys import KeyStore
from scaleahead.config import Settings, get_settings
from scaleahead.forecasting.registry import CHAMPION, tracking
from scaleahead.orchestration import schedule
from scaleahead.synth.telemetry import generate
from scaleahead.warehouse import read_sql

SERVICES, DAYS, SEED = 4, 4, 3
# Each feed extends the data this far past the previous one: a new 5-minute mart bucket, so
# the published batch (keyed by the data end) changes as well as its created_at.
STEP = timedelta(minutes=10)


def _postgres_up(settings: Settings) -> bool:
    import psycopg2

    try:
        psycopg2.connect(platform._db_url(settings, "postgres"), connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


def _wait(check: Callable[[], Any], timeout_s: float, what: str, platform_dir: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            logs = sorted((platform_dir / "logs").glob("airflow-*.log"))
            tail = "\n".join(
                f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-8:])
                for p in logs
            )
            pytest.fail(f"timed out waiting for {what}\n{tail}")
        time.sleep(2.0)


def _feed(settings: Settings, scratch: Path, start: datetime) -> datetime:
    """One day of telemetry from ``start``, dropped into the landing folder in one rename (so
    a scheduled ingest never sees half of it); returns its last timestamp."""
    result = generate(
        SERVICES,
        1,
        SEED,
        settings=settings.model_copy(update={"landing_dir": scratch}),
        start=start,
    )
    result.run_dir.rename(settings.landing_dir / f"{scratch.name}-{result.run_id}")
    return start + timedelta(days=1) - timedelta(minutes=1)


def _served(api: str, headers: dict[str, str]) -> tuple[str, datetime, datetime] | None:
    """(batch id, created_at, last forecast bucket) of what the API serves now."""
    ready = httpx.get(f"{api}/readyz", timeout=5)
    if ready.status_code != 200:
        return None
    batch = ready.json()["batches"]["request_rate"]
    services = httpx.get(f"{api}/v1/services", headers=headers, timeout=5).json()
    service = services["services"][0]["service"]
    body = httpx.get(f"{api}/v1/forecasts/{service}", headers=headers, timeout=5).json()
    assert body["batch_id"] == batch
    last = max(_utc(p["ds"]) for p in body["points"])
    return batch, _utc(body["created_at"]), last


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _session_processes(sids: set[int]) -> list[int]:
    return platform._session_members(sids)


@pytest.fixture
def platform_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Unique databases and free ports per run; databases dropped afterwards."""
    run = f"sa_test_{uuid.uuid4().hex[:10]}"
    env = {
        "SCALEAHEAD_WAREHOUSE_DIR": str(tmp_path / "warehouse"),
        "SCALEAHEAD_AIRFLOW_DB": f"{run}_airflow",
        "SCALEAHEAD_MLFLOW_DB": f"{run}_mlflow",
        "SCALEAHEAD_LAKE_DB": f"{run}_lake",
        "SCALEAHEAD_INGEST_SCHEDULE": "* * * * *",
        # Trained once below; no daily retrain or weekly twin competing for the 2 CPUs.
        "SCALEAHEAD_TRAIN_SCHEDULE": "none",
        "SCALEAHEAD_TWIN_SCHEDULE": "none",
        "SCALEAHEAD_API_REFRESH_INTERVAL_S": "1",
        "SCALEAHEAD_PROMETHEUS_SCRAPE_INTERVAL_S": "2",
    }
    for key in ("AIRFLOW", "MLFLOW", "API", "API_GRPC", "PROMETHEUS", "ALERTMANAGER"):
        env[f"SCALEAHEAD_{key}_PORT"] = "0"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in (
        "SCALEAHEAD_CATALOG_URL",
        "SCALEAHEAD_MLFLOW_SERVER_URL",
        "MLFLOW_ALLOW_FILE_STORE",
    ):
        monkeypatch.delenv(key, raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    if not _postgres_up(settings):
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    try:
        yield settings
    finally:
        platform.down(settings)
        platform.drop_databases(settings)
        get_settings.cache_clear()


def test_schedules_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        assert schedule("ingest") == "*/5 * * * *"
        assert schedule("train") == "@daily"
        monkeypatch.setenv("SCALEAHEAD_INGEST_SCHEDULE", "* * * * *")
        monkeypatch.setenv("SCALEAHEAD_TRAIN_SCHEDULE", "none")
        get_settings.cache_clear()
        assert schedule("ingest") == "* * * * *"
        assert schedule("train") is None
    finally:
        get_settings.cache_clear()


def test_down_without_up_is_a_no_op(settings: Settings) -> None:
    assert platform.down(settings) == {"stopped": {}, "stragglers_killed": 0}


def _promtool_check(config: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian prometheus) is not installed")
    check = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_scrape_token_is_a_placeholder_while_the_api_needs_no_key(
    settings: Settings,
) -> None:
    path = platform.scrape_credentials(settings)
    assert path.read_text() == "no-key-required"
    assert KeyStore(settings.api_keys_path).list() == []  # auth stays off
    config = platform._write_prometheus_config(
        settings, {"api": 18000, "alertmanager": 18001}, path
    )
    assert f"credentials_file: '{path}'" in config.read_text()
    _promtool_check(config)


def test_prometheus_gets_a_read_key_of_its_own_when_the_api_needs_keys(settings: Settings) -> None:
    store = KeyStore(settings.api_keys_path)
    store.create("someone", "admin")
    first = platform.scrape_credentials(settings)
    assert first.stat().st_mode & 0o777 == 0o600
    second = platform.scrape_credentials(settings)
    assert second == first
    key = store.verify(second.read_text())
    assert key is not None and key.name == platform.SCRAPE_KEY_NAME and key.scope == "read"
    # Re-issued at each `up`: one active scrape key, the previous one revoked.
    scrape_keys = [k for k in store.list() if k.name == platform.SCRAPE_KEY_NAME]
    assert [k.active for k in scrape_keys] == [False, True]
    config = platform._write_prometheus_config(
        settings, {"api": 18000, "alertmanager": 18001}, second
    )
    assert f"credentials_file: '{second}'" in config.read_text()
    _promtool_check(config)


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_scheduled_platform_runs_two_cycles_on_its_own(
    platform_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = platform_settings
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.monotonic() - clock, 1)
        print(f"platform e2e: {name} {timings[name]} s")
        clock = time.monotonic()

    # API keys on, as in production: Prometheus must scrape /metrics with a key of its own.
    _, key = KeyStore(settings.api_keys_path).create("e2e-reader", "read")
    headers = {"Authorization": f"Bearer {key}"}
    report = platform.up(settings)
    assert sorted(report.started) == sorted(platform.COMPONENTS) and not report.kept
    assert not report.api_ready  # nothing published yet
    lap("up")

    # A champion must exist before the scheduler publishes: history is loaded and a model
    # trained against the platform's MLflow server and PostgreSQL catalog, as a user would with
    # `scaleahead ingest/transform/train`. From a landing folder of its own, so the scheduled
    # ingest (running meanwhile, finding nothing) only ever sees the cycles' files.
    # Scheduled runs use the real data interval: the history ends at the current minute.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=DAYS) + timedelta(minutes=1)
    monkeypatch.setenv("SCALEAHEAD_MLFLOW_SERVER_URL", report.urls["mlflow"])
    monkeypatch.setenv("SCALEAHEAD_CATALOG_URL", platform.catalog_url(settings))
    monkeypatch.setenv("SCALEAHEAD_LANDING_DIR", str(tmp_path / "history"))
    get_settings.cache_clear()
    staged = get_settings()
    generate(SERVICES, DAYS, SEED, settings=staged, start=start)
    assert tasks.ingest(as_of=now, settings=staged)["new_data"]
    assert tasks.transform(settings=staged)["success"]
    trained = tasks.train(settings=staged)
    assert trained["version"] == "1"
    if trained["alias"] != "champion":
        # The promotion gate has tests of its own; on 4 services x 4 days its backtest is too
        # noisy to gate this test (measured here: MASE 0.35 vs seasonal naive 0.67 in one run,
        # 0.66 vs 0.58 seven minutes later). Promoted by hand, as an operator would in MLflow.
        with tracking(staged) as client:  # the platform's MLflow server, as the registry
            client.set_registered_model_alias(trained["model_name"], CHAMPION, trained["version"])
    with tracking(staged) as client:
        assert client.get_model_version_by_alias(trained["model_name"], CHAMPION).version == "1"
    lap("history_and_train")

    api = report.urls["api"]
    served: list[tuple[str, datetime, datetime]] = []
    for cycle in (1, 2):
        # Each feed ends STEP past the previous data; the next scheduled ingest picks it up,
        # and the chain ends with a batch forecasting past it.
        end = _feed(
            settings, tmp_path / f"feed{cycle}", start + timedelta(days=DAYS - 1) + cycle * STEP
        )
        previous = served[-1][0] if served else None
        served.append(
            _wait(
                lambda end=end, previous=previous: (
                    (s := _served(api, headers)) and s[0] != previous and s[2] > end and s
                ),
                360,
                f"the batch of cycle {cycle}",
                settings.platform_dir,
            )
        )
        lap(f"cycle_{cycle}")
    (first, first_at, _), (second, second_at, _) = served
    assert first != second and first_at < second_at, served
    published = read_sql("SELECT DISTINCT batch_id FROM serving.forecasts", settings=staged)
    assert {first, second} <= set(published.batch_id)

    # The cycles ran through the scheduler: scheduled ingest, asset-triggered transform and
    # publish runs (a run turns success shortly after its task wrote the batch).
    airflow = report.urls["airflow"]
    token = httpx.get(f"{airflow}/auth/token", timeout=10).json()["access_token"]
    airflow_headers = {"Authorization": f"Bearer {token}"}

    def runs(dag_id: str, run_type: str) -> int:
        body = httpx.get(
            f"{airflow}/api/v2/dags/{dag_id}/dagRuns",
            params={"state": "success", "run_type": run_type},
            headers=airflow_headers,
            timeout=10,
        ).json()
        return body["total_entries"]

    assert runs("telemetry_ingest", "scheduled") >= 2
    assert runs("warehouse_transform", "asset_triggered") >= 1
    _wait(
        lambda: runs("forecast_publish", "asset_triggered") >= 2,
        120,
        "two successful publish runs",
        settings.platform_dir,
    )

    # Prometheus scrapes the API's forecast gauges (first step of the served batch: the feeds
    # run ahead of the wall clock, so the peak over [now, now + lead] may have no points yet).
    def scraped() -> list:
        return httpx.get(
            f"{report.urls['prometheus']}/api/v1/query",
            params={"query": "count(scaleahead_forecast_next)"},
            timeout=10,
        ).json()["data"]["result"]

    _wait(scraped, 30, "Prometheus to scrape the forecast gauges", settings.platform_dir)
    assert httpx.get(f"{report.urls['alertmanager']}/-/ready", timeout=5).status_code == 200
    lap("checks")

    state = json.loads((settings.platform_dir / platform.STATE_FILE).read_text())
    sessions = {int(pid) for pid in state["sessions"].values()}
    assert len(sessions) == len(platform.COMPONENTS)
    result = platform.down(settings)
    lap("down")
    assert set(result["stopped"]) == set(platform.COMPONENTS)
    assert _session_processes(sessions) == []
    assert platform.leftover_processes(settings) == []
    assert platform.down(settings)["stopped"] == {}  # idempotent
