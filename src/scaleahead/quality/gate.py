"""The quality gate: Great Expectations checkpoints over raw telemetry and the demand mart.

GX's SQL datasource does not work with DuckDB, so the gate reads the data under test into
pandas (only the window when bounds are given) and validates it with an ephemeral GX context:
pandas datasource -> dataframe asset -> batch definition -> ValidationDefinition -> Checkpoint.
Every expectation result is stored in ``quality.quality_results``; an ``error``-severity
failure makes the report ``blocking``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from scaleahead.config import Settings, get_settings
from scaleahead.quality.suites import (
    DEMAND_STARTED,
    MART_SUITE,
    RAW_SUITE,
    SERVICE_LAST_DS,
    VALUE_FINITE,
    Check,
    QualityConfig,
    SuiteContext,
    build_checks,
    future_limit,
    load_config,
)
from scaleahead.warehouse import connect, read_sql

log = logging.getLogger(__name__)

BUCKET = timedelta(minutes=5)
_MAX_OBSERVED_CHARS = 2000


class QualityError(RuntimeError):
    """The gate could not run (e.g. a table under test does not exist)."""


@dataclass
class SuiteSummary:
    name: str
    rows: int
    evaluated: int = 0
    passed: int = 0
    failed_error: int = 0
    failed_warn: int = 0


@dataclass
class CheckResult:
    suite: str
    expectation: str
    column: str | None
    success: bool
    severity: str
    observed: str


@dataclass
class QualityReport:
    run_id: str
    window_start: str | None
    window_end: str | None
    suites: list[SuiteSummary] = field(default_factory=list)
    checks_evaluated: int = 0
    checks_passed: int = 0
    blocking: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)
    data_docs: str | None = None
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- data under test -------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc(value: datetime | None) -> datetime | None:
    """Warehouse timestamps are naive UTC; accept aware datetimes (Airflow) too."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _between(column: str, start: datetime | None, end: datetime | None) -> tuple[str, list]:
    clauses, params = [], []
    if start is not None:
        clauses.append(f"{column} >= ?")
        params.append(start)
    if end is not None:
        clauses.append(f"{column} < ?")
        params.append(end)
    return " AND ".join(clauses) or "TRUE", params


def _read(settings: Settings, query: str, params: list) -> pd.DataFrame:
    try:
        return read_sql(query, params, path=settings.warehouse_path)
    except duckdb.CatalogException as exc:
        reason = " ".join(str(exc).split())
        raise QualityError(f"quality gate cannot read its input: {reason}") from exc


def load_raw(settings: Settings, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    """Raw samples in the window: sampled in it, or ingested in it (catches far-off ts)."""
    by_ts, ts_params = _between("ts", start, end)
    by_load, load_params = _between("ingested_at", start, end)
    frame = _read(
        settings,
        "SELECT service, metric, ts, value, labels, batch_id, ingested_at FROM raw.telemetry "
        f"WHERE ({by_ts}) OR ({by_load})",
        ts_params + load_params,
    )
    frame[VALUE_FINITE] = np.isfinite(frame["value"].to_numpy(dtype="float64", na_value=np.nan))
    return frame


def load_mart(settings: Settings, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    """Mart rows in the window plus the derived columns the mart suite checks."""
    where, params = _between("ds", start, end)
    # Whether a series has started depends on history before the window.
    frame = _read(
        settings,
        "WITH m AS (SELECT *, count(request_rate) OVER ("
        "  PARTITION BY service ORDER BY ds ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
        f") > 0 AS {DEMAND_STARTED} FROM marts.service_demand_5m) "
        f"SELECT * FROM m WHERE {where} ORDER BY service, ds",
        params,
    )
    frame[SERVICE_LAST_DS] = frame.groupby("service")["ds"].transform("max")
    return frame


def mart_context(
    settings: Settings, frame: pd.DataFrame, end: datetime | None, config: QualityConfig
) -> tuple[tuple[str, ...], datetime | None]:
    """Services expected in the window and the cutoff their latest bucket must reach."""
    where, params = _between("ds", None, end)
    known = _read(
        settings,
        f"SELECT DISTINCT service FROM marts.service_demand_5m WHERE {where} ORDER BY 1",
        params,
    )
    reference = end
    if reference is None and not frame.empty:
        # Without a window, "recent" is relative to the freshest service, not the wall clock.
        reference = pd.Timestamp(frame["ds"].max()).to_pydatetime() + BUCKET
    cutoff = None
    if reference is not None:
        cutoff = reference - timedelta(minutes=config.recent_data_max_age_minutes)
    return tuple(known["service"]), cutoff


# --- Great Expectations ----------------------------------------------------------------------


def _context(settings: Settings) -> Any:
    """An in-memory GX context whose only persistent output is the Data Docs site."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(settings.gx_docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_checkpoint(
    context: Any, suite: str, checks: list[Check], frame: pd.DataFrame, run_id: str
) -> Any:
    import great_expectations as gx

    datasource = context.data_sources.add_or_update_pandas("scaleahead_warehouse")
    asset = datasource.add_dataframe_asset(name=suite)
    batch = asset.add_batch_definition_whole_dataframe(f"{suite}_window")
    expectation_suite = context.suites.add(gx.ExpectationSuite(name=suite))
    for check in checks:
        expectation_suite.add_expectation(check.expectation)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite}_validation", data=batch, suite=expectation_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite}_checkpoint",
            validation_definitions=[validation],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    run = gx.RunIdentifier(run_name=run_id, run_time=datetime.now(UTC))
    return checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run)


def _build_docs(context: Any, settings: Settings) -> str | None:
    """Data Docs are a convenience: failing to render them must not fail the gate."""
    try:
        context.build_data_docs()
    except Exception as exc:  # noqa: BLE001 - any renderer problem is non-fatal
        log.warning("GX Data Docs not built: %s", exc)
        return None
    index = settings.gx_docs_dir / "index.html"
    return str(index) if index.exists() else None


# --- results ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return str(value)


def _observed(result: Any) -> str:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return json.dumps({"exception": str(info.get("exception_message"))[:500]})
    details = result.result or {}
    keys = (
        "observed_value",
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "missing_count",
    )
    summary = {k: details[k] for k in keys if details.get(k) is not None}
    for sample in ("partial_unexpected_list", "partial_missing_list"):
        if details.get(sample):
            summary[sample] = list(details[sample])[:5]
    return json.dumps(_jsonable(summary), sort_keys=True)[:_MAX_OBSERVED_CHARS]


def _column(kwargs: dict[str, Any]) -> str | None:
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_list"):
        return ",".join(map(str, kwargs["column_list"]))
    return None


def collect(suite: str, checkpoint_result: Any) -> list[CheckResult]:
    """One CheckResult per expectation of the suite's validation run."""
    results = []
    for validation in checkpoint_result.run_results.values():
        for item in validation.results:
            config = item.expectation_config
            meta = config.meta or {}
            results.append(
                CheckResult(
                    suite=suite,
                    expectation=str(meta.get("check", config.type)),
                    column=_column(dict(config.kwargs)),
                    success=bool(item.success),
                    severity=str(meta.get("severity", "error")),
                    observed=_observed(item),
                )
            )
    return results


def persist(settings: Settings, run_id: str, results: list[CheckResult]) -> None:
    """Replace this run's rows so a retried run does not double-count."""
    checked_at = _utcnow()
    rows = [
        (run_id, r.suite, r.expectation, r.column, r.success, r.observed, r.severity, checked_at)
        for r in results
    ]
    with connect(path=settings.warehouse_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM quality.quality_results WHERE run_id = ?", [run_id])
        if rows:
            con.executemany(
                "INSERT INTO quality.quality_results (run_id, suite, expectation, column_name, "
                "success, observed_value, severity, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        con.execute("COMMIT")


def summarise(
    report: QualityReport, suite: str, rows: int, results: list[CheckResult]
) -> QualityReport:
    summary = SuiteSummary(name=suite, rows=rows, evaluated=len(results))
    for r in results:
        if r.success:
            summary.passed += 1
            continue
        if r.severity == "error":
            summary.failed_error += 1
        else:
            summary.failed_warn += 1
        report.failures.append(
            {
                "suite": r.suite,
                "expectation": r.expectation,
                "column": r.column,
                "severity": r.severity,
                "observed": r.observed,
            }
        )
    report.suites.append(summary)
    report.checks_evaluated += summary.evaluated
    report.checks_passed += summary.passed
    report.blocking = report.blocking or summary.failed_error > 0
    return report


# --- entry point -----------------------------------------------------------------------------


def _new_run_id(now: datetime) -> str:
    return f"gate-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def run_gate(
    settings: Settings | None = None,
    run_id: str | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> QualityReport:
    """Validate raw telemetry and the demand mart; persist results; report whether to block."""
    started = time.perf_counter()
    settings = settings or get_settings()
    config = load_config(settings.quality_config)
    start, end = _naive_utc(window_start), _naive_utc(window_end)
    now = _utcnow()
    run_id = run_id or _new_run_id(now)

    raw = load_raw(settings, start, end)
    mart = load_mart(settings, start, end)
    known, cutoff = mart_context(settings, mart, end, config)
    contexts = {
        RAW_SUITE: (raw, SuiteContext(latest_allowed_ts=future_limit(end, now, config))),
        MART_SUITE: (
            mart,
            SuiteContext(
                latest_allowed_ts=future_limit(end, now, config),
                known_services=known,
                recent_cutoff=cutoff,
            ),
        ),
    }

    report = QualityReport(
        run_id=run_id,
        window_start=start.isoformat() if start else None,
        window_end=end.isoformat() if end else None,
    )
    context = _context(settings)
    all_results: list[CheckResult] = []
    for suite, (frame, suite_ctx) in contexts.items():
        checks = build_checks(suite, suite_ctx, config)
        outcome = _run_checkpoint(context, suite, checks, frame, run_id)
        results = collect(suite, outcome)
        summarise(report, suite, len(frame), results)
        all_results += results

    persist(settings, run_id, all_results)
    report.data_docs = _build_docs(context, settings)
    report.elapsed_s = round(time.perf_counter() - started, 3)
    return report
