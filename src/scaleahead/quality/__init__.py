"""Quality gate: Great Expectations suites over raw telemetry and the demand mart."""

from scaleahead.quality.gate import QualityError, QualityReport, run_gate
from scaleahead.quality.suites import QualityConfigError

__all__ = ["QualityConfigError", "QualityError", "QualityReport", "run_gate"]
