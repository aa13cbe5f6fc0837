"""Alert lifecycle, warehouse writes, synthetic precision/recall and delivery to a real
Prometheus Alertmanager (Debian package prometheus-alertmanager, started per module)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from scaleahead.anomaly.alertmanager import ALERTNAME, STORM_ALERTNAME, AlertmanagerClient
from scaleahead.anomaly.alerts import Alert, AlertPolicy, series_alerts
from scaleahead.anomaly.detector import Detection
from scaleahead.anomaly.stage import STAGE_DETECTOR, detect_alerts, run_alerts
from scaleahead.config import Settings
from scaleahead.warehouse import connect, read_sql

T0 = datetime(2026, 11, 2)


def _detection(n: int, hits: dict[int, float], expected: float = 100.0) -> Detection:
    raw = np.zeros(n)
    for i, v in hits.items():
        raw[i] = v
    return Detection(
        score=raw.copy(),
        expected=np.full(n, expected),
        raw_score=raw,
        surprise={"level": raw.copy(), "residual": raw * 0.5},
    )


def _ts(n: int) -> pd.Series:
    return pd.Series(pd.date_range(T0, periods=n, freq="5min"))


def test_episode_fires_then_resolves_after_calm_rows() -> None:
    n = 400
    rng = np.random.default_rng(0)
    x = 100 + rng.normal(0, 1, n)
    x[300:320] += 30  # a 20-bucket shift
    alerts = series_alerts("svc", "request_rate", _ts(n), x, _detection(n, {300: 0.9}))
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.kind, a.severity, a.status) == ("level_shift", "critical", "resolved")
    assert a.starts_at == _ts(n)[300].to_pydatetime()
    # Resolves after the values return, once resolve_rows consecutive calm buckets passed.
    assert _ts(n)[320].to_pydatetime() < a.ends_at <= _ts(n)[320 + 8].to_pydatetime()
    assert "level shift" in a.reason and "request_rate" in a.reason


def test_still_firing_at_the_end_and_retrigger_within_cooldown_is_one_alert() -> None:
    n = 400
    x = np.full(n, 100.0) + np.random.default_rng(1).normal(0, 1, n)
    x[350:] += 50
    alerts = series_alerts("svc", "cpu_cores", _ts(n), x, _detection(n, {350: 0.6}))
    assert [(a.status, a.ends_at, a.severity) for a in alerts] == [("firing", None, "warning")]
    # Flapping: two triggers 5 buckets apart (shorter than the cooldown) -> one alert.
    y = np.full(n, 100.0)
    y[200] = y[215] = 200.0
    flappy = series_alerts("svc", "cpu_cores", _ts(n), y, _detection(n, {200: 0.7, 215: 0.7}))
    assert len(flappy) == 1 and flappy[0].status == "resolved"
    # Far apart: two alerts with distinct ids.
    far = series_alerts("svc", "cpu_cores", _ts(n), y, _detection(n, {100: 0.7, 300: 0.7}))
    assert len(far) == 2 and far[0].alert_id != far[1].alert_id


def _alert(service: str, metric: str = "request_rate", status: str = "firing") -> Alert:
    return Alert(
        alert_id=f"{service}-{metric}",
        service=service,
        metric=metric,
        kind="level_shift",
        severity="warning",
        status=status,
        starts_at=T0,
        ends_at=None if status == "firing" else T0 + timedelta(hours=1),
        observed=150.0,
        expected=100.0,
        score=0.7,
        reason="level shift: request_rate 150 vs expected 100",
    )


def test_payload_groups_per_service_and_rolls_up_storms() -> None:
    client = AlertmanagerClient(url="http://unused", storm_services=3)
    now = datetime(2026, 11, 3, tzinfo=UTC)
    body, storm = client.payload(
        [_alert("a"), _alert("a", "latency_ms"), _alert("b"), _alert("c", status="resolved")], now
    )
    assert not storm
    assert [b["labels"]["service"] for b in body] == ["a", "b", "c"]
    a = body[0]
    assert set(a["labels"]) == {"alertname", "service", "metric", "severity"}
    assert "latency_ms" in a["annotations"]["summary"]
    assert a["endsAt"] > now.isoformat()[:19]  # firing: expires unless re-sent
    assert body[2]["endsAt"].startswith("2026-11-02T01:00:00")  # resolved: real end
    storm_body, storm = client.payload([_alert(f"s{i}") for i in range(1000)], now)
    assert storm and len(storm_body) == 1
    assert storm_body[0]["labels"]["alertname"] == STORM_ALERTNAME
    assert "1000 services" in storm_body[0]["annotations"]["summary"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager missing: run scripts/install-system-deps.sh")
    root = tmp_path_factory.mktemp("alertmanager")
    config = root / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: blackhole\n  group_by: [service]\nreceivers:\n  - name: blackhole\n"
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "stderr.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"alertmanager did not start: {(root / 'stderr.log').read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _active(url: str) -> list[dict]:
    return httpx.get(f"{url}/api/v2/alerts", timeout=5).json()


def test_delivery_to_real_alertmanager_fire_then_resolve(alertmanager: str) -> None:
    client = AlertmanagerClient(url=alertmanager)
    now = datetime.now(UTC)
    firing = [_alert("checkout"), _alert("checkout", "latency_ms")]
    for a in firing:
        a.starts_at = (now - timedelta(minutes=10)).replace(tzinfo=None)
    report = client.deliver(firing, now)
    assert report.delivered and report.alerts_sent == 1
    got = [a for a in _active(alertmanager) if a["labels"].get("service") == "checkout"]
    assert len(got) == 1
    assert got[0]["labels"]["alertname"] == ALERTNAME
    assert got[0]["labels"]["severity"] == "warning"
    assert got[0]["status"]["state"] == "active"
    assert "level shift" in got[0]["annotations"]["summary"]
    assert got[0]["generatorURL"].endswith("/checkout")
    # Re-sending the same firing alert does not duplicate it.
    assert client.deliver(firing, now).delivered
    assert len([a for a in _active(alertmanager) if a["labels"]["service"] == "checkout"]) == 1
    # Resolved: sent with a past endsAt; Alertmanager no longer lists it as active.
    for a in firing:
        a.status = "resolved"
        a.ends_at = (now - timedelta(minutes=1)).replace(tzinfo=None)
    assert client.deliver(firing, now).delivered
    left = [a for a in _active(alertmanager) if a["labels"].get("service") == "checkout"]
    assert all(a["status"]["state"] != "active" for a in left)


def test_delivery_failure_retries_and_never_raises() -> None:
    client = AlertmanagerClient(url=f"http://127.0.0.1:{_free_port()}", retries=3, backoff_s=0.01)
    report = client.deliver([_alert("a")], datetime.now(UTC))
    assert report.attempted and not report.delivered
    assert report.attempts == 3 and report.error


def _mart(settings: Settings, frame: pd.DataFrame) -> None:
    with connect(path=settings.warehouse_path) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.register("f", frame)
        con.execute("CREATE OR REPLACE TABLE marts.service_demand_5m AS SELECT * FROM f")


def _service_frame(service: str, n: int, shift_at: int | None, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = np.sin(2 * np.pi * np.arange(n) / 288)
    rate = 100 + 30 * day + rng.normal(0, 2, n)
    if shift_at is not None:
        rate[shift_at:] *= 1.8
    return pd.DataFrame(
        {
            "service": service,
            "ds": pd.date_range(T0, periods=n, freq="5min"),
            "request_rate": rate,
            "cpu_cores": rate / 50 + rng.normal(0, 0.05, n),
            "latency_ms": 80 + rng.normal(0, 1, n),
        }
    )


def test_stage_writes_lifecycle_and_survives_alertmanager_down(settings: Settings) -> None:
    n = 3 * 288
    frame = pd.concat(
        [_service_frame("shifty", n, n - 20, 1), _service_frame("steady", n, None, 2)]
    )
    _mart(settings, frame)
    down = AlertmanagerClient(url=f"http://127.0.0.1:{_free_port()}", retries=2, backoff_s=0.01)
    now = datetime(2026, 11, 5, tzinfo=UTC)
    report = run_alerts(settings=settings, now=now, client=down)
    assert report.delivery["attempted"] and not report.delivery["delivered"]
    assert report.series == 6
    alerts = read_sql("SELECT * FROM serving.alerts", path=settings.warehouse_path)
    firing = alerts[alerts["status"] == "firing"]
    assert set(firing["service"]) == {"shifty"}
    assert firing["starts_at"].min() >= frame["ds"].max() - pd.Timedelta(minutes=5 * 21)
    # Re-running on the same data: same alerts (dedup by alert_id), not twice as many.
    run_alerts(settings=settings, now=now + timedelta(minutes=5))
    again = read_sql("SELECT * FROM serving.alerts", path=settings.warehouse_path)
    assert len(again) == len(alerts)
    dup = again[again["status"] == "firing"].groupby(["service", "metric", "kind"]).size()
    assert (dup == 1).all()


def test_an_outage_after_a_burst_raises_a_signal_loss_alert() -> None:
    rng = np.random.default_rng(12)
    n = 1000
    ds = pd.Series(pd.date_range(T0, periods=n, freq="5min"))
    rate = 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0, 1, n)
    rate[700:703] *= 4  # a surge: later falls look small next to it
    rate[760:766] = 0.2  # the service stops answering for 30 minutes
    frame = pd.DataFrame({"service": "auth", "ds": ds, "request_rate": rate})
    alerts, _ = detect_alerts(frame, multivariate=False)
    loss = [a for a in alerts if a.kind == "signal_loss"]
    assert len(loss) == 1
    assert loss[0].starts_at == ds[760].to_pydatetime()
    assert loss[0].status == "resolved" and loss[0].ends_at > ds[765].to_pydatetime()
    assert "signal lost: request_rate" in loss[0].reason


def test_precision_recall_on_synthetic_incidents(tmp_path: Path) -> None:
    from scaleahead.bench.anomaly import synthetic_alert_quality

    local = Settings(warehouse_dir=tmp_path / "warehouse")
    local.ensure_dirs()
    figures = synthetic_alert_quality(local, services=8, days=4, seed=11)
    assert figures["univariate_incidents"] > 0
    assert figures["univariate_recall"] >= 0.3
    assert figures["univariate_precision"] >= 0.3


def test_stage_detector_is_the_nab_detector_with_a_shorter_history() -> None:
    # The stage reuses the NAB-evaluated configuration; window lengths differ and signal loss
    # is added (off for NAB, whose CPU and disk series legitimately fall to zero).
    assert set(STAGE_DETECTOR.components) == {"residual", "level", "drop"}
    assert STAGE_DETECTOR.long_window <= 576
    assert detect_alerts(pd.DataFrame(columns=["service", "ds"]))[0] == []
    assert AlertPolicy().fire_above > 0
