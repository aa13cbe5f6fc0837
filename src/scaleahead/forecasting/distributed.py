"""Training past one machine: the demand model's point forecaster on a Dask cluster.

mlforecast's ``DistributedMLForecast`` computes the same features (lags, lag transforms, date
features, per-series scaler) partition by partition, series never split across partitions, and
trains LightGBM's Dask interface (data-parallel: every worker holds a share of the rows, trees
are grown from histograms reduced over workers). Nothing here is home-made distribution: the
cluster is any ``dask.distributed`` scheduler; ``local_cluster`` starts one on this host for
tests and the benchmark.

Distributed LightGBM is not bit-identical to a single process (feature bins are found from the
workers' shares; bagging draws per worker), so agreement is measured, not assumed:
``scaled_difference`` is the mean absolute gap between the two forecasts divided by each
series' seasonal-naive MAE, the unit the model's intervals already use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pandas as pd

from scaleahead.forecasting.config import ForecastConfig, MemberConfig
from scaleahead.forecasting.features import MODEL_NAME, feature_kwargs
from scaleahead.forecasting.model import DS, ID, Y, series_scales

if TYPE_CHECKING:
    from dask.distributed import Client


@contextmanager
def local_cluster(n_workers: int = 2, threads_per_worker: int = 1) -> Iterator[Client]:
    """A throw-away Dask cluster of worker *processes* on loopback (dashboard off)."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def dask_lightgbm_params(params: dict[str, Any]) -> dict[str, Any]:
    """The single-process LightGBM params for the Dask estimator.

    ``n_jobs`` is dropped: lightgbm.dask runs each worker with that Dask worker's threads and
    warns about (then ignores) an explicit thread count."""
    return {k: v for k, v in params.items() if k not in {"n_jobs", "num_threads"}}


def build_distributed(
    config: ForecastConfig, n_partitions: int, member: MemberConfig | None = None
) -> Any:
    """The ``DistributedMLForecast`` twin of ``features.build_mlforecast``."""
    from mlforecast.distributed import DistributedMLForecast
    from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast

    member = member or config.member_list[0]
    feats = member.features or config.features
    return DistributedMLForecast(
        models={MODEL_NAME: DaskLGBMForecast(**dask_lightgbm_params(member.lightgbm))},
        **feature_kwargs(config, feats),
        num_threads=1,
        num_partitions=n_partitions,
    )


def fit_predict_distributed(
    config: ForecastConfig, data: pd.DataFrame, client: Client, h: int | None = None
) -> pd.DataFrame:
    """Fit on the cluster and forecast ``h`` steps (default: the horizon) for every series.

    ``data`` is a prepared long frame (``model.prepare_series``). Returns pandas
    ``unique_id, ds, <MODEL_NAME>`` sorted like the single-process forecast.
    """
    import dask.dataframe as dd

    n_workers = max(1, len(client.scheduler_info()["workers"]))
    # Whole series per partition: lags and the per-series scaler must see a series' full past.
    ids = pd.Series(sorted(data[ID].unique()))
    part = dict(zip(ids, ids.index % n_workers, strict=True))
    ordered = data.assign(_part=data[ID].map(part)).sort_values(["_part", ID, DS])
    chunks = [g.drop(columns="_part").reset_index(drop=True) for _, g in ordered.groupby("_part")]
    frame = dd.from_delayed([client.scatter(c) for c in chunks], meta=chunks[0].iloc[:0])
    fcst = build_distributed(config, n_workers)
    fcst.fit(frame, id_col=ID, time_col=DS, target_col=Y, static_features=[])
    pred = fcst.predict(h or config.horizon)
    pred = pred.compute() if hasattr(pred, "compute") else pred
    # Fugue hands back Arrow-backed columns; match the single-process dtypes.
    pred[ID] = pred[ID].astype(str)
    pred[DS] = pred[DS].astype(data[DS].dtype)
    pred[MODEL_NAME] = pred[MODEL_NAME].astype(float)
    return pred[[ID, DS, MODEL_NAME]].sort_values([ID, DS], ignore_index=True)


def scaled_difference(
    single: pd.DataFrame, distributed: pd.DataFrame, history: pd.DataFrame, season_length: int
) -> pd.Series:
    """Per series: mean |single - distributed| over the horizon / seasonal-naive MAE."""
    joined = single[[ID, DS, MODEL_NAME]].merge(
        distributed[[ID, DS, MODEL_NAME]], on=[ID, DS], suffixes=("_s", "_d"), validate="1:1"
    )
    if len(joined) != len(single) or len(joined) != len(distributed):
        raise ValueError("the two forecasts cover different series or timestamps")
    gap = (joined[f"{MODEL_NAME}_s"] - joined[f"{MODEL_NAME}_d"]).abs()
    per_series = gap.groupby(joined[ID], sort=True).mean()
    scales = series_scales(history, season_length)
    return (per_series / scales.reindex(per_series.index)).rename("scaled_difference")
