"""One settings object for the whole platform (env prefix ``SCALEAHEAD_``).

Every path defaults to a location inside the repository so that a fresh clone runs
without configuration; relative paths given through the environment are resolved
against the project home.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scaleahead.domain import modes as _modes


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
    # The warehouse is a DuckLake (catalog + Parquet data files). warehouse_path is the SQLite
    # catalog file (default warehouse/lake/catalog.sqlite); set catalog_url to a PostgreSQL
    # connection (postgresql://user@host:port/db or libpq "dbname=... host=...") for a
    # multi-host catalog. Data files go to lake_data_dir (default: <catalog folder>/data);
    # DuckDB extensions are installed from the duckdb-extension-* wheels into
    # duckdb_extension_dir (default warehouse/duckdb_extensions), never downloaded.
    warehouse_path: Path | None = None
    catalog_url: str | None = None
    lake_data_dir: Path | None = None
    duckdb_extension_dir: Path | None = None
    dbt_project_dir: Path = Path("dbt")
    dags_dir: Path = Path("dags")
    ml_config: Path = Path("ml/forecast.yaml")
    quality_config: Path = Path("ml/quality.yaml")
    # Ingest sources beyond the landing folder: Prometheus query sets, NAB-style CSV mappings.
    ingest_config: Path = Path("ml/ingest.yaml")
    mlflow_dir: Path | None = None
    # An MLflow tracking server (e.g. http://127.0.0.1:5000, production mode); unset: the
    # embedded SQLite store under mlflow_dir. The server then decides artifact locations.
    mlflow_server_url: str | None = None
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

    # Prometheus Alertmanager base URL for anomaly alerts (e.g. http://127.0.0.1:9093);
    # unset: alerts are written to serving.alerts only and delivery is skipped.
    alertmanager_url: str | None = None
    # The per-service IsolationForest view in the anomaly stage. Off: on the synthetic fleet
    # (`scaleahead bench anomaly`, 50 services x 14 days) it raised no alert at all and
    # tripled the stage's detection time (16.2 s vs 5.2 s).
    anomaly_multivariate: bool = False
    # KEDA external scaler (gRPC) port; `scaleahead serve` starts it beside the REST API.
    api_grpc_port: int = 50051
    # API keys (hashed) live in this JSON file. Auth: "auto" = required as soon as one active
    # key exists, "on" = always required (no key = every request refused), "off" = never.
    api_keys_path: Path | None = None
    api_auth: str = "auto"
    # Token bucket per API key (per client address when auth is off): refill rate and burst.
    api_rate_limit_rps: float = 100.0
    api_rate_limit_burst: int = 200
    # Scaling policy (scaleahead.domain.scaling): a forecast older than this is stale.
    forecast_max_age_s: float = 1800.0
    scaling_lead_time_s: float = 300.0
    scaling_window_s: float = 300.0
    scaling_stabilization_s: float = 300.0
    scaling_tolerance: float = 0.1
    scaling_quantile: str = "p90"
    # Predictive scale-in needs this much of a replica to spare (0: none); the recurring-peak
    # floor reads the last N days of observed demand (0: off) and applies where that peak is
    # more than the gate times the planned one (scaleahead.domain.scaling, rule 1).
    scaling_scale_in_hysteresis: float = 0.1
    scaling_recurring_days: int = 3
    scaling_recurring_gate: float = 2.0
    # Scaling modes (scaleahead.domain.modes): shadow (the reactive value drives, predictive is
    # computed and reported), predictive (max(predictive, reactive) drives) or reactive. The
    # guard task (scaleahead.twin.modes_stage, DAG scaling_guard) promotes and demotes from
    # shadow; a pin here (service -> mode, "*" for every service) overrides the guard, in the
    # guard task and in the API. A service's own entry beats "*".
    scaling_modes_pinned: dict[str, str] = {}
    # The older name of shadow: each service listed ("*" = all) is pinned to shadow (an entry
    # for the same key in scaling_modes_pinned wins).
    scaling_dry_run_services: list[str] = []
    # The guard's rule (scaleahead.domain.modes.GuardRule) and the history it replays.
    guard_promote_ratio: float = _modes.DEFAULT_PROMOTE_RATIO
    guard_demote_ratio: float = _modes.DEFAULT_DEMOTE_RATIO
    guard_min_days: float = _modes.DEFAULT_MIN_DAYS
    guard_min_incidents: int = _modes.DEFAULT_MIN_INCIDENTS
    guard_window_days: float = _modes.DEFAULT_WINDOW_DAYS
    # The trial: a shadow service is promoted only while its stay in shadow is at most this many
    # days old (None: any time), or, with guard_retrial_days, once it has lasted that long.
    guard_promote_within_days: float | None = _modes.DEFAULT_PROMOTE_WITHIN_DAYS
    guard_retrial_days: float | None = None
    # The trial counts from the first decision with enough evidence (days, incidents).
    guard_trial_waits_for_evidence: bool = _modes.DEFAULT_TRIAL_WAITS_FOR_EVIDENCE
    # "wall": now is the wall clock (production). "data": now is the end of the latest actual
    # bucket, for replaying historical or synthetic data (the demo).
    scaling_clock: str = "wall"

    # DAG schedules (cron or preset; "none" = runs only when triggered). Tests shorten them.
    ingest_schedule: str = "*/5 * * * *"
    train_schedule: str = "@daily"
    twin_schedule: str = "@weekly"
    guard_schedule: str = "@daily"

    # Production mode (`scaleahead up` / `down`, scaleahead.platform): one PostgreSQL server
    # (URL without a database) holds the Airflow metadata, the MLflow backend store and the
    # DuckLake catalog, each in its own database (created if missing). Preferred loopback
    # ports (0 = any free one); a busy one is replaced by a free port, printed at start.
    # Pid files, logs and service configs go to platform_dir (default warehouse/platform).
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432"
    airflow_db: str = "scaleahead_airflow"
    mlflow_db: str = "scaleahead_mlflow"
    lake_db: str = "scaleahead_lake"
    airflow_port: int = 8080
    mlflow_port: int = 5000
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    prometheus_scrape_interval_s: int = 15
    platform_dir: Path | None = None

    @field_validator("scaling_modes_pinned")
    @classmethod
    def _valid_pins(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = {m.value for m in _modes.ScalingMode}
        out = {}
        for service, mode in value.items():
            mode = str(mode).strip().lower()
            if mode not in allowed:
                raise ValueError(
                    f"scaling_modes_pinned[{service!r}] = {mode!r}: must be one of "
                    f"{', '.join(sorted(allowed))}"
                )
            out[str(service)] = mode
        return out

    @field_validator("guard_promote_within_days", "guard_retrial_days", mode="before")
    @classmethod
    def _no_trial(cls, value: object) -> object:
        # SCALEAHEAD_GUARD_PROMOTE_WITHIN_DAYS=none (or null, or empty): no trial.
        if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
            return None
        return value

    @model_validator(mode="after")
    def _valid_guard_rule(self) -> Settings:
        self.guard_rule()  # raises ValueError on an inconsistent rule
        return self

    def guard_rule(self) -> _modes.GuardRule:
        return _modes.GuardRule.from_prefixed(self)

    @property
    def scaling_mode_pins(self) -> dict[str, str]:
        """Every pin in force: the dry-run services as shadow, then ``scaling_modes_pinned``."""
        pins = dict.fromkeys(self.scaling_dry_run_services, _modes.ScalingMode.SHADOW.value)
        pins.update(self.scaling_modes_pinned)
        return pins

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
            "warehouse_path": "lake/catalog.sqlite",
            "duckdb_extension_dir": "duckdb_extensions",
            "mlflow_dir": "mlflow",
            "airflow_home": "airflow",
            "gx_docs_dir": "gx_docs",
            "reports_dir": "reports",
            "api_keys_path": "api_keys.json",
            "platform_dir": "platform",
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
        if self.mlflow_server_url:
            return self.mlflow_server_url
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str | None:
        if self.mlflow_server_url:
            return None
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
