"""MLflow adapter: one run per training, a pyfunc model per version, the promotion gate.

Tracking and registry URIs always come from ``Settings`` and are set only for the duration of a
call (nothing global is left behind), because several test suites and DAG tasks share one
process. The registered model of a metric is ``settings.model_name()``; its ``champion`` alias is
what ``publish`` serves, and a copy of every promoted forecaster is kept under
``<mlflow_dir>/last_good`` so serving survives a broken tracking DB or artifact store.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from scaleahead.config import Settings, get_settings
from scaleahead.forecasting.config import ForecastConfig, ForecastingError, PromotionConfig
from scaleahead.forecasting.model import DS, ID, DemandForecaster, Y

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
_ARTIFACT = "forecaster"
# Pinned from the running environment: pip inference would cost seconds and guess wrong.
_REQUIREMENTS = (
    "mlflow",
    "mlforecast",
    "coreforecast",
    "utilsforecast",
    "lightgbm",
    "scikit-learn",
    "pandas",
    "numpy",
    "cloudpickle",
    "pydantic",
)


def pip_requirements() -> list[str]:
    return [f"{name}=={pkg_version(name)}" for name in _REQUIREMENTS]


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: input is the recent history (unique_id, ds, y) of the series to forecast,
    output the next ``h`` (param, default the config horizon) steps' quantiles."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.forecaster = DemandForecaster.load(context.artifacts[_ARTIFACT])

    # The pd.DataFrame hint opts out of MLflow's type-hint inference; the signature is explicit.
    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        h = int((params or {}).get("h") or self.forecaster.config.horizon)
        return self.forecaster.predict(h, history=pd.DataFrame(model_input))


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    run_id: str
    alias: str
    promoted: bool
    reason: str
    model_uri: str


@dataclass
class Champion:
    model_name: str
    version: str
    run_id: str | None
    source: str  # "registry" | "last_good"
    forecaster: DemandForecaster

    def predict(self, history: pd.DataFrame, h: int | None = None) -> pd.DataFrame:
        return self.forecaster.predict(h, history=history)


@contextmanager
def tracking(settings: Settings | None = None) -> Iterator[MlflowClient]:
    """Point MLflow at the platform's tracking DB for the duration of the block."""
    settings = settings or get_settings()
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = settings.mlflow_tracking_uri
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def decide_promotion(
    metrics: Mapping[str, float],
    rule: PromotionConfig,
    champion: Mapping[str, float] | None = None,
    champion_version: str | None = None,
) -> tuple[bool, str]:
    """The promotion gate on backtest MASE: (promoted, one-line reason)."""
    key = rule.metric
    new, snaive = metrics[key], metrics[f"snaive_{key}"]
    gain_snaive = 1 - new / snaive if snaive > 0 else float("-inf")
    if not gain_snaive >= rule.min_improvement_vs_snaive:
        return False, (
            f"{key} {new:.4f} does not beat seasonal naive {snaive:.4f} by "
            f">= {rule.min_improvement_vs_snaive:.1%} (gain {gain_snaive:.1%})"
        )
    vs_snaive = f"beats seasonal naive {snaive:.4f} by {gain_snaive:.1%}"
    if champion is None or key not in champion:
        return True, f"first champion: {key} {new:.4f} {vs_snaive}"
    old = champion[key]
    gain_champ = 1 - new / old if old > 0 else float("-inf")
    if not gain_champ >= rule.min_improvement_vs_champion:
        return False, (
            f"{key} {new:.4f} does not beat champion v{champion_version} ({old:.4f}) by "
            f">= {rule.min_improvement_vs_champion:.1%} (gain {gain_champ:.1%})"
        )
    return True, (
        f"{key} {new:.4f} {vs_snaive} and champion v{champion_version} ({old:.4f}) by "
        f"{gain_champ:.1%}"
    )


def current_champion(client: MlflowClient, name: str) -> tuple[str, dict[str, float]] | None:
    """(version, backtest metrics of its run), or None if the model has no champion."""
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return str(mv.version), dict(metrics)


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(value) if not isinstance(value, str) else value}


def _signature(forecaster: DemandForecaster) -> Any:
    example_in = pd.DataFrame({ID: ["svc"], DS: [pd.Timestamp("2024-01-01")], Y: [1.0]}).astype(
        {ID: object}
    )
    example_out = pd.DataFrame(
        {ID: ["svc"], DS: [pd.Timestamp("2024-01-01")]}
        | {c: [1.0] for c in forecaster.quantile_columns}
    ).astype({ID: object})
    return infer_signature(example_in, example_out, params={"h": forecaster.config.horizon})


def log_and_register(
    forecaster: DemandForecaster,
    metrics: Mapping[str, float],
    data_info: Mapping[str, Any],
    settings: Settings | None = None,
    metric: str | None = None,
) -> Registration:
    """Log one run (params, whole config, data snapshot, metrics, pyfunc model), register a new
    version and give it ``champion`` or ``challenger`` through the promotion gate."""
    settings = settings or get_settings()
    config: ForecastConfig = forecaster.config
    name = settings.model_name(metric)
    with tracking(settings) as client:
        exp_id = ensure_experiment(client, name, settings.mlflow_artifact_location)
        champion = current_champion(client, name)
        with (
            mlflow.start_run(
                experiment_id=exp_id, run_name=f"train-{data_info.get('snapshot_id', '')}"
            ) as run,
            tempfile.TemporaryDirectory() as tmp,
        ):
            mlflow.log_params(_flatten(config.model_dump(mode="json")))
            mlflow.log_dict(config.model_dump(mode="json"), "config/forecast.yaml")
            mlflow.set_tags({f"data.{k}": str(v) for k, v in data_info.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ForecasterModel(),
                artifacts={_ARTIFACT: str(forecaster.save(Path(tmp) / _ARTIFACT))},
                signature=_signature(forecaster),
                pip_requirements=pip_requirements(),
                registered_model_name=name,
            )
            version = str(info.registered_model_version)
            promoted, reason = decide_promotion(
                metrics,
                config.promotion,
                champion[1] if champion else None,
                champion[0] if champion else None,
            )
            alias = CHAMPION if promoted else CHALLENGER
            client.set_registered_model_alias(name, alias, version)
            for key, val in {
                "gate": alias,
                "gate_reason": reason,
                "snapshot_id": data_info.get("snapshot_id", ""),
            }.items():
                client.set_model_version_tag(name, version, key, str(val))
            mlflow.set_tags({"gate": alias, "gate_reason": reason, "model_version": version})
            run_id = run.info.run_id
    log.info("registered %s v%s as %s: %s", name, version, alias, reason)
    if promoted:
        save_last_good(settings, forecaster, name, version, run_id)
    return Registration(name, version, run_id, alias, promoted, reason, info.model_uri)


def _last_good_dir(settings: Settings, name: str) -> Path:
    return settings.mlflow_dir / "last_good" / name


def save_last_good(
    settings: Settings, forecaster: DemandForecaster, name: str, version: str, run_id: str | None
) -> Path:
    """Replace the local copy of the champion; written aside then swapped so that a crash never
    leaves a half-written copy behind."""
    target = _last_good_dir(settings, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    forecaster.save(staging / _ARTIFACT)
    meta = {
        "model_name": name,
        "version": version,
        "run_id": run_id,
        "saved_at": datetime.now(UTC).isoformat(),
    }
    (staging / "meta.json").write_text(json.dumps(meta))
    old = target.with_name(f".{name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def load_last_good(settings: Settings, name: str) -> Champion | None:
    target = _last_good_dir(settings, name)
    try:
        meta = json.loads((target / "meta.json").read_text())
        forecaster = DemandForecaster.load(target / _ARTIFACT)
    except (OSError, ValueError, ForecastingError):
        return None
    return Champion(name, str(meta["version"]), meta.get("run_id"), "last_good", forecaster)


def load_champion(settings: Settings | None = None, metric: str | None = None) -> Champion:
    """The ``champion`` of ``settings.model_name(metric)`` from the registry, else the last good
    local copy; ``ForecastingError`` if neither exists."""
    settings = settings or get_settings()
    name = settings.model_name(metric)
    try:
        with tracking(settings) as client:
            mv = client.get_model_version_by_alias(name, CHAMPION)
            model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
            forecaster = model.unwrap_python_model().forecaster
        return Champion(name, str(mv.version), mv.run_id, "registry", forecaster)
    except Exception as exc:  # noqa: BLE001 - any registry/artifact failure falls back
        fallback = load_last_good(settings, name)
        if fallback is None:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ForecastingError(f"no champion for {name}: {reason}") from exc
        log.warning(
            "champion of %s not loadable from the registry (%s); using last good v%s",
            name,
            exc,
            fallback.version,
        )
        return fallback
