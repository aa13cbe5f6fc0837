"""Shared fixtures: every test gets its own warehouse folder; nothing touches ./warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scaleahead.config import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose run-time paths all live under tmp_path (repo code and configs as usual)."""
    monkeypatch.setenv("SCALEAHEAD_WAREHOUSE_DIR", str(tmp_path / "warehouse"))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    get_settings.cache_clear()
    value = get_settings()
    value.ensure_dirs()
    yield value
    get_settings.cache_clear()
