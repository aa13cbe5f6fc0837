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
    BEHIND_HIGH_WATER_S,
    BUCKET_COMPLETE,
    BUCKET_PRESENT,
    DEMAND_STARTED,
    FORECAST_COLUMNS,
    FORECAST_SUITE,
    MART_SUITE,
    PER_SERVICE,
    RAW_SUITE,
    SERVICE_LAST_DS,
    SERVICE_STEPS,
    VALUE_FINITE,
    VOLUME_RATIO,
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
_EPOCH = datetime(1970, 1, 1)
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
    per_service: bool = False
    services: tuple[str, ...] = ()


@dataclass
class QualityReport:
    run_id: str
    window_start: str | None
    window_end: str | None
    checkpoint: str = "full"
    suites: list[SuiteSummary] = field(default_factory=list)
    checks_evaluated: int = 0
    checks_passed: int = 0
    blocking: bool = False
    reason: str | None = None
    services_checked: int = 0
    # service -> error-severity per-service checks it failed: held back, the rest go on.
    quarantined: dict[str, list[str]] = field(default_factory=dict)
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


def load_raw(
    settings: Settings,
    start: datetime | None,
    end: datetime | None,
    batch_ids: list[str] | None = None,
    tolerance_s: float = 3600.0,
) -> pd.DataFrame:
    """Raw samples under test: the given batches (the increment just ingested), else those
    sampled or ingested in the window (the latter catches far-off timestamps). Each row gets
    how far its batch lies behind its series' high-water mark (``monotonic_batches``)."""
    if batch_ids is not None:
        marks = ", ".join("?" for _ in batch_ids) or "NULL"
        frame = _read(
            settings,
            "SELECT service, metric, ts, value, labels, batch_id, ingested_at FROM raw.telemetry "
            f"WHERE batch_id IN ({marks})",
            list(batch_ids),
        )
    else:
        by_ts, ts_params = _between("ts", start, end)
        by_load, load_params = _between("ingested_at", start, end)
        frame = _read(
            settings,
            "SELECT service, metric, ts, value, labels, batch_id, ingested_at FROM raw.telemetry "
            f"WHERE ({by_ts}) OR ({by_load})",
            ts_params + load_params,
        )
    frame[VALUE_FINITE] = np.isfinite(frame["value"].to_numpy(dtype="float64", na_value=np.nan))
    frame[BEHIND_HIGH_WATER_S] = _behind_high_water(settings, frame, tolerance_s)
    return frame


def _behind_high_water(settings: Settings, frame: pd.DataFrame, tolerance_s: float) -> pd.Series:
    """Per row: seconds its batch's newest sample of the row's series lies behind the newest
    sample of that series from other batches, when that is more than ``tolerance_s`` (else 0).

    Only rows newer than the oldest batch high-water mark + tolerance can violate, so the
    history read is bounded by a literal ``ts`` lower bound that DuckLake prunes files on."""
    behind = pd.Series(0.0, index=frame.index)
    rows = frame.dropna(subset=["service", "metric", "ts"])
    if rows.empty:
        return behind
    keys = ["service", "metric", "labels"]
    tops = rows.groupby(keys + ["batch_id"], dropna=False, sort=False)["ts"].max()
    tops = tops.rename("batch_max").reset_index()
    floor = tops["batch_max"].min() + timedelta(seconds=tolerance_s)
    batches = sorted(tops["batch_id"].dropna().astype(str).unique())
    marks = ", ".join("?" for _ in batches) or "NULL"
    newer = _read(
        settings,
        "SELECT service, metric, labels, max(ts) AS prior_max FROM raw.telemetry "
        f"WHERE ts > ? AND batch_id NOT IN ({marks}) GROUP BY ALL",
        [floor, *batches],
    )
    if newer.empty:
        return behind
    tops = tops.merge(newer, on=keys, how="inner")
    lag = (tops["prior_max"] - tops["batch_max"]).dt.total_seconds()
    tops = tops.assign(lag=lag)[lag > tolerance_s]
    if tops.empty:
        return behind
    lagged = frame.reset_index().merge(tops[[*keys, "batch_id", "lag"]], on=[*keys, "batch_id"])
    behind.loc[lagged["index"].to_numpy()] = lagged["lag"].to_numpy()
    return behind


_MART_SQL = (
    "SELECT m.service, m.ds, m.request_rate, m.cpu_cores, m.latency_ms, m.samples, m.is_gap, "
    "m.demand, lw.demand AS demand_last_week FROM marts.service_demand_5m AS m "
    "LEFT JOIN marts.service_demand_5m AS lw "
    "ON lw.service = m.service AND lw.ds = m.ds - INTERVAL 7 DAY "
    "WHERE {where} ORDER BY m.service, m.ds"
)


def _known_services(settings: Settings, end: datetime | None) -> tuple[str, ...]:
    """Active services: the small service dimension when dbt built it, else the mart's."""
    try:
        known = read_sql(
            "SELECT service FROM marts.services ORDER BY 1", path=settings.warehouse_path
        )
    except duckdb.Error:
        where, params = _between("ds", None, end)
        known = _read(
            settings,
            f"SELECT DISTINCT service FROM marts.service_demand_5m WHERE {where} ORDER BY 1",
            params,
        )
    return tuple(str(s) for s in known["service"])


def _demand_started(settings: Settings, frame: pd.DataFrame) -> pd.Series:
    """Whether each row's service had a request_rate sample by then (NULL demand is fine before).

    Only services with a NULL demand in the window need their history looked up."""
    started = frame["demand"].notna()
    pending = frame.loc[~started, "service"].unique().tolist()
    if not pending:
        return started
    marks = ", ".join("?" for _ in pending)
    first = _read(
        settings,
        "SELECT service, min(ds) AS first_ds FROM marts.service_demand_5m "
        f"WHERE request_rate IS NOT NULL AND service IN ({marks}) GROUP BY service",
        pending,
    )
    first_ds = frame["service"].map(dict(zip(first["service"], first["first_ds"], strict=True)))
    return started | (first_ds.notna() & (frame["ds"] >= first_ds))


def _grid(frame: pd.DataFrame, services: tuple[str, ...], start: datetime | None) -> pd.DataFrame:
    """Add a row for every (service, bucket) the mart lacks between the window start (or the
    service's first bucket) and the mart's latest bucket in the window."""
    frame = frame.assign(**{BUCKET_PRESENT: True})
    if frame.empty and not services:
        return frame
    last = frame["ds"].max() if not frame.empty else None
    if last is None or pd.isna(last):
        # Nothing in the window at all: every active service is missing from it.
        empty = pd.DataFrame({"service": list(services), "ds": pd.NaT, BUCKET_PRESENT: False})
        return pd.concat([frame, empty], ignore_index=True)
    first_seen = frame.groupby("service")["ds"].min()
    floor = pd.Timestamp(start) if start is not None else None
    rows = []
    for service in sorted(set(services) | set(first_seen.index)):
        begin = floor if floor is not None else first_seen.get(service, last)
        rows.append(
            pd.DataFrame({"service": service, "ds": pd.date_range(begin, last, freq=BUCKET)})
        )
    grid = pd.concat(rows, ignore_index=True)
    grid["ds"] = grid["ds"].astype(frame["ds"].dtype)
    merged = grid.merge(frame.drop_duplicates(["service", "ds"]), on=["service", "ds"], how="left")
    merged[BUCKET_PRESENT] = merged[BUCKET_PRESENT].eq(True)
    # Duplicated keys stay in the frame under test so the uniqueness check sees them.
    dups = frame[frame.duplicated(["service", "ds"], keep="first")]
    return pd.concat([merged, dups], ignore_index=True)


def load_mart(
    settings: Settings,
    start: datetime | None,
    end: datetime | None,
    config: QualityConfig | None = None,
) -> tuple[pd.DataFrame, tuple[str, ...], datetime | None]:
    """Mart rows of the window on a full (service x bucket) grid with the derived columns the
    suite checks, the active services and the freshness cutoff.

    Reads the window, its freshness lookback and the same buckets one week earlier, so the
    cost follows the increment, not the table."""
    config = config or QualityConfig()
    lookback = BUCKET * config.freshness_intervals
    read_from = start - lookback if start is not None else None
    where, params = _between("m.ds", read_from, end)
    frame = _read(settings, _MART_SQL.format(where=where), params)
    known = _known_services(settings, end)

    reference = end
    if reference is None and not frame.empty:
        # Without a window, "recent" is relative to the freshest bucket, not the wall clock.
        reference = pd.Timestamp(frame["ds"].max()).to_pydatetime() + BUCKET
    cutoff = reference - lookback if reference is not None else None

    complete = frame[frame["is_gap"].eq(False) & frame["request_rate"].notna()]
    last_complete = complete.groupby("service")["ds"].max()
    if start is not None:
        frame = frame[frame["ds"] >= start]
    frame = _grid(frame, known, start)
    # Missing buckets are the completeness check's business, not the NULL-demand check's.
    frame[DEMAND_STARTED] = _demand_started(settings, frame) & frame[BUCKET_PRESENT]
    frame[BUCKET_COMPLETE] = frame[BUCKET_PRESENT] & frame["is_gap"].eq(False)
    # A service without any complete bucket in the lookback is as stale as it gets.
    last_ds = pd.to_datetime(frame["service"].map(dict(last_complete.items())))
    frame[SERVICE_LAST_DS] = last_ds.fillna(pd.Timestamp(_EPOCH))
    base = frame["demand_last_week"].where(frame["demand_last_week"] >= config.volume_min_demand)
    frame[VOLUME_RATIO] = (frame["demand"] / base).astype("float64")
    return frame.reset_index(drop=True), known, cutoff


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
            # COMPLETE + the service column: a failure lists the services at fault.
            result_format={
                "result_format": "COMPLETE",
                "partial_unexpected_count": 5,
                "unexpected_index_column_names": ["service"],
                "return_unexpected_index_query": False,
            },
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
    if kwargs.get("column_A"):
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    return None


def _failing_services(result: Any) -> tuple[tuple[str, ...], bool]:
    """Services named by a failed row-level check, and whether some failing row had none."""
    rows = (result.result or {}).get("unexpected_index_list") or []
    services = {r.get("service") for r in rows if isinstance(r, dict)}
    keyless = any(s is None or (isinstance(s, float) and np.isnan(s)) for s in services)
    return tuple(sorted(str(s) for s in services if isinstance(s, str))), keyless


def collect(suite: str, checkpoint_result: Any) -> list[CheckResult]:
    """One CheckResult per expectation of the suite's validation run."""
    results = []
    for validation in checkpoint_result.run_results.values():
        for item in validation.results:
            config = item.expectation_config
            meta = config.meta or {}
            name = str(meta.get("check", config.type))
            services: tuple[str, ...] = ()
            per_service = name in PER_SERVICE.get(suite, ())
            if not item.success and per_service:
                services, keyless = _failing_services(item)
                # A bad row without a service cannot be pinned on one: the check is global.
                per_service = bool(services) and not keyless
            results.append(
                CheckResult(
                    suite=suite,
                    expectation=name,
                    column=_column(dict(config.kwargs)),
                    success=bool(item.success),
                    severity=str(meta.get("severity", "error")),
                    observed=_observed(item),
                    per_service=per_service,
                    services=services,
                )
            )
    return results


def quarantine_of(results: list[CheckResult]) -> dict[str, list[str]]:
    """service -> the error-severity per-service checks it failed."""
    out: dict[str, list[str]] = {}
    for r in results:
        if not r.success and r.per_service and r.severity == "error":
            for service in r.services:
                out.setdefault(service, []).append(f"{r.suite}.{r.expectation}")
    return out


def decide(
    results: list[CheckResult],
    quarantined: dict[str, list[str]],
    n_services: int,
    cfg: QualityConfig,
) -> str | None:
    """Why downstream must stop, or None: a global error, or too many services quarantined
    (then the data problem is systemic, not one service's)."""
    global_errors = [
        f"{r.suite}.{r.expectation}"
        for r in results
        if not r.success and r.severity == "error" and not r.per_service
    ]
    if global_errors:
        return "error-severity checks failed: " + ", ".join(sorted(global_errors))
    if quarantined and n_services and len(quarantined) / n_services > cfg.max_quarantine_fraction:
        return (
            f"{len(quarantined)} of {n_services} services quarantined "
            f"(> {cfg.max_quarantine_fraction:.0%}): " + ", ".join(sorted(quarantined)[:10])
        )
    return None


def persist(
    settings: Settings,
    report: QualityReport,
    results: list[CheckResult],
    quarantined: dict[str, list[str]],
) -> None:
    """Replace this run's rows so a retried run does not double-count.

    ``quality_results`` holds one row per expectation (service NULL) plus one row per service a
    failed per-service expectation names; ``gate_runs`` the verdict; ``quarantined_services``
    the services held back."""
    checked_at = _utcnow()
    run_id = report.run_id
    rows = []
    for r in results:
        rows.append(
            (
                run_id,
                r.suite,
                r.expectation,
                r.column,
                r.success,
                r.observed,
                r.severity,
                checked_at,
                None,
            )
        )
        rows += [
            (run_id, r.suite, r.expectation, r.column, False, None, r.severity, checked_at, svc)
            for svc in r.services
        ]
    quarantine_rows = [
        (run_id, report.checkpoint, svc, ", ".join(reasons), checked_at)
        for svc, reasons in sorted(quarantined.items())
    ]
    with connect(path=settings.warehouse_path) as con:
        con.execute("BEGIN TRANSACTION")
        for table in ("quality_results", "gate_runs", "quarantined_services"):
            con.execute(f"DELETE FROM quality.{table} WHERE run_id = ?", [run_id])
        if rows:
            con.executemany(
                "INSERT INTO quality.quality_results (run_id, suite, expectation, column_name, "
                "success, observed_value, severity, checked_at, service) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        con.execute(
            "INSERT INTO quality.gate_runs (run_id, checkpoint, suites, blocking, reason, "
            "services_checked, services_quarantined, window_start, window_end, checked_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                report.checkpoint,
                ",".join(s.name for s in report.suites),
                report.blocking,
                report.reason,
                report.services_checked,
                len(quarantined),
                report.window_start,
                report.window_end,
                checked_at,
            ],
        )
        if quarantine_rows:
            con.executemany(
                "INSERT INTO quality.quarantined_services (run_id, checkpoint, service, reasons, "
                "quarantined_at) VALUES (?, ?, ?, ?, ?)",
                quarantine_rows,
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
                "services": list(r.services[:50]),
                "observed": r.observed,
            }
        )
    report.suites.append(summary)
    report.checks_evaluated += summary.evaluated
    report.checks_passed += summary.passed
    return report


# --- entry points ----------------------------------------------------------------------------

CHECKPOINT_SUITES: dict[str, tuple[str, ...]] = {
    "ingest": (RAW_SUITE,),
    "transform": (MART_SUITE,),
    "full": (RAW_SUITE, MART_SUITE),
    "publish": (FORECAST_SUITE,),
}


def _new_run_id(now: datetime) -> str:
    return f"gate-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def validate(
    settings: Settings,
    checkpoint: str,
    frames: dict[str, tuple[pd.DataFrame, SuiteContext]],
    run_id: str,
    services: tuple[str, ...],
    config: QualityConfig,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> QualityReport:
    """Run one GX checkpoint per suite, decide, persist and build the Data Docs."""
    started = time.perf_counter()
    report = QualityReport(
        run_id=run_id,
        checkpoint=checkpoint,
        window_start=window[0].isoformat() if window[0] else None,
        window_end=window[1].isoformat() if window[1] else None,
    )
    context = _context(settings)
    all_results: list[CheckResult] = []
    for suite, (frame, suite_ctx) in frames.items():
        checks = build_checks(suite, suite_ctx, config)
        outcome = _run_checkpoint(context, suite, checks, frame, run_id)
        results = collect(suite, outcome)
        summarise(report, suite, len(frame), results)
        all_results += results
    quarantined = quarantine_of(all_results)
    known = set(services)
    for frame, _ in frames.values():
        if "service" in frame:
            known |= set(frame["service"].dropna().astype(str))
    report.services_checked = len(known)
    report.reason = decide(all_results, quarantined, len(known), config)
    report.blocking = report.reason is not None
    report.quarantined = {k: v for k, v in sorted(quarantined.items())}
    persist(settings, report, all_results, quarantined)
    report.data_docs = _build_docs(context, settings)
    report.elapsed_s = round(time.perf_counter() - started, 3)
    return report


def run_gate(
    settings: Settings | None = None,
    run_id: str | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    checkpoint: str = "full",
    batch_ids: list[str] | None = None,
) -> QualityReport:
    """Validate raw telemetry (``ingest``), the demand mart (``transform``) or both (``full``);
    persist results and quarantined services; report whether to block downstream stages."""
    if checkpoint not in ("ingest", "transform", "full"):
        raise ValueError(f"unknown checkpoint {checkpoint!r}")
    settings = settings or get_settings()
    config = load_config(settings.quality_config)
    start, end = _naive_utc(window_start), _naive_utc(window_end)
    now = _utcnow()
    run_id = run_id or _new_run_id(now)
    limit = future_limit(end, now, config)

    frames: dict[str, tuple[pd.DataFrame, SuiteContext]] = {}
    known: tuple[str, ...] = ()
    if RAW_SUITE in CHECKPOINT_SUITES[checkpoint]:
        tolerance_s = config.monotonic_tolerance_hours * 3600.0
        raw = load_raw(settings, start, end, batch_ids, tolerance_s)
        frames[RAW_SUITE] = (
            raw,
            SuiteContext(latest_allowed_ts=limit, monotonic_tolerance_s=tolerance_s),
        )
    if MART_SUITE in CHECKPOINT_SUITES[checkpoint]:
        mart, known, cutoff = load_mart(settings, start, end, config)
        frames[MART_SUITE] = (
            mart,
            SuiteContext(
                latest_allowed_ts=limit,
                known_services=known,
                recent_cutoff=cutoff,
                volume_max_ratio=config.volume_max_ratio,
                volume_min_ratio=config.volume_min_ratio,
            ),
        )
    return validate(settings, checkpoint, frames, run_id, known, config, (start, end))


def forecast_frame(
    forecasts: pd.DataFrame, active_services: list[str] | tuple[str, ...]
) -> pd.DataFrame:
    """The candidate forecasts plus one empty row per active service that has none."""
    frame = forecasts[[*FORECAST_COLUMNS]].copy()
    frame["service"] = frame["service"].astype(str)
    frame[SERVICE_STEPS] = frame.groupby("service")["step"].transform("size").astype("int64")
    missing = sorted(set(active_services) - set(frame["service"]))
    if missing:
        empty = pd.DataFrame({"service": missing, SERVICE_STEPS: 0})
        frame = pd.concat([frame, empty], ignore_index=True)
    return frame


def check_forecasts(
    forecasts: pd.DataFrame,
    active_services: list[str] | tuple[str, ...],
    horizon: int,
    run_id: str,
    settings: Settings | None = None,
) -> QualityReport:
    """The forecast suite on a candidate batch (before it is published): p50 <= p90 <= p95,
    non-negative, the full horizon for every active service."""
    settings = settings or get_settings()
    config = load_config(settings.quality_config)
    frame = forecast_frame(forecasts, active_services)
    ctx = SuiteContext(latest_allowed_ts=_utcnow(), horizon=horizon)
    return validate(
        settings, "publish", {FORECAST_SUITE: (frame, ctx)}, run_id, tuple(active_services), config
    )
