"""Quality gate: Great Expectations suites over raw telemetry, the demand mart and forecasts.

Exports resolve lazily: the API imports ``scaleahead.quality.status`` to read gate verdicts,
and must not pay for importing Great Expectations (~150 MB resident) to do so.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QualityConfigError", "QualityError", "QualityReport", "run_gate"]


def __getattr__(name: str) -> Any:
    if name in ("QualityError", "QualityReport", "run_gate"):
        from scaleahead.quality import gate

        return getattr(gate, name)
    if name == "QualityConfigError":
        from scaleahead.quality.suites import QualityConfigError

        return QualityConfigError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
