"""Benchmark registry and result files (flat JSON of named figures + machine info + date)."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scaleahead.config import Settings, get_settings

Figures = dict[str, Any]


def _discover() -> dict[str, Callable[[Settings], Figures]]:
    """Every module ``scaleahead.bench.<area>`` with a ``run(settings) -> figures`` is an area."""
    import scaleahead.bench as package

    areas: dict[str, Callable[[Settings], Figures]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "runner":
            continue
        areas[info.name] = _lazy(info.name)
    return areas


def _lazy(area: str) -> Callable[[Settings], Figures]:
    def run(settings: Settings) -> Figures:
        return importlib.import_module(f"scaleahead.bench.{area}").run(settings)

    return run


AREAS: dict[str, Callable[[Settings], Figures]] = _discover()


def scratch_root(settings: Settings) -> str:
    """Scratch space for benchmark warehouses: inside the (git-ignored) warehouse folder."""
    root = settings.warehouse_dir / "bench"
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


def machine_info() -> dict[str, Any]:
    mem_kb = 0
    try:
        with open("/proc/meminfo") as handle:
            mem_kb = int(handle.readline().split()[1])
    except OSError:
        pass
    return {
        "machine_cpus": os.cpu_count(),
        "machine_mem_gb": round(mem_kb / 1024 / 1024, 1),
        "machine_platform": platform.platform(),
        "machine_python": platform.python_version(),
    }


def write_result(area: str, figures: Figures, settings: Settings) -> Figures:
    payload = {
        **figures,
        **machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    settings.benchmarks_dir.mkdir(parents=True, exist_ok=True)
    target = settings.benchmarks_dir / f"{area}.json"
    target.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return payload


def run_benchmarks(area: str = "all", settings: Settings | None = None) -> dict[str, Figures]:
    settings = settings or get_settings()
    names = list(AREAS) if area == "all" else [area]
    unknown = [n for n in names if n not in AREAS]
    if unknown:
        raise ValueError(f"unknown benchmark area {unknown[0]!r}; known: {', '.join(AREAS)}, all")
    return {name: write_result(name, AREAS[name](settings), settings) for name in names}
