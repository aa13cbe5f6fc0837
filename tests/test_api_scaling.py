"""Recommendations, alerts, auth, rate limits, /metrics, the committed contract and KEDA's
metrics-api reading of the payload (REST side of issue #8)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from scaleahead.api.app import create_app
from scaleahead.api.keys import KeyStore, RateLimiter
from scaleahead.api.models import RecommendationOut
from scaleahead.api.openapi import CONTRACT, render
from scaleahead.config import Settings
from scaleahead.warehouse import connect

REPO = Path(__file__).resolve().parents[1]
PROBLEM_JSON = "application/problem+json"
# Forecast origin: the first forecast bucket starts at DATA_END (= last actual bucket + 5 min).
LAST_ACTUAL = datetime(2026, 11, 16, 11, 55)
DATA_END = LAST_ACTUAL + timedelta(minutes=5)
NOW = DATA_END.replace(tzinfo=UTC)


def write_forecasts(path: Path, created_at: datetime = DATA_END, base: float = 100.0) -> None:
    rows = [
        (
            "b1",
            service,
            "request_rate",
            DATA_END + timedelta(minutes=5 * (step - 1)),
            step,
            base + 10 * step,
            base + 10 * step + 50,
            base + 10 * step + 80,
            "scaleahead-demand-request_rate",
            "3",
            created_at,
        )
        for service in ("checkout", "search")
        for step in range(1, 13)
    ]
    with connect(path=path) as con:
        con.executemany(
            "INSERT INTO serving.forecasts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )


def write_marts(path: Path, with_services: bool = True) -> None:
    with connect(path=path) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(
            "CREATE TABLE marts.service_demand_5m (service VARCHAR, ds TIMESTAMP, "
            "request_rate DOUBLE, cpu_cores DOUBLE, latency_ms DOUBLE, samples INTEGER, "
            "is_gap BOOLEAN, demand DOUBLE)"
        )
        for service, demand in (("checkout", 100.0), ("search", 40.0), ("ledger", 55.0)):
            for i in range(12):
                ds = LAST_ACTUAL - timedelta(minutes=5 * i)
                value = demand if i == 0 else demand * 2  # earlier peak: 2x the latest
                con.execute(
                    "INSERT INTO marts.service_demand_5m VALUES (?, ?, ?, 1, 1, 5, false, ?)",
                    [service, ds, value, value],
                )
        if with_services:
            con.execute(
                "CREATE TABLE marts.services (service VARCHAR, tier VARCHAR, "
                "capacity_per_replica DOUBLE, target_utilization DOUBLE, min_replicas INTEGER, "
                "max_replicas INTEGER, capacity_source VARCHAR)"
            )
            con.execute(
                "INSERT INTO marts.services VALUES "
                "('checkout', 'critical', 20, 0.5, 2, 40, 'catalog'), "
                "('search', 'standard', 10, 1.0, 1, 8, 'catalog'), "
                "('ledger', 'standard', 10, 1.0, 3, 30, 'derived')"
            )


def add_alert(path: Path, service: str, status: str = "firing") -> None:
    with connect(path=path) as con:
        con.execute(
            "INSERT INTO serving.alerts VALUES (?, ?, 'request_rate', 'level_shift', 'critical', "
            "?, ?, NULL, 300, 100, 0.97, 'demand tripled', ?)",
            [f"a-{service}", service, status, LAST_ACTUAL, LAST_ACTUAL],
        )


def add_quality(path: Path, success: bool, severity: str = "error") -> None:
    # The API obeys the gate's verdict (quality.gate_runs), recorded with the results.
    blocking = not success and severity == "error"
    with connect(path=path) as con:
        con.execute(
            "INSERT INTO quality.quality_results (run_id, suite, expectation, column_name, "
            "success, observed_value, severity, checked_at) VALUES ('run-1', 'mart', "
            "'expect_column_values_to_not_be_null', 'demand', ?, NULL, ?, ?)",
            [success, severity, LAST_ACTUAL],
        )
        con.execute(
            "INSERT INTO quality.gate_runs VALUES ('run-1', 'transform', 'service_demand_5m', "
            "?, ?, 1, 0, NULL, NULL, now()::TIMESTAMP)",
            [blocking, "demand_not_null" if blocking else None],
        )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Every service pinned predictive (new services start in shadow; tests/test_scaling_modes.py
    # covers the modes), ledger in the older dry-run list: pinned shadow.
    return Settings(
        home=tmp_path,
        scaling_clock="data",
        scaling_dry_run_services=["ledger"],
        scaling_modes_pinned={"*": "predictive"},
    )


@pytest.fixture
def warehouse(settings: Settings) -> Path:
    write_forecasts(settings.warehouse_path)
    write_marts(settings.warehouse_path)
    return settings.warehouse_path


@pytest.fixture
def client(settings: Settings, warehouse: Path):
    with TestClient(create_app(settings, refresh_interval_s=3600)) as c:
        yield c


def refresh(client: TestClient) -> None:
    client.app.state.forecast_cache.refresh()


def rec(client: TestClient, service: str, **params) -> dict:
    response = client.get(f"/v1/services/{service}/recommendation", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    RecommendationOut.model_validate(body)  # the hand-built body honours the contract
    return body


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status and body["title"]
    return body


# --- recommendations -------------------------------------------------------------------------


def test_predictive_recommendation_from_marts(client: TestClient) -> None:
    body = rec(client, "checkout")
    # window [12:00, 12:10] covers steps 1..3: p90 = 100 + 30 + 50 = 180; usable 20 * 0.5 = 10
    assert body["mode"] == "predictive" and body["reasons"] == []
    assert body["forecast"] == {"p50": 130.0, "p90": 180.0, "p95": 210.0}
    assert body["predictive_replicas"] == 18
    assert body["reactive_replicas"] == 10  # latest actual 100 / 10
    assert body["replicas"] == body["desired_replicas"] == 18
    assert body["service_spec"] == {
        "capacity_per_replica": 20.0,
        "target_utilization": 0.5,
        "min_replicas": 2,
        "max_replicas": 40,
        "source": "catalog",
    }
    assert body["actual"] == {"ds": "2026-11-16T11:55:00Z", "value": 100.0}
    assert body["forecast_batch"]["age_s"] == 0.0
    assert body["window"] == {"start": "2026-11-16T12:00:00Z", "end": "2026-11-16T12:10:00Z"}
    # quantile and max bound
    assert rec(client, "checkout", quantile="p50")["predictive_replicas"] == 13
    assert rec(client, "search")["replicas"] == 8  # 180 / 10 -> 18, capped at max 8


def test_reactive_with_current_replicas_uses_hpa_tolerance(client: TestClient) -> None:
    # search: actual 40, capacity 10; current 4 -> ratio 1.0 -> hold 4; current 2 -> 4
    assert rec(client, "search", current_replicas=4)["reactive_replicas"] == 4
    assert rec(client, "search", current_replicas=2)["reactive_replicas"] == 4


def add_daily_spikes(path: Path, service: str, value: float, minute: int = 5) -> None:
    """Three earlier days of 5-minute demand (100) with a ``value`` spike at 12:00 + minute."""
    rows = []
    for day in range(1, 4):
        start = DATA_END - timedelta(days=day, hours=12)
        for i in range(288):
            ds = start + timedelta(minutes=5 * i)
            spike = ds == DATA_END - timedelta(days=day) + timedelta(minutes=minute)
            rows.append((service, ds, value if spike else 100.0))
    with connect(path=path) as con:
        con.executemany(
            "INSERT INTO marts.service_demand_5m VALUES (?, ?, ?, 1, 1, 5, false, ?)",
            [(s, ds, v, v) for s, ds, v in rows],
        )


def test_recurring_daily_spike_is_planned_for(settings: Settings, warehouse: Path) -> None:
    # checkout's p90 peak is 180 (18 replicas). A 390 spike at 12:05 on each of the last three
    # days is more than twice that: predictive plans for it, ceil(390 / 10) = 39 replicas.
    add_daily_spikes(warehouse, "checkout", 390.0)
    add_daily_spikes(warehouse, "search", 390.0, minute=60)  # outside the +-30 min window
    with TestClient(create_app(settings, refresh_interval_s=3600)) as client:
        body = rec(client, "checkout")
        assert body["recurring_peak"] == 390.0
        assert body["forecast"]["p90"] == 180.0
        assert body["predictive_replicas"] == body["replicas"] == 39
        other = rec(client, "search")
        assert other["recurring_peak"] == 100.0 and other["replicas"] == 8
    # Without the rule the forecast alone decides.
    off = settings.model_copy(update={"scaling_recurring_days": 0})
    with TestClient(create_app(off, refresh_interval_s=3600)) as client:
        body = rec(client, "checkout")
        assert body["recurring_peak"] is None and body["predictive_replicas"] == 18


def test_dry_run_service_reports_prediction_and_applies_reactive(client: TestClient) -> None:
    body = rec(client, "ledger")  # no forecast, dry-run, min 3
    assert body["mode"] == "dry_run" and body["dry_run"] is True
    assert body["reasons"][0] == "dry_run" and "forecast_missing" in body["reasons"]
    assert body["replicas"] == body["reactive_replicas"] == 6  # ceil(55 / 10)
    listed = {s["service"]: s for s in client.get("/v1/services").json()["services"]}
    assert listed["ledger"]["dry_run"] is True and listed["ledger"]["metrics"] == []


def test_firing_alert_and_failed_gate_fall_back_to_reactive(
    client: TestClient, warehouse: Path
) -> None:
    assert rec(client, "checkout")["replicas"] == 18
    add_alert(warehouse, "checkout")
    refresh(client)
    body = rec(client, "checkout")
    assert body["mode"] == "reactive" and body["reasons"] == ["low_confidence"]
    assert any("demand tripled" in n for n in body["notes"])
    assert body["predictive_replicas"] == 18  # still reported
    # scale-in is stabilized: the previous 18 is still inside the 300 s window
    assert body["desired_replicas"] == 10 and body["replicas"] == 18
    alerts = client.get("/v1/alerts").json()["alerts"]
    assert [a["service"] for a in alerts] == ["checkout"]
    assert client.get("/v1/alerts", params={"status": "resolved"}).json()["alerts"] == []

    assert rec(client, "search")["mode"] == "predictive"
    add_quality(warehouse, success=True, severity="error")
    add_quality(warehouse, success=False, severity="warn")
    refresh(client)
    assert rec(client, "search")["mode"] == "predictive"  # warnings do not block
    add_quality(warehouse, success=False, severity="error")
    refresh(client)
    body = rec(client, "search")
    assert body["mode"] == "reactive" and body["reasons"] == ["quality_failed"]


def test_stale_forecast_falls_back(settings: Settings) -> None:
    write_forecasts(settings.warehouse_path, created_at=DATA_END - timedelta(hours=2))
    write_marts(settings.warehouse_path)
    with TestClient(create_app(settings, refresh_interval_s=3600)) as client:
        body = rec(client, "checkout")
    assert body["mode"] == "reactive" and body["reasons"] == ["forecast_stale"]
    assert body["forecast_batch"]["age_s"] == 7200.0


def test_wall_clock_far_from_data_marks_window_uncovered(settings: Settings) -> None:
    write_forecasts(settings.warehouse_path)
    write_marts(settings.warehouse_path)
    later = NOW + timedelta(days=3)
    app = create_app(
        settings.model_copy(update={"scaling_clock": "wall"}),
        refresh_interval_s=3600,
        clock=lambda: later,
    )
    with TestClient(app) as client:
        body = rec(client, "checkout")
    assert body["mode"] == "reactive"
    assert set(body["reasons"]) == {"forecast_stale", "forecast_window_uncovered"}
    assert body["replicas"] == 10


def test_missing_services_table_uses_defaults_and_says_so(settings: Settings) -> None:
    write_forecasts(settings.warehouse_path)
    write_marts(settings.warehouse_path, with_services=False)
    with TestClient(create_app(settings, refresh_interval_s=3600)) as client:
        body = rec(client, "checkout")
    # capacity = 7-day peak (200) / 10 replicas = 20, target 1.0
    assert body["service_spec"]["source"] == "api_default"
    assert body["service_spec"]["capacity_per_replica"] == 20.0
    assert any("marts.services not found" in n for n in body["notes"])
    assert body["predictive_replicas"] == 9  # ceil(180 / 20)


def test_recommendation_errors(client: TestClient) -> None:
    body = assert_problem(client.get("/v1/services/nope/recommendation"), 404)
    assert body["type"].endswith("unknown-service")
    for params in ({"quantile": "p99"}, {"current_replicas": -1}, {"current_replicas": "x"}):
        body = assert_problem(
            client.get("/v1/services/checkout/recommendation", params=params), 422
        )
        assert body["type"].endswith("validation-error")
    assert_problem(client.get("/v1/alerts", params={"status": "open"}), 422)


def test_forecast_route_and_alias_agree(client: TestClient) -> None:
    a = client.get("/v1/services/checkout/forecast", params={"horizon": 3}).json()
    b = client.get("/v1/forecasts/checkout", params={"horizon": 3}).json()
    assert a == b and a["horizon"] == 3


# --- auth and rate limits ---------------------------------------------------------------------


def test_api_keys_scopes_and_revocation(client: TestClient, settings: Settings) -> None:
    assert client.get("/v1/services").status_code == 200  # no key exists yet: open
    store = KeyStore(settings.api_keys_path)
    read_key, read_secret = store.create("keda", "read")
    _, admin_secret = store.create("ops", "admin")
    assert read_secret not in settings.api_keys_path.read_text()  # hashed at rest
    client.app.state.authenticator.store._checked_at = 0  # skip the 1 s reload throttle

    body = assert_problem(client.get("/v1/services"), 401)
    assert body["type"].endswith("unauthorized")
    assert_problem(
        client.get("/v1/services", headers={"X-API-Key": "sa_00000000_" + "x" * 43}), 401
    )
    assert_problem(client.get("/metrics"), 401)
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    ok = client.get("/v1/services", headers={"Authorization": f"Bearer {read_secret}"})
    assert ok.status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": read_secret}).status_code == 200
    body = assert_problem(client.post("/v1/admin/refresh", headers={"X-API-Key": read_secret}), 403)
    assert body["type"].endswith("forbidden")
    assert client.post("/v1/admin/refresh", headers={"X-API-Key": admin_secret}).status_code == 200

    store.revoke(read_key.id)
    client.app.state.authenticator.store._checked_at = 0
    assert_problem(client.get("/v1/services", headers={"X-API-Key": read_secret}), 401)


def test_rate_limit_is_429_with_retry_after(settings: Settings, warehouse: Path) -> None:
    limited = settings.model_copy(update={"api_rate_limit_rps": 0.5, "api_rate_limit_burst": 2})
    with TestClient(create_app(limited, refresh_interval_s=3600)) as client:
        statuses = [client.get("/v1/services").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        body = assert_problem(client.get("/v1/services"), 429)
        assert body["type"].endswith("rate-limited")
        assert int(client.get("/v1/services").headers["retry-after"]) >= 1


def test_token_bucket_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == 0
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0  # per identity
    now[0] = 0.5
    assert limiter.acquire("a") == 0


def test_apikey_cli_prints_key_once(tmp_path: Path) -> None:
    env = {"SCALEAHEAD_WAREHOUSE_DIR": str(tmp_path / "wh"), "PATH": "/usr/bin:/bin"}
    exe = [str(REPO / ".venv/bin/scaleahead")]
    created = subprocess.run(
        [*exe, "apikey", "create", "--name", "keda", "--scope", "read"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = next(line for line in created.stdout.splitlines() if line.startswith("sa_"))
    listed = subprocess.run(
        [*exe, "apikey", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "keda" in listed and key not in listed
    store = KeyStore(tmp_path / "wh" / "api_keys.json")
    assert store.verify(key) is not None
    subprocess.run([*exe, "apikey", "revoke", "keda"], env=env, check=True, capture_output=True)
    assert KeyStore(tmp_path / "wh" / "api_keys.json").verify(key) is None
    bad = subprocess.run(
        [*exe, "apikey", "create", "--name", "x", "--scope", "root"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0


# --- /metrics, contract, KEDA metrics-api -----------------------------------------------------


def test_metrics_exposition(client: TestClient) -> None:
    rec(client, "checkout")
    text = client.get("/metrics").text
    assert 'scaleahead_forecast{metric="request_rate",quantile="p90",service="checkout"} 180.0' in (
        text
    )
    assert 'scaleahead_recommended_replicas{mode="predictive",service="checkout"} 18.0' in text
    assert 'scaleahead_recommended_replicas{mode="dry_run",service="ledger"} 6.0' in text
    assert (
        'scaleahead_api_requests_total{method="GET",'
        'route="/v1/services/{service}/recommendation",status="200"} 1.0'
    ) in text


def test_served_openapi_equals_committed_contract(tmp_path: Path) -> None:
    served = TestClient(create_app(Settings(home=tmp_path, _env_file=None))).get("/openapi.json")
    assert render(served.json()) == CONTRACT.read_text(), (
        "contract drift: run `.venv/bin/python -m scaleahead.api.openapi` and review the diff"
    )


def gjson(document: object, path: str) -> object:
    """GJSON's basic path syntax (dot-separated keys, numeric array indexes)."""
    for part in path.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def test_keda_metrics_api_example_reads_the_payload(client: TestClient) -> None:
    docs = list(yaml.safe_load_all((REPO / "examples/keda-metrics-api.yaml").read_text()))
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"metrics-api"}
    body = rec(client, "checkout")
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["url"].endswith("/v1/services/checkout/recommendation")
        value = gjson(body, meta["valueLocation"])
        assert isinstance(value, int | float) and value > 0
        assert trigger["authenticationRef"]["name"] in {
            d["metadata"]["name"] for d in docs if d["kind"] == "TriggerAuthentication"
        }
    assert gjson(body, "replicas") == 18 and gjson(body, "forecast.p90") == 180.0


def test_openapi_generator_is_runnable(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from scaleahead.api.openapi import document, render;"
         "import sys; sys.stdout.write(render(document()))"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert json.loads(out.stdout)["info"]["title"] == "scaleahead forecast API"


def test_recommendation_fast_path_matches_the_full_route(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scaleahead.api import fastpath

    taken: list[bool] = []
    parse = fastpath.parse_query
    monkeypatch.setattr(
        fastpath, "parse_query", lambda qs: taken.append(parse(qs) is not None) or parse(qs)
    )
    params = {"quantile": "p95", "current_replicas": 3}
    fast = rec(client, "checkout", **params)
    # An unknown parameter is ignored by FastAPI but declined by the fast path.
    full = rec(client, "checkout", **params, trace="1")
    assert taken == [True, False]
    assert fast == full
    assert rec(client, "ledger") == rec(client, "ledger", trace="1")  # dry-run service too

    # Invalid input and unknown services get the full route's problem+json answers.
    assert_problem(client.get("/v1/services/checkout/recommendation?quantile=p42"), 422)
    assert_problem(client.get("/v1/services/checkout/recommendation?current_replicas=-1"), 422)
    assert_problem(client.get("/v1/services/nope/recommendation"), 404)

    # With auth on: a good key is served fast, a bad or missing one is refused by the route.
    _, secret = KeyStore(settings.api_keys_path).create("keda", "read")
    client.app.state.authenticator.store._checked_at = 0
    taken.clear()
    url = "/v1/services/checkout/recommendation"
    ok = client.get(url, headers={"X-API-Key": secret})
    via_route = client.get(url, params={"trace": "1"}, headers={"X-API-Key": secret})
    assert ok.status_code == via_route.status_code == 200
    assert ok.json() == via_route.json()
    assert taken == [True, False]
    assert_problem(client.get("/v1/services/checkout/recommendation"), 401)
    bad = {"X-API-Key": "sa_00000000_" + "x" * 43}
    assert_problem(client.get("/v1/services/checkout/recommendation", headers=bad), 401)
    route = 'route="/v1/services/{service}/recommendation",status="200"'
    metrics = client.get("/metrics", headers={"X-API-Key": secret}).text
    assert route in metrics  # fast-path requests are counted under the route template


def test_recommendation_fast_path_honours_the_rate_limit(
    settings: Settings, warehouse: Path
) -> None:
    limited = settings.model_copy(update={"api_rate_limit_rps": 0.5, "api_rate_limit_burst": 2})
    with TestClient(create_app(limited, refresh_interval_s=3600)) as client:
        url = "/v1/services/checkout/recommendation"
        assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
        assert int(client.get(url).headers["retry-after"]) >= 1


def test_api_process_does_not_import_the_heavy_stack(settings: Settings, warehouse: Path) -> None:
    """The serving process stays small (API RSS budget): no GX, MLflow, LightGBM or dbt, and
    loading a batch does not pull in pandas/numpy/pyarrow either."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from scaleahead.api.app import create_app\n"
        "from scaleahead.api.cache import ForecastCache\n"
        "from scaleahead.config import Settings\n"
        f"create_app(Settings(home=Path({str(settings.home)!r})))\n"
        f"cache = ForecastCache(Path({str(warehouse)!r}))\n"
        "assert cache.refresh() and cache.snapshot.loaded\n"
        "heavy = ('great_expectations', 'mlflow', 'lightgbm', 'dbt', 'airflow', 'mlforecast',\n"
        "         'pandas', 'numpy', 'pyarrow')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
