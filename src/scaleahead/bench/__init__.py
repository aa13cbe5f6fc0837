"""Benchmarks: each area measures figures and writes ``benchmarks/results/<area>.json``."""

from scaleahead.bench.runner import AREAS, run_benchmarks

__all__ = ["AREAS", "run_benchmarks"]
