"""The source interface: anything that yields telemetry batches plugs into the loader.

A source (landing folder, Prometheus, later an OTLP/HTTP JSON receiver or an MQTT bridge)
only has to produce :class:`Batch` objects; the loader does typing, validation, quarantine,
dedupe, accounting and the per-batch transaction the same way for all of them.

A batch carries its data either as a file DuckDB reads natively (``path`` + ``fmt``: the
fastest route, no Python between the file and the warehouse) or as an Arrow table in the
telemetry schema (``service``, ``metric``, ``timestamp``, ``value``, ``labels``). Its
identity is ``(source, key, content_hash)``: a batch whose identity is already in
``raw.ingest_batches`` is skipped, so re-offering the same batch is a no-op. ``on_commit``
statements run inside the batch's transaction (e.g. a source's high-water mark), so the
mark moves if and only if the rows landed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa


@dataclass
class Batch:
    source: str  # e.g. 'landing', 'prometheus'
    key: str  # stable name within the source: a relative path, a query + time range
    content_hash: str  # sha256 of the payload: same key + same hash = same batch
    fmt: str  # 'csv' | 'ndjson' | 'parquet' | 'arrow'
    path: Path | None = None  # for file batches
    table: pa.Table | None = None  # for 'arrow' batches
    # (service, metric) constants for files without those columns (NAB-style timestamp,value)
    mapping: tuple[str, str] | None = None
    # (sql, params) run in the batch's transaction just before COMMIT
    on_commit: list[tuple[str, list[Any]]] = field(default_factory=list)


@runtime_checkable
class Source(Protocol):
    """A telemetry source. ``batches`` may read the warehouse (e.g. a watermark) via ``con``."""

    name: str

    def batches(self, con: Any, as_of: datetime) -> Iterator[Batch]: ...
