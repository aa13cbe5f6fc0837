"""Landing-folder ingest into ``raw.telemetry`` with manifest, quarantine and dedup."""

from scaleahead.ingest.accounting import BatchResult, IngestReport
from scaleahead.ingest.loader import ingest_landing

__all__ = ["BatchResult", "IngestReport", "ingest_landing"]
