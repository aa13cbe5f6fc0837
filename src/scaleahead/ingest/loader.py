"""Load telemetry batches from any :class:`~scaleahead.ingest.source.Source` into ``raw.telemetry``.

Per batch, set-based SQL passes over DuckDB's native readers (no row-by-row Python):

1. ``_norm``: one typed/validated pass over the reader: naive-UTC ``ts``, ``DOUBLE`` value,
   canonical labels (computed once per distinct label input and joined back) and the first
   failing ``reason`` per record (NULL = good);
2. one aggregate: counts, the batch's ``ts`` range and whether any key repeats in the batch;
3. in one transaction: quarantine = ``INSERT ... WHERE reason IS NOT NULL``; load =
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
    return f"TRY_CAST(trim(CAST({expr} AS VARCHAR)) AS DOUBLE)"


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


def normalise(
    con: duckdb.DuckDBPyConnection, staged: Staged, fmt: str, future_limit: datetime
) -> None:
    """Build ``_norm(rid, service, metric, ts, value, labels, reason)`` in one pass.

    Labels are canonicalised once per distinct input combination (``_lbl``) and joined back:
    the JSON map work is the expensive part and a batch rarely has more than a few label sets.
    """
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
        "_malformed",
        type_changed,
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
    if inputs and type_changed == "false":
        aliases = ", ".join(alias for alias, _ in inputs)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _lbl AS
            SELECT {aliases}, {_canonical_labels_sql(staged)} AS labels
            FROM (SELECT DISTINCT {", ".join(f"{e} AS {a}" for a, e in inputs)}
                  FROM {staged.relation} WHERE NOT ({malformed}))
            """
        )
        on = " AND ".join(f"base.{a} IS NOT DISTINCT FROM lbl.{a}" for a, _ in inputs)
        label_join, labels = f"LEFT JOIN _lbl lbl ON {on}", "lbl.labels"
    else:
        label_join, labels = "", "'{}'"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _norm AS
        WITH base AS (
            SELECT _rid AS rid, ({malformed}) AS _malformed, {service} AS service,
                   {metric} AS metric, {ts} AS ts, {value} AS value {input_cols}
            FROM {staged.relation}
        ), typed AS (
            SELECT base.rid, base._malformed, base.service, base.metric, base.ts, base.value,
                   {labels} AS labels
            FROM base {label_join}
        )
        SELECT rid, service, metric, ts, value, labels,
               CASE {cases} END AS reason
        FROM typed
        """,
        {"future_limit": future_limit},
    )


def _stats(con: duckdb.DuckDBPyConnection) -> tuple[int, int, datetime, datetime, bool]:
    """(records, good, min ts, max ts, some key repeats) of ``_norm``, in one pass."""
    total, good, lo, hi, distinct = con.execute(
        """
        SELECT count(*), count(*) FILTER (reason IS NULL),
               min(ts) FILTER (reason IS NULL), max(ts) FILTER (reason IS NULL),
               count(DISTINCT hash(service, metric, ts, labels)) FILTER (reason IS NULL)
        FROM _norm
        """
    ).fetchone()
    # Equal keys hash equal, so distinct hashes < good rows whenever a key repeats (a hash
    # collision only sends a batch down the exact path needlessly).
    return total, good, lo, hi, distinct < good


def _overlaps(con: duckdb.DuckDBPyConnection, lo: datetime | None, hi: datetime | None) -> bool:
    if lo is None:
        return False
    row = con.execute(
        "SELECT 1 FROM raw.telemetry WHERE ts BETWEEN $lo AND $hi LIMIT 1", {"lo": lo, "hi": hi}
    ).fetchone()
    return row is not None


def load_sql(repeats: bool, overlap: bool) -> str:
    """Good rows of ``_norm`` minus in-batch repeats (last wins) and re-delivered rows.

    A row equal to the latest stored version of its key is a re-delivery; a different value
    is a correction and loads (staging keeps the newest ``ingested_at``).
    """
    good = "SELECT service, metric, ts, labels, value FROM _norm WHERE reason IS NULL"
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


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _quarantine_sql(staged: Staged) -> str:
    """Bad records of ``_norm`` joined back to the reader for their row number and text."""
    return f"""
        INSERT INTO raw.quarantine
        SELECT $batch, $path, r.row_number, r.record, q.reason, $at
        FROM (SELECT rid, reason FROM _norm WHERE reason IS NOT NULL) q
        JOIN (SELECT _rid, {staged.row_number_sql} AS row_number, {staged.record_sql} AS record
              FROM {staged.relation}
              WHERE _rid IN (SELECT rid FROM _norm WHERE reason IS NOT NULL)) r
          ON r._rid = q.rid
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
    for table in ("_raw", "_rejects", "_norm", "_lbl", "_lines", "_reject_offsets",
                  "_csv_rejects", "_csv_rejects_scan"):  # fmt: skip
        con.execute(f"DROP TABLE IF EXISTS {table}")
    with suppress(duckdb.Error):
        con.unregister("_arrow")


def load_batch(
    con: duckdb.DuckDBPyConnection, item: Batch, future_limit: datetime, ingested_at: datetime
) -> BatchResult:
    """Stage, validate, dedup and commit one batch (all or nothing)."""
    t0 = time.perf_counter()
    started = _naive_utc(datetime.now(UTC))
    batch_id = batch_id_for(item.key, item.content_hash, item.source)
    batch = BatchResult(batch_id, item.key, item.content_hash, LOADED, source=item.source)
    try:
        staged = stage(con, item)
        normalise(con, staged, item.fmt, future_limit)
        total, good, lo, hi, repeats = _stats(con)
        (rejected,) = con.execute("SELECT count(*) FROM _rejects").fetchone()
    except (FileRejected, duckdb.Error) as exc:
        reason = exc.reason if isinstance(exc, FileRejected) else "unreadable_file"
        batch.status, batch.error = FILE_QUARANTINED, f"{reason}: {exc}"
        log.warning("batch quarantined %s: %s", item.key, batch.error)
        with _transaction(con):
            if _claimed(con, batch_id):
                batch.status = SKIPPED
            else:
                con.execute(
                    "INSERT INTO raw.quarantine VALUES (?, ?, NULL, ?, ?, ?)",
                    [batch_id, batch.path, batch.error, reason, started],
                )
                _insert_batch_row(con, batch, started)
                for sql, params in item.on_commit:
                    con.execute(sql, params)
    else:
        drift = _drift(staged, item.fmt)
        notes = list(staged.notes)
        if drift:
            notes.insert(0, "schema drift: " + ", ".join(f"{c} {ch} ({d}) -> {a}"
                                                         for c, ch, d, a in drift))  # fmt: skip
        batch.error = "; ".join(notes) or None
        if batch.error:
            log.warning("%s: %s", item.key, batch.error)
        overlap = _overlaps(con, lo, hi)
        params = {"batch": batch_id, "at": ingested_at}
        with _transaction(con):
            if _claimed(con, batch_id):  # another run loaded it meanwhile
                batch.status = SKIPPED
            else:
                if total - good + rejected:
                    con.execute(_quarantine_sql(staged), {**params, "path": batch.path})
                sql = load_sql(repeats, overlap)
                bounds = {"lo": lo, "hi": hi} if overlap else {}
                (loaded,) = con.execute(sql, {**params, **bounds}).fetchone() if good else (0,)
                batch.rows_read = total + rejected
                batch.rows_loaded = loaded
                batch.rows_quarantined = total - good + rejected
                batch.rows_duplicate = good - loaded
                _insert_drift(con, batch, drift, started)
                _insert_batch_row(con, batch, started)
                for sql, params_ in item.on_commit:
                    con.execute(sql, params_)
    finally:
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
        manifest = _manifest(con)
        clock = _ingest_clock(con)
        for source in sources:
            _ingest_source(con, source, as_of, manifest, clock, report)
            clock = _ingest_clock(con)
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
) -> None:
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


def ingest_landing(settings: Settings | None = None, as_of: datetime | None = None) -> IngestReport:
    """Load every new or changed file under ``settings.landing_dir`` (and the service catalog)."""
    from scaleahead.ingest.config import load_ingest_config

    settings = settings or get_settings()
    nab = load_ingest_config(settings).nab
    return run_ingest(settings, as_of, sources=[LandingSource(settings.landing_dir, nab)])
