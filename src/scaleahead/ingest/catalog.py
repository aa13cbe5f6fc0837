"""Service catalog: ``settings.catalog_dir/*.csv`` -> ``raw.service_catalog``.

Columns ``service, tier, capacity_per_replica, min_replicas, max_replicas``. Last write wins
per service: files are ranked by modification time (then name), the newest file that lists a
service defines it. The table is replaced in one transaction, so reloading is idempotent;
``updated_at`` is the defining file's modification time (UTC).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import duckdb

from scaleahead.config import Settings
from scaleahead.ingest.sources import quote_literal

log = logging.getLogger("scaleahead.ingest")

COLUMNS = ("service", "tier", "capacity_per_replica", "min_replicas", "max_replicas")


def load_service_catalog(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """Reload the catalog from its CSVs; returns the number of services (0 = no files)."""
    folder = settings.catalog_dir
    files = (
        sorted(folder.glob("*.csv"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        if (folder.is_dir())
        else []
    )
    if not files:
        return 0
    ranks = ", ".join(
        f"({quote_literal(str(p))}, {i}, "
        f"TIMESTAMP '{datetime.fromtimestamp(p.stat().st_mtime, UTC):%Y-%m-%d %H:%M:%S.%f}')"
        for i, p in enumerate(files)
    )
    paths = "[" + ", ".join(quote_literal(str(p)) for p in files) + "]"
    types = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in COLUMNS) + "}"
    with_rows = f"""
        WITH src AS (
            SELECT * FROM read_csv({paths}, header = true, columns = {types},
                                   filename = true, auto_detect = false, union_by_name = true,
                                   ignore_errors = true)
        ), ranked AS (
            SELECT NULLIF(trim(s.service), '') AS service, NULLIF(trim(s.tier), '') AS tier,
                   TRY_CAST(s.capacity_per_replica AS DOUBLE) AS capacity_per_replica,
                   TRY_CAST(s.min_replicas AS INTEGER) AS min_replicas,
                   TRY_CAST(s.max_replicas AS INTEGER) AS max_replicas,
                   parse_filename(s.filename) AS source_file, r.mtime, r.rank
            FROM src s JOIN (VALUES {ranks}) r(path, rank, mtime) ON r.path = s.filename
        )
        SELECT service, tier, capacity_per_replica, min_replicas, max_replicas, source_file,
               mtime
        FROM ranked WHERE service IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY service ORDER BY rank DESC) = 1
    """
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM raw.service_catalog")
        con.execute(f"INSERT INTO raw.service_catalog {with_rows}")
        (n,) = con.execute("SELECT count(*) FROM raw.service_catalog").fetchone()
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        log.warning("service catalog not loaded: %s", exc)
        return 0
    log.info("service catalog: %d services from %d files", n, len(files))
    return n
