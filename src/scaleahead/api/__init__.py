"""Forecast-serving HTTP API: FastAPI app over an in-memory cache of the latest batches."""

from scaleahead.api.app import create_app, serve
from scaleahead.api.cache import CacheRefresher, ForecastCache

__all__ = ["CacheRefresher", "ForecastCache", "create_app", "serve"]
