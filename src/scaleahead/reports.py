"""Stage reports: each pipeline stage saves its latest report as JSON for the demo summary,
the CLI and operators (``warehouse/reports/<stage>.json``)."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from scaleahead.config import Settings, get_settings


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def to_jsonable(report: Any) -> dict[str, Any]:
    data = report.as_dict() if hasattr(report, "as_dict") else dict(report)
    return json.loads(json.dumps(data, default=_default))


def save(stage: str, report: Any, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    data = to_jsonable(report)
    target = settings.reports_dir / f"{stage}.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(target)
    return data


def load(stage: str, settings: Settings | None = None) -> dict[str, Any] | None:
    settings = settings or get_settings()
    target = settings.reports_dir / f"{stage}.json"
    if not target.exists():
        return None
    return json.loads(target.read_text())
