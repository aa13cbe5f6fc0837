"""Stage functions: ``train`` (mart -> backtest -> MLflow run/version/alias) and ``publish``
(champion -> ``serving.forecasts``)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd

from scaleahead.config import Settings, get_settings
from scaleahead.forecasting.backtest import run_backtest
from scaleahead.forecasting.config import ForecastConfig, ForecastingError, load_config
from scaleahead.forecasting.model import DS, ID, DemandForecaster, Y, prepare_series
from scaleahead.forecasting.registry import load_champion, log_and_register
from scaleahead.warehouse import connect, current_snapshot_id
from scaleahead.warehouse.connection import WarehouseError

MART = "marts.service_demand_5m"
_SERVING_COLUMNS = (
    "batch_id, service, metric, ds, step, p50, p90, p95, model_name, model_version, created_at"
)


@dataclass
class TrainReport:
    model_name: str
    version: str
    run_id: str
    alias: str
    promoted: bool
    reason: str
    n_series: int
    n_rows: int
    metrics: dict[str, float]
    train_s: float  # wall time of the whole stage: read, backtest, final fit, logging
    fit_s: float
    backtest_s: float
    data_hash: str
    data_start: str
    data_end: str
    snapshot_id: str = ""  # DuckLake snapshot of the training data (else time-hash id)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PublishReport:
    batch_id: str
    model_name: str
    model_version: str
    services: int
    rows: int
    horizon: int
    first_ds: str
    last_ds: str
    source: str = "registry"  # where the champion came from: "registry" | "last_good"
    skipped_services: list[str] = field(default_factory=list)
    # Held back by the quality gate: data quarantined upstream, or the forecast failed its suite.
    quarantined_services: dict[str, str] = field(default_factory=dict)
    quality_run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_demand_snapshot(
    settings: Settings, config: ForecastConfig
) -> tuple[pd.DataFrame, int | None]:
    """The mart's demand as a long (unique_id, ds, y) frame, limited to the recent window, and
    the DuckLake snapshot it was read from (one transaction: the id names exactly this data)."""
    where = "demand IS NOT NULL"
    if config.max_history_days:
        where += (
            f" AND ds > (SELECT max(ds) FROM {MART}) - to_milliseconds("
            f"{int(config.max_history_days * 86_400_000)})"
        )
    query = f"SELECT service AS {ID}, ds AS {DS}, demand AS {Y} FROM {MART} WHERE {where}"
    snapshot: int | None = None
    try:
        with connect(read_only=True, path=settings.warehouse_path) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                df = con.execute(query + f" ORDER BY {ID}, {DS}").df()
                try:
                    snapshot = current_snapshot_id(con)
                except duckdb.Error:  # not a DuckLake warehouse: the data hash names the data
                    snapshot = None
            finally:
                con.execute("ROLLBACK")
    except WarehouseError as exc:
        raise ForecastingError(f"no data: {exc}") from exc
    except duckdb.CatalogException as exc:
        raise ForecastingError(f"no data: {MART} does not exist (run the dbt build first)") from exc
    if df.empty:
        raise ForecastingError(f"no data: {MART} has no demand rows")
    return prepare_series(df, config.freq), snapshot


def load_demand(settings: Settings, config: ForecastConfig) -> pd.DataFrame:
    """The mart's demand as a long (unique_id, ds, y) frame, limited to the recent window."""
    return load_demand_snapshot(settings, config)[0]


def data_fingerprint(df: pd.DataFrame) -> str:
    """Content hash of the training frame: same data -> same hash, whatever the row order."""
    ordered = df.sort_values([ID, DS], ignore_index=True)[[ID, DS, Y]]
    row_hashes = pd.util.hash_pandas_object(ordered, index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()


def train(settings: Settings | None = None) -> TrainReport:
    settings = settings or get_settings()
    started = time.perf_counter()
    config = load_config(settings=settings)
    df, lake_snapshot = load_demand_snapshot(settings, config)
    digest = data_fingerprint(df)
    data_end = df[DS].max()
    data_info = {
        "hash": digest,
        # The DuckLake snapshot the training data was read at (re-readable with AT (VERSION
        # => id)); the content hash as well, which also names data outside the lake.
        "snapshot_id": str(lake_snapshot)
        if lake_snapshot is not None
        else f"{data_end:%Y%m%dT%H%M}-{digest[:12]}",
        "lake_snapshot_id": "" if lake_snapshot is None else str(lake_snapshot),
        "start": str(df[DS].min()),
        "end": str(data_end),
        "n_series": int(df[ID].nunique()),
        "n_rows": len(df),
        "source": MART,
    }

    backtest = run_backtest(df, config)
    t0 = time.perf_counter()
    forecaster = DemandForecaster(config).fit(df)
    fit_s = time.perf_counter() - t0
    metrics = backtest.summary() | {
        "backtest_s": backtest.duration_s,
        "fit_s": fit_s,
        "n_series_trained": float(len(forecaster.series_)),
    }
    reg = log_and_register(forecaster, metrics, data_info, settings=settings)
    return TrainReport(
        model_name=reg.model_name,
        version=reg.version,
        run_id=reg.run_id,
        alias=reg.alias,
        promoted=reg.promoted,
        reason=reg.reason,
        n_series=len(forecaster.series_),
        n_rows=len(df),
        metrics={k: round(float(v), 6) for k, v in metrics.items()},
        train_s=round(time.perf_counter() - started, 3),
        fit_s=round(fit_s, 3),
        backtest_s=round(backtest.duration_s, 3),
        data_hash=digest,
        data_start=data_info["start"],
        data_end=data_info["end"],
        snapshot_id=data_info["snapshot_id"],
    )


def _naive_utc(ts: datetime | None) -> datetime:
    ts = ts or datetime.now(UTC)
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def batch_id_for(model_name: str, version: str, data_end: pd.Timestamp) -> str:
    """One batch per (model version, data end): the idempotency key of ``publish``."""
    return f"{model_name}-v{version}-{data_end:%Y%m%dT%H%M}"


def publish(settings: Settings | None = None, created_at: datetime | None = None) -> PublishReport:
    settings = settings or get_settings()
    champion = load_champion(settings)
    config = champion.forecaster.config
    history = load_demand(settings, config)
    horizon = config.horizon
    fc = champion.predict(history, horizon)
    if fc.empty:
        raise ForecastingError(
            f"no series in {MART} has the {champion.forecaster.min_history} rows needed"
        )
    data_end = history[DS].max()
    batch_id = batch_id_for(champion.model_name, champion.version, data_end)
    rows = pd.DataFrame(
        {
            "batch_id": batch_id,
            "service": fc[ID].astype(str),
            "metric": settings.demand_metric,
            "ds": fc[DS],
            "step": fc.groupby(ID, sort=False).cumcount().astype("int32") + 1,
            "p50": fc["p50"],
            "p90": fc["p90"],
            "p95": fc["p95"],
            "model_name": champion.model_name,
            "model_version": champion.version,
            "created_at": pd.Timestamp(_naive_utc(created_at)),
        }
    )
    rows, held_back, quality_run = _quality_screen(
        settings, rows, history, champion.forecaster.min_history, horizon, batch_id
    )
    with connect(path=settings.warehouse_path) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM serving.forecasts WHERE batch_id = ?", [batch_id])
            con.register("forecast_rows", rows)
            con.execute(
                f"INSERT INTO serving.forecasts ({_SERVING_COLUMNS}) "
                f"SELECT {_SERVING_COLUMNS} FROM forecast_rows"
            )
            con.unregister("forecast_rows")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    skipped = sorted(set(history[ID].unique()) - set(fc[ID].unique()))
    return PublishReport(
        batch_id=batch_id,
        model_name=champion.model_name,
        model_version=champion.version,
        services=int(rows["service"].nunique()),
        rows=len(rows),
        horizon=horizon,
        first_ds=str(rows["ds"].min()),
        last_ds=str(rows["ds"].max()),
        source=champion.source,
        skipped_services=[str(s) for s in skipped],
        quarantined_services=held_back,
        quality_run_id=quality_run,
    )


def _quality_screen(
    settings: Settings,
    rows: pd.DataFrame,
    history: pd.DataFrame,
    min_history: int,
    horizon: int,
    batch_id: str,
) -> tuple[pd.DataFrame, dict[str, str], str]:
    """Drop the services the data gate quarantined, then run the forecast suite on the rest and
    drop the services whose forecast fails it; a global failure stops the publish."""
    from scaleahead.quality.gate import check_forecasts
    from scaleahead.quality.status import gate_status

    held_back = dict(gate_status(settings).quarantined)
    rows = rows[~rows["service"].isin(held_back)]
    counts = history.groupby(ID).size()
    active = sorted(str(s) for s in counts[counts >= min_history].index if s not in held_back)
    report = check_forecasts(rows, active, horizon, f"publish:{batch_id}", settings)
    if report.blocking:
        raise ForecastingError(f"forecast quality gate failed: {report.reason}")
    failed = {svc: ", ".join(why) for svc, why in report.quarantined.items()}
    rows = rows[~rows["service"].isin(failed)]
    if rows.empty:
        raise ForecastingError("every service was quarantined by the quality gate")
    return rows, held_back | failed, report.run_id
