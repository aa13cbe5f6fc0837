"""`scaleahead demo`: the main job end to end on embedded defaults.

generate telemetry -> real Airflow DAG runs (`airflow dags test`: ingest, dbt + quality gate,
training with MLflow registry, publishing) -> a summary read from the stage reports -> the
forecast API in the foreground.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from scaleahead import airflow_runner, reports
from scaleahead.config import Settings, get_settings

console = Console(stderr=False)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, preferred: int) -> int:
    if _port_free(host, preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def run_pipeline(
    services: int,
    days: int,
    seed: int,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate data and run the four DAGs through Airflow; returns timings per stage."""
    from scaleahead.synth.telemetry import DEFAULT_START
    from scaleahead.synth.telemetry import generate as run_generate

    settings = settings or get_settings()
    settings.ensure_dirs()
    timings: dict[str, float] = {}

    def step(label: str):
        return progress.add_task(label, total=1) if progress else None

    def done(task_id, started: float, key: str) -> None:
        timings[key] = round(time.perf_counter() - started, 1)
        if progress is not None and task_id is not None:
            progress.update(task_id, completed=1, description=f"{key} ({timings[key]} s)")

    started = time.perf_counter()
    task_id = step(f"generate {services} services x {days} days")
    generated = run_generate(services=services, days=days, seed=seed, settings=settings)
    reports.save("generate", generated, settings)
    done(task_id, started, "generate")

    # The runs are anchored at the end of the generated data, not at the wall clock, so the
    # demo is reproducible: that end is the data interval the DAGs see.
    logical_date = (DEFAULT_START + timedelta(days=days)).astimezone(UTC)

    started = time.perf_counter()
    task_id = step("airflow db migrate")
    airflow_runner.migrate(settings)
    done(task_id, started, "airflow_migrate")

    for dag_id in airflow_runner.PIPELINE_DAGS:
        started = time.perf_counter()
        task_id = step(f"airflow dags test {dag_id}")
        airflow_runner.dag_test(dag_id, logical_date, settings)
        done(task_id, started, dag_id)
    return timings


def _summary_table(settings: Settings, timings: dict[str, float]) -> Table:
    ingest = reports.load("ingest", settings) or {}
    transform = reports.load("transform", settings) or {}
    check = reports.load("check", settings) or {}
    train = reports.load("train", settings) or {}
    publish = reports.load("publish", settings) or {}
    metrics = train.get("metrics", {})

    table = Table(title="scaleahead demo summary", show_header=True)
    table.add_column("stage")
    table.add_column("result")
    table.add_row(
        "ingest",
        f"{ingest.get('rows_read', 0):,} rows read: {ingest.get('rows_loaded', 0):,} loaded, "
        f"{ingest.get('rows_quarantined', 0):,} quarantined, "
        f"{ingest.get('rows_duplicate', 0):,} duplicates dropped "
        f"({ingest.get('files_loaded', 0)} files, {ingest.get('files_quarantined', 0)} "
        "files quarantined)",
    )
    table.add_row(
        "dbt build",
        f"{transform.get('models_ok', 0)} models built, {transform.get('tests_passed', 0)} tests "
        f"passed, {transform.get('tests_warned', 0)} warned, "
        f"{transform.get('tests_failed', 0)} failed",
    )
    table.add_row(
        "quality gate",
        f"{check.get('checks_passed', 0)}/{check.get('checks_evaluated', 0)} checks passed; "
        f"blocking: {check.get('blocking', False)}",
    )

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, int | float) else "n/a"

    table.add_row(
        "model",
        f"{train.get('model_name', '?')} v{train.get('version', '?')} "
        f"(alias {train.get('alias', '?')}); backtest MASE {fmt(metrics.get('mase'))} vs "
        f"seasonal naive {fmt(metrics.get('snaive_mase'))}, sMAPE {fmt(metrics.get('smape'))} "
        f"vs {fmt(metrics.get('snaive_smape'))}, p90 coverage {fmt(metrics.get('coverage_p90'))}",
    )
    table.add_row(
        "forecasts",
        f"{publish.get('rows', 0):,} published ({publish.get('services', 0)} services x "
        f"{publish.get('horizon', 0)} steps, p50/p90/p95) by model v"
        f"{publish.get('model_version', '?')}",
    )
    alerts = reports.load("alerts", settings) or {}
    table.add_row(
        "anomalies",
        f"{alerts.get('rows_scored', 0):,} points scored over {alerts.get('series', 0)} series: "
        f"{alerts.get('firing', 0)} alerts firing on {alerts.get('firing_services', 0)} "
        f"services, {alerts.get('resolved', 0)} resolved",
    )
    guard = reports.load("guard", settings) or {}
    modes = guard.get("modes", {})
    table.add_row(
        "scaling modes",
        ", ".join(f"{modes.get(m, 0)} {m}" for m in ("predictive", "shadow", "reactive"))
        + f" (the guard's replay of the last {guard.get('rule', {}).get('window_days', '?')} days)",
    )
    table.add_row("time", ", ".join(f"{k} {v} s" for k, v in timings.items()))
    return table


def run_demo(
    services: int = 50,
    days: int = 14,
    seed: int = 42,
    serve: bool = True,
    port: int | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    settings = settings or get_settings()
    if "scaling_clock" not in settings.model_fields_set:
        # The generated data ends in the past; scaling decisions are made as of its end so the
        # served recommendations are predictive rather than a stale-forecast fallback.
        settings = settings.model_copy(update={"scaling_clock": "data"})
    started = time.perf_counter()
    console.print(
        f"[bold]scaleahead demo[/bold]: {services} services x {days} days, seed {seed}; "
        f"warehouse {settings.warehouse_dir}"
    )
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        timings = run_pipeline(services, days, seed, settings, progress)
    total = round(time.perf_counter() - started, 1)
    timings["total"] = total
    console.print(_summary_table(settings, timings))

    host = settings.api_host
    chosen = pick_port(host, port or settings.api_port)
    publish = reports.load("publish", settings) or {}
    first_service = _first_service(settings)
    url = f"http://{host}:{chosen}"
    console.print(f"API: {url}  (OpenAPI: {url}/openapi.json)")
    console.print(f"Try:  curl -s {url}/v1/services/{first_service}/forecast")
    console.print(f"      curl -s {url}/v1/services/{first_service}/recommendation")
    console.print(f"      curl -s {url}/metrics | grep scaleahead_forecast")
    result = {"timings": timings, "url": url, "publish": publish, "service": first_service}
    reports.save("demo", result, settings)
    if serve:
        from scaleahead.api.app import serve as run_serve

        console.print("Serving until Ctrl-C ...")
        run_serve(settings=settings, host=host, port=chosen)
    return result


def _first_service(settings: Settings) -> str:
    from scaleahead.warehouse import read_sql

    frame = read_sql(
        "SELECT min(service) AS s FROM serving.forecasts", path=settings.warehouse_path
    )
    return str(frame["s"].iloc[0])
