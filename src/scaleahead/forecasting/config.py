"""The forecaster's configuration: one pydantic object loaded from ``ml/forecast.yaml``.

Everything that changes a model's behaviour lives here (features declared as data, LightGBM
parameters, interval calibration, backtest windows, promotion margins), so that logging this one
object to MLflow is enough to reproduce a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from scaleahead.config import Settings, get_settings


class ForecastingError(RuntimeError):
    """Training or publishing cannot proceed; the message is a one-line reason."""


class _Spec(BaseModel):
    """A transform declared as ``{type: name, **kwargs}``; the kwargs go to the constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LagTransformSpec(_Spec):
    type: Literal[
        "rolling_mean",
        "rolling_std",
        "rolling_min",
        "rolling_max",
        "seasonal_rolling_mean",
        "expanding_mean",
        "ewm",
    ]


class TargetTransformSpec(_Spec):
    type: Literal[
        "local_standard_scaler", "local_robust_scaler", "local_minmax_scaler", "differences"
    ]


class FeaturesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lags: list[int] = Field(default_factory=list)
    lag_transforms: dict[int, list[LagTransformSpec]] = Field(default_factory=dict)
    date_features: list[str] = Field(default_factory=list)
    target_transforms: list[TargetTransformSpec] = Field(default_factory=list)
    num_threads: int = 1


class IntervalsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["scaled_conformal"] = "scaled_conformal"
    n_windows: int = Field(12, ge=2)
    h: int | None = None  # defaults to the forecast horizon
    step_size: int | None = None  # between window origins; defaults to h


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_windows: int = Field(3, ge=1)
    step_size: int | None = None  # defaults to the horizon: non-overlapping windows


class PromotionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Literal["mase"] = "mase"
    min_improvement_vs_snaive: float = Field(0.05, ge=0.0, lt=1.0)
    min_improvement_vs_champion: float = Field(0.02, ge=0.0, lt=1.0)


class ForecastConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    freq: str = "5min"
    horizon: int = Field(12, ge=1)
    season_length: int = Field(288, ge=1)
    quantiles: list[float] = Field(default_factory=lambda: [0.5, 0.9, 0.95])
    nonnegative: bool = True
    min_series_length: int = Field(864, ge=1)
    max_history_days: float | None = Field(28.0, gt=0)  # train/score on this recent window only
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    lightgbm: dict[str, Any] = Field(default_factory=dict)
    intervals: IntervalsConfig = Field(default_factory=IntervalsConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)

    @model_validator(mode="after")
    def _check(self) -> ForecastConfig:
        qs = self.quantiles
        if sorted(set(qs)) != qs or not all(0.0 < q < 1.0 for q in qs):
            raise ValueError(f"quantiles must be strictly increasing in (0, 1), got {qs}")
        if 0.5 not in qs:
            raise ValueError("quantiles must include 0.5 (the published p50)")
        if self.calibration_h < self.horizon:
            raise ValueError("intervals.h must be >= horizon: intervals are calibrated per step")
        return self

    @property
    def calibration_h(self) -> int:
        return self.intervals.h or self.horizon

    @property
    def calibration_step(self) -> int:
        return self.intervals.step_size or self.calibration_h

    @property
    def backtest_step(self) -> int:
        return self.backtest.step_size or self.horizon

    @property
    def quantile_columns(self) -> list[str]:
        return [quantile_column(q) for q in self.quantiles]


def quantile_column(q: float) -> str:
    """0.5 -> 'p50', 0.95 -> 'p95', 0.975 -> 'p97.5'."""
    pct = round(q * 100, 6)
    return f"p{int(pct)}" if pct == int(pct) else f"p{pct:g}"


def load_config(path: Path | None = None, settings: Settings | None = None) -> ForecastConfig:
    path = path or (settings or get_settings()).ml_config
    if not path.exists():
        raise ForecastingError(f"forecast config {path} not found")
    with path.open() as fh:
        return ForecastConfig.model_validate(yaml.safe_load(fh) or {})
