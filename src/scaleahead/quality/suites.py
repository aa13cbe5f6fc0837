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
DEMAND_STARTED = "demand_started"
SERVICE_LAST_DS = "service_last_ds"


class QualityConfigError(ValueError):
    """ml/quality.yaml is malformed."""


@dataclass(frozen=True)
class QualityConfig:
    default_severity: str = "error"
    future_tolerance_hours: float = 24.0
    recent_data_max_age_minutes: float = 60.0
    severities: dict[str, dict[str, str]] = field(default_factory=dict)

    def severity(self, suite: str, check: str) -> str:
        return self.severities.get(suite, {}).get(check, self.default_severity)


@dataclass(frozen=True)
class SuiteContext:
    """Run-time parameters the expectations depend on."""

    latest_allowed_ts: datetime
    known_services: tuple[str, ...] = ()
    recent_cutoff: datetime | None = None


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
        recent_data_max_age_minutes=float(thresholds.get("recent_data_max_age_minutes", 60)),
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
    }


def _mart_expectations(ctx: SuiteContext) -> dict[str, gxe.Expectation]:
    expectations: dict[str, gxe.Expectation] = {
        "columns_present": gxe.ExpectTableColumnsToMatchSet(
            column_set=[*MART_COLUMNS, DEMAND_STARTED, SERVICE_LAST_DS], exact_match=True
        ),
        "rows_present": gxe.ExpectTableRowCountToBeBetween(min_value=1),
        "service_ds_unique": gxe.ExpectCompoundColumnsToBeUnique(column_list=["service", "ds"]),
        # Before a service's first request_rate sample there is nothing to carry forward.
        "demand_not_null": gxe.ExpectColumnValuesToNotBeNull(
            column="demand",
            row_condition=Column(DEMAND_STARTED) == True,  # noqa: E712
        ),
        "demand_non_negative": gxe.ExpectColumnValuesToBeBetween(column="demand", min_value=0),
        "services_present": gxe.ExpectColumnDistinctValuesToContainSet(
            column="service", value_set=list(ctx.known_services)
        ),
    }
    if ctx.recent_cutoff is not None:
        expectations["service_recent_data"] = gxe.ExpectColumnValuesToBeBetween(
            column=SERVICE_LAST_DS, min_value=ctx.recent_cutoff
        )
    return expectations


SUITE_BUILDERS: dict[str, Callable[[SuiteContext], dict[str, gxe.Expectation]]] = {
    RAW_SUITE: _raw_expectations,
    MART_SUITE: _mart_expectations,
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
