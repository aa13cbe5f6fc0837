"""Forecasting benchmark (``scaleahead bench forecast``): the demand forecaster at fleet scale.

1,000 synthetic services x 14 days at 5 minutes (~4M rows; daily and weekly seasonality, AR(1)
log-noise, scales from 0.1 to 10k). The last hour of every series is held out: the pipeline's
forecaster (``ml/forecast.yaml``: calibration + fit) is trained on the rest, forecasts 12 steps
for every series from their history (as ``publish`` does), and the held-out hour gives the p90
coverage. Plain mlforecast with the same features and LightGBM is fitted on the same frame in
the same run; ``overhead_vs_mlforecast`` is the ratio of the two training times.
``SCALEAHEAD_BENCH_FORECAST_SERIES`` / ``_DAYS`` change the size.
"""

from __future__ import annotations

import gc
import os
import resource
import time

import numpy as np
import pandas as pd

from scaleahead.config import Settings


def synthetic_fleet(n_series: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * 288
    ds = pd.date_range("2024-01-01", periods=n, freq="5min")
    t = np.arange(n)
    weekly = np.where(ds.day_of_week >= 5, 0.75, 1.0)
    scale = 10 ** rng.uniform(-1, 4, n_series)
    phase = rng.uniform(0, 2 * np.pi, n_series)
    daily = 1 + 0.6 * np.sin(2 * np.pi * t[None, :] / 288 + phase[:, None])
    eps = rng.normal(0, 0.05, (n_series, n))
    noise = np.empty_like(eps)
    noise[:, 0] = eps[:, 0]
    for k in range(1, n):
        noise[:, k] = 0.8 * noise[:, k - 1] + eps[:, k]
    y = scale[:, None] * daily * weekly[None, :] * np.exp(noise)
    ids = np.repeat([f"svc-{i:04d}" for i in range(n_series)], n)
    return pd.DataFrame({"unique_id": ids, "ds": np.tile(ds.to_numpy(), n_series), "y": y.ravel()})


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(settings: Settings) -> dict[str, float | int | str]:
    from scaleahead.forecasting.config import load_config
    from scaleahead.forecasting.features import build_mlforecast
    from scaleahead.forecasting.model import DemandForecaster, holdout_split, prepare_series

    n_series = int(os.environ.get("SCALEAHEAD_BENCH_FORECAST_SERIES", "1000"))
    days = int(os.environ.get("SCALEAHEAD_BENCH_FORECAST_DAYS", "14"))
    config = load_config(settings=settings)
    h = config.horizon
    frame = synthetic_fleet(n_series, days)
    history, holdout = holdout_split(frame, 0, h)
    del frame
    gc.collect()

    started = time.perf_counter()
    forecaster = DemandForecaster(config).fit(history)
    train_s = time.perf_counter() - started

    started = time.perf_counter()
    pred = forecaster.predict(h, history=history)
    predict_s = time.perf_counter() - started

    # Plain mlforecast, same features and LightGBM, same frame (after the same grid check).
    data = prepare_series(history, config.freq)
    started = time.perf_counter()
    build_mlforecast(config).fit(data, static_features=[])
    plain_s = time.perf_counter() - started

    merged = holdout.merge(pred, on=["unique_id", "ds"])
    p50 = merged["p50"].to_numpy()
    y = merged["y"].to_numpy()
    return {
        "n_series": n_series,
        "days": days,
        "rows": int(len(history) + len(holdout)),
        "train_rows": int(len(history)),
        "members": len(config.member_list),
        "train_s_1000x14d": round(train_s, 3),
        "predict_s_1000x12": round(predict_s, 3),
        "mlforecast_train_s": round(plain_s, 3),
        "overhead_vs_mlforecast": round(train_s / plain_s, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "p90_coverage": round(float((y <= merged["p90"].to_numpy()).mean()), 4),
        "p95_coverage": round(float((y <= merged["p95"].to_numpy()).mean()), 4),
        "p50_coverage": round(float((y <= p50).mean()), 4),
        "holdout_smape": round(
            float(np.mean(200 * np.abs(y - p50) / np.maximum(np.abs(y) + np.abs(p50), 1e-12))), 3
        ),
        "forecast_rows": int(len(pred)),
    }
