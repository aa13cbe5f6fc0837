"""The CLI: every command has --help, failures exit non-zero with a one-line reason."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from scaleahead.cli import app

COMMANDS = [
    "generate",
    "ingest",
    "transform",
    "check",
    "train",
    "publish",
    "serve",
    "demo",
    "sql",
    "bench",
]
runner = CliRunner()


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_sql_without_warehouse_fails_cleanly(settings) -> None:
    result = runner.invoke(app, ["sql", "SELECT 1"])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_sql_is_read_only(settings) -> None:
    from scaleahead.warehouse import connect

    with connect():
        pass
    ok = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM raw.telemetry", "--format", "csv"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines() == ["n", "0"]
    refused = runner.invoke(app, ["sql", "DELETE FROM raw.telemetry"])
    assert refused.exit_code == 1
    assert "read-only" in refused.output.lower()


def test_unknown_bench_area(settings) -> None:
    result = runner.invoke(app, ["bench", "nope"])
    assert result.exit_code == 1
    assert "unknown benchmark area" in result.output
