"""Sessions on the DuckLake warehouse.

Each ``connect()`` opens an in-memory DuckDB session, attaches the lake (see
``scaleahead.warehouse.lake``) as ``lake`` and makes it the default catalog, so tables are
named ``raw.telemetry``, ``marts.service_demand_5m`` ... as before. DuckLake keeps every
commit as a snapshot in its catalog: any number of processes may read while one writes,
readers see a consistent snapshot per transaction, and writers of other processes are never
blocked by open read sessions. Read-only sessions attach the lake ``READ_ONLY``: writes fail.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from scaleahead.config import Settings
from scaleahead.warehouse.lake import (
    ALIAS,
    Lake,
    LakeConfigError,
    ensure_wal,
    install_extensions,
    lake_for,
)
from scaleahead.warehouse.schema import ensure_schema

if TYPE_CHECKING:
    # Only for annotations: serving processes (the API) must not pay pandas' memory.
    import pandas as pd

# Transient catalog contention (SQLite busy, DuckLake commit conflicts) is retried on open.
_TRANSIENT = ("database is locked", "Could not set lock", "Conflicting lock", "conflict")


class WarehouseError(RuntimeError):
    """The warehouse could not be opened or queried."""


def _attach(lake: Lake, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        con = duckdb.connect(":memory:", config=lake.duckdb_config())
        try:
            con.execute(lake.attach_sql(read_only=read_only))
            return con
        except duckdb.Error as exc:
            con.close()
            transient = any(m.lower() in str(exc).lower() for m in _TRANSIENT)
            if not transient or time.monotonic() > deadline:
                raise WarehouseError(f"cannot open warehouse {lake.describe()}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


# One in-memory DuckDB instance per (process, lake, mode) with the lake attached; sessions are
# cursors on it. Loading the extensions costs ~0.2 s per instance, a cursor ~1 ms, and an
# attached lake holds no lock: readers and writers of other processes are unaffected.
@dataclass
class _Instance:
    con: duckdb.DuckDBPyConnection
    identity: object
    # The platform's tables were created (or found) through this instance: the DDL costs ~30 ms,
    # most of a writer session's opening, and only has to run once per attached catalog.
    schema_ready: bool = False


_INSTANCES: dict[tuple[int, Lake, bool], _Instance] = {}
_INSTANCES_LOCK = threading.Lock()


def _identity(lake: Lake) -> object:
    """Changes when the SQLite catalog file is replaced (deleted and recreated)."""
    if lake.catalog_file is None:
        return None
    try:
        stat = lake.catalog_file.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _drop(key: tuple[int, Lake, bool]) -> None:
    entry = _INSTANCES.pop(key, None)
    if entry is not None:
        with contextlib.suppress(duckdb.Error):  # closing a broken instance
            entry.con.close()


def _instance(lake: Lake, read_only: bool, timeout_s: float) -> _Instance:
    key = (os.getpid(), lake, read_only)
    with _INSTANCES_LOCK:
        entry = _INSTANCES.get(key)
        if entry is not None and entry.identity != _identity(lake):
            _drop(key)  # the catalog was replaced under us: attach the new one
            entry = None
        if entry is None:
            base = _attach(lake, read_only, timeout_s)
            entry = _INSTANCES[key] = _Instance(base, _identity(lake))
        return entry


def _open(
    lake: Lake, read_only: bool, timeout_s: float
) -> tuple[duckdb.DuckDBPyConnection, _Instance]:
    for attempt in (1, 2):
        entry = _instance(lake, read_only, timeout_s)
        try:
            con = entry.con.cursor()
            con.execute(f"USE {ALIAS}")
            return con, entry
        except duckdb.Error as exc:
            # A broken instance (e.g. its catalog vanished) is dropped and attached afresh once.
            with _INSTANCES_LOCK:
                _drop((os.getpid(), lake, read_only))
            if attempt == 2:
                raise WarehouseError(f"cannot open warehouse {lake.describe()}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def close_all() -> None:
    """Close this process's cached warehouse instances (e.g. before deleting a warehouse)."""
    with _INSTANCES_LOCK:
        for key in [k for k in _INSTANCES if k[0] == os.getpid()]:
            _drop(key)


atexit.register(close_all)


@contextmanager
def connect(
    read_only: bool = False,
    path: Path | None = None,
    timeout_s: float = 120.0,
    settings: Settings | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A session on the warehouse; writers get the platform's tables created if missing (once per
    attached catalog and process).

    ``path`` (a ``settings.warehouse_path``) selects the warehouse; by default the one of
    ``settings`` (or of the process settings).
    """
    lake = lake_for(settings, path)
    if read_only and not lake.exists():
        raise WarehouseError(
            f"warehouse {lake.describe()} does not exist yet: run `scaleahead ingest` first"
        )
    try:
        install_extensions(lake)
    except (LakeConfigError, duckdb.Error, OSError) as exc:
        raise WarehouseError(f"cannot install the DuckLake extensions: {exc}") from exc
    if lake.catalog_file is not None:
        try:
            ensure_wal(lake)
        except sqlite3.Error as exc:
            raise WarehouseError(f"cannot open warehouse {lake.describe()}: {exc}") from exc
    if not read_only:
        lake.data_path.mkdir(parents=True, exist_ok=True)
    con, entry = _open(lake, read_only, timeout_s)
    try:
        if not read_only and not entry.schema_ready:
            ensure_schema(con)
            entry.schema_ready = True
        yield con
    finally:
        con.close()


def read_sql(
    query: str,
    params: list | None = None,
    path: Path | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Run one query on a read-only session and return a pandas frame."""
    with connect(read_only=True, path=path, settings=settings) as con:
        return con.execute(query, params or []).df()


def current_snapshot_id(con: duckdb.DuckDBPyConnection) -> int:
    """The DuckLake snapshot the session currently reads (inside a transaction: the one it
    started on). Record it with a result (e.g. a trained model) and read the same data back
    later with ``SELECT ... FROM lake.marts.service_demand_5m AT (VERSION => <id>)``."""
    (snapshot_id,) = con.execute(f"SELECT id FROM {ALIAS}.current_snapshot()").fetchone()
    return int(snapshot_id)
