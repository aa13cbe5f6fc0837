"""DuckLake maintenance: compact the small files the 5-minute pipeline leaves behind.

Every increment appends one small Parquet file per incremental table (plus a delete file for
its delete+insert), so after a day each table has hundreds of them, and every read and the
catalog listing pay per file: left alone, an increment's cost would grow with the number of
increments built so far. :func:`compact` merges adjacent small files and rewrites files with
many deleted rows. Both keep every snapshot readable (``AT (VERSION => n)`` still works, so
models trained on a snapshot can be reproduced). Expiring snapshots (which does lose time
travel) only happens when asked, with a retention.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from scaleahead.config import Settings, get_settings
from scaleahead.warehouse.connection import connect
from scaleahead.warehouse.lake import ALIAS

_LIVE_FILES = f"""
SELECT count(*) FROM __ducklake_metadata_{ALIAS}.ducklake_data_file WHERE end_snapshot IS NULL
"""
_LIVE_DELETE_FILES = f"""
SELECT count(*) FROM __ducklake_metadata_{ALIAS}.ducklake_delete_file WHERE end_snapshot IS NULL
"""


@dataclass
class CompactionReport:
    data_files_before: int
    data_files_after: int
    delete_files_before: int
    delete_files_after: int
    snapshots_expired: int
    elapsed_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(con: Any, sql: str) -> int:
    (n,) = con.execute(sql).fetchone()
    return int(n)


def compact(
    settings: Settings | None = None, expire_older_than: timedelta | None = None
) -> CompactionReport:
    """Merge small files and fold deletes into rewritten files; with ``expire_older_than``,
    also expire older snapshots (losing time travel to them) and delete the files they alone
    used. Safe while readers are active: replaced files are only scheduled for deletion."""
    settings = settings or get_settings()
    started = time.perf_counter()
    with connect(settings=settings) as con:
        files, deletes = _count(con, _LIVE_FILES), _count(con, _LIVE_DELETE_FILES)
        con.execute(f"CALL ducklake_flush_inlined_data('{ALIAS}')")
        # Rewrite first: it folds delete files into new data files, which the merge then joins.
        con.execute(f"CALL ducklake_rewrite_data_files('{ALIAS}')")
        con.execute(f"CALL ducklake_merge_adjacent_files('{ALIAS}')")
        expired = 0
        if expire_older_than is not None:
            seconds = int(expire_older_than.total_seconds())
            expired = len(
                con.execute(
                    f"CALL ducklake_expire_snapshots('{ALIAS}', "
                    f"older_than => now() - to_seconds({seconds}))"
                ).fetchall()
            )
            con.execute(
                f"CALL ducklake_cleanup_old_files('{ALIAS}', "
                f"older_than => now() - to_seconds({seconds}))"
            )
        report = CompactionReport(
            data_files_before=files,
            data_files_after=_count(con, _LIVE_FILES),
            delete_files_before=deletes,
            delete_files_after=_count(con, _LIVE_DELETE_FILES),
            snapshots_expired=expired,
            elapsed_s=round(time.perf_counter() - started, 3),
        )
    return report
