"""Turn the declarative feature config into an ``MLForecast`` object."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
from mlforecast import MLForecast
from mlforecast.lag_transforms import (
    ExpandingMean,
    ExponentiallyWeightedMean,
    RollingMax,
    RollingMean,
    RollingMin,
    RollingStd,
    SeasonalRollingMean,
)
from mlforecast.target_transforms import (
    Differences,
    LocalMinMaxScaler,
    LocalRobustScaler,
    LocalStandardScaler,
)

from scaleahead.forecasting.config import ForecastConfig, LagTransformSpec, TargetTransformSpec

MODEL_NAME = "lgbm"

LAG_TRANSFORMS: dict[str, type] = {
    "rolling_mean": RollingMean,
    "rolling_std": RollingStd,
    "rolling_min": RollingMin,
    "rolling_max": RollingMax,
    "seasonal_rolling_mean": SeasonalRollingMean,
    "expanding_mean": ExpandingMean,
    "ewm": ExponentiallyWeightedMean,
}

TARGET_TRANSFORMS: dict[str, type] = {
    "local_standard_scaler": LocalStandardScaler,
    "local_robust_scaler": LocalRobustScaler,
    "local_minmax_scaler": LocalMinMaxScaler,
    "differences": Differences,
}


def build_lag_transform(spec: LagTransformSpec) -> Any:
    return LAG_TRANSFORMS[spec.type](**spec.kwargs)


def build_target_transform(spec: TargetTransformSpec) -> Any:
    return TARGET_TRANSFORMS[spec.type](**spec.kwargs)


def build_model(config: ForecastConfig) -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(**config.lightgbm)


def build_mlforecast(config: ForecastConfig) -> MLForecast:
    feats = config.features
    return MLForecast(
        models={MODEL_NAME: build_model(config)},
        freq=config.freq,
        lags=feats.lags or None,
        lag_transforms={
            lag: [build_lag_transform(s) for s in specs]
            for lag, specs in feats.lag_transforms.items()
        }
        or None,
        date_features=feats.date_features or None,
        target_transforms=[build_target_transform(s) for s in feats.target_transforms] or None,
        num_threads=feats.num_threads,
    )
