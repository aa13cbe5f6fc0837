"""Transform stage: the dbt project under ``dbt/`` run in-process."""

from scaleahead.transform.dbt import DbtReport, TransformError, build

__all__ = ["DbtReport", "TransformError", "build"]
