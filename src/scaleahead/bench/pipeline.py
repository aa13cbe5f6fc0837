"""Pipeline benchmark: each stage of the main job timed in-process on a scratch warehouse."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from scaleahead.bench.runner import scratch_root as _scratch_root
from scaleahead.config import Settings


def run(settings: Settings) -> dict[str, float | int]:
    from scaleahead import tasks
    from scaleahead.synth.telemetry import DEFAULT_START, generate

    services = int(os.environ.get("SCALEAHEAD_BENCH_SERVICES", "50"))
    days = int(os.environ.get("SCALEAHEAD_BENCH_DAYS", "14"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=_scratch_root(settings)))
    try:
        local = Settings(home=settings.home, warehouse_dir=scratch / "warehouse")
        local.ensure_dirs()
        figures: dict[str, float | int] = {"services": services, "days": days}
        as_of = DEFAULT_START + timedelta(days=days)

        def timed(name: str, fn):
            started = time.perf_counter()
            out = fn()
            figures[f"{name}_s"] = round(time.perf_counter() - started, 3)
            return out

        timed("generate", lambda: generate(services=services, days=days, seed=7, settings=local))
        ingest = timed("ingest", lambda: tasks.ingest(as_of=as_of, settings=local))
        timed("transform", lambda: tasks.transform(settings=local))
        timed("check", lambda: tasks.check(settings=local))
        timed("train", lambda: tasks.train(settings=local))
        timed("publish", lambda: tasks.publish(created_at=as_of, settings=local))
        figures["rows_read"] = ingest["rows_read"]
        figures["ingest_rows_per_s"] = round(ingest["rows_read"] / figures["ingest_s"])
        stages = ("ingest", "transform", "check", "train", "publish")
        figures["pipeline_s"] = round(sum(figures[f"{s}_s"] for s in stages), 3)
        return figures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
