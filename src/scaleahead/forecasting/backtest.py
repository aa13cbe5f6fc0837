"""Rolling-origin backtest of the forecaster and of seasonal-naive / naive baselines.

Every model is scored on exactly the same windows: at each origin the forecaster is refitted on
the history before it, the baselines are computed from that same history, and all are evaluated
on the next ``h`` steps. Baseline quantiles are the point forecast plus empirical quantiles of
the baseline's own in-sample errors at that step, so coverage and pinball compare like with like.
The statistical baseline (statsforecast MSTL, ``backtest.statistical``) gives its own prediction
intervals: p90 is the upper bound of its 80% interval, p95 of its 90% interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaleahead.forecasting import metrics as M
from scaleahead.forecasting.config import ForecastConfig, ForecastingError, quantile_column
from scaleahead.forecasting.model import (
    DS,
    ID,
    DemandForecaster,
    Y,
    enforce_quantiles,
    holdout_split,
    prepare_series,
)

MODELS = ("model", "snaive", "naive")
STAT = "mstl"


@dataclass
class BacktestResult:
    metrics: dict[str, dict[str, float]]  # model -> metric -> value
    forecasts: pd.DataFrame  # unique_id, ds, window, cutoff, y, <model>_<pXX>
    n_windows: int
    h: int
    n_series: int
    duration_s: float
    windows: list[str] = field(default_factory=list)  # cutoffs (latest ds of the history)

    def summary(self) -> dict[str, float]:
        """Flat metrics: the forecaster's unprefixed, baselines' as ``snaive_mase`` etc."""
        flat: dict[str, float] = {}
        for model, values in self.metrics.items():
            prefix = "" if model == "model" else f"{model}_"
            flat.update({f"{prefix}{k}": v for k, v in values.items()})
        return flat


def baseline_forecasts(
    history: pd.DataFrame,
    h: int,
    season_length: int,
    quantiles: list[float],
    freq: str,
    nonnegative: bool = True,
) -> pd.DataFrame:
    """Seasonal naive and naive forecasts with empirical-error quantiles, per series."""
    cols = [quantile_column(q) for q in quantiles]
    steps = np.arange(1, h + 1)
    rows = []
    for uid, g in history.groupby(ID, sort=False):
        y = g[Y].to_numpy(dtype=float)
        n = y.size
        ds = pd.date_range(g[DS].iloc[-1], periods=h + 1, freq=freq)[1:]
        out = {ID: uid, DS: ds}
        for name in ("snaive", "naive"):
            m = season_length if name == "snaive" and n > season_length else 1
            if name == "snaive" and m > 1:
                point = y[n - m * np.ceil(steps / m).astype(int) + steps - 1]
                err = y[m:] - y[:-m]
                offsets = np.tile(np.quantile(err, quantiles), (h, 1))
            else:
                point = np.full(h, y[-1])
                offsets = np.vstack(
                    [
                        np.quantile(y[k:] - y[:-k], quantiles)
                        if n > k
                        else np.zeros(len(quantiles))
                        for k in steps
                    ]
                )
            # the baseline itself is the p50; only the other quantiles are error-shifted
            offsets[:, [q == 0.5 for q in quantiles]] = 0.0
            values = enforce_quantiles(point[:, None] + offsets, nonnegative)
            out.update({f"{name}_{c}": values[:, i] for i, c in enumerate(cols)})
        rows.append(pd.DataFrame(out))
    return pd.concat(rows, ignore_index=True)


def statistical_forecasts(
    history: pd.DataFrame,
    h: int,
    season_lengths: list[int],
    quantiles: list[float],
    freq: str,
    nonnegative: bool = True,
    max_history: int | None = None,
) -> pd.DataFrame | None:
    """MSTL (statsforecast; AutoETS trend) per series with its prediction intervals as
    quantiles, fitted on the last ``max_history`` rows. Seasons need two full periods in the
    shortest series; None if none fits."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL

    if max_history:
        history = history.groupby(ID, sort=False).tail(max_history)
    shortest = int(history.groupby(ID, sort=False).size().min())
    seasons = [m for m in season_lengths if m > 1 and 2 * m <= shortest]
    if not seasons:
        return None
    upper = [q for q in quantiles if q > 0.5]
    levels = sorted({round((2 * q - 1) * 100) for q in upper})
    sf = StatsForecast(models=[MSTL(season_length=seasons, alias="MSTL")], freq=freq, n_jobs=1)
    fc = sf.forecast(df=history[[ID, DS, Y]], h=h, level=levels)
    cols = []
    for q in quantiles:
        if q == 0.5:
            cols.append(fc["MSTL"].to_numpy())
        elif q > 0.5:
            cols.append(fc[f"MSTL-hi-{round((2 * q - 1) * 100)}"].to_numpy())
        else:
            cols.append(fc[f"MSTL-lo-{round((1 - 2 * q) * 100)}"].to_numpy())
    values = enforce_quantiles(np.column_stack(cols), nonnegative)
    out = fc[[ID, DS]].copy()
    out[ID] = out[ID].astype(str)
    for i, q in enumerate(quantiles):
        out[f"{STAT}_{quantile_column(q)}"] = values[:, i]
    return out


def evaluate(
    forecasts: pd.DataFrame,
    histories: dict[tuple[int, str], np.ndarray],
    quantiles: list[float],
    season_length: int,
    models: tuple[str, ...] = MODELS,
) -> dict[str, dict[str, float]]:
    """Metrics per model, averaged over (series, window) pairs; NaN pairs (zero scale) skipped.

    MASE and sMAPE score the p50; pinball is scaled by the seasonal-naive MAE; coverage is the
    share of actuals at or below each upper quantile.
    """
    cols = [quantile_column(q) for q in quantiles]
    per_pair: dict[str, list[dict[str, float]]] = {m: [] for m in models}
    for (window, uid), g in forecasts.groupby(["window", ID], sort=False):
        y_train = histories[(int(window), str(uid))]
        y = g[Y].to_numpy()
        for model in models:
            p50 = g[f"{model}_p50"].to_numpy()
            row = {
                "mase": M.mase(y, p50, y_train, season_length),
                "smape": M.smape(y, p50),
            }
            for q, c in zip(quantiles, cols, strict=True):
                q_hat = g[f"{model}_{c}"].to_numpy()
                row[f"pinball_{c}"] = M.scaled_pinball_loss(y, q_hat, q, y_train, season_length)
                if q > 0.5:
                    row[f"coverage_{c}"] = M.coverage(y, q_hat)
            per_pair[model].append(row)
    return {
        model: {k: float(v) for k, v in pd.DataFrame(rows).mean(skipna=True).items()}
        for model, rows in per_pair.items()
    }


def run_backtest(
    df: pd.DataFrame,
    config: ForecastConfig,
    make_forecaster: Callable[[ForecastConfig], DemandForecaster] = DemandForecaster,
) -> BacktestResult:
    """Refit the forecaster at ``config.backtest.n_windows`` rolling origins and score it and
    the baselines on the ``horizon`` steps after each origin."""
    started = time.perf_counter()
    h, step, n = config.horizon, config.backtest_step, config.backtest.n_windows
    data = prepare_series(df, config.freq)
    parts: list[pd.DataFrame] = []
    histories: dict[tuple[int, str], np.ndarray] = {}
    cutoffs: list[str] = []
    for w in range(n):  # earliest origin first
        history, test = holdout_split(data, (n - 1 - w) * step, h)
        forecaster = make_forecaster(config).fit(history)
        history = history[history[ID].isin(forecaster.series_)]
        model = forecaster.predict(h).rename(columns=lambda c: f"model_{c}" if c[0] == "p" else c)
        base = baseline_forecasts(
            history, h, config.season_length, config.quantiles, config.freq, config.nonnegative
        )
        merged = test.merge(model, on=[ID, DS]).merge(base, on=[ID, DS])
        if config.backtest.statistical.enabled:
            stat = statistical_forecasts(
                history,
                h,
                config.backtest.statistical.season_lengths or [config.season_length],
                config.quantiles,
                config.freq,
                config.nonnegative,
                config.backtest.statistical.max_history,
            )
            if stat is not None:
                merged = merged.merge(stat, on=[ID, DS], how="left")
        cutoff = history.groupby(ID, sort=False)[DS].max()
        merged.insert(2, "window", w)
        merged.insert(3, "cutoff", merged[ID].map(cutoff))
        parts.append(merged)
        cutoffs.append(str(history[DS].max()))
        for uid, g in history.groupby(ID, sort=False):
            histories[(w, str(uid))] = g[Y].to_numpy(dtype=float)
    forecasts = pd.concat(parts, ignore_index=True)
    if forecasts.empty:
        raise ForecastingError("backtest produced no forecasts (series too short?)")
    return BacktestResult(
        metrics=evaluate(
            forecasts,
            histories,
            config.quantiles,
            config.season_length,
            MODELS
            + (
                (STAT,)
                if f"{STAT}_p50" in forecasts and forecasts[f"{STAT}_p50"].notna().all()
                else ()
            ),
        ),
        forecasts=forecasts,
        n_windows=n,
        h=h,
        n_series=int(forecasts[ID].nunique()),
        duration_s=time.perf_counter() - started,
        windows=cutoffs,
    )
