"""``scaleahead shell``: an interactive read-only SQL session on the warehouse.

Statements end with ``;``. Each statement runs in its own transaction, so it reads the latest
DuckLake snapshot; ``BEGIN;`` pins one snapshot until ``COMMIT;``. Writes are refused (the lake
is attached READ_ONLY). ``.snapshot`` prints the snapshot being read, ``.snapshots`` the
recent ones (for ``AT (VERSION => n)`` time travel), ``.tables`` the tables, ``.quit`` exits.
"""

from __future__ import annotations

import sys
from typing import TextIO

import duckdb

from scaleahead.config import Settings
from scaleahead.warehouse.connection import connect, current_snapshot_id

BANNER = (
    "scaleahead warehouse (DuckLake, read-only). End statements with ';'. "
    ".snapshot .snapshots .tables .quit"
)
_META = {
    ".tables": "SELECT schema_name, table_name FROM duckdb_tables() "
    "WHERE database_name = 'lake' ORDER BY 1, 2",
    ".snapshots": "SELECT snapshot_id, snapshot_time, changes FROM lake.snapshots() "
    "ORDER BY snapshot_id DESC LIMIT 20",
}


def _show(con: duckdb.DuckDBPyConnection, statement: str, out: TextIO) -> None:
    relation = con.sql(statement)
    if relation is None:
        out.write("ok\n")
        return
    out.write(str(relation) + "\n")


def run_shell(
    settings: Settings | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Read statements from ``stdin`` until EOF or ``.quit``; return the number that failed."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    interactive = stdin.isatty()
    failures = 0
    with connect(read_only=True, settings=settings) as con:
        if interactive:
            stdout.write(BANNER + "\n")
        buffer: list[str] = []
        while True:
            if interactive:
                stdout.write("lake> " if not buffer else "  ... ")
                stdout.flush()
            line = stdin.readline()
            if not line:
                break
            stripped = line.strip()
            if not buffer and stripped.startswith("."):
                if stripped in (".quit", ".exit"):
                    break
                try:
                    if stripped == ".snapshot":
                        stdout.write(f"{current_snapshot_id(con)}\n")
                    elif stripped in _META:
                        _show(con, _META[stripped], stdout)
                    else:
                        stdout.write(f"unknown command {stripped}\n")
                except duckdb.Error as exc:
                    failures += 1
                    stdout.write(f"error: {exc}\n")
                continue
            buffer.append(line)
            if not stripped.endswith(";"):
                continue
            statement, buffer = "".join(buffer).strip().rstrip(";"), []
            if not statement:
                continue
            try:
                _show(con, statement, stdout)
            except duckdb.Error as exc:
                failures += 1
                stdout.write(f"error: {' '.join(str(exc).split())}\n")
    return failures
