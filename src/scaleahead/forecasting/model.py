"""``DemandForecaster``: a global LightGBM point forecaster (mlforecast) plus calibrated quantiles.

Quantiles come from split-conformal calibration (see ``ml/forecast.yaml``, ``intervals``):
out-of-sample residuals of rolling windows are divided by each series' seasonal-naive MAE, pooled
over series and summarised as one empirical quantile per horizon step. At predict time they are
multiplied back by the scale of the series being forecast, so the same model can score series
from newer data (or services it never saw) without refitting.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlforecast import MLForecast

from scaleahead.forecasting.config import FeaturesConfig, ForecastConfig, ForecastingError
from scaleahead.forecasting.features import MODEL_NAME, build_mlforecast
from scaleahead.forecasting.features import min_history as features_min_history

ID, DS, Y = "unique_id", "ds", "y"
_STATE_FILE = "forecaster.json"
_FORMAT_VERSION = 2  # 2: a list of ensemble members; 1 (one MLForecast) still loads


def prepare_series(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Long frame -> sorted, deduplicated, on a regular grid (holes filled forward).

    mlforecast computes lags by position, so a missing bucket would silently shift every lag.
    """
    missing = {ID, DS, Y} - set(df.columns)
    if missing:
        raise ValueError(f"series frame lacks columns {sorted(missing)}")
    out = df[[ID, DS, Y]].copy()
    out[ID] = out[ID].astype(str)
    out[DS] = pd.to_datetime(out[DS])
    out[Y] = out[Y].astype(float)
    out = out.dropna(subset=[Y]).drop_duplicates([ID, DS], keep="last")
    out = out.sort_values([ID, DS], ignore_index=True)
    if out.empty:
        return out
    step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    spans = out.groupby(ID, sort=False)[DS].agg(["min", "max", "size"])
    expected = (spans["max"] - spans["min"]) // step + 1
    ragged = spans.index[expected != spans["size"]]
    if len(ragged) == 0:
        return out
    parts = [out[~out[ID].isin(ragged)]]
    for uid in ragged:
        s = out[out[ID] == uid].set_index(DS)[Y]
        s = s.asfreq(freq).ffill()
        parts.append(pd.DataFrame({ID: uid, DS: s.index, Y: s.to_numpy()}))
    return pd.concat(parts, ignore_index=True).sort_values([ID, DS], ignore_index=True)


def holdout_split(df: pd.DataFrame, offset: int, h: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per series: the last ``offset`` rows are dropped, the ``h`` before them are the test
    window and everything earlier the history (positional, so series may end at different
    times). ``df`` must be sorted by id and ds."""
    from_end = df.groupby(ID, sort=False).cumcount(ascending=False).to_numpy()
    history = df[from_end >= offset + h]
    test = df[(from_end >= offset) & (from_end < offset + h)]
    return history.reset_index(drop=True), test.reset_index(drop=True)


def _window_id(ids: pd.Series, window: int) -> pd.Series:
    """A series id unique per calibration window (ids keep their sort order within one)."""
    return f"w{window:03d}|" + ids.astype(str)


def seasonal_mae(df: pd.DataFrame, season_length: int) -> pd.Series:
    """Per-series in-sample MAE of the seasonal naive forecast (NaN if shorter than a season)."""
    g = df.groupby(ID, sort=False)[Y]
    return df[Y].sub(g.shift(season_length)).abs().groupby(df[ID], sort=False).mean()


def series_scales(df: pd.DataFrame, season_length: int) -> pd.Series:
    """Per-series seasonal-naive MAE, never 0 or NaN (intervals are multiples of it).

    Falls back to the naive MAE for series shorter than a season, then to 1% of the level.
    """
    seasonal = seasonal_mae(df, season_length)
    g = df.groupby(ID, sort=False)[Y]
    naive = df[Y].sub(g.shift(1)).abs().groupby(df[ID], sort=False).mean()
    level = df[Y].abs().groupby(df[ID], sort=False).mean() * 0.01
    scale = seasonal.where(seasonal > 0, naive)
    scale = scale.where(scale > 0, level)
    return scale.where(scale > 0, 1e-6).astype(float)


def window_scales(values: np.ndarray, season_length: int) -> np.ndarray:
    """:func:`series_scales` of each row of a gap-free ``(N, n)`` array, without pandas."""

    def mean_abs(diff: np.ndarray) -> np.ndarray:
        if diff.shape[1] == 0:
            return np.full(diff.shape[0], np.nan)
        return np.abs(diff).mean(axis=1)

    seasonal = mean_abs(values[:, season_length:] - values[:, :-season_length])
    naive = mean_abs(np.diff(values, axis=1))
    level = np.abs(values).mean(axis=1) * 0.01
    with np.errstate(invalid="ignore"):
        scale = np.where(seasonal > 0, seasonal, naive)
        scale = np.where(scale > 0, scale, level)
        return np.where(scale > 0, scale, 1e-6).astype(float)


def enforce_quantiles(values: np.ndarray, nonnegative: bool) -> np.ndarray:
    """Clip at 0 (demand) and make columns ordered by quantile non-crossing."""
    out = np.maximum(values, 0.0) if nonnegative else values
    return np.maximum.accumulate(out, axis=1)


def subset_series(df: pd.DataFrame, max_series: int | None) -> pd.DataFrame:
    """At most ``max_series`` series, evenly spaced over the sorted ids (deterministic)."""
    ids = df[ID].unique()
    if max_series is None or len(ids) <= max_series:
        return df
    keep = np.sort(ids)[np.linspace(0, len(ids) - 1, max_series).round().astype(int)]
    return df[df[ID].isin(keep)].reset_index(drop=True)


# An ewm feature reads every row before it, with weight (1 - alpha) ** age: rows older than a
# window's tail may be dropped when that weight is below float noise.
_EWM_NEGLIGIBLE_WEIGHT = 1e-15


def _reads_only_tail(features: FeaturesConfig, tail: int) -> bool:
    """Whether every feature at a series' end depends on its last ``tail`` rows only, given the
    target as it is (no target transform fitted on the rows)."""
    if [t.type for t in features.target_transforms] != ["local_standard_scaler"]:
        return False
    for specs in features.lag_transforms.values():
        for s in specs:
            if s.type == "expanding_mean":
                return False
            if s.type == "ewm" and (1 - float(s.kwargs["alpha"])) ** tail > _EWM_NEGLIGIBLE_WEIGHT:
                return False
    return True


def _without_target_transforms(fc: MLForecast) -> MLForecast:
    """The fitted pipeline fed with targets already transformed (shares the fitted models)."""
    out = copy.copy(fc)
    out.ts = copy.copy(fc.ts)
    out.ts.target_transforms = None
    return out


def fit_members(config: ForecastConfig, data: pd.DataFrame) -> list[MLForecast]:
    return [build_mlforecast(config, m).fit(data, static_features=[]) for m in config.member_list]


def predict_members(
    members: list[MLForecast], h: int, new_df: pd.DataFrame | None = None
) -> pd.DataFrame:
    """unique_id, ds, and the mean of the members' point forecasts as ``MODEL_NAME``."""
    out: pd.DataFrame | None = None
    for i, fc in enumerate(members):
        pred = fc.predict(h) if new_df is None else fc.predict(h, new_df=new_df)
        pred = pred.rename(columns={MODEL_NAME: f"m{i}"})
        out = pred if out is None else out.merge(pred, on=[ID, DS], how="inner")
    assert out is not None
    cols = [f"m{i}" for i in range(len(members))]
    out[MODEL_NAME] = out[cols].mean(axis=1)
    return out.drop(columns=cols)


class DemandForecaster:
    """Fit on a long frame (unique_id, ds, y); predict p50/p90/p95 (per ``config.quantiles``).

    The point forecast is the mean of the configured LightGBM members (``config.members``; one
    by default), each an mlforecast pipeline of its own features and target transforms."""

    def __init__(self, config: ForecastConfig) -> None:
        self.config = config
        self.fc_: list[MLForecast] | None = None
        self.residual_quantiles_: np.ndarray | None = None  # (calibration_h, n_quantiles)
        self.scales_: pd.Series | None = None
        self.train_end_: pd.Timestamp | None = None

    @property
    def quantile_columns(self) -> list[str]:
        return self.config.quantile_columns

    @property
    def min_history(self) -> int:
        """Rows a series needs before every feature is defined."""
        return max(
            features_min_history(m.features or self.config.features, self.config.season_length)
            for m in self.config.member_list
        )

    @property
    def series_(self) -> list[str]:
        return [] if self.scales_ is None else list(self.scales_.index)

    def fit(self, df: pd.DataFrame) -> DemandForecaster:
        cfg = self.config
        data = prepare_series(df, cfg.freq)
        sizes = data.groupby(ID, sort=False)[ID].transform("size")
        data = data[sizes >= cfg.min_series_length].reset_index(drop=True)
        if data.empty:
            raise ForecastingError(
                f"no series with at least {cfg.min_series_length} rows to train on"
            )
        self.residual_quantiles_ = self._calibrate(subset_series(data, cfg.intervals.max_series))
        self.fc_ = fit_members(cfg, data)
        self.scales_ = series_scales(data, cfg.season_length)
        self.train_end_ = data[DS].max()
        return self

    def _calibrate(self, data: pd.DataFrame) -> np.ndarray:
        cfg = self.config
        h, n, step = cfg.calibration_h, cfg.intervals.n_windows, cfg.calibration_step
        first_history, _ = holdout_split(data, (n - 1) * step, h)
        sizes = first_history.groupby(ID, sort=False)[ID].transform("size")
        first_history = first_history[sizes >= self.min_history + 1]
        if first_history.empty:
            raise ForecastingError(
                f"series too short to calibrate intervals: need {self.min_history + 1} rows "
                f"before {n} windows of {h} steps ({step} apart)"
            )
        members = fit_members(cfg, first_history)
        calibrated = first_history[ID].unique()
        histories, tests = [], []
        for w in range(n):
            history, test = holdout_split(data, w * step, h)
            # Each (series, window) becomes its own series, so one recursive predict covers
            # all windows (12x fewer feature-update steps); per-series state (target scaler,
            # lags) is computed from that window's history exactly as in a separate call.
            history = history[history[ID].isin(calibrated)]
            histories.append(history.assign(**{ID: _window_id(history[ID], w)}))
            tests.append(test.assign(**{ID: _window_id(test[ID], w)}))
        history, test = pd.concat(histories, ignore_index=True), pd.concat(tests, ignore_index=True)
        point = predict_members(members, h, new_df=history)
        # Series without seasonal variation (constant, all-zero) would divide by ~0 and
        # swamp the pooled quantiles: they are scored but not used for calibration.
        scales = seasonal_mae(history, cfg.season_length)
        scales = scales[scales > 0]
        merged = test.merge(point, on=[ID, DS], how="inner")
        merged = merged[merged[ID].isin(scales.index)]
        resid = pd.DataFrame(
            {
                "step": merged.groupby(ID, sort=False).cumcount().to_numpy(),
                "r": ((merged[Y] - merged[MODEL_NAME]) / merged[ID].map(scales)).to_numpy(),
            }
        ).dropna()
        if resid.empty:
            raise ForecastingError("no series with seasonal variation to calibrate intervals on")
        table = np.zeros((h, len(cfg.quantiles)))
        for k, r in resid.groupby("step")["r"]:
            # "higher": the conservative empirical quantile, as split conformal prescribes
            table[int(k)] = np.quantile(r.to_numpy(), cfg.quantiles, method="higher")
        return np.maximum.accumulate(table, axis=1)

    def _check_fitted(self) -> None:
        if self.fc_ is None or self.residual_quantiles_ is None or self.scales_ is None:
            raise ForecastingError("forecaster is not fitted")

    def _calibrated_horizon(self, h: int | None) -> int:
        """``h`` (default: the configured horizon), checked against the calibrated horizon."""
        self._check_fitted()
        assert self.residual_quantiles_ is not None
        h = h or self.config.horizon
        if h > self.residual_quantiles_.shape[0]:
            raise ValueError(
                f"h={h} exceeds the calibrated horizon {self.residual_quantiles_.shape[0]}"
            )
        return h

    def predict(
        self, h: int | None = None, history: pd.DataFrame | None = None, with_point: bool = False
    ) -> pd.DataFrame:
        """Forecast ``h`` steps after the end of the training data, or after the end of each
        series in ``history`` (newer data, same model). Series in ``history`` shorter than
        ``min_history`` are skipped. Returns unique_id, ds, one column per quantile and, with
        ``with_point``, ``yhat``: the members' mean forecast before calibration."""
        h = self._calibrated_horizon(h)
        assert self.fc_ is not None and self.residual_quantiles_ is not None
        if history is None:
            point = predict_members(self.fc_, h)
            scales = self.scales_
        else:
            hist = prepare_series(history, self.config.freq)
            sizes = hist.groupby(ID, sort=False)[ID].transform("size")
            hist = hist[sizes >= self.min_history].reset_index(drop=True)
            if hist.empty:
                return pd.DataFrame(
                    columns=[ID, DS, *self.quantile_columns, *(["yhat"] if with_point else [])]
                )
            point = predict_members(self.fc_, h, new_df=hist)
            scales = series_scales(hist, self.config.season_length)
        point = point.sort_values([ID, DS], ignore_index=True)
        step = point.groupby(ID, sort=False).cumcount().to_numpy()
        scale = point[ID].map(scales).to_numpy(dtype=float)
        values = point[MODEL_NAME].to_numpy()[:, None] + (
            self.residual_quantiles_[step] * scale[:, None]
        )
        values = enforce_quantiles(values, self.config.nonnegative)
        out = point[[ID, DS]].copy()
        out[self.quantile_columns] = values
        if with_point:
            yhat = point[MODEL_NAME].to_numpy()
            out["yhat"] = np.maximum(yhat, 0.0) if self.config.nonnegative else yhat
        return out

    def predict_windows(
        self, values: np.ndarray, starts: np.ndarray, h: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forecast ``h`` steps after each of ``N`` regular windows: ``values (N, n)`` holds
        ``n`` consecutive observations per window (no gaps, no NaN), window ``i`` starting at
        ``starts[i]``. Returns ``(quantiles (N, h, n_quantiles), point (N, h))``, NaN
        everywhere when ``n < min_history`` (the series ``predict`` would skip).

        The numbers of ``predict(h, history=..., with_point=True)`` on the windows as series of
        their own, without its pandas preparation (string ids, sort, dedupe, grouped scales):
        the capacity twin forecasts ~10^5 (service, origin) windows per call, where that
        preparation cost more than the recursive predict itself."""
        h = self._calibrated_horizon(h)
        assert self.fc_ is not None and self.residual_quantiles_ is not None
        values = np.asarray(values, dtype=float)
        n_windows, n = values.shape
        n_q = len(self.config.quantiles)
        if n < self.min_history or n_windows == 0:
            return np.full((n_windows, h, n_q), np.nan), np.full((n_windows, h), np.nan)
        if np.isnan(values).any():
            raise ValueError("windows must not contain NaN")
        members, rows, mean, std = self.fc_, values, None, None
        tail = self.min_history
        if all(_reads_only_tail(m.features, tail) for m in self.config.member_list):
            # The per-window standard scaler applied here, so that mlforecast computes its
            # features over the last ``min_history`` rows instead of the whole window (the
            # scaler's statistics need every row, the features do not): about half the work.
            # coreforecast's scaler: population std, 1 for a constant window.
            mean = values.mean(axis=1)
            std = values.std(axis=1)
            std = np.where(std == 0, 1.0, std)
            rows = (values[:, -tail:] - mean[:, None]) / std[:, None]
            members = [_without_target_transforms(fc) for fc in self.fc_]
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.config.freq)).to_timedelta64()
        first = np.asarray(starts, dtype="datetime64[ns]") + (n - rows.shape[1]) * step
        ds = (first[:, None] + np.arange(rows.shape[1]) * step).reshape(-1)
        # Integer ids in window order: mlforecast keeps that order, so its output reshapes.
        history = pd.DataFrame(
            {
                ID: np.repeat(np.arange(n_windows, dtype=np.int64), rows.shape[1]),
                DS: ds,
                Y: rows.ravel(),
            }
        )
        pred = predict_members(members, h, new_df=history)
        if not np.array_equal(pred[ID].to_numpy()[::h], np.arange(n_windows)):
            raise ForecastingError("unexpected forecast order from mlforecast")
        point = pred[MODEL_NAME].to_numpy(dtype=float).reshape(n_windows, h)
        if mean is not None:
            point = point * std[:, None] + mean[:, None]
        scale = window_scales(values, self.config.season_length)
        q = point[:, :, None] + self.residual_quantiles_[:h][None, :, :] * scale[:, None, None]
        q = enforce_quantiles(q.reshape(-1, n_q), self.config.nonnegative)
        if self.config.nonnegative:
            point = np.maximum(point, 0.0)
        return q.reshape(n_windows, h, n_q), point

    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        assert self.fc_ is not None and self.residual_quantiles_ is not None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, fc in enumerate(self.fc_):
            fc.save(path / f"mlforecast_{i}")
        state = {
            "format_version": _FORMAT_VERSION,
            "n_members": len(self.fc_),
            "config": self.config.model_dump(mode="json"),
            "residual_quantiles": self.residual_quantiles_.tolist(),
            "scales": {str(k): float(v) for k, v in self.scales_.items()},
            "train_end": None if self.train_end_ is None else self.train_end_.isoformat(),
        }
        (path / _STATE_FILE).write_text(json.dumps(state, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DemandForecaster:
        path = Path(path)
        state = json.loads((path / _STATE_FILE).read_text())
        version = state.get("format_version")
        if version not in (1, _FORMAT_VERSION):
            raise ForecastingError(f"unsupported forecaster format in {path}")
        self = cls(ForecastConfig.model_validate(state["config"]))
        if version == 1:
            self.fc_ = [MLForecast.load(path / "mlforecast")]
        else:
            self.fc_ = [
                MLForecast.load(path / f"mlforecast_{i}") for i in range(state["n_members"])
            ]
        self.residual_quantiles_ = np.asarray(state["residual_quantiles"], dtype=float)
        self.scales_ = pd.Series(state["scales"], dtype=float)
        self.train_end_ = pd.Timestamp(state["train_end"]) if state["train_end"] else None
        return self
