"""The forecaster's configuration: one pydantic object loaded from ``ml/forecast.yaml``.

Everything that changes a model's behaviour lives here (features declared as data, LightGBM
parameters, interval calibration, backtest windows, promotion margins), so that logging this one
object to MLflow is enough to reproduce a run.
"""

from __future__ import annotations

import re
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
    # asinh: a log-like variance stabiliser defined for every real (0 and negatives included);
    # followed by seasonal differences it models relative (percentage) seasonal changes.
    type: Literal[
        "local_standard_scaler",
        "local_robust_scaler",
        "local_minmax_scaler",
        "differences",
        "asinh",
    ]


class FeaturesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lags: list[int] = Field(default_factory=list)
    lag_transforms: dict[int, list[LagTransformSpec]] = Field(default_factory=dict)
    date_features: list[str] = Field(default_factory=list)
    target_transforms: list[TargetTransformSpec] = Field(default_factory=list)
    num_threads: int = 1


class MemberConfig(BaseModel):
    """One LightGBM of the ensemble: its own features (replacing the base ``features`` when
    given) and LightGBM parameters (merged over the base ``lightgbm``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    features: FeaturesConfig | None = None
    lightgbm: dict[str, Any] = Field(default_factory=dict)


class IntervalsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["scaled_conformal"] = "scaled_conformal"
    n_windows: int = Field(12, ge=2)
    h: int | None = None  # defaults to the forecast horizon
    step_size: int | None = None  # between window origins; defaults to h
    # Calibration refits the model on at most this many series (a deterministic, evenly spaced
    # subset): pooled quantiles need a few thousand residuals, not every series, and this keeps
    # training cost close to one fit on large fleets. None: all series.
    max_series: int | None = Field(None, ge=1)


class StatisticalConfig(BaseModel):
    """The statistical baseline scored in the backtest (statsforecast MSTL)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # MSTL seasonal periods; shorter ones are used when a series lacks two full periods.
    season_lengths: list[int] = Field(default_factory=list)  # default: [season_length]
    # MSTL is fitted on the last max_history rows of each series only (its cost grows with
    # history; a few seasons are enough for its decomposition). None: all rows.
    max_history: int | None = Field(None, ge=2)


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_windows: int = Field(3, ge=1)
    step_size: int | None = None  # defaults to the horizon: non-overlapping windows
    statistical: StatisticalConfig = Field(default_factory=StatisticalConfig)


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
    # An ensemble: the point forecast is the mean of the members' forecasts. Empty: one member
    # made of ``features`` and ``lightgbm``.
    members: list[MemberConfig] = Field(default_factory=list)
    intervals: IntervalsConfig = Field(default_factory=IntervalsConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)

    @model_validator(mode="before")
    @classmethod
    def _resolve_season(cls, data: Any) -> Any:
        """Season-relative values (``"m"``, ``"7m"``, ranges ``"1..2m"``) -> integers."""
        if not isinstance(data, dict):
            return data
        m = int(data.get("season_length", cls.model_fields["season_length"].default))
        return {k: (v if k == "season_length" else resolve_season(v, m)) for k, v in data.items()}

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
    def member_list(self) -> list[MemberConfig]:
        """The ensemble with features and LightGBM parameters filled in from the base."""
        if not self.members:
            return [MemberConfig(name="lgbm", features=self.features, lightgbm=self.lightgbm)]
        return [
            MemberConfig(
                name=m.name,
                features=m.features or self.features,
                lightgbm={**self.lightgbm, **m.lightgbm},
            )
            for m in self.members
        ]

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


_SEASONAL = re.compile(r"^\s*(\d*)\s*m\s*$")
_RANGE = re.compile(r"^\s*([^.]+)\.\.([^.]+)$")


def _season_int(text: str, m: int) -> int | None:
    match = _SEASONAL.match(text)
    if match:
        return int(match.group(1) or 1) * m
    return int(text) if text.strip().isdigit() else None


def resolve_season(value: Any, m: int) -> Any:
    """Recursively replace season-relative values by integers for season length ``m``:
    ``"m"`` -> m, ``"7m"`` -> 7m, ``"24"`` -> 24; in lists, ``"1..2m"`` expands to 1..2m.
    Dict keys are resolved too (lag-transform lags). Other strings are left alone."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = _season_int(k, m) if isinstance(k, str) else None
            out[k if key is None else key] = resolve_season(v, m)
        return out
    if isinstance(value, list):
        items: list[Any] = []
        for v in value:
            match = _RANGE.match(v) if isinstance(v, str) else None
            lo = _season_int(match.group(1), m) if match else None
            hi = _season_int(match.group(2), m) if match else None
            if lo is not None and hi is not None:
                items.extend(range(lo, hi + 1))
            else:
                items.append(resolve_season(v, m))
        return items
    if isinstance(value, str):
        n = _season_int(value, m) if _SEASONAL.match(value) else None
        return value if n is None else n
    return value


def quantile_column(q: float) -> str:
    """0.5 -> 'p50', 0.95 -> 'p95', 0.975 -> 'p97.5'."""
    pct = round(q * 100, 6)
    return f"p{int(pct)}" if pct == int(pct) else f"p{pct:g}"


def load_raw_config(path: Path) -> dict[str, Any]:
    """The YAML as a dict, season-relative values unresolved (a template)."""
    if not path.exists():
        raise ForecastingError(f"forecast config {path} not found")
    with path.open() as fh:
        return yaml.safe_load(fh) or {}


def load_config(
    path: Path | None = None, settings: Settings | None = None, **overrides: Any
) -> ForecastConfig:
    """Load a profile; ``overrides`` replace top-level keys before season-relative values are
    resolved (e.g. ``season_length=24, freq="h"`` re-targets a profile to another frequency)."""
    path = path or (settings or get_settings()).ml_config
    return ForecastConfig.model_validate(load_raw_config(path) | overrides)


def profile_path(name: str, settings: Settings | None = None) -> Path:
    """``ml/forecast.yaml`` (name ``demand``) or ``ml/forecast_<name>.yaml`` beside it."""
    base = (settings or get_settings()).ml_config
    return base if name in ("", "demand") else base.with_name(f"forecast_{name}.yaml")
