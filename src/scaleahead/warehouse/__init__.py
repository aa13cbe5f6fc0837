"""Warehouse adapter: connections, the raw/serving/quality DDL and read-only SQL."""

from scaleahead.warehouse.connection import connect, read_sql

__all__ = ["connect", "read_sql"]
