"""A real Prometheus (Debian package) scrapes a real `serve` process; PromQL finds the forecast."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scaleahead.config import Settings
from test_api_scaling import write_forecasts, write_marts

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(),
    reason="Debian package prometheus missing: run scripts/install-system-deps.sh",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_prometheus_scrapes_forecast_gauge(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, warehouse_dir=tmp_path / "wh")
    write_forecasts(settings.warehouse_path)
    write_marts(settings.warehouse_path)
    api_port, prom_port = free_port(), free_port()
    env = {
        **os.environ,
        "SCALEAHEAD_HOME": str(tmp_path),
        "SCALEAHEAD_WAREHOUSE_DIR": str(tmp_path / "wh"),
        "SCALEAHEAD_SCALING_CLOCK": "data",
        "SCALEAHEAD_SCALING_MODES_PINNED": '{"*": "predictive"}',
    }
    api = subprocess.Popen(
        [sys.executable, "-c", "from scaleahead.api.app import serve; "
         f"serve(host='127.0.0.1', port={api_port}, grpc_port=-1)"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: scaleahead\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n"
    )
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{prom_port}"
        query = 'scaleahead_forecast{service="checkout",quantile="p90"}'

        def result():
            body = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=2).json()
            return body["data"]["result"]

        series = wait_for(result, 60, "Prometheus to scrape the forecast gauge")
        assert float(series[0]["value"][1]) == 180.0
        assert series[0]["metric"]["job"] == "scaleahead"
        replicas = httpx.get(
            f"{base}/api/v1/query",
            params={"query": 'scaleahead_recommended_replicas{service="checkout"}'},
            timeout=2,
        ).json()["data"]["result"]
        assert float(replicas[0]["value"][1]) == 18.0
    finally:
        for proc in (prom, api):
            proc.terminate()
            proc.wait(timeout=15)
