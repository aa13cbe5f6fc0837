"""The real forecasters replayed on a rolling schedule (no look-ahead).

- 5-minute demand model (``ml/forecast.yaml``, re-targeted to the trace's step when it is not
  5 minutes): fitted once on the training period, then re-run every ``refresh`` on the history
  known at that instant, as the publish DAG does. Per-series scaling comes from the profile's
  ``local_standard_scaler`` and the conformal scales (traces differ by orders of magnitude).
- Hourly profile (``ml/forecast_hourly.yaml`` via the offline re-targeting) for the cloud-style
  scheduled policy: 48 hourly steps refreshed every 6 hours. When the training period is too
  short for that profile, the seasonal naive of the last day is used (clouds need a day of data
  too) and the fallback is reported.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from scaleahead.config import Settings, get_settings
from scaleahead.forecasting.config import load_config, load_raw_config, profile_path
from scaleahead.forecasting.model import DemandForecaster
from scaleahead.forecasting.offline import InputError, adapt_config

log = logging.getLogger(__name__)
ID, DS, Y = "unique_id", "ds", "y"


def _long(
    ids: list[str], start: pd.Timestamp, step: pd.Timedelta, values: np.ndarray
) -> pd.DataFrame:
    n_series, n = values.shape
    ds = pd.date_range(start, periods=n, freq=step)
    return pd.DataFrame({ID: np.repeat(ids, n), DS: np.tile(ds, n_series), Y: values.reshape(-1)})


# Windows predicted per call: each (series, origin) window becomes a series of its own, so one
# recursive predict covers several origins (per-call and per-step overheads shared). Measured
# on 1,000 services (noisy shared machine): ~0.3-0.4 s per origin alone, 0.1-0.2 s from 3 to 6
# per call, no better from 8 on (the per-row work over the windows dominates). Small fleets
# take more origins per call so the per-call overhead does not dominate.
WINDOWS_PER_CALL = 4000
ORIGINS_PER_CALL = 4  # the minimum (what 1,000 services get)


def origins_per_call(n_series: int) -> int:
    return max(ORIGINS_PER_CALL, WINDOWS_PER_CALL // max(1, n_series))


def predict_origins(
    forecaster: DemandForecaster,
    windows: list[tuple[pd.Timestamp, np.ndarray]],
    step: pd.Timedelta,
    h: int,
    columns: list[str],
) -> list[np.ndarray]:
    """Forecast ``h`` steps after each history window ``(start, values (S, n))`` in one call;
    returns per window an array ``(len(columns), S, h)`` (NaN where a window is shorter than
    the forecaster's ``min_history``). ``columns``: quantile columns and/or ``yhat``.

    Same numbers as one ``predict`` per window: every per-series state (target scaler, lags,
    conformal scale) is computed from that window's rows only
    (:meth:`DemandForecaster.predict_windows`)."""
    if pd.Timedelta(pd.tseries.frequencies.to_offset(forecaster.config.freq)) != step:
        raise ValueError(
            f"windows step {step} differs from the forecaster's {forecaster.config.freq}"
        )
    quantile_index = {c: i for i, c in enumerate(forecaster.quantile_columns)}
    out = [np.full((len(columns), values.shape[0], h), np.nan) for _, values in windows]
    # Windows of one length go in one call (the hourly schedule's first ones can be shorter).
    by_length: dict[int, list[int]] = {}
    for w, (_, values) in enumerate(windows):
        by_length.setdefault(values.shape[1], []).append(w)
    for group in by_length.values():
        stacked = np.concatenate([windows[w][1] for w in group], axis=0)
        starts = np.concatenate(
            [np.full(windows[w][1].shape[0], np.datetime64(windows[w][0], "ns")) for w in group]
        )
        quantiles, point = forecaster.predict_windows(stacked, starts, h)
        offset = 0
        for w in group:
            rows = slice(offset, offset + windows[w][1].shape[0])
            offset = rows.stop
            for c, column in enumerate(columns):
                if column == "yhat":
                    out[w][c] = point[rows]
                else:
                    out[w][c] = quantiles[rows, :, quantile_index[column]]
    return out


def demand_forecaster(step_s: float, settings: Settings | None = None) -> DemandForecaster:
    settings = settings or get_settings()
    day = int(round(86400 / step_s))
    if int(step_s) == 300:
        return DemandForecaster(load_config(settings.ml_config))
    freq = f"{int(step_s)}s"
    return DemandForecaster(
        load_config(settings.ml_config, freq=freq, season_length=day, min_series_length=1)
    )


def rolling_upper(
    ids: list[str],
    start: pd.Timestamp,
    step_s: float,
    train: np.ndarray,
    replay: np.ndarray,
    refresh_steps: int,
    settings: Settings | None = None,
    timings: dict[str, float] | None = None,
    column: str | None = None,
    horizon: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Quantile forecasts (``column``, default the forecaster's highest) made at each origin
    ``o`` (every ``refresh_steps`` replay steps) from the data of steps ``< o`` only.
    ``horizon`` caps the steps predicted per origin (at most the forecaster's horizon): the
    forecast is recursive and its conformal band per step, so the first steps are the same
    numbers whatever the horizon, and the steps the policy never reads are not computed.
    Returns (origins, forecasts ``(S, n_origins, h)``, quantile column); fit and predict
    seconds go to ``timings`` when given."""
    step = pd.Timedelta(seconds=step_s)
    t0 = time.perf_counter()
    forecaster = demand_forecaster(step_s, settings).fit(_long(ids, start, step, train))
    fitted = time.perf_counter()
    cfg = forecaster.config
    column = column or cfg.quantile_columns[-1]
    if column not in cfg.quantile_columns:
        raise ValueError(f"quantile {column!r} is not one of {cfg.quantile_columns}")
    h = cfg.horizon if horizon is None else max(1, min(horizon, cfg.horizon))
    keep = forecaster.min_history + cfg.season_length  # enough rows for every feature
    full = np.concatenate([train, replay], axis=1)
    n_train = train.shape[1]
    origins = np.arange(0, replay.shape[1], refresh_steps)
    out = np.full((len(ids), len(origins), h), np.nan)
    per_call = origins_per_call(len(ids))
    for chunk in range(0, len(origins), per_call):
        windows = []
        for o in origins[chunk : chunk + per_call]:
            end = n_train + o  # rows [0, end) are known at the origin
            first = max(0, end - keep)
            windows.append((start + first * step, full[:, first:end]))
        for k, fc in enumerate(predict_origins(forecaster, windows, step, h, [column])):
            out[:, chunk + k, :] = fc[0]
    if timings is not None:
        timings["forecast_5m_fit_s"] = fitted - t0
        timings["forecast_5m_predict_s"] = time.perf_counter() - fitted
    return origins, out, column


def window_span(step_s: float, lead_s: float, window_s: float) -> int:
    """Buckets ``t .. t + span`` overlap the policy's window ``[now, now + lead + window]``."""
    return int((lead_s + window_s) // step_s)


def peaks_from_origins(
    origins: np.ndarray,
    forecasts: np.ndarray,
    n_steps: int,
    step_s: float,
    lead_s: float,
    window_s: float,
    max_age_s: float,
) -> np.ndarray:
    """Per replay step, the policy's forecast peak: the max over the buckets overlapping
    ``[now, now + lead + window]`` of the latest forecast not older than ``max_age_s``
    (:func:`scaleahead.domain.scaling.forecast_peak` on a regular grid); NaN = fall back."""
    n_series, _, h = forecasts.shape
    span = window_span(step_s, lead_s, window_s)
    peaks = np.full((n_series, n_steps), np.nan)
    for t in range(n_steps):
        k = int(np.searchsorted(origins, t, side="right")) - 1
        if k < 0 or (t - origins[k]) * step_s > max_age_s:
            continue
        a = t - origins[k]
        b = a + span + 1
        if b > h:
            continue  # the forecast does not cover the whole window: fall back
        peaks[:, t] = forecasts[:, k, a:b].max(axis=1)
    return peaks


def _hourly(values: np.ndarray, per_hour: int) -> np.ndarray:
    n = values.shape[1] // per_hour * per_hour
    return values[:, :n].reshape(values.shape[0], -1, per_hour).mean(axis=2)


def scheduled_capacity(
    ids: list[str],
    start: pd.Timestamp,
    step_s: float,
    train: np.ndarray,
    replay: np.ndarray,
    refresh_s: float = 6 * 3600,
    horizon_h: int = 48,
    buffer_s: float = 300.0,
    settings: Settings | None = None,
) -> tuple[np.ndarray, str]:
    """Hourly point forecasts for the replay period as the clouds' predictive scaling makes them:
    one forecast of the next ``horizon_h`` hours every ``refresh_s``, from complete hours only.
    Each hour's capacity is scheduled ``buffer_s`` before the hour starts (never before the
    forecast exists). Returns the scheduled level per replay step ``(S, T)`` (NaN where none)
    and the method."""
    settings = settings or get_settings()
    per_hour = max(1, int(round(3600 / step_s)))
    n_train, n_replay = train.shape[1], replay.shape[1]
    full = np.concatenate([train, replay], axis=1)
    hourly_train = _hourly(train, per_hour)
    method = "hourly_lightgbm"
    forecaster: DemandForecaster | None = None
    try:
        config = adapt_config(
            load_raw_config(profile_path("hourly", settings)),
            "h",
            24,
            horizon_h,
            pd.Series([hourly_train.shape[1]] * len(ids)),
            float(np.nanmin(hourly_train)),
        )
        forecaster = DemandForecaster(config).fit(
            _long(ids, start, pd.Timedelta(hours=1), hourly_train)
        )
    except (InputError, ValueError, RuntimeError) as exc:
        log.info("hourly profile unusable on this training period (%s): seasonal naive", exc)
        method = "seasonal_naive_hourly"
    level = np.full((len(ids), n_replay), np.nan)
    refresh = max(1, int(round(refresh_s / step_s)))
    buffer = int(np.ceil(buffer_s / step_s - 1e-9))
    origins = list(range(0, n_replay, refresh))
    known = {o: (n_train + o) // per_hour for o in origins}  # complete hours before o
    point: dict[int, np.ndarray] = {}
    hour = pd.Timedelta(hours=1)
    for chunk in range(0, len(origins), ORIGINS_PER_CALL):
        windows = []
        for o in origins[chunk : chunk + ORIGINS_PER_CALL]:
            hist = _hourly(full[:, : known[o] * per_hour], per_hour)
            if forecaster is None:
                point[o] = np.tile(hist[:, -24:], int(np.ceil(horizon_h / 24)))[:, :horizon_h]
                continue
            sub = hist[:, -(forecaster.min_history + 24) :]
            windows.append((start + (known[o] - sub.shape[1]) * hour, sub))
        if windows and forecaster is not None:
            preds = predict_origins(forecaster, windows, hour, horizon_h, ["yhat"])
            for o, fc in zip(origins[chunk : chunk + ORIGINS_PER_CALL], preds, strict=True):
                point[o] = fc[0]
    for o in origins:
        known_hours, fc = known[o], point[o]
        # Forecast hour j starts at step (known_hours + j) * per_hour of the full trace.
        for j in range(horizon_h):
            s0 = (known_hours + j) * per_hour - n_train
            s1 = s0 + per_hour
            lo, hi = max(s0 - buffer, o), min(s1 - buffer, n_replay)
            if lo < hi:
                level[:, lo:hi] = fc[:, j : j + 1]
    return level, method
