"""Per-batch and per-run ingest accounting (the reports returned by ``ingest_landing``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

LOADED = "loaded"
FILE_QUARANTINED = "file_quarantined"
SKIPPED = "skipped"


@dataclass
class BatchResult:
    batch_id: str
    path: str
    content_hash: str
    status: str  # LOADED | FILE_QUARANTINED | SKIPPED (skipped ones are not stored)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    error: str | None = None
    seconds: float = 0.0
    source: str = "landing"

    @property
    def balanced(self) -> bool:
        """The accounting invariant every stored batch satisfies."""
        return self.rows_read == self.rows_loaded + self.rows_quarantined + self.rows_duplicate

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestReport:
    as_of: datetime
    files_seen: int = 0
    files_loaded: int = 0
    files_skipped: int = 0
    files_quarantined: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    seconds: float = 0.0
    batches: list[BatchResult] = field(default_factory=list)
    # source name -> error for sources that failed as a whole (e.g. Prometheus unreachable)
    source_errors: dict[str, str] = field(default_factory=dict)
    catalog_services: int = 0

    @property
    def new_data(self) -> bool:
        """True when this run loaded at least one row (the ingest Asset is emitted then)."""
        return self.rows_loaded > 0

    def add(self, batch: BatchResult) -> None:
        self.batches.append(batch)
        if batch.status == SKIPPED:
            self.files_skipped += 1
            return
        if batch.status == LOADED:
            self.files_loaded += 1
        else:
            self.files_quarantined += 1
        self.rows_read += batch.rows_read
        self.rows_loaded += batch.rows_loaded
        self.rows_quarantined += batch.rows_quarantined
        self.rows_duplicate += batch.rows_duplicate

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat()
        out["rows_per_second"] = round(self.rows_per_second, 1)
        out["new_data"] = self.new_data
        return out
