"""Run the dbt project (``dbt/``) in-process and summarise the result.

dbt is invoked through ``dbtRunner`` rather than a subprocess so that Airflow tasks and tests
share one interpreter and get structured results. Everything dbt writes (compiled SQL,
manifest, logs) goes under ``settings.warehouse_dir / "dbt"`` so the repository stays clean.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scaleahead.config import Settings, get_settings
from scaleahead.warehouse import connect

WAREHOUSE_ENV = "SCALEAHEAD_WAREHOUSE_PATH"

_OK_STATUSES = {"success", "pass"}
_FAILED_STATUSES = {"error", "fail", "runtime error", "skipped"}


class TransformError(RuntimeError):
    """The dbt build did not succeed; ``report`` holds the details when dbt got to run."""

    def __init__(self, message: str, report: DbtReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class DbtReport:
    success: bool
    models_ok: int = 0
    models_error: int = 0
    models_skipped: int = 0
    tests_passed: int = 0
    tests_warned: int = 0
    tests_failed: int = 0
    seeds_ok: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dbt_paths(settings: Settings) -> dict[str, Path]:
    """Where the project lives and where dbt may write."""
    out_dir = settings.warehouse_dir / "dbt"
    return {
        "project_dir": settings.dbt_project_dir,
        "profiles_dir": settings.dbt_project_dir,
        "target_path": out_dir / "target",
        "log_path": out_dir / "logs",
    }


def build_args(
    settings: Settings, dbt_vars: dict | None = None, select: str | None = None
) -> list[str]:
    """The ``dbt build`` command line for this settings object."""
    return command_args(settings, ["build"], dbt_vars=dbt_vars, select=select)


def command_args(
    settings: Settings,
    command: list[str],
    dbt_vars: dict | None = None,
    select: str | None = None,
) -> list[str]:
    """A dbt command line (``command``, e.g. ``["source", "freshness"]``) for these settings."""
    paths = dbt_paths(settings)
    args = [
        *command,
        "--project-dir",
        str(paths["project_dir"]),
        "--profiles-dir",
        str(paths["profiles_dir"]),
        "--target-path",
        str(paths["target_path"]),
        "--log-path",
        str(paths["log_path"]),
        # The usage-stats cookie would otherwise be written next to profiles.yml (the repo)
        # and tracking calls only add latency offline.
        "--no-send-anonymous-usage-stats",
        "--no-use-colors",
    ]
    if dbt_vars:
        # JSON is valid YAML; str() keeps datetimes readable for var() consumers.
        args += ["--vars", json.dumps(dbt_vars, default=str, sort_keys=True)]
    if select:
        args += ["--select", select]
    return args


@contextmanager
def _warehouse_env(settings: Settings) -> Iterator[None]:
    """Point profiles.yml at the settings' DuckLake for the duration of one build."""
    from scaleahead.warehouse.lake import dbt_env, lake_for

    values = {WAREHOUSE_ENV: str(settings.warehouse_path), **dbt_env(lake_for(settings))}
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _release_duckdb() -> None:
    """Close dbt-duckdb's process-wide DuckDB handle.

    dbt-duckdb keeps its environment on a class attribute across invocations; left open, it
    would block other processes from writing and make later read-only connections from this
    process fail with a configuration mismatch.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - adapter not installed
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
        DuckDBConnectionManager._ENV = None


def plan_vars(con: Any, dbt_vars: dict | None) -> dict | None:
    """dbt vars with ``start``/``end`` set to the increment to build (none on a first build)."""
    from scaleahead.warehouse.increments import parse_ts, plan_window, window_vars

    dbt_vars = dict(dbt_vars or {})
    requested = None
    if dbt_vars.get("start") is not None and dbt_vars.get("end") is not None:
        requested = (parse_ts(dbt_vars["start"]), parse_ts(dbt_vars["end"]))
    dbt_vars.pop("start", None)
    dbt_vars.pop("end", None)
    dbt_vars.update(window_vars(plan_window(con, requested)))
    return dbt_vars or None


def _status(result: Any) -> str:
    status = getattr(result, "status", "")
    return str(getattr(status, "value", status)).lower()


def _resource_type(result: Any) -> str:
    node = getattr(result, "node", None)
    kind = getattr(node, "resource_type", "")
    return str(getattr(kind, "value", kind)).lower()


def _entry(result: Any) -> dict[str, str]:
    node = getattr(result, "node", None)
    message = getattr(result, "message", None) or _status(result)
    return {
        "node": getattr(node, "unique_id", "?"),
        "status": _status(result),
        "message": " ".join(str(message).split()),
    }


def summarise(results: list[Any], elapsed_s: float, success: bool) -> DbtReport:
    """Count node results by kind and outcome."""
    report = DbtReport(success=success, elapsed_s=round(elapsed_s, 3))
    for result in results:
        kind, status = _resource_type(result), _status(result)
        if kind == "model":
            if status in _OK_STATUSES:
                report.models_ok += 1
            elif status == "skipped":
                report.models_skipped += 1
            else:
                report.models_error += 1
        elif kind == "test":
            if status == "pass":
                report.tests_passed += 1
            elif status == "warn":
                report.tests_warned += 1
            else:
                report.tests_failed += 1
        elif kind == "seed" and status in _OK_STATUSES:
            report.seeds_ok += 1
        if status in _FAILED_STATUSES:
            report.failures.append(_entry(result))
        elif status == "warn":
            report.warnings.append(_entry(result))
    return report


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def _failure_reason(report: DbtReport) -> str:
    first = report.failures[0] if report.failures else None
    detail = f"; first: {first['node']}: {first['message']}" if first else ""
    return (
        f"dbt build failed: {report.models_error} model(s) errored, "
        f"{report.tests_failed} test(s) failed{detail}"
    )[:500]


def build(
    settings: Settings | None = None,
    dbt_vars: dict | None = None,
    select: str | None = None,
) -> DbtReport:
    """Run ``dbt build`` against the warehouse; raise ``TransformError`` unless it succeeds."""
    from dbt.cli.main import dbtRunner

    settings = settings or get_settings()
    # The raw tables are dbt sources: create them (empty) if ingest has not run yet, and
    # release the file before dbt opens it.
    # Incremental models rebuild [start, end): the requested interval widened to every row
    # ingested since the last build (scaleahead.warehouse.increments).
    with connect(path=settings.warehouse_path) as con:
        dbt_vars = plan_vars(con, dbt_vars)
    args = build_args(settings, dbt_vars=dbt_vars, select=select)
    if dbt_vars and dbt_vars.get("start") is not None:
        # Unit tests check the SQL against fixed fixtures: their outcome cannot change from one
        # increment to the next, so (as dbt recommends for production) only builds without a
        # window (first build, full refresh, CI) run them; increments skip their fixed cost.
        args += ["--exclude-resource-type", "unit_test"]

    started = time.perf_counter()
    with _warehouse_env(settings):
        try:
            # A fresh runner per build: a reused one would keep a stale manifest.
            outcome = dbtRunner().invoke(args)
        finally:
            _release_duckdb()
    elapsed = time.perf_counter() - started

    if outcome.exception is not None:
        raise TransformError(f"dbt build aborted: {_one_line(outcome.exception)}")
    results = list(getattr(outcome.result, "results", None) or [])
    report = summarise(results, elapsed, bool(outcome.success))
    if not report.success:
        raise TransformError(_failure_reason(report), report=report)
    return report


def _invoke(settings: Settings, args: list[str]) -> Any:
    from dbt.cli.main import dbtRunner

    with _warehouse_env(settings):
        try:
            outcome = dbtRunner().invoke(args)
        finally:
            _release_duckdb()
    if outcome.exception is not None:
        raise TransformError(f"dbt {args[0]} aborted: {_one_line(outcome.exception)}")
    return outcome


def source_freshness(settings: Settings | None = None) -> dict[str, str]:
    """``dbt source freshness``: status (pass, warn, error, runtime error) per source table
    with a freshness policy, keyed ``<source>.<table>``. Stale sources are reported, not
    raised: deciding what staleness means is the caller's (e.g. an alerting task's) job."""
    settings = settings or get_settings()
    with connect(path=settings.warehouse_path):
        pass  # create the raw/serving tables if nothing was ingested yet
    outcome = _invoke(settings, command_args(settings, ["source", "freshness"]))
    statuses = {}
    for result in getattr(outcome.result, "results", None) or []:
        node = getattr(result, "node", None)
        name = f"{getattr(node, 'source_name', '?')}.{getattr(node, 'name', '?')}"
        statuses[name] = _status(result)
    return statuses


def docs_generate(settings: Settings | None = None) -> Path:
    """``dbt docs generate --static``: the self-contained docs page (models, columns, tests,
    lineage, live catalog) under the warehouse's dbt target folder; returns its path."""
    settings = settings or get_settings()
    args = command_args(settings, ["docs", "generate", "--static"])
    outcome = _invoke(settings, args)
    page = dbt_paths(settings)["target_path"] / "static_index.html"
    if not outcome.success or not page.exists():
        raise TransformError("dbt docs generate failed")
    return page
