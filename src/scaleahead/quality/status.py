"""What the latest quality-gate runs decided, for the stages and the API that obey them.

The gate runs at two checkpoints (``ingest``: the raw increment; ``transform``: the demand
mart) and the CLI may run both at once (``full``). The state in force is the latest run of each
checkpoint: blocking if any of them blocks, and the union of their quarantined services.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from scaleahead.config import Settings, get_settings
from scaleahead.warehouse import connect

DATA_CHECKPOINTS = ("ingest", "transform", "full")

_LATEST_RUNS_SQL = """
SELECT run_id, checkpoint, blocking, reason, checked_at
FROM quality.gate_runs
WHERE checkpoint IN ('ingest', 'transform', 'full')
QUALIFY row_number() OVER (PARTITION BY checkpoint ORDER BY checked_at DESC, run_id DESC) = 1
ORDER BY checked_at
"""


@dataclass(frozen=True)
class GateStatus:
    known: bool = False  # False until a gate run was recorded
    blocking: bool = False
    reason: str | None = None
    run_ids: tuple[str, ...] = ()
    checked_at: datetime | None = None
    quarantined: dict[str, str] = field(default_factory=dict)  # service -> reasons

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checked_at"] = self.checked_at.isoformat() if self.checked_at else None
        return out


def read_status(con: duckdb.DuckDBPyConnection) -> GateStatus:
    """The gate state in force, read on an open warehouse connection."""
    try:
        runs = con.execute(_LATEST_RUNS_SQL).fetchall()
    except duckdb.CatalogException:
        return GateStatus()
    if not runs:
        return GateStatus()
    run_ids = tuple(r[0] for r in runs)
    reasons = [f"{r[1]} gate {r[0]}: {r[3]}" for r in runs if r[2]]
    marks = ", ".join("?" for _ in run_ids)
    rows = con.execute(
        f"SELECT service, reasons FROM quality.quarantined_services WHERE run_id IN ({marks}) "
        "ORDER BY service",
        list(run_ids),
    ).fetchall()
    quarantined: dict[str, str] = {}
    for service, why in rows:
        quarantined[service] = f"{quarantined[service]}, {why}" if service in quarantined else why
    return GateStatus(
        known=True,
        blocking=bool(reasons),
        reason="; ".join(reasons) or None,
        run_ids=run_ids,
        checked_at=max(r[4] for r in runs),
        quarantined=quarantined,
    )


def gate_status(settings: Settings | None = None) -> GateStatus:
    settings = settings or get_settings()
    with connect(read_only=True, path=settings.warehouse_path) as con:
        return read_status(con)


def block_reason(settings: Settings | None = None) -> str | None:
    """Why training/publishing must not run now (None: go ahead)."""
    status = gate_status(settings)
    if status.blocking:
        return f"quality gate blocks downstream stages: {status.reason}"
    return None
