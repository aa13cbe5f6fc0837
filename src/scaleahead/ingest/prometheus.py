"""Prometheus source: configured PromQL queries pulled through ``/api/v1/query_range``.

Each query maps to one (service, metric); series labels (minus ``__name__``) become the row
labels. Pulls are incremental: from the stream's high-water mark in ``raw.source_watermarks``
minus ``overlap_s`` (late samples and re-evaluated rates), up to ``as_of`` (the run's data
interval end), with ``start`` aligned to the step grid so a re-pulled sample gets the same
timestamp and the loader's dedupe drops it. The mark moves in the batch's transaction.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa

from scaleahead.ingest.config import PrometheusConfig, PromQuery
from scaleahead.ingest.source import Batch

MAX_POINTS = 10_000  # Prometheus refuses > 11,000 points per series

WATERMARK_DELETE = "DELETE FROM raw.source_watermarks WHERE source = ? AND stream = ?"
WATERMARK_INSERT = "INSERT INTO raw.source_watermarks VALUES (?, ?, ?, ?)"


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def result_to_arrow(result: list[dict[str, Any]], query: PromQuery) -> tuple[pa.Table, float]:
    """A ``matrix`` result as a telemetry Arrow table, and its latest sample (epoch s)."""
    stamps: list[float] = []
    values: list[float] = []
    labels: list[str] = []
    for series in result:
        tags = {k: v for k, v in series.get("metric", {}).items() if k != "__name__"}
        text = json.dumps(tags, sort_keys=True, separators=(",", ":"))
        for ts, val in series.get("values", []):
            stamps.append(float(ts))
            values.append(float(val))  # 'NaN' / '+Inf' parse; the loader quarantines them
            labels.append(text)
    n = len(stamps)
    table = pa.table(
        {
            "service": pa.array([query.service] * n, pa.string()),
            "metric": pa.array([query.metric] * n, pa.string()),
            "timestamp": pa.array([round(s * 1000) for s in stamps], pa.timestamp("ms", "UTC")),
            "value": pa.array(values, pa.float64()),
            "labels": pa.array(labels, pa.string()),
        }
    )
    return table, max(stamps, default=math.nan)


class PrometheusSource:
    def __init__(self, config: PrometheusConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.name = "prometheus"
        self._client = client

    def _stream(self, query: PromQuery) -> str:
        return f"{self.config.name}/{query.name}"

    def _watermark(self, con: Any, stream: str) -> datetime | None:
        row = con.execute(
            "SELECT max(high_water) FROM raw.source_watermarks WHERE source = ? AND stream = ?",
            [self.name, stream],
        ).fetchone()
        return row[0] if row else None

    def window(self, high_water: datetime | None, as_of: datetime) -> tuple[datetime, datetime]:
        """[start, end] of the next pull, start aligned down to the step grid."""
        cfg = self.config
        end = _naive_utc(as_of)
        if high_water is None:
            start = end - timedelta(seconds=cfg.initial_lookback_s)
        else:
            start = high_water - timedelta(seconds=cfg.overlap_s)
        epoch = math.floor(_epoch(start) / cfg.step_s) * cfg.step_s
        return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None), end

    def query_range(self, query: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        cfg = self.config
        client = self._client or httpx.Client(timeout=cfg.timeout_s)
        try:
            resp = client.get(
                cfg.url.rstrip("/") + "/api/v1/query_range",
                params={
                    "query": query,
                    "start": _epoch(start),
                    "end": _epoch(end),
                    "step": cfg.step_s,
                },  # fmt: skip
            )
            resp.raise_for_status()
            body = resp.json()
        finally:
            if self._client is None:
                client.close()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus error: {body.get('error', body)}")
        return body["data"]["result"]

    def batches(self, con: Any, as_of: datetime) -> Iterator[Batch]:
        cfg = self.config
        for query in cfg.queries:
            stream = self._stream(query)
            start, end = self.window(self._watermark(con, stream), as_of)
            chunk = timedelta(seconds=cfg.step_s * MAX_POINTS)
            while start <= end:
                stop = min(start + chunk, end)
                result = self.query_range(query.query, start, stop)
                table, latest = result_to_arrow(result, query)
                payload = json.dumps(result, sort_keys=True).encode()
                key = f"{stream}@{start.isoformat()}..{stop.isoformat()}"
                hooks = []
                if not math.isnan(latest):
                    high = datetime.fromtimestamp(latest, UTC).replace(tzinfo=None)
                    now = _naive_utc(datetime.now(UTC))
                    # The mark only moves forward (an old range re-pulled never lowers it).
                    high = max(high, self._watermark(con, stream) or high)
                    hooks.append((WATERMARK_DELETE, [self.name, stream]))
                    hooks.append((WATERMARK_INSERT, [self.name, stream, high, now]))
                yield Batch(
                    source=self.name,
                    key=key,
                    content_hash=hashlib.sha256(payload).hexdigest(),
                    fmt="arrow",
                    table=table,
                    on_commit=hooks,
                )
                start = stop + timedelta(seconds=cfg.step_s)
