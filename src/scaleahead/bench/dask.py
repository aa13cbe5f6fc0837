"""Dask benchmark (``scaleahead bench dask``): single-process vs distributed training.

The demand model's point forecaster (features and LightGBM from ``ml/forecast.yaml``) on
synthetic fleet series, fitted and forecast (one horizon) once in this process (mlforecast +
LightGBM, ``n_jobs`` from the config) and once on a local Dask cluster of 2 worker processes x
1 thread (mlforecast's DistributedMLForecast + LightGBM's Dask interface), same frame, same run.
Cluster start-up is reported apart from training. On one 2-core host the cluster cannot beat
the single process (same cores, plus serialisation and the shuffle); the figure shows the
overhead to pay back by adding machines. ``SCALEAHEAD_BENCH_DASK_SERIES`` / ``_DAYS`` /
``_WORKERS`` change the size.
"""

from __future__ import annotations

import os
import time

from scaleahead.config import Settings


def run(settings: Settings) -> dict[str, float | int | str]:
    from scaleahead.bench.forecast import synthetic_fleet
    from scaleahead.forecasting.config import load_config
    from scaleahead.forecasting.distributed import (
        fit_predict_distributed,
        local_cluster,
        scaled_difference,
    )
    from scaleahead.forecasting.model import fit_members, predict_members, prepare_series

    n_series = int(os.environ.get("SCALEAHEAD_BENCH_DASK_SERIES", "200"))
    days = int(os.environ.get("SCALEAHEAD_BENCH_DASK_DAYS", "14"))
    workers = int(os.environ.get("SCALEAHEAD_BENCH_DASK_WORKERS", "2"))
    config = load_config(settings=settings)
    data = prepare_series(synthetic_fleet(n_series, days), config.freq)

    started = time.perf_counter()
    single = predict_members(fit_members(config, data), config.horizon)
    single_s = time.perf_counter() - started

    started = time.perf_counter()
    with local_cluster(n_workers=workers) as client:
        startup_s = time.perf_counter() - started
        started = time.perf_counter()
        distributed = fit_predict_distributed(config, data, client)
        distributed_s = time.perf_counter() - started

    diff = scaled_difference(single, distributed, data, config.season_length)
    return {
        "n_series": n_series,
        "days": days,
        "rows": int(len(data)),
        "dask_workers": workers,
        "single_fit_predict_s": round(single_s, 3),
        "dask_fit_predict_s": round(distributed_s, 3),
        "dask_cluster_startup_s": round(startup_s, 3),
        "dask_vs_single_ratio": round(distributed_s / single_s, 3),
        "scaled_difference_mean": round(float(diff.mean()), 4),
        "scaled_difference_max": round(float(diff.max()), 4),
    }
