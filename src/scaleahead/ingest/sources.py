"""Landing-folder discovery and format-specific staging into DuckDB temp tables.

Each ``stage_*`` function leaves two temp tables on the connection:

* ``_raw``: one row per parsed record, in file order (``rowid`` is the 0-based ordinal),
  with the source columns as read;
* ``_rejects(row_number, record, reason)``: records the parser itself could not split into
  columns (CSV rows with the wrong column count, NDJSON lines that are not JSON objects).

and returns a :class:`Staged` describing how to reach each source column from ``_raw``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
}
REQUIRED: tuple[str, ...] = ("service", "metric", "timestamp", "value")
KNOWN: tuple[str, ...] = (*REQUIRED, "labels")
_HEADER_PROBE_BYTES = 1 << 16


class FileRejected(Exception):
    """The file as a whole cannot be loaded; ``reason`` goes to the quarantine row."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LandingFile:
    path: Path
    rel: str  # posix path relative to the landing folder: the manifest key
    fmt: str


@dataclass
class Staged:
    """How to read each source column out of ``_raw``: name -> (SQL expression, type)."""

    columns: dict[str, tuple[str, str]]
    # SQL giving the 1-based data row of a ``_raw`` row, in terms of ``{rid}`` (its rowid).
    row_number_sql: str = "{rid} + 1"
    # SQL over the ``_raw`` row aliased ``r`` giving the record as text for quarantine.
    record_sql: str = "to_json(r)::VARCHAR"
    notes: list[str] = field(default_factory=list)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def discover(landing_dir: Path) -> list[LandingFile]:
    """Telemetry files under the landing folder, sorted by relative path (deterministic)."""
    if not landing_dir.is_dir():
        return []
    found = []
    for path in landing_dir.rglob("*"):
        fmt = SUFFIXES.get(path.suffix.lower())
        rel = path.relative_to(landing_dir)
        # Dot-files and dot-folders are partial uploads / editor droppings, never telemetry.
        if fmt and path.is_file() and not any(part.startswith(".") for part in rel.parts):
            found.append(LandingFile(path, rel.as_posix(), fmt))
    return sorted(found, key=lambda f: f.rel)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_columns(names: list[str]) -> None:
    lowered = [n.strip().lower() for n in names]
    if len(set(lowered)) != len(lowered):
        raise FileRejected("unknown_schema", f"duplicate column names: {names}")
    missing = [c for c in REQUIRED if c not in lowered]
    if missing:
        raise FileRejected("unknown_schema", f"missing required columns {missing}; got {names}")


def _canonical(name: str) -> str:
    """Known columns match case-insensitively; extra columns keep their name as label key."""
    low = name.strip().lower()
    return low if low in KNOWN else name.strip()


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        head = fh.read(_HEADER_PROBE_BYTES)
    if not head.strip():
        raise FileRejected("unreadable_file", "empty file")
    if b"\x00" in head:
        raise FileRejected("unreadable_file", "binary content (NUL bytes) in a CSV file")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The probe may cut a multi-byte character; only the first line matters.
        text = head[: exc.start].decode("utf-8-sig") if exc.start > 0 else ""
        if "\n" not in text:
            raise FileRejected("unreadable_file", f"header is not UTF-8: {exc}") from exc
    first = next(csv.reader(io.StringIO(text.splitlines()[0])), [])
    return first


def stage_csv(con: duckdb.DuckDBPyConnection, file: LandingFile) -> Staged:
    header = _csv_header(file.path)
    _check_columns(header)
    # Columns are declared from the header rather than sniffed: the sniffer rejects whole
    # files over a single ragged row, and we want that row quarantined, not the file.
    columns = "{" + ", ".join(f"{quote_literal(c)}: 'VARCHAR'" for c in header) + "}"
    con.execute("DROP TABLE IF EXISTS _csv_rejects; DROP TABLE IF EXISTS _csv_rejects_scan")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _raw AS
        SELECT * FROM read_csv({quote_literal(str(file.path))}, columns = {columns},
            header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
            store_rejects = true, rejects_table = '_csv_rejects',
            rejects_scan = '_csv_rejects_scan', encoding = 'utf-8')
        """
    )
    # One rejected record can report several column errors; keep one row per record.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rejects AS
        SELECT line - 1 AS row_number, any_value(csv_line) AS record,
               'malformed_row' AS reason
        FROM _csv_rejects GROUP BY line ORDER BY line
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _reject_offsets AS
        SELECT row_number - row_number() OVER (ORDER BY row_number) AS accepted_before
        FROM _rejects
        """
    )
    return Staged(
        columns={_canonical(c): (quote_ident(c), "VARCHAR") for c in header},
        # Data row of the k-th accepted record = k + 1 + rejected records in front of it.
        row_number_sql=(
            "{rid} + 1 + (SELECT count(*) FROM _reject_offsets o WHERE o.accepted_before <= {rid})"
        ),
    )


def stage_parquet(con: duckdb.DuckDBPyConnection, file: LandingFile) -> Staged:
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM read_parquet(?)",
            [str(file.path)],
        )
    except duckdb.Error as exc:
        raise FileRejected("unreadable_file", f"cannot read parquet: {exc}") from exc
    described = con.execute("DESCRIBE _raw").fetchall()
    names = [row[0] for row in described]
    _check_columns(names)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rejects (row_number BIGINT, record VARCHAR, reason VARCHAR)"
    )
    return Staged(columns={_canonical(n): (quote_ident(n), t) for n, t, *_ in described})


def stage_ndjson(con: duckdb.DuckDBPyConnection, file: LandingFile) -> Staged:
    try:
        # read_text + split keeps line numbers and lets a single bad line be quarantined;
        # read_json would either fail the whole file or drop bad lines without a trace.
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _lines AS
            SELECT unnest(lines) AS line, unnest(range(1, len(lines) + 1)) AS line_no
            FROM (SELECT string_split(content, chr(10)) AS lines FROM read_text(?))
            """,
            [str(file.path)],
        )
    except duckdb.Error as exc:
        raise FileRejected("unreadable_file", f"cannot read text: {exc}") from exc
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _parsed AS
        SELECT line_no, rtrim(line, chr(13)) AS line, TRY_CAST(rtrim(line, chr(13)) AS JSON) AS j
        FROM _lines WHERE trim(line, chr(13) || chr(32) || chr(9)) <> ''
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rejects AS
        SELECT line_no AS row_number, line AS record, 'malformed_row' AS reason
        FROM _parsed WHERE j IS NULL OR json_type(j) <> 'OBJECT' ORDER BY line_no
        """
    )
    total, objects = con.execute(
        "SELECT count(*), count(*) FILTER (json_type(j) = 'OBJECT') FROM _parsed"
    ).fetchone()
    if total and not objects:
        raise FileRejected("unreadable_file", "no line of the file is a JSON object")
    keys = [
        k
        for (k,) in con.execute(
            "SELECT DISTINCT unnest(json_keys(j)) AS k FROM _parsed "
            "WHERE json_type(j) = 'OBJECT' ORDER BY k"
        ).fetchall()
    ]
    if total:
        _check_columns(keys)
    notes = []
    usable = [k for k in keys if '"' not in k and "\\" not in k]
    if len(usable) != len(keys):
        notes.append(f"ignored keys with quotes/backslashes: {sorted(set(keys) - set(usable))}")
    paths = ", ".join(quote_literal(f'$."{k}"') for k in usable) or "'$.service'"
    # One JSON parse per line for all keys: text values for known fields, JSON for the rest.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _raw AS
        SELECT line_no AS _line, line AS _record,
               json_extract_string(j, [{paths}]) AS _text,
               json_extract(j, [{paths}]) AS _json
        FROM _parsed WHERE json_type(j) = 'OBJECT' ORDER BY line_no
        """
    )
    columns: dict[str, tuple[str, str]] = {}
    for i, key in enumerate(usable, start=1):
        name = _canonical(key)
        if name == "labels":
            # labels may be an embedded object or a JSON string holding one.
            expr = (
                f"CASE json_type(_json[{i}]) WHEN 'OBJECT' THEN _json[{i}]::VARCHAR "
                f"ELSE _text[{i}] END"
            )
            columns[name] = (expr, "VARCHAR")
        elif name in KNOWN:
            columns[name] = (f"_text[{i}]", "VARCHAR")
        else:
            columns[name] = (f"_json[{i}]", "JSON")
    return Staged(
        columns=columns,
        row_number_sql="(SELECT _line FROM _raw r WHERE r.rowid = {rid})",
        record_sql="r._record",
        notes=notes,
    )


def stage(con: duckdb.DuckDBPyConnection, file: LandingFile) -> Staged:
    stagers = {"csv": stage_csv, "ndjson": stage_ndjson, "parquet": stage_parquet}
    try:
        return stagers[file.fmt](con, file)
    except FileRejected:
        raise
    except (duckdb.Error, OSError, UnicodeError, ValueError) as exc:
        raise FileRejected("unreadable_file", f"{type(exc).__name__}: {exc}") from exc
