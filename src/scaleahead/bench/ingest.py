"""Ingest benchmark: the loader (validation, quarantine, dedupe, accounting) versus a bare
DuckDB load of the same file, per format, measured in the same run."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from scaleahead.bench.runner import scratch_root as _scratch_root
from scaleahead.config import Settings

AS_OF = datetime(2026, 12, 1, tzinfo=UTC)


def _write_source(con: duckdb.DuckDBPyConnection, rows: int, path: Path, fmt: str) -> None:
    """`rows` telemetry rows: 1,000 services x 3 metrics at 1-minute steps."""
    con.execute(
        f"""
        COPY (
            SELECT 'svc-' || lpad(CAST(i % 1000 AS VARCHAR), 4, '0') AS service,
                   ['request_rate', 'cpu_cores', 'latency_ms'][1 + (i // 1000) % 3] AS metric,
                   strftime(TIMESTAMP '2026-11-01' + to_minutes(CAST(i // 3000 AS BIGINT)),
                            '%Y-%m-%dT%H:%M:%SZ') AS timestamp,
                   round(random() * 100, 3) AS value,
                   '{{"region":"eu-west-1"}}' AS labels
            FROM range({rows}) t(i)
        ) TO '{path}' {fmt}
        """
    )


FORMATS = {
    "parquet": ("(FORMAT parquet)", "read_parquet('{p}')"),
    "csv": ("(FORMAT csv, HEADER)", "read_csv('{p}', header=true)"),
    "ndjson": ("(FORMAT json)", "read_json('{p}', format='newline_delimited')"),
}


def _bare_load(path: Path, reader: str, db: Path) -> float:
    con = duckdb.connect(str(db))
    started = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM {reader.format(p=path)}")
    elapsed = time.perf_counter() - started
    con.close()
    db.unlink()
    return elapsed


def _loader(path: Path, scratch: Path, home: Path) -> float:
    from scaleahead.ingest.loader import ingest_landing

    settings = Settings(home=home, warehouse_dir=scratch / "wh")
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, settings.landing_dir / path.name)
    started = time.perf_counter()
    report = ingest_landing(settings=settings, as_of=AS_OF)
    elapsed = time.perf_counter() - started
    if report.rows_read != report.rows_loaded + report.rows_quarantined + report.rows_duplicate:
        raise RuntimeError("accounting invariant broken in benchmark run")
    shutil.rmtree(scratch / "wh")
    return elapsed


def run(settings: Settings) -> dict[str, float]:
    rows = int(os.environ.get("SCALEAHEAD_BENCH_INGEST_ROWS", "1000000"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=_scratch_root(settings)))
    figures: dict[str, float] = {"rows": rows}
    try:
        gen = duckdb.connect()
        for name, (copy_fmt, reader) in FORMATS.items():
            source = scratch / f"telemetry-{name}.{name}"
            _write_source(gen, rows, source, copy_fmt)
            bare = _bare_load(source, reader, scratch / "bare.duckdb")
            loaded = _loader(source, scratch, settings.home)
            figures[f"{name}_rows_per_s"] = round(rows / loaded)
            figures[f"{name}_bare_rows_per_s"] = round(rows / bare)
            figures[f"{name}_ratio_to_duckdb"] = round(bare / loaded, 3)
        figures["duckdb_baseline_rows_per_s"] = figures["parquet_bare_rows_per_s"]
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
