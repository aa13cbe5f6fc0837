"""Turn the declarative feature config into an ``MLForecast`` object."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
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
    GlobalSklearnTransformer,
    LocalMinMaxScaler,
    LocalRobustScaler,
    LocalStandardScaler,
)
from sklearn.preprocessing import FunctionTransformer

from scaleahead.forecasting.config import (
    FeaturesConfig,
    ForecastConfig,
    LagTransformSpec,
    MemberConfig,
    TargetTransformSpec,
)

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


def _asinh() -> GlobalSklearnTransformer:
    return GlobalSklearnTransformer(FunctionTransformer(np.arcsinh, np.sinh))


TARGET_TRANSFORMS: dict[str, Any] = {
    "asinh": _asinh,
    "local_standard_scaler": LocalStandardScaler,
    "local_robust_scaler": LocalRobustScaler,
    "local_minmax_scaler": LocalMinMaxScaler,
    "differences": Differences,
}


def build_lag_transform(spec: LagTransformSpec) -> Any:
    return LAG_TRANSFORMS[spec.type](**spec.kwargs)


def build_target_transform(spec: TargetTransformSpec) -> Any:
    return TARGET_TRANSFORMS[spec.type](**spec.kwargs)


def build_model(params: dict[str, Any]) -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(**params)


def min_history(features: FeaturesConfig, season_length: int = 1) -> int:
    """Rows a series needs before every feature of ``features`` is defined."""
    needs = [season_length, *features.lags]
    for lag, specs in features.lag_transforms.items():
        for s in specs:
            window = int(s.kwargs.get("window_size", 1))
            if s.type == "seasonal_rolling_mean":
                window *= int(s.kwargs.get("season_length", 1))
            needs.append(lag + window - 1)
    diffs = sum(
        sum(int(d) for d in t.kwargs.get("differences", []))
        for t in features.target_transforms
        if t.type == "differences"
    )
    return max(needs) + diffs + 1


def build_mlforecast(config: ForecastConfig, member: MemberConfig | None = None) -> MLForecast:
    """The MLForecast of one ensemble member (default: the first)."""
    member = member or config.member_list[0]
    feats = member.features or config.features
    return MLForecast(
        models={MODEL_NAME: build_model(member.lightgbm)},
        num_threads=feats.num_threads,
        **feature_kwargs(config, feats),
    )


def feature_kwargs(config: ForecastConfig, feats: Any) -> dict[str, Any]:
    """The feature arguments shared by ``MLForecast`` and ``DistributedMLForecast``."""
    return {
        "freq": config.freq,
        "lags": feats.lags or None,
        "lag_transforms": {
            lag: [build_lag_transform(s) for s in specs]
            for lag, specs in feats.lag_transforms.items()
        }
        or None,
        "date_features": feats.date_features or None,
        "target_transforms": [build_target_transform(s) for s in feats.target_transforms] or None,
    }
