"""Warehouse adapter: DuckLake sessions, the raw/serving/quality DDL and read-only SQL."""

from scaleahead.warehouse.connection import connect, current_snapshot_id, read_sql

__all__ = ["connect", "current_snapshot_id", "read_sql"]
