"""Load landing-folder telemetry files into ``raw.telemetry``, once each, with quarantine.

Per file: stage with a native DuckDB reader (``sources``), type and validate in SQL, drop
in-batch and re-delivered duplicates, then write telemetry + quarantine + the batch row in
one transaction. Bad input never raises: bad rows go to ``raw.quarantine`` with a reason,
unreadable files become ``file_quarantined`` batches, and the run moves on.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
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
from scaleahead.ingest.sources import (
    KNOWN,
    FileRejected,
    LandingFile,
    Staged,
    discover,
    quote_literal,
    sha256_file,
    stage,
)
from scaleahead.warehouse import connect

log = logging.getLogger("scaleahead.ingest")

SOURCE = "landing"
FUTURE_TOLERANCE = timedelta(days=1)
_NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "INT", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT",
                  "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT", "UHUGEINT", "INTEGER",
                  "DECIMAL")  # fmt: skip

# First failing check wins, in this order.
REASONS: tuple[str, ...] = (
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


def batch_id_for(rel: str, content_hash: str) -> str:
    """Deterministic: one batch per (path, content) pair, which the manifest makes unique."""
    return "b-" + hashlib.sha256(f"{rel}\0{content_hash}".encode()).hexdigest()[:16]


def _text_expr(expr: str) -> str:
    return f"NULLIF(trim(CAST({expr} AS VARCHAR)), '')"


def _timestamp_expr(expr: str, sql_type: str) -> str:
    """Any timestamp-ish source column -> naive UTC TIMESTAMP, NULL when not parseable."""
    t = sql_type.upper()
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return f"timezone('UTC', {expr})"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({expr} AS TIMESTAMP)"
    # ISO-8601 text incl. 'Z' and '+hh:mm' offsets; a bare TIMESTAMP cast would silently drop
    # the offset, so parse as TIMESTAMPTZ (session zone is UTC for naive strings) and convert.
    # The common '...Z' form takes the much cheaper TIMESTAMP cast (Z means UTC already).
    text = f"CAST({expr} AS VARCHAR)"
    return (
        f"CASE WHEN suffix({text}, 'Z') THEN TRY_CAST({text} AS TIMESTAMP) "
        f"ELSE timezone('UTC', TRY_CAST(trim({text}) AS TIMESTAMPTZ)) END"
    )


def _value_expr(expr: str, sql_type: str) -> str:
    if sql_type.upper().split("(")[0] in _NUMERIC_TYPES:
        return f"CAST({expr} AS DOUBLE)"
    return f"TRY_CAST(trim(CAST({expr} AS VARCHAR)) AS DOUBLE)"


def _label_inputs(staged: Staged) -> list[tuple[str, str]]:
    """(alias, SQL over ``_raw``) of every column feeding the labels: labels + extras."""
    inputs = []
    if "labels" in staged.columns:
        inputs.append(("_l_labels", _text_expr(staged.columns["labels"][0])))
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


def normalise_sql(staged: Staged) -> str:
    """SQL building ``_norm``: typed columns plus the first failing reason per row.

    Labels are canonicalised once per distinct input combination and joined back: the JSON
    map work is the expensive part and a file rarely has more than a handful of label sets.
    """
    cols = staged.columns
    ts_expr, ts_type = cols["timestamp"]
    value_expr, value_type = cols["value"]
    inputs = _label_inputs(staged)
    checks = [
        "service IS NULL",
        "metric IS NULL",
        "ts IS NULL OR NOT isfinite(ts)",
        "value IS NULL",
        "NOT isfinite(value)",
        "ts > $future_limit",
        "labels IS NULL",
    ]
    cases = " ".join(
        f"WHEN {cond} THEN '{reason}'" for cond, reason in zip(checks, REASONS, strict=True)
    )
    input_cols = "".join(f", {expr} AS {alias}" for alias, expr in inputs)
    if inputs:
        aliases = ", ".join(alias for alias, _ in inputs)
        label_join = f"""
            LEFT JOIN (
                SELECT {aliases}, {_canonical_labels_sql(staged)} AS labels
                FROM (SELECT DISTINCT {aliases} FROM base)
            ) lbl ON {" AND ".join(f"base.{a} IS NOT DISTINCT FROM lbl.{a}" for a, _ in inputs)}
        """
        labels = "lbl.labels"
    else:
        label_join, labels = "", "'{}'"
    return f"""
        CREATE OR REPLACE TEMP TABLE _norm AS
        WITH base AS (
            SELECT rowid AS rid,
                   {_text_expr(cols["service"][0])} AS service,
                   {_text_expr(cols["metric"][0])} AS metric,
                   {_timestamp_expr(ts_expr, ts_type)} AS ts,
                   {_value_expr(value_expr, value_type)} AS value
                   {input_cols}
            FROM _raw
        ), typed AS (
            SELECT base.rid, base.service, base.metric, base.ts, base.value, {labels} AS labels
            FROM base {label_join}
        )
        SELECT rid, service, metric, ts, value, labels, CASE {cases} END AS reason FROM typed
    """


def _dedup(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Build ``_new``: good rows minus in-batch repeats (last wins) and re-delivered rows.

    Returns (good rows, rows in ``_new``).
    """
    good, lo, hi = con.execute(
        "SELECT count(*), min(ts), max(ts) FROM _norm WHERE reason IS NULL"
    ).fetchone()
    # Compare with the latest stored version of each key: equal value = re-delivery, a
    # different one is a correction and loads (staging keeps the newest ingested_at).
    # The literal ts bounds let zone maps skip most of raw.telemetry.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _new AS
        WITH good AS (
            SELECT service, metric, ts, labels, value FROM _norm WHERE reason IS NULL
            QUALIFY row_number() OVER (
                PARTITION BY service, metric, ts, labels ORDER BY rid DESC) = 1
        ), latest AS (
            SELECT t.service, t.metric, t.ts, t.labels,
                   arg_max(t.value, t.ingested_at) AS value
            FROM raw.telemetry t
            SEMI JOIN good g USING (service, metric, ts, labels)
            WHERE t.ts BETWEEN $lo AND $hi
            GROUP BY ALL
        )
        SELECT g.service, g.metric, g.ts, g.value, g.labels
        FROM good g LEFT JOIN latest l USING (service, metric, ts, labels)
        WHERE l.value IS NULL OR l.value <> g.value
        """,
        {"lo": lo, "hi": hi},
    )
    (new,) = con.execute("SELECT count(*) FROM _new").fetchone()
    return good, new


def _counts(con: duckdb.DuckDBPyConnection, good: int, new: int) -> tuple[int, int, int, int]:
    """(rows_read, rows_loaded, rows_quarantined, rows_duplicate) of the staged batch."""
    (bad,) = con.execute("SELECT count(*) FROM _norm WHERE reason IS NOT NULL").fetchone()
    (rejected,) = con.execute("SELECT count(*) FROM _rejects").fetchone()
    return good + bad + rejected, new, bad + rejected, good - new


def _write_batch(
    con: duckdb.DuckDBPyConnection,
    staged: Staged,
    batch: BatchResult,
    started: datetime,
    ingested_at: datetime,
) -> None:
    """Telemetry, quarantine and the manifest row: all or nothing."""
    rid = "q.rid"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "INSERT INTO raw.telemetry (service, metric, ts, value, labels, batch_id, ingested_at)"
            " SELECT service, metric, ts, value, labels, $batch, $at FROM _new",
            {"batch": batch.batch_id, "at": ingested_at},
        )
        if batch.rows_quarantined:
            con.execute(
                f"""
                INSERT INTO raw.quarantine
                SELECT $batch, $path, {staged.row_number_sql.format(rid=rid)},
                       (SELECT {staged.record_sql} FROM _raw r WHERE r.rowid = q.rid),
                       q.reason, $at
                FROM _norm q WHERE q.reason IS NOT NULL
                UNION ALL
                SELECT $batch, $path, row_number, record, reason, $at FROM _rejects
                """,
                {"batch": batch.batch_id, "path": batch.path, "at": ingested_at},
            )
        _insert_batch_row(con, batch, started)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _insert_batch_row(
    con: duckdb.DuckDBPyConnection, batch: BatchResult, started: datetime
) -> None:
    con.execute(
        "INSERT INTO raw.ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch.batch_id, SOURCE, batch.path, batch.content_hash, batch.status,
            batch.rows_read, batch.rows_loaded, batch.rows_quarantined, batch.rows_duplicate,
            batch.error, started, _naive_utc(datetime.now(UTC)),
        ],
    )  # fmt: skip


def _quarantine_file(
    con: duckdb.DuckDBPyConnection, batch: BatchResult, reason: str, started: datetime
) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "INSERT INTO raw.quarantine VALUES (?, ?, NULL, ?, ?, ?)",
            [batch.batch_id, batch.path, batch.error, reason, started],
        )
        _insert_batch_row(con, batch, started)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _drift_note(staged: Staged) -> str | None:
    extras = sorted(name for name in staged.columns if name not in KNOWN)
    notes = list(staged.notes)
    if extras:
        notes.insert(0, f"schema drift: extra columns {extras} merged into labels")
    return "; ".join(notes) or None


def _cleanup(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("_raw", "_rejects", "_norm", "_new", "_lines", "_parsed",
                  "_reject_offsets", "_csv_rejects", "_csv_rejects_scan"):  # fmt: skip
        con.execute(f"DROP TABLE IF EXISTS {table}")


def load_file(
    con: duckdb.DuckDBPyConnection,
    file: LandingFile,
    content_hash: str,
    future_limit: datetime,
    ingested_at: datetime,
) -> BatchResult:
    """Stage, validate, dedup and commit one landing file as one batch."""
    t0 = time.perf_counter()
    started = _naive_utc(datetime.now(UTC))
    batch = BatchResult(batch_id_for(file.rel, content_hash), file.rel, content_hash, LOADED)
    try:
        staged = stage(con, file)
        con.execute(normalise_sql(staged), {"future_limit": future_limit})
        good, new = _dedup(con)
    except FileRejected as exc:
        batch.status, batch.error = FILE_QUARANTINED, f"{exc.reason}: {exc}"
        log.warning("file quarantined %s: %s", file.rel, batch.error)
        _quarantine_file(con, batch, exc.reason, started)
    except duckdb.Error as exc:
        # A file whose columns have types we cannot coerce (nested values etc.).
        batch.status, batch.error = FILE_QUARANTINED, f"unknown_schema: {exc}"
        log.warning("file quarantined %s: %s", file.rel, batch.error)
        _quarantine_file(con, batch, "unknown_schema", started)
    else:
        batch.rows_read, batch.rows_loaded, batch.rows_quarantined, batch.rows_duplicate = _counts(
            con, good, new
        )
        batch.error = _drift_note(staged)
        if batch.error:
            log.warning("%s: %s", file.rel, batch.error)
        _write_batch(con, staged, batch, started, ingested_at)
    finally:
        _cleanup(con)
    batch.seconds = round(time.perf_counter() - t0, 4)
    return batch


def _loaded_manifest(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    rows = con.execute(
        "SELECT path, content_hash FROM raw.ingest_batches WHERE source = ?", [SOURCE]
    ).fetchall()
    return {(p, h) for p, h in rows}


def _ingest_clock(con: duckdb.DuckDBPyConnection) -> datetime:
    """Start strictly after anything stored so 'latest ingested_at wins' never ties."""
    (last,) = con.execute("SELECT max(ingested_at) FROM raw.telemetry").fetchone()
    now = _naive_utc(datetime.now(UTC))
    return max(now, last + timedelta(microseconds=1)) if last else now


def ingest_landing(settings: Settings | None = None, as_of: datetime | None = None) -> IngestReport:
    """Load every new or changed file under ``settings.landing_dir`` into the warehouse."""
    settings = settings or get_settings()
    as_of = _naive_utc(as_of or datetime.now(UTC))
    report = IngestReport(as_of=as_of)
    t0 = time.perf_counter()
    files = discover(settings.landing_dir)
    report.files_seen = len(files)
    log.info("ingest: %d files under %s", len(files), settings.landing_dir)
    with connect(path=settings.warehouse_path) as con:
        con.execute("SET TimeZone = 'UTC'")
        manifest = _loaded_manifest(con)
        clock = _ingest_clock(con)
        bar = tqdm(files, desc="ingest", unit="file", disable=not sys.stderr.isatty())
        for file in bar:
            content_hash = sha256_file(file.path)
            if (file.rel, content_hash) in manifest:
                batch_id = batch_id_for(file.rel, content_hash)
                report.add(BatchResult(batch_id, file.rel, content_hash, SKIPPED))
                continue
            clock = max(clock + timedelta(microseconds=1), _naive_utc(datetime.now(UTC)))
            batch = load_file(con, file, content_hash, as_of + FUTURE_TOLERANCE, clock)
            manifest.add((file.rel, content_hash))
            report.add(batch)
            log.info(
                "%s %s: read=%d loaded=%d quarantined=%d duplicate=%d in %.3fs",
                batch.status, file.rel, batch.rows_read, batch.rows_loaded,
                batch.rows_quarantined, batch.rows_duplicate, batch.seconds,
            )  # fmt: skip
    report.seconds = round(time.perf_counter() - t0, 4)
    log.info(
        "ingest done: %d loaded, %d skipped, %d quarantined files; %d rows read, %d loaded "
        "in %.2fs",
        report.files_loaded, report.files_skipped, report.files_quarantined,
        report.rows_read, report.rows_loaded, report.seconds,
    )  # fmt: skip
    return report
