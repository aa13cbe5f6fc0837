"""Telemetry ingest into ``raw.telemetry``: sources (landing folder, Prometheus), manifest,
quarantine, dedupe, accounting, schema drift, service catalog."""

from scaleahead.ingest.accounting import BatchResult, IngestReport
from scaleahead.ingest.loader import ingest_landing, run_ingest
from scaleahead.ingest.source import Batch, Source

__all__ = ["Batch", "BatchResult", "IngestReport", "Source", "ingest_landing", "run_ingest"]
