"""Demand forecasting: a global LightGBM (mlforecast) with calibrated quantiles, backtested
against seasonal naive, tracked and gated in MLflow, published to ``serving.forecasts``."""

from scaleahead.forecasting.config import ForecastConfig, ForecastingError, load_config
from scaleahead.forecasting.model import DemandForecaster

__all__ = ["DemandForecaster", "ForecastConfig", "ForecastingError", "load_config"]
