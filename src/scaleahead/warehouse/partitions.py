"""Idempotent writes of a run's rows: replace one ``as_of`` partition in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import duckdb
import pandas as pd


def replace_as_of(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    rows: pd.DataFrame,
    as_of: datetime,
) -> None:
    """Delete ``table``'s rows of ``as_of`` and insert ``rows``, all or nothing: a rerun of the
    same interval replaces its rows instead of duplicating them."""
    view = f"_rows_{table.replace('.', '_')}"
    con.register(view, rows)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {table} WHERE as_of = $as_of", {"as_of": as_of})
        con.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM {view}"
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister(view)


def demand_end(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The end of the demand mart's latest 5-minute bucket (a replay's default ``as_of``);
    None when the mart is empty."""
    (latest,) = con.execute("SELECT max(ds) FROM marts.service_demand_5m").fetchone()
    return None if latest is None else latest + timedelta(minutes=5)
