"""Prometheus source against a real Prometheus scraping a real node-exporter on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from scaleahead.config import Settings
from scaleahead.ingest.config import PrometheusConfig, PromQuery
from scaleahead.ingest.loader import run_ingest
from scaleahead.ingest.prometheus import PrometheusSource
from scaleahead.warehouse import connect

PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
pytestmark = pytest.mark.skipif(
    not (PROMETHEUS and NODE_EXPORTER),
    reason="needs Debian prometheus + prometheus-node-exporter (scripts/install-system-deps.sh)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("prom")
    node_port, prom_port = _free_port(), _free_port()
    config = root / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: node\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{node_port}']\n"
    )
    logs = (root / "node.log").open("w"), (root / "prometheus.log").open("w")
    procs = [
        subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{node_port}"],
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        ),  # fmt: skip
        subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        ),  # fmt: skip
    ]
    url = f"http://127.0.0.1:{prom_port}"
    try:

        def enough_samples() -> bool:
            body = httpx.get(
                f"{url}/api/v1/query",
                params={"query": "count_over_time(node_cpu_seconds_total{mode='user'}[1m])"},
            ).json()
            return int(body["data"]["result"][0]["value"][1]) >= 6

        _wait(enough_samples, 90, "node-exporter samples in Prometheus")
        yield url
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for fh in logs:
            fh.close()


def _source(url: str) -> PrometheusSource:
    return PrometheusSource(
        PrometheusConfig(
            name="local",
            url=url,
            step_s=1,
            overlap_s=5,
            initial_lookback_s=30,
            queries=[
                PromQuery(
                    name="cpu_user",
                    query='node_cpu_seconds_total{mode="user"}',
                    service="node",
                    metric="cpu_seconds_total",
                ),
                PromQuery(
                    name="cpu_busy",
                    query='sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5s]))',
                    service="node",
                    metric="cpu_cores",
                ),
            ],
        )  # fmt: skip
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_real_node_exporter_cpu_samples_land_and_rerun_adds_nothing(
    prometheus: str, tmp_path: Path
) -> None:
    s = Settings(home=tmp_path)
    as_of = _now()
    first = run_ingest(s, as_of=as_of, sources=[_source(prometheus)], load_catalog=False)
    assert first.source_errors == {}
    assert first.rows_loaded > 0 and first.rows_quarantined == 0
    with connect(read_only=True, path=s.warehouse_path) as con:
        per_metric = dict(
            con.execute(
                "SELECT metric, count(*) FROM raw.telemetry WHERE service = 'node' GROUP BY 1"
            ).fetchall()
        )
        labels = [
            json.loads(x)
            for (x,) in con.execute(
                "SELECT DISTINCT labels FROM raw.telemetry WHERE metric = 'cpu_seconds_total'"
            ).fetchall()
        ]
        counters = con.execute(
            "SELECT min(value), max(ts) FROM raw.telemetry WHERE metric = 'cpu_seconds_total'"
        ).fetchone()
        marks = dict(con.execute("SELECT stream, high_water FROM raw.source_watermarks").fetchall())
    assert per_metric["cpu_seconds_total"] >= 6 and per_metric["cpu_cores"] >= 1
    # Real node-exporter series: one per CPU, labelled by the exporter.
    assert labels and all(lb["mode"] == "user" and "cpu" in lb and lb["job"] == "node"
                          for lb in labels)  # fmt: skip
    assert counters[0] > 0  # CPU seconds since boot
    assert marks["local/cpu_user"] == counters[1]

    # Same interval again: the overlap re-reads samples that are all duplicates.
    again = run_ingest(s, as_of=as_of, sources=[_source(prometheus)], load_catalog=False)
    assert again.rows_loaded == 0 and again.rows_duplicate > 0

    # Later interval: only new samples load; no key is ever stored twice.
    _wait(lambda: _now() >= as_of + timedelta(seconds=3), 10, "time to pass")
    later = run_ingest(s, as_of=_now(), sources=[_source(prometheus)], load_catalog=False)
    assert later.rows_loaded > 0 and later.rows_duplicate > 0
    with connect(read_only=True, path=s.warehouse_path) as con:
        (repeats,) = con.execute(
            "SELECT count(*) - count(DISTINCT (service, metric, ts, labels)) FROM raw.telemetry"
        ).fetchone()
        balanced = con.execute(
            "SELECT bool_and(rows_read = rows_loaded + rows_quarantined + rows_duplicate) "
            "FROM raw.ingest_batches WHERE source = 'prometheus'"
        ).fetchone()[0]
    assert repeats == 0 and balanced


def test_unreachable_prometheus_is_reported_not_raised(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    source = _source(f"http://127.0.0.1:{_free_port()}")
    report = run_ingest(s, as_of=_now(), sources=[source], load_catalog=False)
    assert "prometheus" in report.source_errors and report.rows_read == 0
