"""Synthetic telemetry for demos, tests and benchmarks."""

from scaleahead.synth.telemetry import DEFAULT_START, GenerationResult, generate

__all__ = ["DEFAULT_START", "GenerationResult", "generate"]
