"""The `scaleahead` command line: one command per pipeline stage, plus demo, serve, sql, bench.

Each stage command calls the same function as the Airflow task (``scaleahead.tasks``).
Exit codes: 0 on success; 1 with a one-line reason on failure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from scaleahead import logs

app = typer.Typer(
    help="scaleahead: predictive capacity from infrastructure telemetry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

T = TypeVar("T")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _run(step: Callable[[], T]) -> T:
    """Run a stage; turn any failure into a one-line reason and exit code 1."""
    try:
        return step()
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI boundary reports every failure
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(f"{type(exc).__name__}: {first_line}")
        raise  # unreachable; keeps type checkers quiet


def _print_report(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.callback()
def main(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = "WARNING",
) -> None:
    logs.configure(log_level)


@app.command()
def generate(
    services: Annotated[int, typer.Option(min=1, help="Number of services.")] = 50,
    days: Annotated[int, typer.Option(min=1, help="Days of 1-minute telemetry.")] = 14,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 42,
) -> None:
    """Write synthetic telemetry into the landing folder (adds files, never overwrites)."""
    from scaleahead.reports import to_jsonable
    from scaleahead.synth.telemetry import generate as run_generate

    result = _run(lambda: run_generate(services=services, days=days, seed=seed))
    _print_report(to_jsonable(result))


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def ingest(
    as_of: Annotated[
        str | None, typer.Option(help="Reference time (ISO, UTC) for the future-timestamp rule.")
    ] = None,
) -> None:
    """Load new landing files into raw.telemetry, accounting for every row."""
    from scaleahead import tasks

    reference = _parse_time(as_of) or datetime.now(UTC)
    _print_report(_run(lambda: tasks.ingest(as_of=reference)))


@app.command()
def transform() -> None:
    """Run `dbt build` (staging -> intermediate -> marts, with data tests)."""
    from scaleahead import tasks

    _print_report(_run(tasks.transform))


@app.command()
def check(
    run_id: Annotated[str | None, typer.Option(help="Run id recorded with the results.")] = None,
) -> None:
    """Run the Great Expectations quality gate on raw telemetry and the demand mart."""
    from scaleahead import tasks

    _print_report(_run(lambda: tasks.check(run_id=run_id)))


@app.command()
def train() -> None:
    """Train, backtest, log to MLflow, register, and apply the promotion gate."""
    from scaleahead import tasks

    _print_report(_run(tasks.train))


@app.command()
def publish() -> None:
    """Forecast the next horizon with the champion model and write it to serving.forecasts."""
    from scaleahead import tasks

    _print_report(_run(tasks.publish))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="REST port (default from settings).")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(help="KEDA external scaler gRPC port (default 50051; -1 disables)."),
    ] = None,
) -> None:
    """Serve the API (REST + KEDA external scaler over gRPC) until Ctrl-C; addresses printed."""
    from scaleahead.api.app import serve as run_serve

    _run(lambda: run_serve(host=host, port=port, grpc_port=grpc_port))


@app.command()
def up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every service.")] = 600.0,
    only: Annotated[
        list[str] | None, typer.Option(help="Start only this component (repeatable), e.g. mlflow.")
    ] = None,
) -> None:
    """Production mode: start Airflow, MLflow, the API, Prometheus, Alertmanager (PostgreSQL)."""
    from scaleahead.config import get_settings
    from scaleahead.platform import up as platform_up

    settings = get_settings()
    report = _run(lambda: platform_up(settings, timeout_s=timeout, only=only or None))
    width = max(len(name) for name in report.urls)
    for name, url in report.urls.items():
        typer.echo(f"{name:<{width}}  {url}")
    if not report.api_ready:
        typer.echo("api: live; ready once the first forecast batch is published", err=True)
    typer.echo(f"logs and pids: {settings.platform_dir}  (stop: scaleahead down)", err=True)


@app.command()
def down() -> None:
    """Stop every production-mode process (SIGTERM, then SIGKILL); idempotent."""
    from scaleahead.platform import down as platform_down

    _print_report(_run(platform_down))


apikey_app = typer.Typer(help="API keys (hashed at rest; the key is printed once).")
app.add_typer(apikey_app, name="apikey")


class KeyScope(StrEnum):
    read = "read"
    admin = "admin"


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Consumer name, e.g. keda-prod.")],
    scope: Annotated[KeyScope, typer.Option(help="read or admin.")] = KeyScope.read,
) -> None:
    """Create a key and print it once (store it in your secret manager)."""
    from scaleahead.api.keys import KeyStore
    from scaleahead.config import get_settings

    store = KeyStore(get_settings().api_keys_path)
    record, key = _run(lambda: store.create(name, scope.value))
    typer.echo(key)
    typer.echo(
        f"created key {record.id} ({record.name}, scope {record.scope}); it is not shown again",
        err=True,
    )


@apikey_app.command("list")
def apikey_list() -> None:
    """List keys (id, name, scope, created, revoked); never the key itself."""
    from scaleahead.api.keys import KeyStore
    from scaleahead.config import get_settings

    keys = _run(lambda: KeyStore(get_settings().api_keys_path).list())
    _print_report({"keys": [k.public() for k in keys]})


@apikey_app.command("revoke")
def apikey_revoke(
    key: Annotated[str, typer.Argument(help="Key id, or a name (revokes all its keys).")],
) -> None:
    """Revoke keys; running servers stop accepting them within about a second."""
    from scaleahead.api.keys import KeyStore
    from scaleahead.config import get_settings

    revoked = _run(lambda: KeyStore(get_settings().api_keys_path).revoke(key))
    _print_report({"revoked": [k.public() for k in revoked]})


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run on a read-only warehouse session.")],
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    limit: Annotated[int, typer.Option(help="Rows to print in table format.")] = 50,
) -> None:
    """Query the warehouse read-only (writes are refused) and print the result."""
    from scaleahead.warehouse import read_sql

    frame = _run(lambda: read_sql(query))
    _print_frame(frame, format, limit)


def _print_frame(frame: Any, format: OutputFormat, limit: int) -> None:
    if format is OutputFormat.csv:
        frame.to_csv(sys.stdout, index=False)
    elif format is OutputFormat.json:
        typer.echo(frame.to_json(orient="records", date_format="iso"))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.head(limit).itertuples(index=False):
            table.add_row(*["" if v is None else str(v) for v in row])
        console = Console()
        console.print(table)
        if len(frame) > limit:
            console.print(f"({len(frame)} rows, {limit} shown; use --format csv for all)")


modes_app = typer.Typer(
    help="Scaling modes (shadow | predictive | reactive) and the guard that sets them."
)
app.add_typer(modes_app, name="modes")


@modes_app.callback(invoke_without_command=True)
def modes(
    ctx: typer.Context,
    history: Annotated[
        str | None, typer.Option("--history", help="Every guard decision of this service.")
    ] = None,
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
    limit: Annotated[int, typer.Option(help="Rows to print in table format.")] = 200,
) -> None:
    """Each service's scaling mode as served (pins applied), the reason and the guard's
    evidence; `modes guard` runs the guard now."""
    if ctx.invoked_subcommand is not None:
        return
    from scaleahead.config import get_settings
    from scaleahead.twin import modes_stage
    from scaleahead.warehouse import connect

    settings = get_settings()
    if history is not None:

        def read_history() -> Any:
            with connect(read_only=True, path=settings.warehouse_path) as con:
                return modes_stage.history(con, history)

        frame = _run(read_history)
        columns = [c for c in modes_stage.COLUMNS if c not in ("run_id", "service")]
        frame = frame[columns + ["run_id"]]
    else:
        frame = _run(lambda: modes_stage.served_modes(settings))
        if format is OutputFormat.table:  # the essentials; csv / json carry every column
            frame = frame[
                ["service", "mode", "reason", "ratio", "minutes_saved", "extra_replica_hours",
                 "incidents", "as_of"]
            ].round(2)  # fmt: skip
    if frame.empty and format is OutputFormat.table:
        typer.echo(
            "no guard decision recorded"
            + (f" for {history!r}" if history else "")
            + ": services are served in shadow unless pinned "
            "(SCALEAHEAD_SCALING_MODES_PINNED); `scaleahead modes guard` decides now.",
            err=True,
        )
        return
    _print_frame(frame, format, limit)


@modes_app.command("guard")
def modes_guard(
    as_of: Annotated[
        str | None,
        typer.Option(help="End of the replayed history (ISO, UTC; default: the mart's end)."),
    ] = None,
) -> None:
    """Run the scaling guard now: replay each service's recent history, decide, store."""
    from scaleahead import tasks

    _print_report(_run(lambda: tasks.guard(as_of=_parse_time(as_of))))


@app.command()
def shell() -> None:
    """Interactive read-only SQL session on the warehouse (DuckLake; writes refused)."""
    from scaleahead.warehouse.shell import run_shell

    failures = _run(lambda: run_shell())
    if failures and not sys.stdin.isatty():
        raise typer.Exit(1)


@app.command()
def demo(
    services: Annotated[int, typer.Option(min=1)] = 50,
    days: Annotated[int, typer.Option(min=2)] = 14,
    seed: Annotated[int, typer.Option()] = 42,
    serve_api: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep the API in the foreground at the end.")
    ] = True,
    port: Annotated[int | None, typer.Option(help="API port (default from settings).")] = None,
) -> None:
    """The main job end to end: generate, run the Airflow DAGs, summarise, serve the API."""
    from scaleahead.demo import run_demo

    _run(lambda: run_demo(services=services, days=days, seed=seed, serve=serve_api, port=port))


@app.command()
def bench(
    area: Annotated[str, typer.Argument(help="Benchmark area, or `all`.")] = "all",
) -> None:
    """Run benchmarks; each area writes benchmarks/results/<area>.json."""
    from scaleahead.bench import run_benchmarks

    for name, figures in _run(lambda: run_benchmarks(area)).items():
        typer.echo(f"{name}: {json.dumps(figures, default=str)}")


@app.command()
def detect(
    input_dir: Annotated[Path, typer.Argument(help="Folder searched for *.csv (timestamp,value).")],
    output_dir: Annotated[Path, typer.Argument(help="Output folder (same relative paths).")],
) -> None:
    """Score every CSV with the causal anomaly detector: timestamp,value,anomaly_score."""
    from scaleahead.anomaly.benchmark import detect_dir

    _print_report(_run(lambda: detect_dir(input_dir, output_dir)))


benchmark_app = typer.Typer(help="Benchmarks against public reference data.", no_args_is_help=True)
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.command("nab")
def benchmark_nab(
    data: Annotated[
        Path | None, typer.Option(help="NAB folder (default: <shared_data_dir>/nab).")
    ] = None,
) -> None:
    """Detect on the NAB subset, score the three profiles, write benchmarks/results/nab.json."""
    from scaleahead.anomaly.benchmark import run_nab, table
    from scaleahead.bench.runner import scratch_root, write_result
    from scaleahead.config import get_settings

    settings = get_settings()
    folder = data or settings.shared_data_dir / "nab"
    figures = _run(lambda: run_nab(folder, Path(scratch_root(settings)) / "nab"))
    write_result("nab", figures, settings)
    typer.echo(table(figures))
    typer.echo(f"results: {settings.benchmarks_dir / 'nab.json'}")


@benchmark_app.command("m4-hourly")
def benchmark_m4_hourly(
    data: Annotated[
        Path | None, typer.Option(help="M4 folder (default: <shared_data_dir>/m4).")
    ] = None,
    validation: Annotated[
        bool,
        typer.Option(
            "--validation",
            help="Score on windows held out inside Hourly-train (never reads the test file).",
        ),
    ] = False,
) -> None:
    """Train on M4 Hourly-train, forecast 48 h, score sMAPE/MASE/OWA vs Hourly-test and the
    published entries; write benchmarks/results/m4_hourly.json."""
    from scaleahead.bench.runner import write_result
    from scaleahead.config import get_settings
    from scaleahead.forecasting import m4
    from scaleahead.forecasting.config import load_config, profile_path

    settings = get_settings()
    folder = data or settings.shared_data_dir / "m4"
    config = _run(lambda: load_config(profile_path("hourly", settings)))
    figures = _run(lambda: m4.run(folder, config, validation=validation))
    area = "m4_hourly_validation" if validation else "m4_hourly"
    write_result(area, figures, settings)
    typer.echo(m4.table(figures))
    typer.echo(f"results: {settings.benchmarks_dir / f'{area}.json'}")


@app.command()
def forecast(
    input: Annotated[Path, typer.Option("--input", help="CSV or Parquet: unique_id, ds, y.")],
    horizon: Annotated[int, typer.Option("--horizon", help="Steps to forecast per series.")],
    freq: Annotated[str, typer.Option("--freq", help="Step: 5m, 1h, 1d, or 5min, h, D.")],
    output: Annotated[Path, typer.Option("--output", help="CSV or Parquet to write.")],
    season: Annotated[
        int | None, typer.Option("--season", help="Season length in steps (default from freq).")
    ] = None,
) -> None:
    """Forecast any regular series: writes unique_id, ds, yhat, yhat_p50, yhat_p90, yhat_p95
    for the H steps after each series' last timestamp."""
    from scaleahead.forecasting.offline import forecast_file

    report = _run(lambda: forecast_file(input, horizon, freq, output, season))
    _print_report(report.as_dict())


@app.command()
def simulate(
    trace: Annotated[
        Path, typer.Option("--trace", help="CSV/Parquet unique_id, ds, y or NAB timestamp, value.")
    ],
    output: Annotated[Path, typer.Option("--output", help="Directory for the summary and report.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML/JSON twin settings (see docs).")
    ] = None,
) -> None:
    """Capacity twin: replay a demand trace against reactive, predictive and reference policies."""
    from scaleahead.twin.runner import simulate_file

    summary = _run(lambda: simulate_file(trace, output, config))
    typer.echo(f"summary: {output / 'summary.json'}  report: {output / 'report.html'}")
    _print_report({p: summary[p]["underprovisioned_minutes"] for p in summary if p != "details"})


if __name__ == "__main__":
    app()
