"""Expectation suites of the quality gate, built in code, and their severity configuration.

Each expectation carries a stable name (``meta["check"]``) that ``ml/quality.yaml`` maps to a
severity and that is recorded in ``quality.quality_results``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import great_expectations.expectations as gxe
import yaml
from great_expectations.expectations.metadata_types import FailureSeverity
from great_expectations.expectations.row_conditions import Column

SEVERITIES = ("error", "warn")
RAW_SUITE = "raw_telemetry"
MART_SUITE = "service_demand_5m"
FORECAST_SUITE = "forecasts"

RAW_COLUMNS = ("service", "metric", "ts", "value", "labels", "batch_id", "ingested_at")
MART_COLUMNS = (
    "service",
    "ds",
    "request_rate",
    "cpu_cores",
    "latency_ms",
    "samples",
    "is_gap",
    "demand",
)
KNOWN_METRICS = ("request_rate", "cpu_cores", "latency_ms")

# Columns the gate derives before validation (GX has no per-group or "finite" expectations).
VALUE_FINITE = "value_is_finite"
# Seconds the batch's newest sample of the row's series (service, metric, labels) lies behind
# the newest sample the warehouse already had of it (0 when the batch moves the series on).
BEHIND_HIGH_WATER_S = "behind_high_water_s"
DEMAND_STARTED = "demand_started"
SERVICE_LAST_DS = "service_last_ds"  # latest complete (non-gap) bucket of the service
BUCKET_PRESENT = "bucket_present"  # False for grid rows the mart lacks
BUCKET_COMPLETE = "bucket_complete"  # present and not a gap
VOLUME_RATIO = "volume_ratio"  # demand / demand of the same bucket one week earlier
SERVICE_STEPS = "service_steps"  # forecast steps published for the row's service
FORECAST_COLUMNS = ("service", "ds", "step", "p50", "p90", "p95")

# Checks evaluated row by row on frames keyed by service: a failure names the services at
# fault, which are quarantined instead of blocking the whole fleet. Every other check is global.
PER_SERVICE: dict[str, frozenset[str]] = {
    RAW_SUITE: frozenset(
        {
            "metric_not_null",
            "ts_not_null",
            "value_not_null",
            "ingested_at_not_null",
            "value_finite",
            "metric_known",
            "request_rate_non_negative",
            "cpu_cores_non_negative",
            "latency_ms_non_negative",
            "ts_not_in_future",
            "monotonic_batches",
        }
    ),
    MART_SUITE: frozenset(
        {
            "service_ds_unique",
            "demand_not_null",
            "demand_non_negative",
            "bucket_complete",
            "service_recent_data",
            "volume_jump",
            "volume_drop",
        }
    ),
    FORECAST_SUITE: frozenset(
        {"p50_le_p90", "p90_le_p95", "p50_non_negative", "quantiles_not_null", "horizon_complete"}
    ),
}


class QualityConfigError(ValueError):
    """ml/quality.yaml is malformed."""


@dataclass(frozen=True)
class QualityConfig:
    default_severity: str = "error"
    future_tolerance_hours: float = 24.0
    monotonic_tolerance_hours: float = 1.0
    freshness_intervals: int = 12
    mart_window_intervals: int = 12
    volume_max_ratio: float = 5.0
    volume_min_ratio: float = 0.05
    volume_min_demand: float = 1.0
    max_quarantine_fraction: float = 0.5
    severities: dict[str, dict[str, str]] = field(default_factory=dict)

    def severity(self, suite: str, check: str) -> str:
        return self.severities.get(suite, {}).get(check, self.default_severity)


@dataclass(frozen=True)
class SuiteContext:
    """Run-time parameters the expectations depend on."""

    latest_allowed_ts: datetime
    known_services: tuple[str, ...] = ()
    monotonic_tolerance_s: float = 3600.0
    recent_cutoff: datetime | None = None
    volume_max_ratio: float = 5.0
    volume_min_ratio: float = 0.05
    horizon: int = 1


@dataclass(frozen=True)
class Check:
    name: str
    severity: str
    expectation: gxe.Expectation


def _check_severity(value: Any, where: str) -> str:
    if value not in SEVERITIES:
        raise QualityConfigError(f"{where}: severity must be one of {SEVERITIES}, got {value!r}")
    return value


def load_config(path: Path) -> QualityConfig:
    """Read and validate the gate configuration; a missing file means all defaults."""
    data: dict[str, Any] = {}
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {}
    default = _check_severity(data.get("default_severity", "error"), "default_severity")
    thresholds = data.get("thresholds") or {}
    severities: dict[str, dict[str, str]] = {}
    for suite, checks in (data.get("suites") or {}).items():
        known = CHECK_NAMES.get(suite)
        if known is None:
            raise QualityConfigError(f"unknown suite {suite!r} in {path}")
        unknown = set(checks or {}) - set(known)
        if unknown:
            raise QualityConfigError(f"unknown checks in suite {suite!r}: {sorted(unknown)}")
        severities[suite] = {
            name: _check_severity(sev, f"{suite}.{name}") for name, sev in (checks or {}).items()
        }
    return QualityConfig(
        default_severity=default,
        future_tolerance_hours=float(thresholds.get("future_tolerance_hours", 24)),
        monotonic_tolerance_hours=float(thresholds.get("monotonic_tolerance_hours", 1)),
        freshness_intervals=int(thresholds.get("freshness_intervals", 12)),
        mart_window_intervals=int(thresholds.get("mart_window_intervals", 12)),
        volume_max_ratio=float(thresholds.get("volume_max_ratio", 5.0)),
        volume_min_ratio=float(thresholds.get("volume_min_ratio", 0.05)),
        volume_min_demand=float(thresholds.get("volume_min_demand", 1.0)),
        max_quarantine_fraction=float(thresholds.get("max_quarantine_fraction", 0.5)),
        severities=severities,
    )


def _raw_expectations(ctx: SuiteContext) -> dict[str, gxe.Expectation]:
    ranges = {
        f"{metric}_non_negative": gxe.ExpectColumnValuesToBeBetween(
            column="value", min_value=0, row_condition=Column("metric") == metric
        )
        for metric in KNOWN_METRICS
    }
    return {
        "columns_present": gxe.ExpectTableColumnsToMatchSet(
            column_set=list(RAW_COLUMNS), exact_match=False
        ),
        "rows_present": gxe.ExpectTableRowCountToBeBetween(min_value=1),
        **{
            f"{col}_not_null": gxe.ExpectColumnValuesToNotBeNull(column=col)
            for col in ("service", "metric", "ts", "value", "ingested_at")
        },
        "value_finite": gxe.ExpectColumnValuesToBeInSet(column=VALUE_FINITE, value_set=[True]),
        "metric_known": gxe.ExpectColumnValuesToBeInSet(
            column="metric", value_set=list(KNOWN_METRICS)
        ),
        **ranges,
        "ts_not_in_future": gxe.ExpectColumnValuesToBeBetween(
            column="ts", max_value=ctx.latest_allowed_ts
        ),
        # Batches move each series forward: a batch whose newest sample of a series is older
        # than what was already loaded (beyond the tolerance) is a replay, a stuck collector
        # or a skewed clock. Late rows are still loaded; this says so.
        "monotonic_batches": gxe.ExpectColumnValuesToBeBetween(
            column=BEHIND_HIGH_WATER_S, max_value=ctx.monotonic_tolerance_s
        ),
    }


def _mart_expectations(ctx: SuiteContext) -> dict[str, gxe.Expectation]:
    expectations: dict[str, gxe.Expectation] = {
        "columns_present": gxe.ExpectTableColumnsToMatchSet(
            column_set=[*MART_COLUMNS], exact_match=False
        ),
        "rows_present": gxe.ExpectTableRowCountToBeBetween(min_value=1),
        # Grid rows added for missing buckets have no key of their own, so only real rows count.
        "service_ds_unique": gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["service", "ds"],
            row_condition=Column(BUCKET_PRESENT) == True,  # noqa: E712
        ),
        # Before a service's first request_rate sample there is nothing to carry forward.
        "demand_not_null": gxe.ExpectColumnValuesToNotBeNull(
            column="demand",
            row_condition=Column(DEMAND_STARTED) == True,  # noqa: E712
        ),
        "demand_non_negative": gxe.ExpectColumnValuesToBeBetween(column="demand", min_value=0),
        "services_present": gxe.ExpectColumnDistinctValuesToContainSet(
            column="service",
            value_set=list(ctx.known_services),
            row_condition=Column(BUCKET_PRESENT) == True,  # noqa: E712
        ),
        # Completeness per service per 5-minute interval of the window.
        "bucket_complete": gxe.ExpectColumnValuesToBeInSet(
            column=BUCKET_COMPLETE, value_set=[True]
        ),
        "volume_jump": gxe.ExpectColumnValuesToBeBetween(
            column=VOLUME_RATIO, max_value=ctx.volume_max_ratio
        ),
        "volume_drop": gxe.ExpectColumnValuesToBeBetween(
            column=VOLUME_RATIO, min_value=ctx.volume_min_ratio
        ),
    }
    if ctx.recent_cutoff is not None:
        # The mart as a whole must be fresh; then each service must be (within N intervals).
        expectations["mart_fresh"] = gxe.ExpectColumnMaxToBeBetween(
            column="ds", min_value=ctx.recent_cutoff
        )
        expectations["service_recent_data"] = gxe.ExpectColumnValuesToBeBetween(
            column=SERVICE_LAST_DS, min_value=ctx.recent_cutoff
        )
    return expectations


def _forecast_expectations(ctx: SuiteContext) -> dict[str, gxe.Expectation]:
    return {
        "columns_present": gxe.ExpectTableColumnsToMatchSet(
            column_set=list(FORECAST_COLUMNS), exact_match=False
        ),
        "rows_present": gxe.ExpectTableRowCountToBeBetween(min_value=1),
        "quantiles_not_null": gxe.ExpectColumnValuesToNotBeNull(column="p50"),
        "p50_non_negative": gxe.ExpectColumnValuesToBeBetween(column="p50", min_value=0),
        "p50_le_p90": gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="p90", column_B="p50", or_equal=True
        ),
        "p90_le_p95": gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="p95", column_B="p90", or_equal=True
        ),
        # Active services without a forecast appear as rows with 0 steps.
        "horizon_complete": gxe.ExpectColumnValuesToBeBetween(
            column=SERVICE_STEPS, min_value=ctx.horizon, max_value=ctx.horizon
        ),
    }


SUITE_BUILDERS: dict[str, Callable[[SuiteContext], dict[str, gxe.Expectation]]] = {
    RAW_SUITE: _raw_expectations,
    MART_SUITE: _mart_expectations,
    FORECAST_SUITE: _forecast_expectations,
}

_PROBE = SuiteContext(latest_allowed_ts=datetime(2000, 1, 1), recent_cutoff=datetime(2000, 1, 1))
CHECK_NAMES: dict[str, tuple[str, ...]] = {
    suite: tuple(builder(_PROBE)) for suite, builder in SUITE_BUILDERS.items()
}


def build_checks(suite: str, ctx: SuiteContext, config: QualityConfig) -> list[Check]:
    """The suite's expectations, each tagged with its name and configured severity."""
    checks = []
    for name, expectation in SUITE_BUILDERS[suite](ctx).items():
        severity = config.severity(suite, name)
        expectation.meta = {"check": name, "severity": severity}
        # Mirror our severity into GX's own field so Data Docs show it too.
        expectation.severity = (
            FailureSeverity.CRITICAL if severity == "error" else FailureSeverity.WARNING
        )
        checks.append(Check(name=name, severity=severity, expectation=expectation))
    return checks


def future_limit(window_end: datetime | None, now: datetime, config: QualityConfig) -> datetime:
    """Latest raw timestamp accepted: window_end (or now) plus the clock-skew tolerance."""
    return (window_end or now) + timedelta(hours=config.future_tolerance_hours)
