"""DuckDB connections to the warehouse file.

A DuckDB file admits one writing process at a time; writers here hold a connection only for
the span of one task step and retry briefly when another process holds the lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from scaleahead.config import get_settings
from scaleahead.warehouse.schema import ensure_schema

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock")


class WarehouseError(RuntimeError):
    """The warehouse could not be opened or queried."""


def _open(path: Path, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not any(m in str(exc) for m in _LOCK_MARKERS) or time.monotonic() > deadline:
                raise WarehouseError(f"cannot open warehouse {path}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def connect(
    read_only: bool = False, path: Path | None = None, timeout_s: float = 120.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse; writers get the platform's tables created if missing."""
    path = path or get_settings().warehouse_path
    if read_only and not path.exists():
        raise WarehouseError(f"warehouse {path} does not exist yet: run `scaleahead ingest` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, timeout_s)
    try:
        if not read_only:
            ensure_schema(con)
        yield con
    finally:
        con.close()


def read_sql(query: str, params: list | None = None, path: Path | None = None) -> pd.DataFrame:
    """Run one query on a read-only connection and return a pandas frame."""
    with connect(read_only=True, path=path) as con:
        return con.execute(query, params or []).df()
