"""Load telemetry batches from any :class:`~scaleahead.ingest.source.Source` into ``raw.telemetry``.

Per batch, set-based SQL passes over DuckDB's native readers (no row-by-row Python):

1. ``_norm``: one typed/classifying pass over the reader (the file is parsed once, never
   copied as text): naive-UTC ``ts``, ``DOUBLE`` value, the raw label inputs, the first
   failing ``reason`` per record (NULL = good) and, for bad records only, their text and row
   number; canonical labels are computed once per distinct label input (``_lbl``) and joined
   back by the ``_good`` view;
2. one aggregate: counts, the batch's ``ts`` range and whether any key repeats in the batch;
3. in the same transaction as 1-2 (one per batch, so DuckLake reads its catalog once per
   batch, not per statement): quarantine = ``INSERT ... WHERE reason IS NOT NULL``; load =
   ``INSERT ... SELECT`` of the good rows, deduplicated in-batch by ``QUALIFY`` (last record
   wins) only when a key repeats, and anti-joined against the latest stored version of each
   key only when ``raw.telemetry`` holds rows in the batch's ``ts`` range; schema-drift
   records; the ``raw.ingest_batches`` row; the source's commit hooks (e.g. a watermark).

Bad input never raises: bad rows go to ``raw.quarantine`` with a reason, unreadable files
become ``file_quarantined`` batches, and the run moves on. One ingest run at a time per
warehouse (an exclusive ``flock`` on ``<warehouse_dir>/ingest.lock``), and each batch
re-checks its claim inside its transaction, so concurrent runs never double-load.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
from tqdm import tqdm

from scaleahead.config import Settings, get_settings
from scaleahead.ingest.accounting import (
    FILE_QUARANTINED,
    LOADED,
    SKIPPED,
    BatchResult,
    IngestReport,
)
from scaleahead.ingest.source import Batch, Source
from scaleahead.ingest.sources import (
    KNOWN,
    FileRejected,
    LandingSource,
    Staged,
    quote_literal,
    reset_transaction,
    restart_transaction,
    stage,
)
from scaleahead.warehouse import connect

log = logging.getLogger("scaleahead.ingest")

SOURCE = "landing"
FUTURE_TOLERANCE = timedelta(days=1)
LOCK_FILE = "ingest.lock"
INGEST_MEMORY_LIMIT = "1500MB"
_NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "INT", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT",
                  "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT", "UHUGEINT", "INTEGER",
                  "DECIMAL")  # fmt: skip
_TEXT_TYPES = ("VARCHAR", "JSON")
_TIME_TYPES = ("TIMESTAMP", "DATE", "VARCHAR")
_TYPED_FORMATS = ("parquet", "arrow")

# First failing check wins, in this order.
REASONS: tuple[str, ...] = (
    "malformed_row",
    "type_changed",
    "missing_service",
    "missing_metric",
    "unparseable_timestamp",
    "non_numeric_value",
    "non_finite_value",
    "future_timestamp",
    "invalid_labels",
)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def batch_id_for(rel: str, content_hash: str, source: str = SOURCE) -> str:
    """Deterministic: one batch per (source, key, content), which the manifest makes unique."""
    text = f"{rel}\0{content_hash}" if source == SOURCE else f"{source}\0{rel}\0{content_hash}"
    return "b-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _text_expr(expr: str) -> str:
    # trim() copies every string (it was the costliest part of typing a CSV): only values
    # that start or end with a space pay for it.
    text = f"CAST({expr} AS VARCHAR)"
    return (
        f"CASE WHEN prefix({text}, ' ') OR suffix({text}, ' ') "
        f"THEN NULLIF(trim({text}), '') ELSE NULLIF({text}, '') END"
    )


def _timestamp_expr(expr: str, sql_type: str) -> str:
    """Any timestamp-ish source column -> naive UTC TIMESTAMP, NULL when not parseable."""
    t = sql_type.upper()
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return f"timezone('UTC', {expr})"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({expr} AS TIMESTAMP)"
    # ISO-8601 text incl. 'Z' and '+hh:mm' offsets; a bare TIMESTAMP cast would silently drop
    # the offset, so parse as TIMESTAMPTZ (session zone is UTC for naive strings) and convert.
    # The common '...Z' form and zone-less text take the much cheaper TIMESTAMP cast.
    text = f"CAST({expr} AS VARCHAR)"
    return (
        f"CASE WHEN suffix({text}, 'Z') OR NOT regexp_matches({text}, '[+-]\\d\\d:?\\d\\d\\s*$') "
        f"THEN TRY_CAST({text} AS TIMESTAMP) "
        f"ELSE timezone('UTC', TRY_CAST(trim({text}) AS TIMESTAMPTZ)) END"
    )


def _value_expr(expr: str, sql_type: str) -> str:
    if sql_type.upper().split("(")[0] in _NUMERIC_TYPES:
        return f"CAST({expr} AS DOUBLE)"
    # The cast itself skips surrounding whitespace; trim() would copy every string.
    return f"TRY_CAST(CAST({expr} AS VARCHAR) AS DOUBLE)"


def type_drift(staged: Staged, fmt: str) -> list[tuple[str, str]]:
    """(column, type) of known columns of a typed file whose type is not the contract's."""
    if fmt not in _TYPED_FORMATS:
        return []
    wrong = []
    for name, (expr, sql_type) in staged.columns.items():
        if name not in KNOWN or expr.startswith("'"):  # mapped constants are fine
            continue
        base = sql_type.upper().split("(")[0]
        ok = {
            "service": base in _TEXT_TYPES,
            "metric": base in _TEXT_TYPES,
            "timestamp": any(base.startswith(t) for t in _TIME_TYPES),
            "value": base in _NUMERIC_TYPES,
            "labels": base in _TEXT_TYPES or base.startswith(("STRUCT", "MAP")),
        }[name]
        if not ok:
            wrong.append((name, sql_type))
    return wrong


def _label_inputs(staged: Staged) -> list[tuple[str, str]]:
    """(alias, SQL over the relation) of every column feeding the labels: labels + extras."""
    inputs = []
    if "labels" in staged.columns:
        expr, sql_type = staged.columns["labels"]
        if sql_type.upper().startswith(("STRUCT", "MAP")):
            expr = f"to_json({expr})"
        inputs.append(("_l_labels", _text_expr(expr)))
    extras = [(n, e) for n, (e, _) in staged.columns.items() if n not in KNOWN]
    inputs += [(f"_l_{i}", f"to_json({expr})") for i, (_, expr) in enumerate(extras)]
    return inputs


def _canonical_labels_sql(staged: Staged) -> str:
    """Canonical labels JSON text (sorted keys) from the ``_l_*`` inputs; NULL if invalid."""
    extra_names = [n for n in staged.columns if n not in KNOWN]
    entries = [
        f"{{'key': {quote_literal(name)}, 'value': _l_{i}}}" for i, name in enumerate(extra_names)
    ]
    entries_list = f"[{', '.join(entries)}]" if entries else "[]::STRUCT(key VARCHAR, value JSON)[]"
    extras_map = (
        f"map_from_entries(list_filter({entries_list}, "
        "e -> e.value IS NOT NULL AND e.value::VARCHAR <> 'null'))"
    )
    if "labels" in staged.columns:
        label_map = "TRY_CAST(TRY_CAST(_l_labels AS JSON) AS MAP(VARCHAR, JSON))"
        invalid = f"_l_labels IS NOT NULL AND {label_map} IS NULL"
    else:
        label_map, invalid = "NULL", "false"
    # Explicit labels win over extra columns of the same name; keys sorted for stable keys.
    merged = f"map_concat({extras_map}, COALESCE({label_map}, MAP {{}}::MAP(VARCHAR, JSON)))"
    canonical = f"to_json(map_from_entries(list_sort(map_entries({merged}))))::VARCHAR"
    return f"CASE WHEN {invalid} THEN NULL ELSE {canonical} END"


def _labels_invalid_sql(staged: Staged) -> str:
    """True when the ``labels`` input is present but not a JSON object (same test as
    :func:`_canonical_labels_sql`), so the typed pass can classify without canonicalising."""
    if "labels" not in staged.columns:
        return "false"
    return "(_l_labels IS NOT NULL AND TRY_CAST(TRY_CAST(_l_labels AS JSON) AS MAP(VARCHAR, JSON)) IS NULL)"  # noqa: E501


def _typed_select(
    staged: Staged, fmt: str, future_limit: datetime, check_labels: bool = True
) -> str:
    """One typed, classifying projection of the reader (no materialisation):
    ``service, metric, ts, value, _l_*, reason, record, rowno`` with naive-UTC ``ts``,
    ``DOUBLE`` value, the raw label inputs, the first failing ``reason`` (NULL = good) and,
    for bad records only, their text and row number. A pure projection, so DuckDB keeps file
    order when it is materialised and the output row id is the record ordinal.

    Without ``check_labels`` the (per-row JSON) label test is left out: the streaming path
    checks each distinct label input once instead."""
    cols = staged.columns
    inputs = _label_inputs(staged)
    type_changed = "true" if type_drift(staged, fmt) else "false"
    if type_changed == "true":
        service = metric = ts = value = "NULL"
    else:
        service = _text_expr(cols["service"][0])
        metric = _text_expr(cols["metric"][0])
        ts = _timestamp_expr(*cols["timestamp"])
        value = _value_expr(*cols["value"])
    malformed = staged.malformed_sql or "false"
    checks = [
        "_n_malformed",
        type_changed,
        "_n_service IS NULL",
        "_n_metric IS NULL",
        "_n_ts IS NULL OR NOT isfinite(_n_ts)",
        "_n_value IS NULL",
        "NOT isfinite(_n_value)",
        f"_n_ts > TIMESTAMP '{future_limit.isoformat(sep=' ')}'",
        _labels_invalid_sql(staged) if inputs and check_labels else "false",
    ]
    cases = " ".join(
        f"WHEN {cond} THEN '{reason}'" for cond, reason in zip(checks, REASONS, strict=True)
    )
    input_cols = "".join(f", {expr} AS {alias}" for alias, expr in inputs)
    check = f", {staged.check_sql} AS _chk" if staged.check_sql else ""
    aliases = "".join(f", {alias}" for alias, _ in inputs)
    rowno = "NULL" if not staged.ordinal_in_relation else staged.row_number_sql
    # The source columns pass through the inner queries so the record text and row number
    # are computed for bad records only.
    return f"""
        SELECT _n_service AS service, _n_metric AS metric, _n_ts AS ts, _n_value AS value
               {aliases}, _n_reason AS reason,
               CASE WHEN _n_reason IS NOT NULL THEN {staged.record_sql} END AS record,
               CASE WHEN _n_reason IS NOT NULL THEN {rowno} END AS rowno {check}
        FROM (
            SELECT *, CASE {cases} END AS _n_reason
            FROM (
                SELECT *, ({malformed}) AS _n_malformed, {service} AS _n_service,
                       {metric} AS _n_metric, {ts} AS _n_ts, {value} AS _n_value {input_cols}
                FROM {staged.relation}
            )
        )
    """


def _scan(con: duckdb.DuckDBPyConnection, staged: Staged, sql: str) -> None:
    for statement in staged.before:
        con.execute(statement)
    con.execute(sql)
    for statement in staged.after:
        con.execute(statement)


def _commit_staging(con: duckdb.DuckDBPyConnection) -> None:
    """Commit what the batch's transaction holds so far (only staging: temp tables and
    reads) and begin afresh: DuckDB scans a table created in the open transaction on one
    thread, a committed one in parallel (the later passes and the INSERT read ``_norm``).
    No-op in autocommit mode."""
    restart_transaction(con, "COMMIT")


class Restage(Exception):
    """The staging read the batch but does not cover it exactly: use its ``fallback``."""


@dataclass
class BatchStats:
    records: int
    good: int
    rejected: int  # records the parser could not split (``_rejects``)
    lo: datetime | None
    hi: datetime | None
    repeats: bool  # some key occurs more than once among the good records
    exact: bool  # ``_norm`` is materialised (bad records or repeats need ordinals)


def _group_stats_sql(inputs: str, source: str, keys: str | None = None) -> str:
    """Per distinct label input: counts, ts range and distinct keys (hash) of good records.

    Label inputs are part of the key, so distinct keys per group add up to the batch's.
    ``keys`` replaces the per-group distinct count by an expression (e.g. NULL when the
    caller counts distinct keys once over the whole batch, which is cheaper in DuckDB)."""
    group = f"GROUP BY {inputs.lstrip(', ')}" if inputs else ""
    keys = keys or "count(DISTINCT hash(service, metric, ts)) FILTER (reason IS NULL)"
    return f"""
        CREATE OR REPLACE TEMP TABLE _groups AS
        SELECT {inputs.lstrip(", ")}{"," if inputs else ""}
               count(*) AS n, count(*) FILTER (reason IS NULL) AS good,
               min(ts) FILTER (reason IS NULL) AS lo, max(ts) FILTER (reason IS NULL) AS hi,
               {keys} AS keys
        FROM {source} {group}
    """


def prepare(
    con: duckdb.DuckDBPyConnection, staged: Staged, fmt: str, future_limit: datetime
) -> BatchStats:
    """Classify the batch and expose its good rows as the view ``_good(rid, service, metric,
    ts, value, labels)``.

    The common batch (every record good, no key twice) is read twice in a streaming fashion:
    one aggregate pass (counts, ts range, distinct keys per distinct label input) and the
    INSERT; nothing is materialised. Otherwise the typed pass is materialised once as
    ``_norm`` so bad records keep their text and row numbers and repeats their file order.
    Formats whose parse costs more than a typed copy (``staged.materialise``: NDJSON) are
    materialised up front and both passes read ``_norm``.
    Canonical labels are computed once per distinct label input (``_lbl``; NULL = invalid):
    the JSON map work is the expensive part and a batch rarely has more than a few label sets.
    """
    inputs = _label_inputs(staged)
    aliases = "".join(f", {alias}" for alias, _ in inputs)
    drifted = bool(type_drift(staged, fmt))
    fast = _typed_select(staged, fmt, future_limit, check_labels=False)
    if staged.materialise:
        # Parsing costs more than keeping the typed columns (NDJSON): parse once. The key
        # hash is computed in the same parallel pass; one ungrouped distinct count over it
        # costs about a third of a distinct count per label group. Labels are checked per
        # distinct input below, like the streaming path (per row it cost ~10% of the pass);
        # a batch with invalid labels rebuilds ``_norm`` with the per-row check.
        _scan(
            con,
            staged,
            "CREATE OR REPLACE TEMP TABLE _norm AS "
            f"SELECT *, hash(service, metric, ts {aliases}) AS _key "
            f"FROM ({fast})",
        )
        _commit_staging(con)
        fast = "SELECT * FROM _norm"
        _scan(con, staged, _group_stats_sql(aliases, "_norm", keys="NULL::BIGINT"))
        covered = staged.check_ok_sql if staged.check_sql else "true"
        keys, ok = con.execute(
            f"SELECT count(DISTINCT _key) FILTER (reason IS NULL), {covered} FROM _norm"
        ).fetchone()
        if not ok:
            raise Restage("the staging does not cover every record")
        records, good, lo, hi = con.execute(
            "SELECT sum(n), sum(good), min(lo), max(hi) FROM _groups"
        ).fetchone()
    else:
        _scan(con, staged, _group_stats_sql(aliases, f"({fast})"))
        records, good, lo, hi, keys = con.execute(
            "SELECT sum(n), sum(good), min(lo), max(hi), sum(keys) FROM _groups"
        ).fetchone()
    records, good, keys = int(records or 0), int(good or 0), int(keys or 0)
    (rejected,) = con.execute("SELECT count(*) FROM _rejects").fetchone()
    label_join, labels, invalid, aliased = "", "'{}'", False, False
    if inputs and not drifted:
        names = ", ".join(alias for alias, _ in inputs)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _lbl AS
            SELECT {names}, {_canonical_labels_sql(staged)} AS labels
            FROM (SELECT DISTINCT {names} FROM _groups WHERE good > 0)
            """
        )
        on = " AND ".join(f"n.{a} IS NOT DISTINCT FROM lbl.{a}" for a, _ in inputs)
        label_join, labels = f"LEFT JOIN _lbl lbl ON {on}", "lbl.labels"
        # Two label inputs with the same canonical labels (e.g. keys in another order) can
        # hide a repeated key from the per-input count.
        invalid, aliased = con.execute(
            "SELECT count(*) FILTER (labels IS NULL) > 0, "
            "count(labels) > count(DISTINCT labels) FROM _lbl"
        ).fetchone()
    exact = records != good or rejected > 0 or keys < good or invalid or aliased
    # Every record is good: the streaming INSERT skips the reason filter (DuckDB would
    # evaluate the typing twice, in the filter and the projection); load_batch checks that
    # it loaded exactly `good` rows.
    source, rid, repeats, where = f"({fast})", "NULL::BIGINT", False, ""
    if exact:
        if not staged.materialise or invalid:
            _scan(
                con,
                staged,
                f"CREATE OR REPLACE TEMP TABLE _norm AS {_typed_select(staged, fmt, future_limit)}",
            )
            _commit_staging(con)
            # Recounted with the label inputs in the key (a materialised _norm already was).
            records, good, lo, hi, keys = con.execute(
                f"""
                SELECT count(*), count(*) FILTER (reason IS NULL),
                       min(ts) FILTER (reason IS NULL), max(ts) FILTER (reason IS NULL),
                       count(DISTINCT hash(service, metric, ts {aliases}))
                           FILTER (reason IS NULL)
                FROM _norm
                """
            ).fetchone()
        # rowid keeps file order (offset by a constant inside the open transaction).
        source, rid, where = "_norm", "n.rowid", "WHERE n.reason IS NULL"
        # Equal keys hash equal, so distinct hashes < good rows whenever a key repeats (a
        # hash collision only costs a needless in-batch dedupe).
        repeats = keys < good or bool(aliased)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW _good AS
        SELECT {rid} AS rid, n.service, n.metric, n.ts, n.value, {labels} AS labels
        FROM {source} n {label_join}
        {where}
        """
    )
    return BatchStats(records, good, rejected, lo, hi, repeats, exact)


def _overlaps(con: duckdb.DuckDBPyConnection, lo: datetime | None, hi: datetime | None) -> bool:
    if lo is None:
        return False
    row = con.execute(
        "SELECT 1 FROM raw.telemetry WHERE ts BETWEEN $lo AND $hi LIMIT 1", {"lo": lo, "hi": hi}
    ).fetchone()
    return row is not None


def load_sql(repeats: bool, overlap: bool) -> str:
    """Good rows (``_good``) minus in-batch repeats (last wins) and re-delivered rows.

    A row equal to the latest stored version of its key is a re-delivery; a different value
    is a correction and loads (staging keeps the newest ``ingested_at``).
    """
    good = "SELECT service, metric, ts, labels, value FROM _good"
    if repeats:
        good += (
            " QUALIFY row_number() OVER (PARTITION BY service, metric, ts, labels "
            "ORDER BY rid DESC) = 1"
        )
    insert = (
        "INSERT INTO raw.telemetry (service, metric, ts, value, labels, batch_id, ingested_at) "
    )
    if not overlap:
        return f"{insert} SELECT service, metric, ts, value, labels, $batch, $at FROM ({good})"
    # The literal ts bounds let zone maps / file statistics skip most of raw.telemetry.
    return f"""
        {insert}
        WITH good AS ({good}), latest AS (
            SELECT t.service, t.metric, t.ts, t.labels,
                   arg_max(t.value, t.ingested_at) AS value
            FROM raw.telemetry t
            SEMI JOIN good g USING (service, metric, ts, labels)
            WHERE t.ts BETWEEN $lo AND $hi
            GROUP BY ALL
        )
        SELECT g.service, g.metric, g.ts, g.value, g.labels, $batch, $at
        FROM good g LEFT JOIN latest l USING (service, metric, ts, labels)
        WHERE l.value IS NULL OR l.value <> g.value
    """


def _insert_batch_row(
    con: duckdb.DuckDBPyConnection, batch: BatchResult, started: datetime
) -> None:
    con.execute(
        "INSERT INTO raw.ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch.batch_id, batch.source, batch.path, batch.content_hash, batch.status,
            batch.rows_read, batch.rows_loaded, batch.rows_quarantined, batch.rows_duplicate,
            batch.error, started, _naive_utc(datetime.now(UTC)),
        ],
    )  # fmt: skip


def _insert_drift(
    con: duckdb.DuckDBPyConnection,
    batch: BatchResult,
    drift: list[tuple[str, str, str, str]],
    at: datetime,
) -> None:
    for column, change, detail, action in drift:
        con.execute(
            "INSERT INTO raw.schema_drift VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [batch.batch_id, batch.source, batch.path, column, change, detail, action, at],
        )


def _claimed(con: duckdb.DuckDBPyConnection, batch_id: str) -> bool:
    row = con.execute("SELECT 1 FROM raw.ingest_batches WHERE batch_id = ?", [batch_id])
    return row.fetchone() is not None


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    # A failed COMMIT has already rolled back: do not mask its error with "no transaction".
    with suppress(duckdb.TransactionException):
        con.execute("ROLLBACK")


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def _quarantine_sql(staged: Staged) -> str:
    """Bad records of ``_norm`` (text and row number kept by the typed pass) and ``_rejects``."""
    # Streaming readers have no ordinal of their own: it is the row's position in _norm.
    # Rows of a table created in the open transaction number from a large offset, not 0.
    rowno = "rowno" if staged.ordinal_in_relation else staged.row_number_sql
    return f"""
        INSERT INTO raw.quarantine
        SELECT $batch, $path, {rowno}, record, reason, $at
        FROM (SELECT rowid - (SELECT min(rowid) FROM _norm) AS _rid, rowno, record, reason
              FROM _norm WHERE reason IS NOT NULL)
        UNION ALL
        SELECT $batch, $path, row_number, record, reason, $at FROM _rejects
    """


def _drift(staged: Staged, fmt: str) -> list[tuple[str, str, str, str]]:
    """(column, change, detail, action) of everything that differs from the contract."""
    out = [
        (name, "new_column", sql_type, "mapped_to_label")
        for name, (_, sql_type) in staged.columns.items()
        if name not in KNOWN
    ]
    out += [(n, "changed_type", t, "quarantined") for n, t in type_drift(staged, fmt)]
    return sorted(out)


def _cleanup(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the staging objects. Run inside a transaction: in autocommit mode every statement
    naming an unqualified object also looks it up in the lake's catalog (~5-10 ms each)."""
    con.execute("DROP VIEW IF EXISTS _good")
    for table in ("_raw", "_rejects", "_norm", "_lbl", "_groups", "_lines", "_reject_offsets",
                  "_csv_rejects", "_csv_rejects_scan"):  # fmt: skip
        con.execute(f"DROP TABLE IF EXISTS {table}")
    with suppress(duckdb.Error):
        con.unregister("_arrow")


def _stage_prepared(
    con: duckdb.DuckDBPyConnection, item: Batch, future_limit: datetime
) -> tuple[Staged, BatchStats]:
    """Stage and classify in the batch's open transaction. A staging whose reader fails
    mid-file (or that does not cover the batch: :class:`Restage`) is retried through its
    ``fallback`` chain (e.g. NDJSON: one-parse map -> key discovery -> line by line), in a
    fresh transaction since a failed statement aborts the open one."""
    staged = stage(con, item)
    while True:
        try:
            return staged, prepare(con, staged, item.fmt, future_limit)
        except (duckdb.Error, Restage) as exc:
            if staged.fallback is None:
                raise
            log.info("%s: fast staging not exact (%s), re-staging", item.key, exc)
            reset_transaction(con)
            try:
                staged = staged.fallback()
            except (duckdb.Error, OSError, UnicodeError, ValueError) as err:
                raise FileRejected("unreadable_file", f"{type(err).__name__}: {err}") from err


def _quarantine_file(
    con: duckdb.DuckDBPyConnection,
    item: Batch,
    batch: BatchResult,
    exc: Exception,
    started: datetime,
) -> None:
    """The whole file is unreadable: one quarantine row and a ``file_quarantined`` batch."""
    reason = exc.reason if isinstance(exc, FileRejected) else "unreadable_file"
    batch.status, batch.error = FILE_QUARANTINED, f"{reason}: {exc}"
    log.warning("batch quarantined %s: %s", item.key, batch.error)
    with _transaction(con):
        if _claimed(con, batch.batch_id):
            batch.status = SKIPPED
        else:
            con.execute(
                "INSERT INTO raw.quarantine VALUES (?, ?, NULL, ?, ?, ?)",
                [batch.batch_id, batch.path, batch.error, reason, started],
            )
            _insert_batch_row(con, batch, started)
            for sql, params in item.on_commit:
                con.execute(sql, params)


def _load_staged(
    con: duckdb.DuckDBPyConnection,
    item: Batch,
    batch: BatchResult,
    staged: Staged,
    stats: BatchStats,
    ingested_at: datetime,
    started: datetime,
) -> None:
    """Quarantine, load and account a classified batch (inside its transaction)."""
    total, good, rejected = stats.records, stats.good, stats.rejected
    drift = _drift(staged, item.fmt)
    notes = list(staged.notes)
    if drift:
        notes.insert(0, "schema drift: " + ", ".join(f"{c} {ch} ({d}) -> {a}"
                                                     for c, ch, d, a in drift))  # fmt: skip
    batch.error = "; ".join(notes) or None
    if batch.error:
        log.warning("%s: %s", item.key, batch.error)
    if _claimed(con, batch.batch_id):  # another run loaded it meanwhile
        batch.status = SKIPPED
        return
    overlap = _overlaps(con, stats.lo, stats.hi)
    params = {"batch": batch.batch_id, "at": ingested_at}
    if total - good + rejected:
        con.execute(_quarantine_sql(staged), {**params, "path": batch.path})
    sql = load_sql(stats.repeats, overlap)
    bounds = {"lo": stats.lo, "hi": stats.hi} if overlap else {}
    (loaded,) = con.execute(sql, {**params, **bounds}).fetchone() if good else (0,)
    if not stats.exact and not overlap and loaded != good:
        # The streaming INSERT re-reads the file: it changed under us. Roll back.
        raise RuntimeError(f"{item.key} changed while loading ({loaded} != {good})")
    batch.rows_read = total + rejected
    batch.rows_loaded = loaded
    batch.rows_quarantined = total - good + rejected
    batch.rows_duplicate = good - loaded
    _insert_drift(con, batch, drift, started)
    _insert_batch_row(con, batch, started)
    for sql_, params_ in item.on_commit:
        con.execute(sql_, params_)


def load_batch(
    con: duckdb.DuckDBPyConnection, item: Batch, future_limit: datetime, ingested_at: datetime
) -> BatchResult:
    """Stage, validate, dedup and commit one batch (all or nothing).

    Staging, classification and the load share one transaction: DuckLake then reads its
    catalog once per batch instead of once per statement (each of the ~20 statements of a
    batch paid 5-30 ms for it). A materialised ``_norm`` is committed on its own first (see
    :func:`_commit_staging`); nothing is written to the lake before the final transaction,
    which holds the claim check, the loads and the batch row."""
    t0 = time.perf_counter()
    started = _naive_utc(datetime.now(UTC))
    batch_id = batch_id_for(item.key, item.content_hash, item.source)
    batch = BatchResult(batch_id, item.key, item.content_hash, LOADED, source=item.source)
    con.execute("BEGIN TRANSACTION")
    try:
        staged, stats = _stage_prepared(con, item, future_limit)
    except (FileRejected, duckdb.Error) as exc:
        _rollback(con)
        _quarantine_file(con, item, batch, exc, started)
    except BaseException:
        _rollback(con)
        raise
    else:
        try:
            _load_staged(con, item, batch, staged, stats, ingested_at, started)
            _cleanup(con)
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
    finally:
        # Staging objects left by a rolled-back or rejected batch (cheap when there are none).
        with _transaction(con):
            _cleanup(con)
    batch.seconds = round(time.perf_counter() - t0, 4)
    return batch


def _manifest(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {b for (b,) in con.execute("SELECT batch_id FROM raw.ingest_batches").fetchall()}


def _ingest_clock(con: duckdb.DuckDBPyConnection) -> datetime:
    """Start strictly after anything stored so 'latest ingested_at wins' never ties."""
    (last,) = con.execute("SELECT max(ingested_at) FROM raw.telemetry").fetchone()
    now = _naive_utc(datetime.now(UTC))
    return max(now, last + timedelta(microseconds=1)) if last else now


@contextmanager
def ingest_lock(settings: Settings, timeout_s: float = 1800.0) -> Iterator[None]:
    """Exclusive per-warehouse ingest lock (``flock``): a second run waits, then finds the
    first run's batches in the manifest and skips them."""
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    path = settings.warehouse_dir / LOCK_FILE
    with path.open("a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another ingest holds {path}") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def default_sources(settings: Settings) -> list[Source]:
    """Landing folder (with the NAB mappings) plus every configured Prometheus query set."""
    from scaleahead.ingest.config import load_ingest_config
    from scaleahead.ingest.prometheus import PrometheusSource

    config = load_ingest_config(settings)
    sources: list[Source] = [LandingSource(settings.landing_dir, config.nab)]
    sources += [PrometheusSource(p) for p in config.prometheus]
    return sources


def run_ingest(
    settings: Settings | None = None,
    as_of: datetime | None = None,
    sources: Iterable[Source] | None = None,
    load_catalog: bool = True,
) -> IngestReport:
    """Load every new batch of every source (default: landing + configured Prometheus)."""
    from scaleahead.ingest.catalog import load_service_catalog

    settings = settings or get_settings()
    as_of = _naive_utc(as_of or datetime.now(UTC))
    sources = list(sources) if sources is not None else default_sources(settings)
    report = IngestReport(as_of=as_of)
    t0 = time.perf_counter()
    with ingest_lock(settings), connect(path=settings.warehouse_path) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = {quote_literal(str(settings.warehouse_dir / '.tmp'))}")
        # Staging tables spill to temp_directory beyond this, keeping big batches under ~2 GB.
        con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}'")
        with _transaction(con):  # one catalog snapshot for both reads
            manifest = _manifest(con)
            clock = _ingest_clock(con)
        for source in sources:
            # The last ingested_at a source used is the newest stored: no re-query needed.
            clock = _ingest_source(con, source, as_of, manifest, clock, report)
        if load_catalog:
            report.catalog_services = load_service_catalog(con, settings)
    report.seconds = round(time.perf_counter() - t0, 4)
    log.info(
        "ingest done: %d loaded, %d skipped, %d quarantined batches; %d rows read, %d loaded "
        "in %.2fs",
        report.files_loaded, report.files_skipped, report.files_quarantined,
        report.rows_read, report.rows_loaded, report.seconds,
    )  # fmt: skip
    return report


def _guarded(
    source: Source, con: duckdb.DuckDBPyConnection, as_of: datetime, report: IngestReport
) -> Iterator[Batch]:
    """The source's batches; a source that fails (e.g. Prometheus unreachable) is reported in
    ``report.source_errors`` and the run goes on with the other sources. Load errors (the
    warehouse itself failing) still raise."""
    batches = iter(source.batches(con, as_of))
    while True:
        try:
            item = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            log.error("source %s failed: %s", source.name, exc)
            report.source_errors[source.name] = f"{type(exc).__name__}: {exc}"
            return
        yield item


def _ingest_source(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    as_of: datetime,
    manifest: set[str],
    clock: datetime,
    report: IngestReport,
) -> datetime:
    """Load the source's new batches; returns the last ``ingested_at`` used (or ``clock``)."""
    bar = tqdm(desc=f"ingest {source.name}", unit="batch", disable=not sys.stderr.isatty())
    for item in _guarded(source, con, as_of, report):
        bar.update()
        report.files_seen += 1
        batch_id = batch_id_for(item.key, item.content_hash, item.source)
        if batch_id in manifest:
            report.add(BatchResult(batch_id, item.key, item.content_hash, SKIPPED,
                                   source=item.source))  # fmt: skip
            continue
        clock = max(clock + timedelta(microseconds=1), _naive_utc(datetime.now(UTC)))
        batch = load_batch(con, item, as_of + FUTURE_TOLERANCE, clock)
        manifest.add(batch_id)
        report.add(batch)
        log.info(
            "%s %s %s: read=%d loaded=%d quarantined=%d duplicate=%d in %.3fs",
            batch.status, item.source, item.key, batch.rows_read, batch.rows_loaded,
            batch.rows_quarantined, batch.rows_duplicate, batch.seconds,
        )  # fmt: skip
    bar.close()
    return clock


def ingest_landing(settings: Settings | None = None, as_of: datetime | None = None) -> IngestReport:
    """Load every new or changed file under ``settings.landing_dir`` (and the service catalog)."""
    from scaleahead.ingest.config import load_ingest_config

    settings = settings or get_settings()
    nab = load_ingest_config(settings).nab
    return run_ingest(settings, as_of, sources=[LandingSource(settings.landing_dir, nab)])
