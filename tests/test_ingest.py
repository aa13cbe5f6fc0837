"""Landing-folder ingest: manifest, validation, quarantine, dedup, accounting, atomicity."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import scaleahead.ingest.loader as loader
from scaleahead.config import Settings
from scaleahead.ingest import ingest_landing
from scaleahead.ingest.accounting import IngestReport
from scaleahead.synth.telemetry import generate
from scaleahead.warehouse import connect

AS_OF = datetime(2026, 11, 20, tzinfo=UTC)
HEADER = ["service", "metric", "timestamp", "value", "labels"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path)
    s.landing_dir.mkdir(parents=True)
    return s


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def query(s: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with connect(read_only=True, path=s.warehouse_path) as con:
        return con.execute(sql, params or []).fetchall()


def assert_balanced(s: Settings) -> None:
    bad = query(
        s,
        "SELECT path FROM raw.ingest_batches "
        "WHERE rows_read <> rows_loaded + rows_quarantined + rows_duplicate",
    )
    assert bad == []


def test_generated_set_loads_all_formats_and_rerun_is_a_no_op(settings: Settings) -> None:
    gen = generate(4, 1, seed=2, settings=settings)
    report = ingest_landing(settings, as_of=AS_OF)
    assert report.files_seen == report.files_loaded == len(gen.files)
    assert report.rows_read == gen.rows_written
    assert report.rows_quarantined >= 3 and report.rows_duplicate > 0
    assert report.rows_read == report.rows_loaded + report.rows_quarantined + report.rows_duplicate
    by_ext = dict(
        query(
            settings,
            "SELECT regexp_extract(path, '\\.(\\w+)$', 1), sum(rows_loaded) "
            "FROM raw.ingest_batches GROUP BY 1",
        )
    )
    assert set(by_ext) == {"csv", "ndjson", "parquet"} and min(by_ext.values()) > 0
    reasons = {r for (r,) in query(settings, "SELECT DISTINCT reason FROM raw.quarantine")}
    assert reasons == {"missing_service", "non_numeric_value", "unparseable_timestamp"}
    assert_balanced(settings)
    json.dumps(report.as_dict())  # JSON-serialisable

    before = query(settings, "SELECT count(*), round(sum(value), 6) FROM raw.telemetry")
    again = ingest_landing(settings, as_of=AS_OF)
    assert again.files_skipped == len(gen.files) and again.files_loaded == 0
    assert again.rows_read == 0
    assert query(settings, "SELECT count(*), round(sum(value), 6) FROM raw.telemetry") == before
    (n_batches,) = query(settings, "SELECT count(*) FROM raw.ingest_batches")[0]
    assert n_batches == len(gen.files)


def test_each_quarantine_reason(settings: Settings) -> None:
    rows = [
        ["api", "request_rate", "2026-11-02T00:00:00Z", "1.5", '{"region":"eu"}'],
        ["", "request_rate", "2026-11-02T00:01:00Z", "1.5", ""],
        ["api", " ", "2026-11-02T00:02:00Z", "1.5", ""],
        ["api", "request_rate", "2026-13-45T25:61:00Z", "1.5", ""],
        ["api", "request_rate", "", "1.5", ""],
        ["api", "request_rate", "2026-11-02T00:03:00Z", "n/a", ""],
        ["api", "request_rate", "2026-11-02T00:04:00Z", "NaN", ""],
        ["api", "request_rate", "2026-11-02T00:05:00Z", "inf", ""],
        ["api", "request_rate", "2030-01-01T00:00:00Z", "1.0", ""],
        ["api", "request_rate", "2026-11-02T00:06:00Z", "1.0", "[not json"],
        ["api", "request_rate", "2026-11-02T00:07:00Z", "2.5", ""],
    ]
    path = write_csv(settings.landing_dir / "reasons.csv", rows)
    with path.open("a") as fh:  # a ragged row the CSV parser itself rejects
        fh.write("api,request_rate,2026-11-02T00:08:00Z,1.0,,extra\n")
        fh.write("api,cpu_cores,2026-11-02T00:09:00Z,3.0,\n")
    report = ingest_landing(settings, as_of=AS_OF)
    assert report.files_loaded == 1
    got = query(settings, "SELECT row_number, reason FROM raw.quarantine ORDER BY row_number")
    assert got == [
        (2, "missing_service"),
        (3, "missing_metric"),
        (4, "unparseable_timestamp"),
        (5, "unparseable_timestamp"),
        (6, "non_numeric_value"),
        (7, "non_finite_value"),
        (8, "non_finite_value"),
        (9, "future_timestamp"),
        (10, "invalid_labels"),
        (12, "malformed_row"),
    ]
    loaded = query(settings, "SELECT ts, value, labels FROM raw.telemetry ORDER BY ts")
    assert [v for _, v, _ in loaded] == [1.5, 2.5, 3.0]
    assert loaded[0][2] == '{"region":"eu"}' and loaded[1][2] == "{}"
    (record,) = query(settings, "SELECT record FROM raw.quarantine WHERE row_number = 6")[0]
    assert "n/a" in record
    b = report.batches[0]
    assert (b.rows_read, b.rows_loaded, b.rows_quarantined, b.rows_duplicate) == (13, 3, 10, 0)
    assert_balanced(settings)


def test_timestamps_with_offsets_become_naive_utc(settings: Settings) -> None:
    write_csv(
        settings.landing_dir / "tz.csv",
        [
            ["a", "m", "2026-11-02T02:00:00+02:00", "1", ""],
            ["b", "m", "2026-11-02T00:00:00", "1", ""],
            ["c", "m", "2026-11-01T19:00:00.000-05:00", "1", ""],
            ["d", "m", "2026-11-02 00:00:00Z", "1", ""],
        ],
    )
    ingest_landing(settings, as_of=AS_OF)
    stamps = {ts for (ts,) in query(settings, "SELECT DISTINCT ts FROM raw.telemetry")}
    assert stamps == {datetime(2026, 11, 2)}


def test_unreadable_files_are_quarantined_and_the_run_continues(settings: Settings) -> None:
    land = settings.landing_dir
    (land / "a-garbage.csv").write_bytes(bytes(range(256)) * 10)
    (land / "b-garbage.ndjson").write_bytes(b"\x89PNG\r\n\x1a\n not json at all")
    good = pa.table({"service": ["a"], "metric": ["m"], "timestamp": ["2026-11-02T00:00:00Z"],
                     "value": [1.0]})  # fmt: skip
    pq.write_table(good, land / "c-truncated.parquet")
    data = (land / "c-truncated.parquet").read_bytes()
    (land / "c-truncated.parquet").write_bytes(data[: len(data) // 2])
    write_csv(land / "d-noschema.csv", [["x", "1"]], header=["host", "value"])
    (land / "e-empty.csv").write_bytes(b"")
    pq.write_table(good, land / "z-good.parquet")

    report = ingest_landing(settings, as_of=AS_OF)
    assert report.files_quarantined == 5 and report.files_loaded == 1
    assert report.rows_loaded == 1
    rows = query(
        settings,
        "SELECT b.path, q.reason, q.row_number, b.status FROM raw.quarantine q "
        "JOIN raw.ingest_batches b USING (batch_id) ORDER BY b.path",
    )
    assert [(p, r) for p, r, _, _ in rows] == [
        ("a-garbage.csv", "unreadable_file"),
        ("b-garbage.ndjson", "unreadable_file"),
        ("c-truncated.parquet", "unreadable_file"),
        ("d-noschema.csv", "unknown_schema"),
        ("e-empty.csv", "unreadable_file"),
    ]
    assert all(n is None and s == "file_quarantined" for _, _, n, s in rows)
    assert_balanced(settings)
    # A quarantined file is not retried until its content changes.
    assert ingest_landing(settings, as_of=AS_OF).files_skipped == 6


def test_extra_columns_become_labels(settings: Settings) -> None:
    write_csv(
        settings.landing_dir / "drift.csv",
        [["a", "m", "2026-11-02T00:00:00Z", "1", '{"region":"eu","host":"keep"}', "h1", "az1"],
         ["a", "m", "2026-11-02T00:01:00Z", "1", "", "h2", ""]],
        header=[*HEADER, "host", "zone"],
    )  # fmt: skip
    report = ingest_landing(settings, as_of=AS_OF)
    labels = [
        json.loads(x) for (x,) in query(settings, "SELECT labels FROM raw.telemetry ORDER BY ts")
    ]
    assert labels == [{"host": "keep", "region": "eu", "zone": "az1"}, {"host": "h2"}]
    assert "schema drift" in report.batches[0].error and "zone" in report.batches[0].error


def test_ndjson_nested_labels_and_bad_lines(settings: Settings) -> None:
    lines = [
        {"service": "a", "metric": "m", "timestamp": "2026-11-02T00:00:00Z", "value": 1,
         "labels": {"b": 1, "a": "x"}, "pod": "p-1"},
        "{broken",
        {"service": "a", "metric": "m", "timestamp": "2026-11-02T00:01:00Z", "value": "2.5"},
        "",
        [1, 2],
    ]  # fmt: skip
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    (settings.landing_dir / "x.jsonl").write_text(text)
    report = ingest_landing(settings, as_of=AS_OF)
    b = report.batches[0]
    assert (b.rows_read, b.rows_loaded, b.rows_quarantined) == (4, 2, 2)
    labels = [x for (x,) in query(settings, "SELECT labels FROM raw.telemetry ORDER BY ts")]
    assert labels == ['{"a":"x","b":1,"pod":"p-1"}', "{}"]
    assert query(settings, "SELECT row_number, reason FROM raw.quarantine ORDER BY 1") == [
        (2, "malformed_row"),
        (5, "malformed_row"),
    ]


def test_clean_ndjson_repeats_resolve_last_write_wins(settings: Settings) -> None:
    """All lines good (the typed, materialised NDJSON path): a key twice counts one duplicate
    and keeps the later line; the same key under other labels is another series."""
    lines = [
        {"service": "a", "metric": "m", "timestamp": "2026-11-02T00:00:00Z", "value": 1},
        {"service": "a", "metric": "m", "timestamp": "2026-11-02T00:01:00Z", "value": 2},
        {"service": "a", "metric": "m", "timestamp": "2026-11-02T00:00:00Z", "value": 3},
        {"service": "a", "metric": "m", "timestamp": "2026-11-02T00:00:00Z", "value": 4,
         "labels": {"zone": "b"}},
    ]  # fmt: skip
    (settings.landing_dir / "r.ndjson").write_text("".join(json.dumps(x) + "\n" for x in lines))
    b = ingest_landing(settings, as_of=AS_OF).batches[0]
    assert (b.rows_read, b.rows_loaded, b.rows_quarantined, b.rows_duplicate) == (4, 3, 0, 1)
    got = query(settings, "SELECT ts, labels, value FROM raw.telemetry ORDER BY ts, labels")
    assert got == [
        (datetime(2026, 11, 2, 0, 0), '{"zone":"b"}', 4.0),
        (datetime(2026, 11, 2, 0, 0), "{}", 3.0),
        (datetime(2026, 11, 2, 0, 1), "{}", 2.0),
    ]


def test_ndjson_one_parse_path_and_its_fallback_to_key_discovery(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clean NDJSON loads in one parse (each line a map); a key beyond the contract on any
    line, a key in other case or a required key on no line restages through key discovery,
    which maps the extra key to a label or rejects the schema."""
    from scaleahead.ingest import sources

    discovered: list[str] = []
    real = sources._stage_ndjson_discovered

    def spy(con, batch):  # noqa: ANN001, ANN202
        discovered.append(batch.key)
        return real(con, batch)

    monkeypatch.setattr(sources, "_stage_ndjson_discovered", spy)
    base = {"service": "a", "metric": "m", "value": 1}
    clean = [
        {**base, "timestamp": "2026-11-02T00:00:00Z", "labels": {"b": 1, "a": "x"}},
        {**base, "timestamp": "2026-11-02T00:01:00Z", "labels": '{"a": "x", "b": 1}'},
        {**base, "timestamp": "2026-11-02T00:02:00Z", "value": "2.5", "labels": None},
    ]
    extra = [{**base, "timestamp": f"2026-11-03T00:0{i}:00Z"} for i in range(3)]
    extra[2]["zone"] = "az1"  # only the last line
    files = {
        "a-clean.ndjson": clean,
        "b-extra.ndjson": extra,
        "c-case.ndjson": [{"Service": "c", "metric": "m", "timestamp": "2026-11-04T00:00:00Z",
                           "value": 1}],
        "d-nometric.ndjson": [{"service": "d", "timestamp": "2026-11-05T00:00:00Z",
                               "value": 1}],
    }  # fmt: skip
    for name, lines in files.items():
        (settings.landing_dir / name).write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = ingest_landing(settings, as_of=AS_OF)
    assert discovered == ["b-extra.ndjson", "c-case.ndjson", "d-nometric.ndjson"]
    by_path = {b.path: b for b in report.batches}
    a = by_path["a-clean.ndjson"]
    assert (a.rows_read, a.rows_loaded, a.rows_quarantined, a.rows_duplicate) == (3, 3, 0, 0)
    got = query(
        settings, "SELECT service, ts, value, labels FROM raw.telemetry ORDER BY service, ts"
    )
    assert got == [
        ("a", datetime(2026, 11, 2, 0, 0), 1.0, '{"a":"x","b":1}'),
        ("a", datetime(2026, 11, 2, 0, 1), 1.0, '{"a":"x","b":1}'),
        ("a", datetime(2026, 11, 2, 0, 2), 2.5, "{}"),
        ("a", datetime(2026, 11, 3, 0, 0), 1.0, "{}"),
        ("a", datetime(2026, 11, 3, 0, 1), 1.0, "{}"),
        ("a", datetime(2026, 11, 3, 0, 2), 1.0, '{"zone":"az1"}'),
        ("c", datetime(2026, 11, 4, 0, 0), 1.0, "{}"),
    ]
    drift = query(settings, "SELECT path, column_name, change FROM raw.schema_drift")
    assert drift == [("b-extra.ndjson", "zone", "new_column")]
    d = by_path["d-nometric.ndjson"]
    assert d.status == "file_quarantined" and d.error.startswith("unknown_schema")
    assert_balanced(settings)


def test_typed_parquet_columns(settings: Settings) -> None:
    table = pa.table(
        {
            "service": ["a", "a"],
            "metric": ["m", "m"],
            "timestamp": pa.array(
                [datetime(2026, 11, 2, 1, tzinfo=UTC), datetime(2026, 11, 2, 2, tzinfo=UTC)],
                pa.timestamp("ms", tz="Europe/Berlin"),
            ),
            "value": pa.array([1, 2], pa.int32()),
        }
    )
    pq.write_table(table, settings.landing_dir / "typed.parquet")
    ingest_landing(settings, as_of=AS_OF)
    got = query(settings, "SELECT ts, value, labels FROM raw.telemetry ORDER BY ts")
    assert got == [(datetime(2026, 11, 2, 1), 1.0, "{}"), (datetime(2026, 11, 2, 2), 2.0, "{}")]


def test_duplicates_in_batch_redelivery_and_corrections(settings: Settings) -> None:
    key = ["a", "m", "2026-11-02T00:00:00Z"]
    write_csv(
        settings.landing_dir / "1.csv",
        [[*key, "1", ""], [*key, "2", "{}"], ["a", "m", "2026-11-02T00:01:00Z", "5", ""]],
    )
    first = ingest_landing(settings, as_of=AS_OF).batches[0]
    assert (first.rows_loaded, first.rows_duplicate) == (2, 1)
    assert query(settings, "SELECT value FROM raw.telemetry ORDER BY ts") == [(2.0,), (5.0,)]

    write_csv(
        settings.landing_dir / "2.csv",
        [[*key, "2", ""], ["a", "m", "2026-11-02T00:01:00Z", "5", ""]],
    )
    redelivery = ingest_landing(settings, as_of=AS_OF).batches[-1]
    assert (redelivery.rows_loaded, redelivery.rows_duplicate) == (0, 2)

    # Same key, new value: a correction loads; re-sending the old value afterwards also loads
    # because it differs from the latest stored version.
    write_csv(settings.landing_dir / "3.csv", [[*key, "7", ""]])
    write_csv(settings.landing_dir / "4.csv", [[*key, "2", ""]])
    report = ingest_landing(settings, as_of=AS_OF)
    assert [b.rows_loaded for b in report.batches if b.status == "loaded"] == [1, 1]
    latest = query(
        settings,
        "SELECT arg_max(value, ingested_at) FROM raw.telemetry WHERE ts = '2026-11-02 00:00:00'",
    )
    assert latest == [(2.0,)]

    # A changed file (new content hash) is a new batch under the same path.
    write_csv(settings.landing_dir / "1.csv", [[*key, "9", ""]])
    changed = ingest_landing(settings, as_of=AS_OF)
    assert changed.files_loaded == 1 and changed.rows_loaded == 1
    assert query(settings, "SELECT count(*) FROM raw.ingest_batches WHERE path = '1.csv'") == [(2,)]
    assert_balanced(settings)


def test_crash_mid_file_leaves_nothing_and_rerun_completes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = "2026-11-02T00:00:00Z"
    a_rows = [["a", "m", ts, "1", ""], ["", "m", ts, "1", ""]]
    write_csv(settings.landing_dir / "a.csv", a_rows)
    write_csv(settings.landing_dir / "b.csv", [["b", "m", "2026-11-02T00:00:00Z", "1", ""]])
    real = loader._insert_batch_row
    calls = {"n": 0}

    def crash_on_second(con, batch, started):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        real(con, batch, started)

    monkeypatch.setattr(loader, "_insert_batch_row", crash_on_second)
    with pytest.raises(RuntimeError):
        ingest_landing(settings, as_of=AS_OF)
    assert query(settings, "SELECT service FROM raw.telemetry") == [("a",)]
    assert query(settings, "SELECT count(*) FROM raw.quarantine") == [(1,)]
    monkeypatch.setattr(loader, "_insert_batch_row", real)
    report = ingest_landing(settings, as_of=AS_OF)
    assert (report.files_skipped, report.files_loaded) == (1, 1)
    assert query(settings, "SELECT service FROM raw.telemetry ORDER BY 1") == [("a",), ("b",)]


# --- property: whatever rows we throw at it, the books balance and no good row is lost ---

_good_row = st.tuples(
    st.sampled_from(["a", "b", " c "]),
    st.sampled_from(["request_rate", "cpu_cores"]),
    st.integers(0, 5).map(lambda m: f"2026-11-02T00:0{m}:00Z"),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.sampled_from(["", "{}", '{"region":"eu"}', '{"b":1,"a":"x"}']),
)
_bad_row = st.one_of(
    _good_row.map(lambda r: ("", *r[1:])),
    st.tuples(_good_row, st.sampled_from(["n/a", "", "1,5"])).map(
        lambda p: (*p[0][:3], p[1], p[0][4])
    ),
    _good_row.map(lambda r: (r[0], r[1], "not-a-time", *r[3:])),
    _good_row.map(lambda r: (*r[:3], "inf", r[4])),
)


def _canonical(labels: str) -> str:
    return json.dumps(json.loads(labels or "{}"), sort_keys=True, separators=(",", ":"))


# Creating a warehouse (extensions, DDL) costs more than loading an example's file, so each
# property test loads all its examples into one warehouse. Examples never share keys (each
# gets its own hour, or its own service suffix) and every check is scoped to the example's
# own batches, so an example sees exactly what it would in a fresh warehouse; loading into a
# non-empty warehouse is the normal case anyway.
_example_ids = itertools.count(1)


@pytest.fixture(scope="module")
def shared_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property-warehouse")


def _in_own_hour(ts: str, example: int) -> str:
    """Move a generated '2026-11-02T00:0m:00Z' to the example's own hour (before AS_OF)."""
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00")) - timedelta(hours=example)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _batch_ids(report: IngestReport) -> str:
    return ", ".join(f"'{b.batch_id}'" for b in report.batches)


@hsettings(
    # Fewer, larger files: an example's cost is per file, not per row.
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(st.tuples(st.booleans(), _good_row, _bad_row), min_size=1, max_size=80))
def test_property_accounting_and_no_good_row_lost(shared_warehouse: Path, rows) -> None:
    n = next(_example_ids)
    table = []
    for ok, good, bad in rows:
        row = list(good if ok else bad)
        if row[2] != "not-a-time":
            row[2] = _in_own_hour(row[2], n)
        table.append(row)
    expected: dict[tuple, float] = {}
    for (ok, *_), (service, metric, ts, value, labels) in zip(rows, table, strict=True):
        if ok:  # file order: the last occurrence of a key wins
            expected[(service.strip(), metric, ts, _canonical(labels))] = float(value)
    s = Settings(home=shared_warehouse)
    path = write_csv(s.landing_dir / f"p{n}.csv", table)
    try:
        report = ingest_landing(s, as_of=AS_OF)
    finally:
        path.unlink()  # the next example must see only its own file
    (b,) = report.batches
    assert b.status == "loaded" and b.balanced and b.rows_read == len(table)
    assert b.rows_quarantined == sum(1 for ok, _, _ in rows if not ok)
    got = query(
        s, "SELECT service, metric, strftime(ts, '%Y-%m-%dT%H:%M:%SZ'), labels, value "
        "FROM raw.telemetry WHERE batch_id = ?", [b.batch_id],
    )  # fmt: skip
    assert {(sv, m, t, _canonical(lb)): v for sv, m, t, lb, v in got} == expected
    assert len(got) == len(expected)
    (quarantined,) = query(
        s, "SELECT count(*) FROM raw.quarantine WHERE batch_id = ?", [b.batch_id]
    )[0]
    assert quarantined == b.rows_quarantined


# --- NAB-style files, service catalog, schema drift records ---


def test_nab_style_csv_mapped_by_glob(tmp_path: Path) -> None:
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text(
        "nab:\n  - glob: 'nab/aws/ec2_cpu_*.csv'\n    service: 'ec2-{stem}'\n"
        "    metric: cpu_utilization\n"
    )
    s = Settings(home=tmp_path, ingest_config=cfg)
    write_csv(
        s.landing_dir / "nab/aws/ec2_cpu_a1.csv",
        [["2014-04-02 14:29:00", "0.066"], ["2014-04-02 14:34:00", "x"]],
        header=["timestamp", "value"],
    )
    write_csv(s.landing_dir / "nab/aws/other.csv", [["2014-04-02 14:29:00", "1"]],
              header=["timestamp", "value"])  # fmt: skip
    report = ingest_landing(s, as_of=AS_OF)
    got = query(s, "SELECT service, metric, ts, value, labels FROM raw.telemetry")
    assert got == [("ec2-ec2_cpu_a1", "cpu_utilization", datetime(2014, 4, 2, 14, 29), 0.066, "{}")]
    by_path = {b.path: b for b in report.batches}
    assert by_path["nab/aws/ec2_cpu_a1.csv"].rows_quarantined == 1
    assert by_path["nab/aws/other.csv"].status == "file_quarantined"  # no mapping: no service


def test_service_catalog_last_write_wins_and_reload_is_idempotent(settings: Settings) -> None:
    import os

    gen = generate(3, 1, seed=4, settings=settings)
    assert gen.catalog_file.parent == settings.catalog_dir
    newer = settings.catalog_dir / "zz-override.csv"
    newer.write_text(
        "service,tier,capacity_per_replica,min_replicas,max_replicas\n"
        f"{gen_first_service(gen)},critical,12.5,3,40\nnew-svc,batch,1,1,2\n"
    )
    stamp = gen.catalog_file.stat().st_mtime + 10
    os.utime(newer, (stamp, stamp))
    report = ingest_landing(settings, as_of=AS_OF)
    assert report.catalog_services == 4
    rows = query(settings, "SELECT * EXCLUDE (updated_at) FROM raw.service_catalog ORDER BY 1")
    overridden = next(r for r in rows if r[0] == gen_first_service(gen))
    assert overridden[1:] == ("critical", 12.5, 3, 40, "zz-override.csv")
    before = query(settings, "SELECT * FROM raw.service_catalog ORDER BY 1")
    ingest_landing(settings, as_of=AS_OF)
    assert query(settings, "SELECT * FROM raw.service_catalog ORDER BY 1") == before


def gen_first_service(gen) -> str:
    with (gen.labels_dir / "services.csv").open() as fh:
        return next(csv.DictReader(fh))["service"]


def test_schema_drift_is_recorded_and_never_corrupts_telemetry(settings: Settings) -> None:
    land = settings.landing_dir
    # New column -> label; changed type (value as text in a typed file) -> rows quarantined.
    pq.write_table(
        pa.table({"service": ["a"], "metric": ["m"], "timestamp": ["2026-11-02T00:00:00Z"],
                  "value": [1.0], "pod": ["p1"]}),
        land / "a-newcol.parquet",
    )  # fmt: skip
    pq.write_table(
        pa.table({"service": ["a", "a"], "metric": ["m", "m"],
                  "timestamp": ["2026-11-02T00:01:00Z", "2026-11-02T00:02:00Z"],
                  "value": ["1.0", "2.0"]}),
        land / "b-typechange.parquet",
    )  # fmt: skip
    report = ingest_landing(settings, as_of=AS_OF)
    assert report.rows_loaded == 1 and report.rows_quarantined == 2
    drift = query(
        settings,
        "SELECT path, column_name, change, action FROM raw.schema_drift ORDER BY path",
    )
    assert drift == [
        ("a-newcol.parquet", "pod", "new_column", "mapped_to_label"),
        ("b-typechange.parquet", "value", "changed_type", "quarantined"),
    ]
    assert query(settings, "SELECT labels FROM raw.telemetry") == [('{"pod":"p1"}',)]
    reasons = query(settings, "SELECT reason, count(*) FROM raw.quarantine GROUP BY 1")
    assert reasons == [("type_changed", 2)]
    assert_balanced(settings)


# --- property: malformed *files* (truncated, garbage, mixed) never lose a good file's rows ---


@hsettings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from(["csv", "ndjson", "parquet"]),
            st.sampled_from(["good", "truncate", "garbage", "bad_lines"]),
            st.lists(_good_row, min_size=1, max_size=15),
            st.integers(0, 10_000),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_property_malformed_files(shared_warehouse: Path, data) -> None:
    n = next(_example_ids)
    expected: dict[tuple, float] = {}
    s = Settings(home=shared_warehouse)
    landing = s.landing_dir / f"e{n}"  # the next example must see only its own files
    landing.mkdir(parents=True)
    try:
        n_good_files = 0
        for i, (fmt, damage, file_rows, cut) in enumerate(data):
            # Keys are disjoint between files (and examples), so a damaged file cannot
            # shadow a good one.
            rows = [(f"{r[0].strip()}-{n}-{i}", *r[1:]) for r in file_rows]
            path = landing / f"f{i}.{fmt}"
            if fmt == "csv":
                write_csv(path, [list(r) for r in rows])
            elif fmt == "ndjson":
                path.write_text("".join(json.dumps(dict(zip(HEADER, r, strict=True))) + "\n"
                                        for r in rows))  # fmt: skip
            else:
                cols = {k: [r[j] for r in rows] for j, k in enumerate(HEADER)}
                cols["value"] = [float(v) for v in cols["value"]]
                pq.write_table(pa.table(cols), path)
            raw = path.read_bytes()
            if damage == "truncate":
                path.write_bytes(raw[: cut % max(len(raw), 1)])
            elif damage == "garbage":
                path.write_bytes(bytes((cut + k) % 256 for k in range(200)) + raw)
            elif damage == "bad_lines" and fmt != "parquet":
                path.write_bytes(raw + b"{not,a,record\n")  # quarantined as one row
            if damage in ("good", "bad_lines"):
                n_good_files += 1
                for service, metric, ts, value, labels in rows:
                    key = (service.strip(), metric, ts, _canonical(labels))
                    expected[key] = float(value)
        report = ingest_landing(s, as_of=AS_OF)
    finally:
        shutil.rmtree(landing)
    assert all(b.balanced for b in report.batches)
    assert report.files_loaded + report.files_quarantined == len(data)
    assert_balanced(s)
    ids = _batch_ids(report)
    got = query(
        s, "SELECT service, metric, strftime(ts, '%Y-%m-%dT%H:%M:%SZ'), labels, "
        f"arg_max(value, ingested_at) FROM raw.telemetry WHERE batch_id IN ({ids}) GROUP BY ALL"
    )  # fmt: skip
    stored = {(sv, m, t, _canonical(lb)): v for sv, m, t, lb, v in got}
    # Every row of every intact file is stored with its latest value.
    for key, value in expected.items():
        assert stored.get(key) == value, key
    (n_quarantine_files,) = query(
        s,
        "SELECT count(DISTINCT path) FROM raw.ingest_batches "
        f"WHERE status = 'file_quarantined' AND batch_id IN ({ids})",
    )[0]
    assert n_quarantine_files <= len(data) - n_good_files
