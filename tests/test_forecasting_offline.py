"""Offline forecasting: the `forecast` CLI, season-relative configs, ensembles, M4 scoring,
the MSTL baseline and the forecast benchmark area (all on small data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scaleahead.cli import app
from scaleahead.config import Settings
from scaleahead.forecasting import m4
from scaleahead.forecasting.backtest import statistical_forecasts
from scaleahead.forecasting.config import load_config, resolve_season
from scaleahead.forecasting.model import DemandForecaster, holdout_split
from scaleahead.forecasting.offline import infer_season, parse_freq

REPO = Path(__file__).resolve().parents[1]
HOURLY = REPO / "ml" / "forecast_hourly.yaml"
runner = CliRunner()


def seasonal_frame(n_series: int, n: int, freq: str, m: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    frames = []
    for i in range(n_series):
        level = 10.0 ** rng.uniform(0, 3)
        y = level * (1 + 0.5 * np.sin(2 * np.pi * t / m + i)) * np.exp(rng.normal(0, 0.03, n))
        ds = pd.date_range("2024-03-01", periods=n, freq=freq)
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


# --- config --------------------------------------------------------------------------------


def test_season_relative_values_resolve():
    raw = {"lags": ["1..3", "m", "7m", 5], "lag_transforms": {"m": [{"window_size": "2m"}]}}
    assert resolve_season(raw, 24) == {
        "lags": [1, 2, 3, 24, 168, 5],
        "lag_transforms": {24: [{"window_size": 48}]},
    }
    assert resolve_season({"freq": "5min", "type": "rolling_mean"}, 24)["freq"] == "5min"
    cfg = load_config(HOURLY)
    assert [m.name for m in cfg.member_list] == ["dense_lags", "seasonal_lags", "scaled"]
    assert cfg.member_list[0].features.lags[-3:] == [47, 48, 168]
    assert cfg.member_list[1].lightgbm["random_state"] == 7  # merged over the base params
    assert cfg.member_list[1].lightgbm["n_estimators"] == 500
    five_min = load_config(HOURLY, season_length=288, freq="5min")
    assert 2016 in five_min.member_list[0].features.lags


@pytest.mark.parametrize(
    ("given", "alias", "season"),
    [("5m", "5min", 288), ("5min", "5min", 288), ("1h", "h", 24), ("h", "h", 24), ("1d", "D", 7)],
)
def test_freq_parsing_and_season(given, alias, season):
    assert parse_freq(given) == alias
    assert infer_season(alias) == season


# --- the forecast CLI ------------------------------------------------------------------------


def test_forecast_cli_csv_and_parquet(tmp_path, settings):
    df = seasonal_frame(4, 24 * 20, "h", 24)
    holdout_h = 24
    history, test = holdout_split(df.sort_values(["unique_id", "ds"]), 0, holdout_h)
    history = pd.concat(  # one series too short for the model: seasonal-naive fallback
        [history, pd.DataFrame({"unique_id": "new", "ds": history["ds"].iloc[:30], "y": 5.0})]
    )
    src = tmp_path / "in.csv"
    history.to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    res = runner.invoke(
        app,
        ["forecast", "--input", str(src), "--horizon", "24", "--freq", "1h", "--output", str(out)],
    )
    assert res.exit_code == 0, res.output
    fc = pd.read_parquet(out)
    assert list(fc.columns) == ["unique_id", "ds", "yhat", "yhat_p50", "yhat_p90", "yhat_p95"]
    assert fc.groupby("unique_id").size().to_dict() == {f"s{i}": 24 for i in range(4)} | {"new": 24}
    last = history.assign(ds=pd.to_datetime(history["ds"])).groupby("unique_id")["ds"].max()
    first = fc.groupby("unique_id")["ds"].min()
    assert (first == last + pd.Timedelta("1h")).all()
    q = fc[["yhat_p50", "yhat_p90", "yhat_p95"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()
    assert (fc.loc[fc["unique_id"] == "new", "yhat"] == 5.0).all()
    # Accuracy: clearly better than seasonal naive on the held-out day.
    merged = test.merge(fc, on=["unique_id", "ds"])
    snaive = history.groupby("unique_id").tail(24).reset_index(drop=True)
    err_model = (merged["y"] - merged["yhat"]).abs().mean()
    err_snaive = np.mean(
        np.abs(test["y"].to_numpy() - snaive.loc[snaive["unique_id"] != "new", "y"].to_numpy())
    )
    assert err_model < err_snaive

    pq = tmp_path / "in.parquet"
    history[history["unique_id"] == "s0"].to_parquet(pq)
    res = runner.invoke(
        app,
        ["forecast", "--input", str(pq), "--horizon", "6", "--freq", "h", "--season", "24",
         "--output", str(tmp_path / "o.csv")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "o.csv")) == 6


def _frame(ids, ds, y) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": ids, "ds": ds, "y": y})


BAD_INPUTS = {
    "columns": (pd.DataFrame({"id": ["a"], "ds": ["2024-01-01"], "y": [1.0]}), "1h", "lacks"),
    "y": (_frame(["a"], ["2024-01-01"], ["x"]), "1h", "non-numeric"),
    "grid": (_frame("a", ["2024-01-01 00:00", "2024-01-01 00:07"], 1.0), "5m", "regular"),
    "freq": (_frame(["a"], ["2024-01-01"], [1.0]), "often", "frequency"),
    "short": (_frame("a", pd.date_range("2024", periods=5, freq="h"), 1.0), "1h", "too short"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_forecast_cli_bad_input(tmp_path, settings, case):
    frame, freq, message = BAD_INPUTS[case]
    src = tmp_path / "bad.csv"
    frame.to_csv(src, index=False)
    res = runner.invoke(
        app,
        ["forecast", "--input", str(src), "--horizon", "3", "--freq", freq,
         "--output", str(tmp_path / "o.csv")],
    )  # fmt: skip
    assert res.exit_code == 1
    assert message in res.output and len(res.output.strip().splitlines()) == 1


# --- ensemble, MSTL baseline -----------------------------------------------------------------


def test_ensemble_is_the_mean_of_its_members_and_round_trips(tmp_path):
    cfg = load_config(HOURLY, horizon=12)
    cfg = cfg.model_copy(
        update={
            "lightgbm": cfg.lightgbm | {"n_estimators": 20},
            "members": [
                m.model_copy(update={"lightgbm": {"n_estimators": 20}}) for m in cfg.members
            ],
        }
    )
    df = seasonal_frame(3, 24 * 25, "h", 24)
    fc = DemandForecaster(cfg).fit(df)
    assert len(fc.fc_) == 3
    pred = fc.predict(12, with_point=True)
    members = [f.predict(12)["lgbm"].to_numpy() for f in fc.fc_]
    np.testing.assert_allclose(pred["yhat"].to_numpy(), np.mean(members, axis=0))
    loaded = DemandForecaster.load(fc.save(tmp_path / "fc"))
    pd.testing.assert_frame_equal(pred, loaded.predict(12, with_point=True))


def test_mstl_baseline_quantiles():
    df = seasonal_frame(2, 24 * 10, "h", 24)
    out = statistical_forecasts(df, 12, [24, 168], [0.5, 0.9, 0.95], "h")
    assert out is not None and len(out) == 24
    assert (out["mstl_p50"] <= out["mstl_p90"]).all() and (out["mstl_p90"] <= out["mstl_p95"]).all()
    assert (
        statistical_forecasts(df.groupby("unique_id").head(30), 12, [24], [0.5, 0.9], "h") is None
    )


# --- M4 scoring ------------------------------------------------------------------------------


def test_m4_reading_and_competition_metrics(tmp_path):
    (tmp_path / "Hourly-train.csv").write_text(
        '"V1","V2","V3","V4","V5"\n"H1",1,2,3,4\n"H2",5,6,,\n'
    )
    (tmp_path / "Hourly-test.csv").write_text('"V1","V2","V3"\n"H1",5,6\n"H2",7,8\n')
    train = m4.read_wide(tmp_path / "Hourly-train.csv")
    assert train.groupby("unique_id").size().to_dict() == {"H1": 4, "H2": 2}
    test = m4.read_test(tmp_path / "Hourly-test.csv", train)
    assert test.loc[test["unique_id"] == "H2", "ds"].min() == m4.ORIGIN + pd.Timedelta("2h")
    fc = test.assign(f=test["y"] * 1.1)
    got = m4.score(train, test, fc, "f")
    assert got["smape"] == pytest.approx(200 * 0.1 / 2.1)  # 200|y-1.1y|/(y+1.1y) everywhere
    # M4 MASE scale: in-sample lag-24 MAE; shorter than a season -> lag 1 (as metrics.mase)
    assert got["mase"] == pytest.approx(np.mean([0.55 / 1.0, 0.75 / 1.0]))
    assert m4.owa(m4.NAIVE2["smape"], m4.NAIVE2["mase"]) == pytest.approx(1.0)


# --- benchmark area --------------------------------------------------------------------------


def test_forecast_bench_area_small(tmp_path, monkeypatch):
    from scaleahead.bench import forecast as bench_forecast

    monkeypatch.setenv("SCALEAHEAD_BENCH_FORECAST_SERIES", "12")
    monkeypatch.setenv("SCALEAHEAD_BENCH_FORECAST_DAYS", "4")
    settings = Settings(warehouse_dir=tmp_path / "warehouse")
    figures = bench_forecast.run(settings)
    assert figures["rows"] == 12 * 4 * 288 and figures["forecast_rows"] == 12 * 12
    for key in ("train_s_1000x14d", "predict_s_1000x12", "peak_rss_mb", "overhead_vs_mlforecast"):
        assert figures[key] > 0
    assert 0.5 <= figures["p90_coverage"] <= 1.0
