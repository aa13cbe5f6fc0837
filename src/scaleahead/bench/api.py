"""API benchmark: 1,000 services published; REST recommendation GETs under wrk load and gRPC
``GetMetrics`` latency/throughput, each beside a bare baseline measured in the same run.

- REST: ``scaleahead serve`` in its own process (auth on, one read key, rate limit raised so it
  does not throttle the load), ``wrk -t1 -c32`` from another process on loopback, each request
  for a random one of the 1,000 services. Baseline: a bare FastAPI endpoint returning
  precomputed bytes under the same uvicorn settings (one worker, no access log).
- gRPC: ``GetMetrics`` with one call in flight (p50/p99) and with 32 in flight (calls/s) from
  this process; baseline: a bare grpcio unary call returning precomputed bytes, one in flight.
- ``rss_mb``: resident memory of the API process after the load.
Environment: ``SCALEAHEAD_BENCH_API_SERVICES`` (1000), ``SCALEAHEAD_BENCH_API_SECONDS`` (10).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent import futures
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from scaleahead.bench.runner import scratch_root as _scratch_root
from scaleahead.config import Settings

LAST_ACTUAL = datetime(2026, 11, 16, 11, 55)

_BARE_REST = textwrap.dedent(
    """
    import sys, uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response
    app = FastAPI()
    BODY = b'{"replicas": 18, "forecast": {"p90": 180.0}}' * 20
    @app.get("/v1/services/{service}/recommendation")
    def bare(service: str) -> Response:
        return Response(BODY, media_type="application/json")
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
    """
)

_BARE_GRPC = textwrap.dedent(
    """
    import sys, time, grpc
    from concurrent import futures
    BODY = b"x" * 40
    def handle(request, context):
        return BODY
    handler = grpc.method_handlers_generic_handler(
        "bare.Bare", {"Call": grpc.unary_unary_rpc_method_handler(handle)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _build_warehouse(settings: Settings, services: int) -> list[str]:
    from scaleahead.warehouse import connect

    names = [f"svc-{i:04d}" for i in range(services)]
    data_end = LAST_ACTUAL + timedelta(minutes=5)
    with connect(path=settings.warehouse_path) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(
            f"""
            INSERT INTO serving.forecasts
            SELECT 'bench', 'svc-' || lpad(CAST(s AS VARCHAR), 4, '0'), 'request_rate',
                   TIMESTAMP '{data_end}' + to_minutes(CAST(5 * (step - 1) AS BIGINT)), step,
                   100 + step, 120 + step, 130 + step,
                   'scaleahead-demand-request_rate', '1', TIMESTAMP '{data_end}'
            FROM range({services}) a(s), range(1, 13) b(step)
            """
        )
        con.execute(
            f"""
            CREATE TABLE marts.service_demand_5m AS
            SELECT 'svc-' || lpad(CAST(s AS VARCHAR), 4, '0') AS service,
                   TIMESTAMP '{LAST_ACTUAL}' - to_minutes(CAST(5 * i AS BIGINT)) AS ds,
                   90.0 + i AS request_rate, 1.0 AS cpu_cores, 50.0 AS latency_ms,
                   5 AS samples, false AS is_gap, 90.0 + i AS demand
            FROM range({services}) a(s), range(288) b(i)
            """
        )
        con.execute(
            f"""
            CREATE TABLE marts.services AS
            SELECT 'svc-' || lpad(CAST(s AS VARCHAR), 4, '0') AS service, 'standard' AS tier,
                   10.0 AS capacity_per_replica, 0.8 AS target_utilization,
                   2 AS min_replicas, 50 AS max_replicas, 'catalog' AS capacity_source
            FROM range({services}) a(s)
            """
        )
    return names


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server never became ready at {url}")
        time.sleep(0.2)


def _wrk(base: str, names: list[str], seconds: int, key: str | None, scratch: Path) -> dict:
    script = scratch / "random.lua"
    paths = ",".join(f'"/v1/services/{n}/recommendation"' for n in names)
    header = f'wrk.headers["X-API-Key"] = "{key}"\n' if key else ""
    script.write_text(
        f"{header}local paths = {{{paths}}}\n"
        "math.randomseed(7)\n"
        "request = function()\n"
        "  return wrk.format('GET', paths[math.random(#paths)])\n"
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return _parse_wrk(out)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _parse_wrk(out: str) -> dict:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            raise RuntimeError(f"cannot parse wrk output:\n{out}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def _one_in_flight(call, n: int) -> tuple[float, float]:
    for _ in range(min(200, n)):  # warm-up
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples), _percentile(samples, 99)


def _in_flight(make_call, concurrency: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * concurrency

    def worker(i: int) -> None:
        call = make_call()
        while time.monotonic() < stop:
            call()
            counts[i] += 1

    with futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return sum(counts) / seconds


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(settings: Settings) -> dict[str, float | int | str]:
    import grpc

    from scaleahead.api.externalscaler import externalscaler_pb2 as pb
    from scaleahead.api.externalscaler import externalscaler_pb2_grpc as pb_grpc
    from scaleahead.api.keys import KeyStore

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: run scripts/install-system-deps.sh (Debian wrk)")
    services = int(os.environ.get("SCALEAHEAD_BENCH_API_SERVICES", "1000"))
    seconds = int(os.environ.get("SCALEAHEAD_BENCH_API_SECONDS", "10"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-api-", dir=_scratch_root(settings)))
    procs: list[subprocess.Popen] = []
    try:
        local = Settings(home=settings.home, warehouse_dir=scratch / "warehouse")
        names = _build_warehouse(local, services)
        _, key = KeyStore(local.api_keys_path).create("bench", "read")
        port, grpc_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "SCALEAHEAD_WAREHOUSE_DIR": str(local.warehouse_dir),
            "SCALEAHEAD_SCALING_CLOCK": "data",
            "SCALEAHEAD_API_RATE_LIMIT_RPS": "1000000",
            "SCALEAHEAD_API_RATE_LIMIT_BURST": "1000000",
        }
        api = subprocess.Popen(
            [sys.executable, "-m", "scaleahead.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--grpc-port", str(grpc_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(api)
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/readyz", api)
        check = httpx.get(
            f"{base}/v1/services/{names[0]}/recommendation", headers={"X-API-Key": key}
        )
        check.raise_for_status()
        if check.json()["mode"] != "predictive":
            raise RuntimeError(f"benchmark data not predictive: {check.json()}")
        rss_before = _rss_mb(api.pid)
        rest = _wrk(base, names, seconds, key, scratch)
        if rest["non_2xx"]:
            raise RuntimeError(f"{rest['non_2xx']} non-2xx responses under load")

        bare_port = _free_port()
        bare = subprocess.Popen(
            [sys.executable, "-c", _BARE_REST, str(bare_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(bare)
        bare_base = f"http://127.0.0.1:{bare_port}"
        _wait_http(f"{bare_base}/v1/services/x/recommendation", bare)
        bare_rest = _wrk(bare_base, names, seconds, None, scratch)
        _stop(bare)

        # gRPC against the API's external scaler.
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = pb_grpc.ExternalScalerStub(channel)
        rng = random.Random(7)

        def request():
            meta = {"service": rng.choice(names), "apiKey": key}
            return pb.GetMetricsRequest(
                scaledObjectRef=pb.ScaledObjectRef(name="x", namespace="y", scalerMetadata=meta)
            )

        first = stub.GetMetrics(request()).metricValues[0]
        if first.metricValue < 1:
            raise RuntimeError("GetMetrics returned no replicas")
        grpc_p50, grpc_p99 = _one_in_flight(lambda: stub.GetMetrics(request()), 3000)
        lock = threading.Lock()

        def make_call():
            def call():
                with lock:
                    req = request()
                stub.GetMetrics(req)

            return call

        grpc_32 = _in_flight(make_call, 32, min(seconds, 5))
        channel.close()
        rss_after = _rss_mb(api.pid)

        bare_grpc_port = _free_port()
        bare_g = subprocess.Popen(
            [sys.executable, "-c", _BARE_GRPC, str(bare_grpc_port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        procs.append(bare_g)
        assert bare_g.stdout is not None and bare_g.stdout.readline().strip() == "ready"
        bare_channel = grpc.insecure_channel(f"127.0.0.1:{bare_grpc_port}")
        bare_call = bare_channel.unary_unary("/bare.Bare/Call")
        bare_p50, bare_p99 = _one_in_flight(lambda: bare_call(b"ping"), 3000)
        bare_channel.close()

        return {
            "services": services,
            "load_seconds": seconds,
            "load_generator": "wrk -t1 -c32 (random service per request, X-API-Key)",
            "rest_rps": round(rest["rps"]),
            "rest_p50_ms": round(rest["p50_ms"], 3),
            "rest_p99_ms": round(rest["p99_ms"], 3),
            "rest_bare_rps": round(bare_rest["rps"]),
            "rest_bare_p50_ms": round(bare_rest["p50_ms"], 3),
            "rest_bare_p99_ms": round(bare_rest["p99_ms"], 3),
            "rest_ratio_to_bare": round(rest["rps"] / bare_rest["rps"], 3),
            "grpc_p50_ms": round(grpc_p50, 3),
            "grpc_p99_ms": round(grpc_p99, 3),
            "grpc_calls_per_s_32": round(grpc_32),
            "grpc_bare_p50_ms": round(bare_p50, 3),
            "grpc_bare_p99_ms": round(bare_p99, 3),
            "rss_mb_before_load": round(rss_before, 1),
            "rss_mb": round(rss_after, 1),
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)
