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
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Serve the forecast API (REST, OpenAPI at /openapi.json) until Ctrl-C."""
    from scaleahead.api.app import serve as run_serve

    _run(lambda: run_serve(host=host, port=port))


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


if __name__ == "__main__":
    app()
