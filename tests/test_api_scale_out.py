"""Horizontal scale-out of the API: two real `scaleahead serve` processes on one shared
warehouse serve the same forecast batch, and both move to a newer batch once it is published.

The API keeps no state of its own beyond a cache of the latest published batch, so replicas
agree without talking to each other (the compose stack and deploy/ run two replicas).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from scaleahead.config import Settings
from scaleahead.warehouse import connect


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _publish(settings: Settings, batch_id: str, created_at: datetime, base: float) -> None:
    origin = created_at.replace(tzinfo=None)
    rows = [
        (
            batch_id,
            service,
            "request_rate",
            origin + timedelta(minutes=5 * step),
            step,
            base + step,
            base + step + 10,
            base + step + 20,
            "scaleahead-demand-request_rate",
            "1",
            created_at.replace(tzinfo=None),
        )
        for service in ("checkout", "search")
        for step in range(1, 13)
    ]
    # One transaction, as the publisher writes: a replica refreshing mid-write must not cache
    # half a batch.
    with connect(settings=settings) as con:
        con.execute("BEGIN TRANSACTION")
        con.executemany(
            "INSERT INTO serving.forecasts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        con.execute("COMMIT")


@pytest.fixture
def replicas(settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "SCALEAHEAD_API_REFRESH_INTERVAL_S": "0.5",
        "SCALEAHEAD_API_AUTH": "off",
    }
    # The warehouse exists before the API starts, as in a deployment where the pipeline ran
    # first. (A replica started on a not-yet-created lake does not see tables created later:
    # a separate finding, see the issue report.)
    with connect(settings=settings):
        pass
    procs, urls = [], []
    try:
        for i in range(2):
            port = _free_port()
            log = (tmp_path / f"api-{i}.log").open("w")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "scaleahead.cli", "serve", "--port", str(port)]
                    + ["--grpc-port", "-1"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for proc, url in zip(procs, urls, strict=True):
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, (tmp_path / "api-0.log").read_text()
                assert time.monotonic() < deadline, "API replica did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


def _batches(urls: list[str]) -> list[str | None]:
    out = []
    for url in urls:
        response = httpx.get(f"{url}/v1/forecasts/checkout", timeout=5)
        out.append(response.json()["batch_id"] if response.status_code == 200 else None)
    return out


def _wait_for(urls: list[str], batch_id: str) -> None:
    deadline = time.monotonic() + 30
    while _batches(urls) != [batch_id] * len(urls):
        assert time.monotonic() < deadline, [
            httpx.get(f"{url}/v1/forecasts/checkout", timeout=5).text[:300] for url in urls
        ]
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_two_api_processes_serve_the_same_batch(settings: Settings, replicas: list[str]) -> None:
    now = datetime.now(UTC)
    _publish(settings, "b1", now - timedelta(minutes=5), base=100.0)
    _wait_for(replicas, "b1")
    bodies = [httpx.get(f"{u}/v1/forecasts/checkout", timeout=5).json() for u in replicas]
    assert bodies[0]["points"] == bodies[1]["points"]
    for url in replicas:
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200

    _publish(settings, "b2", now, base=500.0)
    _wait_for(replicas, "b2")
    points = [httpx.get(f"{u}/v1/forecasts/checkout", timeout=5).json()["points"] for u in replicas]
    assert points[0] == points[1], [[(p["step"], p["ds"]) for p in ps] for ps in points]
    assert points[0][0]["p50"] == 501.0
