"""Offline forecasting of any regular series: ``scaleahead forecast``.

Input: CSV or Parquet, long ``unique_id, ds, y``. The hourly profile (``ml/forecast_hourly.yaml``,
the configuration benchmarked on M4 Hourly) is re-targeted to the series' frequency: its
season-relative features are resolved for the given or inferred season length, dense lags are
capped at 48 steps, and features longer than the series' history are dropped. The forecaster is
fitted on the input (so unseen series are fine) and forecasts ``horizon`` steps after each
series' last timestamp. Series too short for the model get the seasonal-naive (or naive)
forecast with empirical-error quantiles instead; the summary says which.

Output columns: ``unique_id, ds, yhat, yhat_p50, yhat_p90, yhat_p95``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaleahead.config import Settings, get_settings
from scaleahead.forecasting.backtest import baseline_forecasts
from scaleahead.forecasting.config import (
    FeaturesConfig,
    ForecastConfig,
    ForecastingError,
    load_raw_config,
    profile_path,
)
from scaleahead.forecasting.model import DS, ID, DemandForecaster, Y, prepare_series

QUANTILES = [0.5, 0.9, 0.95]
OUTPUT_COLUMNS = [ID, DS, "yhat", "yhat_p50", "yhat_p90", "yhat_p95"]
MAX_DENSE_LAG = 48
_SHORT_UNITS = {"s": "s", "m": "min", "min": "min", "h": "h", "d": "D"}
_FREQ = re.compile(r"^\s*(\d*)\s*([a-zA-Z]+)\s*$")


class InputError(ForecastingError):
    """The input file or the arguments are unusable; the message says why."""


@dataclass
class OfflineReport:
    input: str
    output: str
    freq: str
    season_length: int
    horizon: int
    n_series: int
    n_rows: int
    rows_written: int
    model_series: int
    fallback_series: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_freq(freq: str) -> str:
    """``5m``, ``1h``, ``30s``, ``1d`` or a pandas fixed frequency (``5min``, ``h``, ``D``)
    -> a pandas alias. Calendar frequencies (months, weeks anchored on a weekday) are refused:
    the model needs a fixed step."""
    match = _FREQ.match(freq or "")
    alias = freq
    if match and match.group(2).lower() in _SHORT_UNITS:
        alias = f"{match.group(1) or 1}{_SHORT_UNITS[match.group(2).lower()]}"
    try:
        offset = pd.tseries.frequencies.to_offset(alias)
        step = pd.Timedelta(offset)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"unknown or non-fixed frequency {freq!r}: use e.g. 5m, 1h, 1d, 5min, h"
        ) from exc
    if step <= pd.Timedelta(0):
        raise InputError(f"frequency {freq!r} must be positive")
    return offset.freqstr


def infer_season(freq: str) -> int:
    """Steps per day below a day (5 min -> 288, 1 h -> 24), a week of days (7), else 1."""
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    day = pd.Timedelta("1D")
    if step < day and day % step == pd.Timedelta(0):
        return int(day // step)
    if step == day:
        return 7
    return 1


def read_input(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"input file {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise InputError(f"input {path.name}: expected a .csv or .parquet file")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - reader errors become one clear line
        raise InputError(f"cannot read {path}: {exc}") from exc
    missing = {ID, DS, Y} - set(df.columns)
    if missing:
        raise InputError(
            f"input lacks columns {sorted(missing)} (long format unique_id, ds, y expected; "
            f"found {list(df.columns)})"
        )
    out = df[[ID, DS, Y]].copy()
    try:
        out[DS] = pd.to_datetime(out[DS])
    except (ValueError, TypeError) as exc:
        raise InputError(f"column ds is not parseable as timestamps: {exc}") from exc
    if getattr(out[DS].dt, "tz", None) is not None:
        out[DS] = out[DS].dt.tz_convert("UTC").dt.tz_localize(None)
    y = pd.to_numeric(out[Y], errors="coerce")
    bad = y.isna() & out[Y].notna()
    if bad.any():
        raise InputError(
            f"column y has {int(bad.sum())} non-numeric values, e.g. {out[Y][bad].iloc[0]!r}"
        )
    if not np.isfinite(y.dropna()).all():
        raise InputError("column y has infinite values")
    out[Y] = y
    out[ID] = out[ID].astype(str)
    out = out.dropna(subset=[DS, Y])
    if out.empty:
        raise InputError(f"input {path} has no rows with a timestamp and a value")
    return out


def check_grid(df: pd.DataFrame, freq: str) -> None:
    """Every series' timestamps must sit on one grid of step ``freq`` (holes are allowed and
    filled forward; off-grid timestamps are an error)."""
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    first = df.groupby(ID, sort=False)[DS].transform("min")
    off = (df[DS] - first) % step != pd.Timedelta(0)
    if off.any():
        uid = df.loc[off, ID].iloc[0]
        raise InputError(
            f"series {uid!r} is not on a regular {freq} grid (e.g. {df.loc[off, DS].iloc[0]}); "
            "check --freq"
        )


def _trim(features: FeaturesConfig, budget: int, m: int) -> FeaturesConfig:
    """Cap dense lags at ``MAX_DENSE_LAG`` (seasonal multiples of m kept), then drop whatever
    needs more than ``budget`` rows of history (differences count against the budget)."""
    targets, diffs = [], 0
    for t in features.target_transforms:
        if t.type == "differences":
            d = sum(int(x) for x in t.kwargs.get("differences", []))
            if (diffs + d) * 2 > budget:
                continue
            diffs += d
        targets.append(t)
    budget -= diffs
    lags = {lag for lag in features.lags if lag <= MAX_DENSE_LAG or lag % m == 0}
    lags |= set(range(1, 25))  # short seasons: still a day's worth of lags
    lags = sorted(lag for lag in lags if lag < budget) or [1]
    transforms = {}
    for lag, specs in features.lag_transforms.items():
        kept = []
        for spec in specs:
            window = int(spec.kwargs.get("window_size", 1))
            if spec.type == "seasonal_rolling_mean":
                window *= int(spec.kwargs.get("season_length", 1))
            if lag + window - 1 < budget:
                kept.append(spec)
        if kept:
            transforms[lag] = kept
    return features.model_copy(
        update={"lags": lags, "lag_transforms": transforms, "target_transforms": targets}
    )


def adapt_config(
    template: dict[str, Any], freq: str, season: int, horizon: int, lengths: pd.Series, y_min: float
) -> ForecastConfig:
    """The profile re-targeted to this input's frequency, season, horizon and history."""
    typical = int(lengths.median())
    m = season if season > 1 and typical >= 3 * season else 1
    step = max(1, min(m, horizon))
    n_windows = 4
    holdout = (n_windows - 1) * step + horizon
    budget = typical - holdout - max(horizon, 24)
    if budget < 8:
        raise InputError(
            f"series too short: a typical series has {typical} rows, the model needs at least "
            f"{holdout + max(horizon, 24) + 8} for a {horizon}-step horizon"
        )
    raw = template | {
        "freq": freq,
        "season_length": m,
        "horizon": horizon,
        "quantiles": QUANTILES,
        "nonnegative": bool(y_min >= 0),
        "min_series_length": 1,
        "max_history_days": None,
        "intervals": {"method": "scaled_conformal", "n_windows": n_windows, "step_size": step},
    }
    config = ForecastConfig.model_validate(raw)
    members = [
        mem.model_copy(update={"features": _trim(mem.features or config.features, budget, m)})
        for mem in config.members
    ]
    base = _trim(config.features, budget, m)
    return config.model_copy(update={"features": base, "members": members})


def forecast_frame(
    df: pd.DataFrame,
    horizon: int,
    freq: str,
    season: int | None = None,
    settings: Settings | None = None,
    profile: str = "hourly",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Forecast ``horizon`` steps after each series' end; (output frame, details)."""
    settings = settings or get_settings()
    if horizon < 1:
        raise InputError("--horizon must be >= 1")
    freq = parse_freq(freq)
    if season is not None and season < 1:
        raise InputError("--season must be >= 1")
    check_grid(df, freq)
    data = prepare_series(df, freq)
    lengths = data.groupby(ID, sort=False).size()
    season = season or infer_season(freq)
    config = adapt_config(
        load_raw_config(profile_path(profile, settings)),
        freq,
        season,
        horizon,
        lengths,
        float(data[Y].min()),
    )
    forecaster = DemandForecaster(config)
    need = forecaster.min_history + (config.intervals.n_windows - 1) * config.calibration_step
    long_ids = lengths.index[lengths >= need + config.calibration_h]
    parts = []
    if len(long_ids):
        forecaster.fit(data[data[ID].isin(long_ids)])
        pred = forecaster.predict(horizon, with_point=True)
        parts.append(pred.rename(columns={c: f"yhat_{c}" for c in config.quantile_columns}))
    short = data[~data[ID].isin(long_ids)]
    if not short.empty:
        base = baseline_forecasts(short, horizon, config.season_length, QUANTILES, freq, False)
        kind = "snaive" if config.season_length > 1 else "naive"
        values = base[[f"{kind}_p50", f"{kind}_p90", f"{kind}_p95"]].to_numpy()
        if config.nonnegative:
            values = np.maximum(values, 0.0)
        fb = base[[ID, DS]].copy()
        fb[["yhat_p50", "yhat_p90", "yhat_p95"]] = np.maximum.accumulate(values, axis=1)
        fb["yhat"] = fb["yhat_p50"]
        parts.append(fb)
    out = pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]
    out = out.sort_values([ID, DS], ignore_index=True)
    details = {
        "freq": freq,
        "season_length": config.season_length,
        "n_series": int(len(lengths)),
        "n_rows": int(len(data)),
        "model_series": int(len(long_ids)),
        "fallback_series": sorted(str(s) for s in set(lengths.index) - set(long_ids)),
        "members": [m.name for m in config.member_list],
    }
    return out, details


def write_output(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        raise InputError(f"output {path.name}: expected a .csv or .parquet file")


def forecast_file(
    input_path: Path,
    horizon: int,
    freq: str,
    output_path: Path,
    season: int | None = None,
    settings: Settings | None = None,
) -> OfflineReport:
    suffix = output_path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InputError(f"output {output_path.name}: expected a .csv or .parquet file")
    df = read_input(input_path)
    out, details = forecast_frame(df, horizon, freq, season, settings)
    write_output(out, output_path)
    return OfflineReport(
        input=str(input_path),
        output=str(output_path),
        horizon=horizon,
        rows_written=len(out),
        **details,
    )
