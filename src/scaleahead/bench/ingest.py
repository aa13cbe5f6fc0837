"""Ingest benchmark: the loader (validation, quarantine, dedupe, accounting) versus a bare
DuckDB load of the same file into a plain DuckDB table, per format, in the same run.

Sizes: ``SCALEAHEAD_BENCH_INGEST_ROWS`` (comma-separated, default ``1000000,10000000``).
Every load runs in its own child process, so ``peak_rss_mb`` is the loader's own peak RSS
(``ru_maxrss`` of that process), not the benchmark driver's. Headline figures
(``parquet_rows_per_s`` ...) are for the largest size; ``*_<n>m`` figures give each size;
``scale_ratio_10m_vs_1m`` = loader seconds per row at the largest size / at the smallest
(1.0 = linear), summed over the three formats.

Each (size, format) is measured ``SCALEAHEAD_BENCH_INGEST_REPEATS`` times (default 3), bare and
loader interleaved; the figures take the best run of each (``*_median`` ratios alongside).

The loader ingests into an existing, empty warehouse, as it does on every scheduled run: the
one-time creation of the lake (extension install, catalog DDL, ~1-3 s) and the per-process
import DuckDB's parameter binding triggers (pandas) happen before the clock starts and are
reported on their own as ``<fmt>_warehouse_setup_s_<n>m``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from scaleahead.bench.runner import scratch_root as _scratch_root
from scaleahead.config import Settings

AS_OF = datetime(2026, 12, 1, tzinfo=UTC)

FORMATS = {
    "parquet": ("(FORMAT parquet)", "read_parquet('{p}')"),
    "csv": ("(FORMAT csv, HEADER)", "read_csv('{p}', header=true)"),
    "ndjson": ("(FORMAT json)", "read_json('{p}', format='newline_delimited')"),
}


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


def _child_bare(path: Path, fmt: str, scratch: Path) -> dict:
    db = scratch / "bare.duckdb"
    con = duckdb.connect(str(db))
    started = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM {FORMATS[fmt][1].format(p=path)}")
    elapsed = time.perf_counter() - started
    (rows,) = con.execute("SELECT count(*) FROM t").fetchone()
    con.close()
    db.unlink()
    return {"seconds": elapsed, "rows": rows}


def _child_loader(path: Path, fmt: str, scratch: Path, home: Path) -> dict:
    from scaleahead.ingest.loader import ingest_landing
    from scaleahead.warehouse import connect

    settings = Settings(home=home, warehouse_dir=scratch / "wh")
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, settings.landing_dir / path.name)
    started = time.perf_counter()
    with connect(path=settings.warehouse_path) as con:
        # DuckDB's first parameter binding in a process imports pandas (~0.5-1 s): a one-off
        # per process, paid before the clock like the lake creation, not per row.
        con.execute("SELECT ?", [0]).fetchall()
    setup = time.perf_counter() - started
    started = time.perf_counter()
    report = ingest_landing(settings=settings, as_of=AS_OF)
    elapsed = time.perf_counter() - started
    if report.rows_read != report.rows_loaded + report.rows_quarantined + report.rows_duplicate:
        raise RuntimeError("accounting invariant broken in benchmark run")
    return {"seconds": elapsed, "rows": report.rows_loaded, "setup_seconds": setup}


def _in_child(mode: str, path: Path, fmt: str, scratch: Path, home: Path) -> dict:
    """Run one load in a fresh interpreter; returns its seconds, rows and own peak RSS."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaleahead.bench.ingest",
            mode,
            str(path),
            fmt,
            str(scratch),
            str(home),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    shutil.rmtree(scratch / "wh", ignore_errors=True)
    return result


def _sizes() -> list[int]:
    raw = os.environ.get("SCALEAHEAD_BENCH_INGEST_ROWS", "1000000,10000000")
    return sorted({int(x) for x in raw.split(",") if x.strip()})


def _label(rows: int) -> str:
    return f"{rows / 1e6:g}m".replace(".", "_")


def run(settings: Settings) -> dict[str, float | int | str]:
    sizes = _sizes()
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=_scratch_root(settings)))
    repeats = max(1, int(os.environ.get("SCALEAHEAD_BENCH_INGEST_REPEATS", "3")))
    figures: dict[str, float | int | str] = {
        "rows": sizes[-1],
        "sizes": ",".join(map(str, sizes)),
        "repeats": repeats,
        "statistic": "best of `repeats` interleaved runs (median ratio reported too)",
    }
    loader_s: dict[int, float] = {}
    try:
        gen = duckdb.connect()
        for rows in sizes:
            tag = _label(rows)
            loader_s[rows] = 0.0
            for fmt, (copy_fmt, _) in FORMATS.items():
                source = scratch / f"telemetry-{tag}.{fmt}"
                _write_source(gen, rows, source, copy_fmt)
                # Interleaved repeats, best of each: on a shared 2-CPU machine a single run
                # mostly measures the neighbours; the minimum is the least-disturbed run.
                bares, loads = [], []
                for _ in range(repeats):
                    bares.append(_in_child("bare", source, fmt, scratch, settings.home))
                    loads.append(_in_child("loader", source, fmt, scratch, settings.home))
                source.unlink()
                bare = min(bares, key=lambda r: r["seconds"])
                loaded = min(loads, key=lambda r: r["seconds"])
                loaded["peak_rss_mb"] = max(r["peak_rss_mb"] for r in loads)
                bare["peak_rss_mb"] = max(r["peak_rss_mb"] for r in bares)
                figures[f"{fmt}_ratio_to_duckdb_{tag}_median"] = round(
                    statistics.median(b["seconds"] for b in bares)
                    / statistics.median(r["seconds"] for r in loads),
                    3,
                )
                if loaded["rows"] != rows or bare["rows"] != rows:
                    raise RuntimeError(f"{fmt} at {rows}: loaded {loaded['rows']} rows")
                loader_s[rows] += loaded["seconds"]
                figures[f"{fmt}_rows_per_s_{tag}"] = round(rows / loaded["seconds"])
                figures[f"{fmt}_bare_rows_per_s_{tag}"] = round(rows / bare["seconds"])
                figures[f"{fmt}_ratio_to_duckdb_{tag}"] = round(
                    bare["seconds"] / loaded["seconds"], 3
                )
                figures[f"{fmt}_peak_rss_mb_{tag}"] = loaded["peak_rss_mb"]
                figures[f"{fmt}_warehouse_setup_s_{tag}"] = round(loaded["setup_seconds"], 2)
                figures[f"{fmt}_bare_peak_rss_mb_{tag}"] = bare["peak_rss_mb"]
        top = _label(sizes[-1])
        for fmt in FORMATS:
            for name in ("rows_per_s", "bare_rows_per_s", "ratio_to_duckdb"):
                figures[f"{fmt}_{name}"] = figures[f"{fmt}_{name}_{top}"]
        figures["duckdb_baseline_rows_per_s"] = figures["parquet_bare_rows_per_s"]
        figures["peak_rss_mb"] = max(figures[f"{fmt}_peak_rss_mb_{top}"] for fmt in FORMATS)
        lo, hi = sizes[0], sizes[-1]
        if hi > lo:
            figures[f"scale_ratio_{_label(hi)}_vs_{_label(lo)}"] = round(
                (loader_s[hi] / hi) / (loader_s[lo] / lo), 3
            )
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _main(argv: list[str]) -> None:
    mode, path, fmt, scratch, home = argv
    if mode == "bare":
        result = _child_bare(Path(path), fmt, Path(scratch))
    else:
        result = _child_loader(Path(path), fmt, Path(scratch), Path(home))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
