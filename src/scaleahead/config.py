"""One settings object for the whole platform (env prefix ``SCALEAHEAD_``).

Every path defaults to a location inside the repository so that a fresh clone runs
without configuration; relative paths given through the environment are resolved
against the project home.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _find_home() -> Path:
    """The project home: $SCALEAHEAD_HOME, else the checkout this package lives in, else cwd."""
    env = os.environ.get("SCALEAHEAD_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "dags").is_dir():
            return parent
    return Path.cwd().resolve()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCALEAHEAD_", extra="ignore")

    home: Path = Field(default_factory=_find_home)
    # Everything written at run time lives under warehouse_dir; the paths left unset below
    # default to a place inside it, so one variable moves a whole installation (tests do so).
    warehouse_dir: Path = Path("warehouse")
    landing_dir: Path | None = None
    # Service catalog CSVs (service, tier, capacity_per_replica, min_replicas, max_replicas).
    catalog_dir: Path | None = None
    warehouse_path: Path | None = None
    dbt_project_dir: Path = Path("dbt")
    dags_dir: Path = Path("dags")
    ml_config: Path = Path("ml/forecast.yaml")
    quality_config: Path = Path("ml/quality.yaml")
    mlflow_dir: Path | None = None
    airflow_home: Path | None = None
    gx_docs_dir: Path | None = None
    reports_dir: Path | None = None
    benchmarks_dir: Path = Path("benchmarks/results")
    shared_data_dir: Path = Path("../shared/data")

    # The metric the demand forecaster is trained on, and the mart's grain.
    demand_metric: str = "request_rate"
    model_name_prefix: str = "scaleahead-demand"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # How often the API checks the warehouse for a newer forecast batch.
    api_refresh_interval_s: float = 15.0

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.home = self.home.resolve()
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name != "home" and field.annotation is Path and not value.is_absolute():
                setattr(self, name, (self.home / value).resolve())
        inside_warehouse = {
            "landing_dir": "landing",
            "catalog_dir": "catalog",
            "warehouse_path": "scaleahead.duckdb",
            "mlflow_dir": "mlflow",
            "airflow_home": "airflow",
            "gx_docs_dir": "gx_docs",
            "reports_dir": "reports",
        }
        for name, default in inside_warehouse.items():
            value = getattr(self, name)
            if value is None:
                value = self.warehouse_dir / default
            elif not value.is_absolute():
                value = (self.home / value).resolve()
            setattr(self, name, value)
        return self

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    def model_name(self, metric: str | None = None) -> str:
        return f"{self.model_name_prefix}-{metric or self.demand_metric}"

    def ensure_dirs(self) -> None:
        for path in (
            self.warehouse_dir,
            self.landing_dir,
            self.mlflow_dir,
            self.airflow_home,
            self.reports_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
