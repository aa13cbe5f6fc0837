"""Run the real Airflow CLI against the project's DAGs on an embedded SQLite metadata DB."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scaleahead.config import Settings, get_settings

PIPELINE_DAGS = (
    "telemetry_ingest",
    "warehouse_transform",
    "forecast_train",
    "forecast_publish",
    "anomaly_alerts",
    "scaling_guard",
)


class AirflowError(RuntimeError):
    """An Airflow command failed."""


@dataclass
class DagTestResult:
    dag_id: str
    state: str
    elapsed_s: float
    log_path: Path


def airflow_env(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or get_settings()
    home = settings.airflow_home
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            # The tasks run in the Airflow process: pin every path to this installation.
            "SCALEAHEAD_HOME": str(settings.home),
            "SCALEAHEAD_WAREHOUSE_DIR": str(settings.warehouse_dir),
            "MLFLOW_ALLOW_FILE_STORE": "true",
            "NO_PROXY": "*",
        }
    )
    return env


def _airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def _run(args: list[str], settings: Settings, log_path: Path) -> subprocess.CompletedProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        return subprocess.run(
            [_airflow_bin(), *args],
            env=airflow_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.home,
            check=False,
        )


def migrate(settings: Settings | None = None) -> None:
    """Create or upgrade the metadata DB (idempotent)."""
    settings = settings or get_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    log_path = settings.airflow_home / "cli-logs" / "db-migrate.log"
    proc = _run(["db", "migrate"], settings, log_path)
    if proc.returncode != 0:
        raise AirflowError(f"`airflow db migrate` failed (exit {proc.returncode}); see {log_path}")


def _final_state(log_path: Path) -> str:
    text = log_path.read_text(errors="replace")
    marker = "DagRun Finished:"
    for line in reversed(text.splitlines()):
        if marker in line and "state=" in line:
            return line.split("state=", 1)[1].split(",", 1)[0].strip()
    return "unknown"


def dag_test(
    dag_id: str, logical_date: datetime, settings: Settings | None = None
) -> DagTestResult:
    """`airflow dags test DAG DATE`: one real DAG run, tasks executed in-process."""
    settings = settings or get_settings()
    stamp = logical_date.strftime("%Y%m%dT%H%M%S")
    log_path = settings.airflow_home / "cli-logs" / f"{dag_id}-{stamp}.log"
    started = time.perf_counter()
    proc = _run(["dags", "test", dag_id, logical_date.isoformat()], settings, log_path)
    elapsed = time.perf_counter() - started
    state = _final_state(log_path)
    if proc.returncode != 0 or state != "success":
        raise AirflowError(
            f"DAG {dag_id} ended {state} (exit {proc.returncode}); log: {log_path}\n"
            + _tail_errors(log_path)
        )
    return DagTestResult(dag_id=dag_id, state=state, elapsed_s=elapsed, log_path=log_path)


def _tail_errors(log_path: Path, limit: int = 12) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    picked = [ln for ln in lines if "error" in ln.lower() or "Traceback" in ln or "Exception" in ln]
    return "\n".join((picked or lines)[-limit:])
