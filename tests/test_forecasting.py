"""Forecasting: metrics, forecaster quality, MLflow run/registry/alias flow, publish."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from scaleahead.config import Settings
from scaleahead.forecasting import metrics as M
from scaleahead.forecasting.backtest import baseline_forecasts, run_backtest
from scaleahead.forecasting.config import (
    ForecastConfig,
    ForecastingError,
    TargetTransformSpec,
    load_config,
)
from scaleahead.forecasting.model import DemandForecaster, holdout_split, prepare_series
from scaleahead.forecasting.pipeline import publish, train
from scaleahead.forecasting.registry import (
    CHAMPION,
    decide_promotion,
    load_champion,
    tracking,
)
from scaleahead.warehouse import connect

REPO = Path(__file__).resolve().parents[1]
REPO_CONFIG = REPO / "ml" / "forecast.yaml"
START = pd.Timestamp("2024-01-01")


def synthetic_demand(n_series: int, days: int, seed: int = 0) -> pd.DataFrame:
    """Daily + weekly seasonality, AR(1) log-noise, scales from 0.1 to 10k requests/s."""
    rng = np.random.default_rng(seed)
    n = days * 288
    t = np.arange(n)
    ds = pd.date_range(START, periods=n, freq="5min")
    weekly = np.where(ds.day_of_week >= 5, 0.75, 1.0)
    frames = []
    for i in range(n_series):
        scale = 10 ** rng.uniform(-1, 4)
        daily = 1 + 0.6 * np.sin(2 * np.pi * t / 288 + rng.uniform(0, 2 * np.pi))
        eps = rng.normal(0, 0.05, n)
        noise = np.zeros(n)
        for k in range(1, n):
            noise[k] = 0.8 * noise[k - 1] + eps[k]
        y = scale * daily * weekly * np.exp(noise)
        frames.append(pd.DataFrame({"unique_id": f"svc-{i:02d}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def write_mart(path: Path, df: pd.DataFrame) -> None:
    """The dbt mart's shape, built directly (dbt is another module's job)."""
    mart = pd.DataFrame(
        {
            "service": df["unique_id"].astype(str),
            "ds": df["ds"],
            "request_rate": df["y"],
            "cpu_cores": df["y"] / 100,
            "latency_ms": 50.0,
            "samples": 5,
            "is_gap": False,
            "demand": df["y"],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path=path) as con:  # the DuckLake warehouse
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.register("mart_df", mart)
        con.execute("CREATE OR REPLACE TABLE marts.service_demand_5m AS SELECT * FROM mart_df")


def small_config(tmp_path: Path, name: str = "forecast.yaml", **overrides: dict) -> Path:
    """The repo config, lighter so the end-to-end flow stays fast."""
    raw = yaml.safe_load(REPO_CONFIG.read_text())
    raw["min_series_length"] = 600
    raw["intervals"]["n_windows"] = 6
    raw["backtest"]["n_windows"] = 2
    raw["lightgbm"]["n_estimators"] = 60
    for key, value in overrides.items():
        raw[key] = value if not isinstance(value, dict) else raw[key] | value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_match_hand_computed_values():
    y_train = [1.0, 2.0, 3.0, 2.0, 3.0, 4.0]  # m=3: |2-1|,|3-2|,|4-3| -> scale 1.0
    assert M.seasonal_scale(y_train, 3) == pytest.approx(1.0)
    assert M.mase([5.0, 5.0], [4.0, 7.0], y_train, 3) == pytest.approx(1.5)
    assert M.seasonal_scale([1.0, 3.0], 3) == pytest.approx(2.0)  # shorter than a season: naive
    assert np.isnan(M.mase([1.0], [1.0], [2.0, 2.0, 2.0, 2.0], 1))  # zero scale
    # sMAPE: 200|y-f|/(|y|+|f|): 200*2/6 and 0 -> 33.33
    assert M.smape([2.0, 0.0], [4.0, 0.0]) == pytest.approx(100 / 3)
    # pinball q=0.9: y=10,f=8 -> 0.9*2=1.8; y=10,f=12 -> 0.1*2=0.2 -> mean 1.0
    assert M.pinball_loss([10.0, 10.0], [8.0, 12.0], 0.9) == pytest.approx(1.0)
    assert M.pinball_loss([10.0], [8.0], 0.5) == pytest.approx(1.0)
    assert M.scaled_pinball_loss([10.0, 10.0], [8.0, 12.0], 0.9, y_train, 3) == pytest.approx(1.0)
    assert M.coverage([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 5.0]) == pytest.approx(0.75)


def test_baselines_on_a_known_series():
    hist = pd.DataFrame(
        {"unique_id": "a", "ds": pd.date_range(START, periods=6, freq="5min"), "y": [1, 2, 3] * 2}
    )
    out = baseline_forecasts(hist, 3, 3, [0.5, 0.9], "5min")
    assert out["snaive_p50"].tolist() == [1.0, 2.0, 3.0]  # zero seasonal error -> exact
    assert out["naive_p50"].tolist() == [3.0, 3.0, 3.0]
    assert out["ds"].iloc[0] == START + pd.Timedelta("30min")
    assert (out["naive_p90"] >= out["naive_p50"]).all()


# --- frames and config ----------------------------------------------------------------------


def test_prepare_series_fills_holes_and_holdout_is_positional():
    df = synthetic_demand(2, 1).drop(index=[5, 6])  # two missing buckets in svc-00
    out = prepare_series(df, "5min")
    assert len(out) == 2 * 288
    assert out.loc[5, "y"] == out.loc[4, "y"] == out.loc[6, "y"]
    hist, test = holdout_split(out, offset=12, h=12)
    assert test.groupby("unique_id").size().tolist() == [12, 12]
    assert (
        hist.groupby("unique_id")["ds"]
        .max()
        .eq(test.groupby("unique_id")["ds"].min() - pd.Timedelta("5min"))
        .all()
    )


def test_repo_config_loads():
    cfg = load_config(REPO_CONFIG)
    assert (cfg.freq, cfg.horizon, cfg.season_length) == ("5min", 12, 288)
    assert cfg.quantile_columns == ["p50", "p90", "p95"]
    assert cfg.features.target_transforms[0].type == "local_standard_scaler"
    with pytest.raises(ValueError, match="quantiles"):
        ForecastConfig(quantiles=[0.9, 0.5])


def test_promotion_gate_rules():
    rule = load_config(REPO_CONFIG).promotion
    ok, reason = decide_promotion({"mase": 0.5, "snaive_mase": 1.0}, rule)
    assert ok and "first champion" in reason
    ok, reason = decide_promotion({"mase": 0.98, "snaive_mase": 1.0}, rule)
    assert not ok and "seasonal naive" in reason
    ok, reason = decide_promotion({"mase": 0.5, "snaive_mase": 1.0}, rule, {"mase": 0.505}, "3")
    assert not ok and "champion v3" in reason
    ok, _ = decide_promotion({"mase": 0.4, "snaive_mase": 1.0}, rule, {"mase": 0.5}, "3")
    assert ok


# --- forecaster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demand() -> pd.DataFrame:
    return synthetic_demand(12, 5, seed=1)  # Mon-Fri: no weekend the model never saw


def test_forecaster_quantiles_non_crossing_and_save_load(demand, tmp_path):
    cfg = load_config(REPO_CONFIG).model_copy(update={"min_series_length": 600})
    fc = DemandForecaster(cfg).fit(demand)
    pred = fc.predict()
    assert list(pred.columns) == ["unique_id", "ds", "p50", "p90", "p95"]
    assert len(pred) == 12 * cfg.horizon
    values = pred[["p50", "p90", "p95"]].to_numpy()
    assert (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()
    assert (
        pred.groupby("unique_id")["ds"].min() == demand["ds"].max() + pd.Timedelta("5min")
    ).all()
    # forecasting from history equals forecasting from the fitted state
    pd.testing.assert_frame_equal(pred, fc.predict(history=demand))
    loaded = DemandForecaster.load(fc.save(tmp_path / "fc"))
    pd.testing.assert_frame_equal(pred, loaded.predict())


def test_flat_series_do_not_blow_up_intervals():
    cfg = load_config(REPO_CONFIG).model_copy(update={"min_series_length": 600})
    df = synthetic_demand(4, 4, seed=4)
    df.loc[df["unique_id"] == "svc-00", "y"] = 0.0
    df.loc[df["unique_id"] == "svc-01", "y"] = 7.0
    pred = DemandForecaster(cfg).fit(df).predict().set_index("unique_id")
    width = pred["p95"] - pred["p50"]
    assert (width.loc["svc-00"] < 1e-3).all()  # scale falls back to ~0
    assert (width.loc["svc-01"] < 1.0).all()  # 1% of the level
    for uid in ("svc-02", "svc-03"):
        assert (pred.loc[uid, "p95"] < 3 * pred.loc[uid, "p50"]).all()


def test_forecaster_beats_seasonal_naive(demand):
    cfg = load_config(REPO_CONFIG).model_copy(update={"min_series_length": 600})
    result = run_backtest(demand, cfg)
    s = result.summary()
    assert result.n_series == 12 and result.n_windows == 3
    assert len(result.forecasts) == 12 * 3 * 12
    assert s["mase"] < 0.9 * s["snaive_mase"]
    assert s["mase"] < s["naive_mase"]
    assert s["pinball_p50"] < s["snaive_pinball_p50"]
    # 36 (series, window) pairs on 5 days of data: calibrated, if loosely
    assert 0.7 <= s["coverage_p90"] <= s["coverage_p95"] <= 1.0


# --- MLflow + warehouse end to end ----------------------------------------------------------


@pytest.fixture()
def platform(tmp_path) -> Settings:
    settings = Settings(home=tmp_path, ml_config=small_config(tmp_path))
    write_mart(settings.warehouse_path, synthetic_demand(6, 4, seed=2))
    return settings


def test_train_register_promote_and_publish(platform, tmp_path):
    settings = platform
    first = train(settings)
    d = first.as_dict()
    assert (d["alias"], d["promoted"], d["version"]) == (CHAMPION, True, "1")
    assert d["model_name"] == "scaleahead-demand-request_rate"
    assert (d["n_series"], d["n_rows"]) == (6, 6 * 4 * 288)
    for key in ("mase", "smape", "snaive_mase", "snaive_smape", "naive_mase", "coverage_p90"):
        assert np.isfinite(d["metrics"][key])
    assert d["metrics"]["mase"] < d["metrics"]["snaive_mase"]

    with tracking(settings) as client:
        run = client.get_run(first.run_id)
        assert run.data.params["horizon"] == "12"
        assert run.data.tags["data.hash"] == first.data_hash
        # the DuckLake snapshot the training data was read at
        assert run.data.tags["data.snapshot_id"] == first.snapshot_id
        assert first.snapshot_id.isdigit()
        assert "snaive_mase" in run.data.metrics
        assert "mstl_mase" in run.data.metrics and "mstl_coverage_p90" in run.data.metrics
        assert str(client.get_model_version_by_alias(first.model_name, CHAMPION).version) == "1"
        exp = client.get_experiment(run.info.experiment_id)
        assert exp.artifact_location == settings.mlflow_artifact_location
        model = mlflow.pyfunc.load_model(f"models:/{first.model_name}@{CHAMPION}")
        history = synthetic_demand(2, 2, seed=3)
        out = model.predict(history, params={"h": 6})
        assert len(out) == 2 * 6 and {"p50", "p90", "p95"} <= set(out.columns)
    assert mlflow.get_tracking_uri() != settings.mlflow_tracking_uri  # nothing left global

    # A deliberately weak model must stay challenger; the champion does not move.
    settings.ml_config.write_text(
        small_config(
            tmp_path,
            "weak.yaml",
            features={"lags": [288], "lag_transforms": {}, "date_features": []},
            lightgbm={"n_estimators": 3},
        ).read_text()
    )
    second = train(settings)
    assert (second.alias, second.promoted, second.version) == ("challenger", False, "2")
    assert "does not beat" in second.reason
    with tracking(settings) as client:
        assert str(client.get_model_version_by_alias(first.model_name, CHAMPION).version) == "1"
        assert str(client.get_model_version_by_alias(first.model_name, "challenger").version) == "2"
        tags = client.get_model_version(first.model_name, "2").tags
        assert tags["gate_reason"] == second.reason

    created = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)
    report = publish(settings, created_at=created)
    rep = report.as_dict()
    end = pd.Timestamp(first.data_end)
    assert (rep["model_version"], rep["services"], rep["rows"], rep["horizon"]) == ("1", 6, 72, 12)
    assert pd.Timestamp(rep["first_ds"]) == end + pd.Timedelta("5min")
    assert pd.Timestamp(rep["last_ds"]) == end + pd.Timedelta("60min")
    again = publish(settings, created_at=datetime(2024, 2, 1, 13, 0))
    assert again.batch_id == report.batch_id
    with connect(read_only=True, path=settings.warehouse_path) as con:
        rows = con.execute(
            "SELECT service, metric, step, ds, p50, p90, p95, model_version, created_at "
            "FROM serving.forecasts ORDER BY service, step"
        ).df()
    assert len(rows) == 72  # replaced, not duplicated
    assert rows.groupby("service")["step"].apply(list).map(lambda s: s == list(range(1, 13))).all()
    assert (rows["metric"] == "request_rate").all() and (rows["model_version"] == "1").all()
    assert (rows["created_at"] == pd.Timestamp("2024-02-01 13:00")).all()
    assert ((rows["p50"] <= rows["p90"]) & (rows["p90"] <= rows["p95"]) & (rows["p50"] >= 0)).all()

    # A broken tracking DB: serving falls back to the last good local copy.
    shutil.rmtree(settings.mlflow_dir / "artifacts")
    (settings.mlflow_dir / "mlflow.db").unlink()
    champ = load_champion(settings)
    assert (champ.source, champ.version) == ("last_good", "1")


def test_no_champion_and_no_data_raise(tmp_path):
    settings = Settings(home=tmp_path, ml_config=small_config(tmp_path))
    with pytest.raises(ForecastingError, match="no data"):
        train(settings)
    with pytest.raises(ForecastingError, match="no champion"):
        publish(settings)
    write_mart(settings.warehouse_path, synthetic_demand(1, 1).iloc[:0])
    with pytest.raises(ForecastingError, match="no data"):
        train(settings)


def _with_target_transforms(cfg, transforms: list[str]):
    features = cfg.features.model_copy(
        update={"target_transforms": [TargetTransformSpec(type=t) for t in transforms]}
    )
    return cfg.model_copy(update={"features": features})


@pytest.mark.parametrize(
    "target_transforms",
    [
        None,  # the shipped config: the window's scaler applied before mlforecast, tail only
        ["asinh", "local_standard_scaler"],  # through mlforecast's own target transforms
    ],
)
def test_predict_windows_equals_predict_on_each_window(demand, target_transforms):
    """The array path (many (series, origin) windows at once, as the capacity twin uses it)
    gives the numbers of ``predict(history=...)`` on every window as a series of its own."""
    cfg = load_config(REPO_CONFIG).model_copy(update={"min_series_length": 600})
    if target_transforms is not None:
        cfg = _with_target_transforms(cfg, target_transforms)
    fc = DemandForecaster(cfg).fit(demand)
    wide = demand.pivot(index="ds", columns="unique_id", values="y")
    wide["flat"] = 3.0  # falls back to the level for its scale
    n = fc.min_history + cfg.season_length
    ends = [n, n + 7, len(wide)]  # different origins, so different date features
    values = np.concatenate([wide.iloc[e - n : e].to_numpy().T for e in ends])
    starts = np.concatenate(
        [np.full(wide.shape[1], wide.index[e - n].to_datetime64()) for e in ends]
    )
    quantiles, point = fc.predict_windows(values, starts)
    assert quantiles.shape == (len(values), cfg.horizon, 3)
    assert point.shape == (len(values), cfg.horizon)

    long = pd.DataFrame(
        {
            "unique_id": np.repeat([f"w{i:03d}" for i in range(len(values))], n),
            "ds": (starts[:, None] + np.arange(n) * pd.Timedelta("5min")).ravel(),
            "y": values.ravel(),
        }
    )
    ref = fc.predict(history=long, with_point=True).sort_values(["unique_id", "ds"])
    np.testing.assert_allclose(
        quantiles, ref[["p50", "p90", "p95"]].to_numpy().reshape(quantiles.shape), rtol=1e-9
    )
    np.testing.assert_allclose(point, ref["yhat"].to_numpy().reshape(point.shape), rtol=1e-9)

    short_q, short_p = fc.predict_windows(values[:, -(fc.min_history - 1) :], starts)
    assert np.isnan(short_q).all() and np.isnan(short_p).all()  # predict skips such series
