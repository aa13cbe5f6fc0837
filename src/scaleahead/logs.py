"""Structured logging for the CLI and the pipeline (key=value lines on stderr)."""

from __future__ import annotations

import logging
import os

import structlog


def configure(level: str | None = None) -> None:
    level_name = (level or os.environ.get("SCALEAHEAD_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(
        level=getattr(logging, level_name, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Third-party chatter drowns the pipeline's own progress lines.
    for noisy in ("alembic", "mlflow", "urllib3", "great_expectations", "httpx", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
