"""Benchmark area `nab`: the anomaly detector on the NAB subset in settings.shared_data_dir."""

from __future__ import annotations

from scaleahead.anomaly.benchmark import run_nab
from scaleahead.bench.runner import scratch_root
from scaleahead.config import Settings


def run(settings: Settings) -> dict:
    from pathlib import Path

    return run_nab(settings.shared_data_dir / "nab", Path(scratch_root(settings)) / "nab")
