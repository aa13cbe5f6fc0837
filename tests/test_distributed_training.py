"""Dask training: a local cluster of 2 worker processes vs the single-process forecaster.

Tolerance (stated in docs/architecture.md): distributed LightGBM is data-parallel, so trees
differ slightly. Forecast agreement is measured in the unit of the model's own intervals, the
series' seasonal-naive MAE: per series the mean |single - distributed| over the horizon must be
<= 0.75 of it, <= 0.2 on average over series, and the distributed model's hold-out MASE must be
within 10% of the single-process one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaleahead.bench.forecast import synthetic_fleet
from scaleahead.forecasting.config import load_config
from scaleahead.forecasting.distributed import (
    dask_lightgbm_params,
    fit_predict_distributed,
    local_cluster,
    scaled_difference,
)
from scaleahead.forecasting.features import MODEL_NAME
from scaleahead.forecasting.model import (
    ID,
    Y,
    fit_members,
    holdout_split,
    predict_members,
    prepare_series,
    series_scales,
)

MEAN_TOL, MAX_TOL, MASE_TOL = 0.2, 0.75, 0.10


def mase(pred: pd.DataFrame, actual: pd.DataFrame, scales: pd.Series) -> float:
    joined = pred.merge(actual, on=[ID, "ds"])
    err = (joined[MODEL_NAME] - joined[Y]).abs().groupby(joined[ID]).mean()
    return float((err / scales.reindex(err.index)).mean())


@pytest.mark.timeout(240)
def test_two_worker_dask_training_matches_single_process(settings) -> None:
    config = load_config(settings=settings)
    data = prepare_series(synthetic_fleet(16, 7, seed=3), config.freq)
    history, holdout = holdout_split(data, 0, config.horizon)
    single = predict_members(fit_members(config, history), config.horizon)
    single = single.sort_values([ID, "ds"], ignore_index=True)
    with local_cluster(n_workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        distributed = fit_predict_distributed(config, history, client)

    diff = scaled_difference(single, distributed, history, config.season_length)
    assert len(diff) == 16 and diff.notna().all()
    assert diff.max() <= MAX_TOL, diff.sort_values().tail()
    assert diff.mean() <= MEAN_TOL
    # Not the same model fitted twice by accident: data-parallel trees differ a little.
    assert not np.allclose(single[MODEL_NAME], distributed[MODEL_NAME])

    scales = series_scales(history, config.season_length)
    mase_single = mase(single, holdout, scales)
    mase_dist = mase(distributed, holdout, scales)
    assert abs(mase_dist - mase_single) <= MASE_TOL * mase_single, (mase_single, mase_dist)


def test_scaled_difference_rejects_mismatched_forecasts() -> None:
    ds = pd.date_range("2024-01-01", periods=3, freq="5min")
    a = pd.DataFrame({ID: "s", "ds": ds, MODEL_NAME: [1.0, 2.0, 3.0]})
    history = pd.DataFrame({ID: "s", "ds": ds, Y: [1.0, 2.0, 4.0]})
    assert scaled_difference(a, a, history, 1).tolist() == [0.0]
    shifted = a.assign(**{MODEL_NAME: a[MODEL_NAME] + 1.5})
    assert scaled_difference(a, shifted, history, 1).tolist() == [1.5 / 1.5]
    with pytest.raises(ValueError):
        scaled_difference(a, a.iloc[:2], history, 1)


def test_thread_count_is_left_to_the_dask_workers() -> None:
    params = {"n_jobs": 2, "num_leaves": 7, "random_state": 42}
    assert dask_lightgbm_params(params) == {"num_leaves": 7, "random_state": 42}
