"""Ingest reliability: SIGKILL mid-transaction then rerun, double run, concurrent runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scaleahead.config import Settings
from scaleahead.ingest.loader import run_ingest
from scaleahead.synth.telemetry import generate
from scaleahead.warehouse import connect

AS_OF = datetime(2026, 11, 20, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]

# Child: a normal ingest run; with SLOW=1 every batch pauses inside its transaction (after
# telemetry and quarantine rows are written, before the batch row) and says so on stderr.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    import scaleahead.ingest.loader as loader
    from scaleahead.config import Settings

    if os.environ.get("SLOW") == "1":
        real = loader._insert_batch_row
        def slow(con, batch, started):
            print("IN_TXN", batch.path, flush=True, file=sys.stderr)
            time.sleep(0.4)
            real(con, batch, started)
        loader._insert_batch_row = slow
    s = Settings(home=Path(sys.argv[1]), warehouse_dir=Path(sys.argv[2]))
    r = loader.run_ingest(s, as_of=datetime(2026, 11, 20, tzinfo=UTC), load_catalog=False)
    print("DONE", r.files_loaded, r.files_skipped, flush=True, file=sys.stderr)
    """
)


def _child(home: Path, warehouse: Path, slow: bool = False) -> subprocess.Popen:
    env = {**os.environ, "SLOW": "1" if slow else "0"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), str(warehouse)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def snapshot(s: Settings) -> dict:
    with connect(read_only=True, path=s.warehouse_path) as con:
        rows = con.execute(
            "SELECT service, metric, ts, value, labels, count(*) FROM raw.telemetry "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        batches = con.execute(
            "SELECT path, status, rows_read, rows_loaded, rows_quarantined, rows_duplicate "
            "FROM raw.ingest_batches ORDER BY path"
        ).fetchall()
        quarantine = con.execute(
            "SELECT path, row_number, reason, count(*) FROM raw.quarantine GROUP BY ALL "
            "ORDER BY ALL"
        ).fetchall()
    return {"rows": rows, "batches": batches, "quarantine": quarantine}


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, int]:
    """A generated landing folder and the warehouse state one clean run produces from it."""
    home = tmp_path_factory.mktemp("landing")
    ref = Settings(home=home, warehouse_dir=home / "reference")
    gen = generate(4, 2, seed=9, settings=ref)
    report = run_ingest(ref, as_of=AS_OF, load_catalog=False)
    assert report.files_loaded == len(gen.files) and report.rows_duplicate > 0
    return ref.landing_dir, snapshot(ref), len(gen.files)


def _settings(tmp_path: Path, landing_dir: Path) -> Settings:
    return Settings(home=tmp_path, warehouse_dir=tmp_path / "wh", landing_dir=landing_dir)


def test_sigkill_mid_transaction_then_rerun_gives_exact_rows(tmp_path: Path, landing) -> None:
    landing_dir, expected, n_files = landing
    s = _settings(tmp_path, landing_dir)
    env_home = tmp_path / "home"
    env_home.mkdir()
    # The child resolves the landing folder from its own Settings: point it at the shared one.
    (tmp_path / "wh").mkdir()
    os.symlink(landing_dir, tmp_path / "wh" / "landing")
    proc = _child(env_home, tmp_path / "wh", slow=True)
    seen = 0
    for line in proc.stderr:
        if line.startswith("IN_TXN"):
            seen += 1
            if seen == 3:  # third batch is inside its transaction right now
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = snapshot(s)
    assert len(partial["batches"]) == 2  # two committed, the third rolled back entirely
    loaded = sum(b[3] for b in partial["batches"])
    assert sum(r[5] for r in partial["rows"]) == loaded

    report = run_ingest(s, as_of=AS_OF, load_catalog=False)
    assert (report.files_skipped, report.files_loaded) == (2, n_files - 2)
    assert snapshot(s) == expected


def test_double_run_changes_nothing(tmp_path: Path, landing) -> None:
    landing_dir, expected, n_files = landing
    s = _settings(tmp_path, landing_dir)
    run_ingest(s, as_of=AS_OF, load_catalog=False)
    again = run_ingest(s, as_of=AS_OF, load_catalog=False)
    assert again.files_skipped == n_files and again.rows_read == 0
    assert snapshot(s) == expected


def test_two_concurrent_runs_do_not_double_load(tmp_path: Path, landing) -> None:
    landing_dir, expected, n_files = landing
    s = _settings(tmp_path, landing_dir)
    (tmp_path / "wh").mkdir()
    os.symlink(landing_dir, tmp_path / "wh" / "landing")
    home = tmp_path / "home"
    home.mkdir()
    procs = [_child(home, tmp_path / "wh") for _ in range(2)]
    outs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    done = sorted(
        tuple(int(x) for x in line.split()[1:])
        for out in outs
        for line in out.splitlines()
        if line.startswith("DONE")
    )
    # One run loaded every file, the other found them all in the manifest.
    assert done == [(0, n_files), (n_files, 0)]
    assert snapshot(s) == expected


def test_a_claimed_batch_is_not_loaded_twice(tmp_path: Path, landing) -> None:
    """The in-transaction claim: a batch already in the manifest is skipped, not re-loaded."""
    from scaleahead.ingest import loader
    from scaleahead.ingest.sources import LandingSource

    landing_dir, _, _ = landing
    s = _settings(tmp_path, landing_dir)
    with connect(path=s.warehouse_path) as con:
        con.execute("SET TimeZone = 'UTC'")
        item = next(iter(LandingSource(landing_dir).batches(con, AS_OF)))
        first = loader.load_batch(con, item, datetime(2027, 1, 1), datetime(2026, 11, 20))
        second = loader.load_batch(con, item, datetime(2027, 1, 1), datetime(2026, 11, 21))
        (n,) = con.execute("SELECT count(*) FROM raw.telemetry").fetchone()
    assert first.status == "loaded" and second.status == "skipped"
    assert n == first.rows_loaded > 0
