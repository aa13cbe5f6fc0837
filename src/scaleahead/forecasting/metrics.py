"""Forecast accuracy metrics: pure numpy functions on one series' arrays.

Scale-free metrics (MASE, scaled pinball) use the in-sample MAE of the seasonal naive forecast
as denominator, so series whose scales differ by orders of magnitude weigh the same.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


def _arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=float)


def seasonal_scale(y_train: ArrayLike, season_length: int) -> float:
    """In-sample MAE of the seasonal naive forecast; naive (lag 1) if the series is shorter
    than a season. NaN if it cannot be computed; 0 for a constant series."""
    y = _arr(y_train)
    m = season_length if y.size > season_length else 1
    if y.size <= m:
        return float("nan")
    return float(np.mean(np.abs(y[m:] - y[:-m])))


def mase(y: ArrayLike, y_hat: ArrayLike, y_train: ArrayLike, season_length: int) -> float:
    """Mean absolute scaled error; NaN when the scale is 0 or undefined."""
    scale = seasonal_scale(y_train, season_length)
    if not np.isfinite(scale) or scale == 0:
        return float("nan")
    return float(np.mean(np.abs(_arr(y) - _arr(y_hat))) / scale)


def smape(y: ArrayLike, y_hat: ArrayLike) -> float:
    """Symmetric MAPE in percent, in [0, 200]; a point where both are 0 counts as 0."""
    y, y_hat = _arr(y), _arr(y_hat)
    denom = np.abs(y) + np.abs(y_hat)
    ratio = np.divide(2 * np.abs(y - y_hat), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100 * np.mean(ratio))


def pinball_loss(y: ArrayLike, q_hat: ArrayLike, q: float) -> float:
    """Mean quantile (pinball) loss of forecast ``q_hat`` for quantile ``q``."""
    diff = _arr(y) - _arr(q_hat)
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


def scaled_pinball_loss(
    y: ArrayLike, q_hat: ArrayLike, q: float, y_train: ArrayLike, season_length: int
) -> float:
    """Pinball loss divided by the seasonal-naive scale (as in M5's SPL)."""
    scale = seasonal_scale(y_train, season_length)
    if not np.isfinite(scale) or scale == 0:
        return float("nan")
    return pinball_loss(y, q_hat, q) / scale


def coverage(y: ArrayLike, upper: ArrayLike) -> float:
    """Share of actuals at or below an upper quantile forecast (target: the quantile level)."""
    return float(np.mean(_arr(y) <= _arr(upper)))
