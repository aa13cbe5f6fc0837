"""The landing-folder source and format-specific staging of a batch for the loader.

Each ``stage_*`` function returns a :class:`Staged`: a FROM-able relation (a native DuckDB
reader or a temp table) and how to reach each telemetry column from it. Typed relations expose
``_rid`` (the 0-based record ordinal in the file); the CSV and clean-NDJSON paths hand the
loader the parallel reader itself (``ordinal_in_relation=False``): the loader's single typed
pass preserves file order, so the ordinal is the row id of its output, and the file is parsed
once without an all-VARCHAR copy. Records the parser itself cannot split into columns (ragged
CSV rows) go to the temp table ``_rejects(row_number, record, reason)`` (built by the
``after`` statements once the reader has run); NDJSON lines that are not JSON objects are
flagged by ``malformed_sql``.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from scaleahead.ingest.source import Batch

SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
}
REQUIRED: tuple[str, ...] = ("service", "metric", "timestamp", "value")
KNOWN: tuple[str, ...] = (*REQUIRED, "labels")
NAB_COLUMNS: tuple[str, ...] = ("timestamp", "value")
_HEADER_PROBE_BYTES = 1 << 16
_EMPTY_REJECTS = (
    "CREATE OR REPLACE TEMP TABLE _rejects (row_number BIGINT, record VARCHAR, reason VARCHAR)"
)


def restart_transaction(con: duckdb.DuckDBPyConnection, end: str) -> None:
    """End the open transaction with ``end`` (COMMIT or ROLLBACK) and begin a new one.
    No-op in autocommit mode."""
    try:
        con.execute(end)
    except duckdb.TransactionException:
        return
    con.execute("BEGIN TRANSACTION")


def reset_transaction(con: duckdb.DuckDBPyConnection) -> None:
    """After a caught reader error: the loader stages each batch inside its transaction, and
    a failed statement aborts it, so roll back and begin afresh (staging has written nothing
    that must survive: it runs first in the transaction)."""
    restart_transaction(con, "ROLLBACK")


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
    """How to read each telemetry column out of ``relation``: name -> (SQL, source type)."""

    relation: str
    columns: dict[str, tuple[str, str]]
    # SQL over the relation giving the 1-based data row / line of a record.
    row_number_sql: str = "_rid + 1"
    # SQL over the relation giving the record as text for quarantine.
    record_sql: str = "NULL"
    # SQL over the relation: true for records that are not records at all (NDJSON non-objects).
    malformed_sql: str | None = None
    notes: list[str] = field(default_factory=list)
    # False: the relation is a streaming reader without ``_rid``; ``_rid`` in row_number_sql
    # means the record's position in the loader's (order-preserving) output instead.
    ordinal_in_relation: bool = True
    # SQL to run before / once each scan of the relation (e.g. the CSV reader's rejects).
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    # Materialise the typed pass before the stats pass instead of reading the file twice.
    materialise: bool = False
    # Exact (slower) staging to retry with when scanning the relation fails.
    fallback: Callable[[], Staged] | None = None
    # SQL per record (kept as ``_chk`` in the materialised typed pass) and an aggregate over
    # ``_chk`` that must be true for this staging to cover the batch exactly (e.g. no NDJSON
    # key beyond the staged columns); otherwise the loader restages through ``fallback``.
    # Only checked with ``materialise``.
    check_sql: str | None = None
    check_ok_sql: str | None = None


@dataclass(frozen=True)
class NabMapping:
    """NAB-style ``timestamp,value`` files under ``glob`` belong to (service, metric).

    ``{stem}`` in service or metric is replaced by the file name without its suffix.
    """

    glob: str
    service: str
    metric: str

    def resolve(self, rel: str) -> tuple[str, str] | None:
        if not fnmatch.fnmatch(rel, self.glob):
            return None
        stem = Path(rel).stem
        return self.service.format(stem=stem), self.metric.format(stem=stem)


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


class LandingSource:
    """Files under the landing folder; NAB-style CSVs are mapped by ``nab`` globs."""

    name = "landing"

    def __init__(self, landing_dir: Path, nab: list[NabMapping] | None = None) -> None:
        self.landing_dir = landing_dir
        self.nab = nab or []

    def files(self) -> list[LandingFile]:
        return discover(self.landing_dir)

    def mapping_for(self, rel: str) -> tuple[str, str] | None:
        for rule in self.nab:
            hit = rule.resolve(rel)
            if hit:
                return hit
        return None

    def batches(self, con: duckdb.DuckDBPyConnection, as_of: datetime) -> Iterator[Batch]:
        for file in self.files():
            yield Batch(
                source=self.name,
                key=file.rel,
                content_hash=sha256_file(file.path),
                fmt=file.fmt,
                path=file.path,
                mapping=self.mapping_for(file.rel),
            )


def _check_columns(names: list[str], mapping: tuple[str, str] | None = None) -> None:
    lowered = [n.strip().lower() for n in names]
    if len(set(lowered)) != len(lowered):
        raise FileRejected("unknown_schema", f"duplicate column names: {names}")
    required = NAB_COLUMNS if mapping else REQUIRED
    missing = [c for c in required if c not in lowered]
    if missing:
        raise FileRejected("unknown_schema", f"missing required columns {missing}; got {names}")


def _canonical(name: str) -> str:
    """Known columns match case-insensitively; extra columns keep their name as label key."""
    low = name.strip().lower()
    return low if low in KNOWN else name.strip()


def _apply_mapping(columns: dict[str, tuple[str, str]], mapping: tuple[str, str] | None) -> None:
    if mapping:
        columns["service"] = (quote_literal(mapping[0]), "VARCHAR")
        columns["metric"] = (quote_literal(mapping[1]), "VARCHAR")


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


def stage_csv(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    header = _csv_header(batch.path)
    _check_columns(header, batch.mapping)
    # Columns are declared from the header rather than sniffed: the sniffer rejects whole
    # files over a single ragged row, and we want that row quarantined, not the file.
    columns = "{" + ", ".join(f"{quote_literal(c)}: 'VARCHAR'" for c in header) + "}"
    con.execute("DROP TABLE IF EXISTS _csv_rejects; DROP TABLE IF EXISTS _csv_rejects_scan")
    reader = (
        f"read_csv({quote_literal(str(batch.path))}, columns = {columns}, "
        "header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
        "store_rejects = true, rejects_table = '_csv_rejects', "
        "rejects_scan = '_csv_rejects_scan', encoding = 'utf-8')"
    )
    after = [
        # One rejected record can report several column errors; keep one row per record.
        """
        CREATE OR REPLACE TEMP TABLE _rejects AS
        SELECT line - 1 AS row_number, any_value(csv_line) AS record,
               'malformed_row' AS reason
        FROM _csv_rejects GROUP BY line ORDER BY line
        """,
        """
        CREATE OR REPLACE TEMP TABLE _reject_offsets AS
        SELECT row_number - row_number() OVER (ORDER BY row_number) AS accepted_before
        FROM _rejects
        """,
    ]
    cols = {_canonical(c): (quote_ident(c), "VARCHAR") for c in header}
    _apply_mapping(cols, batch.mapping)
    record = "concat_ws(',', " + ", ".join(f"COALESCE({quote_ident(c)}, '')" for c in header) + ")"
    return Staged(
        relation=reader,
        columns=cols,
        # Data row of the k-th accepted record = k + 1 + rejected records in front of it.
        row_number_sql=(
            "_rid + 1 + (SELECT count(*) FROM _reject_offsets o WHERE o.accepted_before <= _rid)"
        ),
        record_sql=record,
        ordinal_in_relation=False,
        before=["DROP TABLE IF EXISTS _csv_rejects", "DROP TABLE IF EXISTS _csv_rejects_scan"],
        after=after,
    )


def _typed_relation(
    con: duckdb.DuckDBPyConnection, relation: str, mapping: tuple[str, str] | None
) -> Staged:
    described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    names = [row[0] for row in described if row[0] != "_rid"]
    _check_columns(names, mapping)
    con.execute(_EMPTY_REJECTS)
    cols = {_canonical(n): (quote_ident(n), t) for n, t, *_ in described if n != "_rid"}
    _apply_mapping(cols, mapping)
    record = (
        "to_json({"
        + ", ".join(f"{quote_literal(n)}: {quote_ident(n)}" for n in names)
        + "})::VARCHAR"
    )
    return Staged(relation=relation, columns=cols, record_sql=record)


def stage_parquet(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    path = quote_literal(str(batch.path))
    relation = f"(SELECT file_row_number AS _rid, * EXCLUDE (file_row_number) FROM read_parquet({path}, file_row_number = true))"  # noqa: E501
    try:
        return _typed_relation(con, relation, batch.mapping)
    except duckdb.Error as exc:
        raise FileRejected("unreadable_file", f"cannot read parquet: {exc}") from exc


def stage_arrow(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    import pyarrow as pa

    table = batch.table
    table = table.append_column("_rid", pa.array(range(table.num_rows), pa.int64()))
    con.register("_arrow", table)
    return _typed_relation(con, "_arrow", batch.mapping)


def _ndjson_lines_fallback(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Slow but exact: split the text into lines so each bad line can be quarantined."""
    try:
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _lines AS
            SELECT unnest(lines) AS line, unnest(range(1, len(lines) + 1)) AS line_no
            FROM (SELECT string_split(content, chr(10)) AS lines FROM read_text(?))
            """,
            [str(path)],
        )
    except duckdb.Error as exc:
        raise FileRejected("unreadable_file", f"cannot read text: {exc}") from exc
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _raw AS
        SELECT line_no AS _line, rtrim(line, chr(13)) AS _record,
               TRY_CAST(rtrim(line, chr(13)) AS JSON) AS _j
        FROM _lines WHERE trim(line, chr(13) || chr(32) || chr(9)) <> ''
        ORDER BY line_no
        """
    )


def _ndjson_keys(con: duckdb.DuckDBPyConnection, path: Path) -> list[str] | None:
    """Every key of every line, or None when some line is not a JSON object (or not JSON)."""
    try:
        rows = con.execute(
            # The reader has validated and trimmed each line, so a line that starts with "{"
            # is an object: one JSON parse per line instead of two (json_type + json_keys).
            "SELECT DISTINCT unnest(CASE WHEN starts_with(json::VARCHAR, '{') "
            "THEN json_keys(json) ELSE [chr(0)] END) "
            "FROM read_json_objects(?, format = 'newline_delimited')",
            [str(path)],
        ).fetchall()
    except duckdb.Error:
        reset_transaction(con)
        return None
    keys = sorted(k for (k,) in rows)
    return None if "\x00" in keys else keys


def _stage_ndjson_fast(con: duckdb.DuckDBPyConnection, batch: Batch, keys: list[str]) -> Staged:
    """Every line is an object: DuckDB's parallel NDJSON reader with the keys as columns."""
    _check_columns(keys, batch.mapping)
    usable = [k for k in keys if '"' not in k and "\\" not in k]
    types = {k: "VARCHAR" if _canonical(k) in REQUIRED else "JSON" for k in usable}
    spec = "{" + ", ".join(f"{quote_literal(k)}: '{t}'" for k, t in types.items()) + "}"
    reader = (
        f"read_json({quote_literal(str(batch.path))}, format = 'newline_delimited', "
        f"columns = {spec})"
    )
    con.execute(f"DESCRIBE SELECT * FROM {reader}")  # bind errors surface here, not mid-load
    con.execute(_EMPTY_REJECTS)
    columns: dict[str, tuple[str, str]] = {}
    for key in usable:
        name, col = _canonical(key), quote_ident(key)
        if name == "labels":
            # labels may be an embedded object or a JSON string holding one.
            expr = f"CASE json_type({col}) WHEN 'OBJECT' THEN {col}::VARCHAR ELSE {col}->>'$' END"
            columns[name] = (expr, "VARCHAR")
        else:
            columns[name] = (col, types[key])
    _apply_mapping(columns, batch.mapping)
    record = (
        "to_json({"
        + ", ".join(f"{quote_literal(k)}: {quote_ident(k)}" for k in usable)
        + "})::VARCHAR"
    )
    notes = []
    if len(usable) != len(keys):
        notes.append(f"ignored keys with quotes/backslashes: {sorted(set(keys) - set(usable))}")
    return Staged(
        relation=reader,
        columns=columns,
        # Blank lines are skipped by the reader: this is the line number whenever the file
        # has none (files with malformed lines take the exact line-numbered path).
        row_number_sql="_rid + 1",
        record_sql=record,
        notes=notes,
        ordinal_in_relation=False,
        materialise=True,  # parsing JSON twice costs more than one typed copy
        # e.g. a nested value in a text field only shows up while reading.
        fallback=lambda: _stage_ndjson_exact(con, batch),
    )


def _stage_ndjson_map(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    """The common NDJSON file in one parse: each line read as ``MAP(VARCHAR, VARCHAR)``.

    The map is the whole object, so the typed pass itself sees every key: no separate key
    discovery pass over the file (it cost about 40% of a 1M-line load). Values come as text:
    strings unescaped, anything else as its JSON text, exactly as the discovery path's
    VARCHAR columns and ``labels`` expression give them. ``_chk`` is -1 for a line with a key
    beyond the contract's (exact lower-case names), else the bitmask of the known keys it
    has; unless every line is covered and each required key occurs somewhere, the loader
    restages through key discovery (which maps extra keys to labels or rejects the schema).
    A line that is not a JSON object fails the read and takes the same fallback.
    """
    con.execute(_EMPTY_REJECTS)
    reader = (
        f"read_json({quote_literal(str(batch.path))}, format = 'newline_delimited', "
        "records = false, columns = {'_m': 'MAP(VARCHAR, VARCHAR)'})"
    )
    # Bit i = KNOWN[i] is a key of the line (REQUIRED come first); a line with more keys
    # than known ones has another key. (list_has_all over map_keys cost 4x as much.)
    mask = " + ".join(
        f"{1 << i} * map_contains(_m, {quote_literal(k)})::INTEGER" for i, k in enumerate(KNOWN)
    )
    required = (1 << len(REQUIRED)) - 1
    return Staged(
        relation=reader,
        columns={k: (f"_m[{quote_literal(k)}]", "VARCHAR") for k in KNOWN},
        row_number_sql="_rid + 1",  # blank lines are skipped, as on the discovery path
        record_sql="to_json(_m)::VARCHAR",
        ordinal_in_relation=False,
        materialise=True,
        fallback=lambda: _stage_ndjson_discovered(con, batch),
        check_sql=f"CASE WHEN cardinality(_m) = bit_count({mask}) THEN {mask} ELSE -1 END",
        check_ok_sql=f"min(_chk) >= 0 AND bit_or(_chk) & {required} = {required}",
    )


def stage_ndjson(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    if batch.mapping is None:
        return _stage_ndjson_map(con, batch)
    return _stage_ndjson_discovered(con, batch)


def _stage_ndjson_discovered(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    """Every key of every line first (one pass), then the reader with those keys as columns."""
    keys = _ndjson_keys(con, batch.path)
    if keys is not None:
        try:
            return _stage_ndjson_fast(con, batch, keys)
        except duckdb.Error:
            # e.g. a nested value in a text field: the exact path below handles it
            reset_transaction(con)
    return _stage_ndjson_exact(con, batch)


def _stage_ndjson_exact(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    """Split into lines so each bad line is quarantined with its line number."""
    _ndjson_lines_fallback(con, batch.path)
    con.execute(_EMPTY_REJECTS)
    total, objects = con.execute(
        "SELECT count(*), count(*) FILTER (json_type(_j) = 'OBJECT') FROM _raw"
    ).fetchone()
    if total and not objects:
        raise FileRejected("unreadable_file", "no line of the file is a JSON object")
    keys = [
        k
        for (k,) in con.execute(
            "SELECT DISTINCT unnest(json_keys(_j)) AS k FROM _raw "
            "WHERE json_type(_j) = 'OBJECT' ORDER BY k"
        ).fetchall()
    ]
    if total:
        _check_columns(keys, batch.mapping)
    notes = []
    usable = [k for k in keys if '"' not in k and "\\" not in k]
    if len(usable) != len(keys):
        notes.append(f"ignored keys with quotes/backslashes: {sorted(set(keys) - set(usable))}")
    paths = ", ".join(quote_literal(f'$."{k}"') for k in usable) or "'$.service'"
    # One JSON parse per line for all keys: text values for known fields, JSON for the rest.
    relation = (
        f"(SELECT rowid AS _rid, _line, _record, _j, "
        f"json_extract_string(_j, [{paths}]) AS _text, json_extract(_j, [{paths}]) AS _json "
        "FROM _raw)"
    )
    columns: dict[str, tuple[str, str]] = {}
    for i, key in enumerate(usable, start=1):
        name = _canonical(key)
        if name == "labels":
            expr = (
                f"CASE json_type(_json[{i}]) WHEN 'OBJECT' THEN _json[{i}]::VARCHAR "
                f"ELSE _text[{i}] END"
            )
            columns[name] = (expr, "VARCHAR")
        elif name in KNOWN:
            columns[name] = (f"_text[{i}]", "VARCHAR")
        else:
            columns[name] = (f"_json[{i}]", "JSON")
    _apply_mapping(columns, batch.mapping)
    return Staged(
        relation=relation,
        columns=columns,
        row_number_sql="_line",
        record_sql="_record",
        malformed_sql="_j IS NULL OR json_type(_j) <> 'OBJECT'",
        notes=notes,
    )


def stage(con: duckdb.DuckDBPyConnection, batch: Batch) -> Staged:
    stagers = {"csv": stage_csv, "ndjson": stage_ndjson, "parquet": stage_parquet,
               "arrow": stage_arrow}  # fmt: skip
    try:
        return stagers[batch.fmt](con, batch)
    except FileRejected:
        raise
    except (duckdb.Error, OSError, UnicodeError, ValueError) as exc:
        raise FileRejected("unreadable_file", f"{type(exc).__name__}: {exc}") from exc
