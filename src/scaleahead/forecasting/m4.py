"""M4 Hourly benchmark: the product forecaster (``ml/forecast_hourly.yaml``) against the
competition's published entries and the project's own baselines, scored as in the competition.

* Data: ``Hourly-train.csv`` / ``Hourly-test.csv`` (wide: ``V1`` id, values padded with empty
  cells). M4 gives no timestamps that matter here: every series gets an hourly index from a fixed
  origin (the profile uses no calendar features).
* Metrics: sMAPE (mean of 200|y-f|/(|y|+|f|)), MASE scaled by the in-sample seasonal-naive (lag
  24) MAE, both averaged over series; OWA = ½(sMAPE/18.383 + MASE/2.395) (Naive2 on Hourly).
* ``validation=True`` never reads the test file: the last ``48 * (k + 1)`` observations of each
  training series are held out for window k, and the same pipeline is scored on them. That is
  how the profile was chosen (see ``ml/EVALUATION.md``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaleahead.forecasting import metrics as M
from scaleahead.forecasting.config import ForecastConfig, ForecastingError
from scaleahead.forecasting.model import DS, ID, DemandForecaster, Y, holdout_split

HORIZON, SEASON = 48, 24
NAIVE2 = {"smape": 18.383, "mase": 2.395}
ORIGIN = pd.Timestamp("2000-01-01")
# Published Hourly results (sMAPE, MASE, OWA), from the shared data README.
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "Best Hourly entry (Doornik et al.)": (8.913, 0.801, 0.410),
    "Overall M4 winner ES-RNN (Smyl)": (9.328, 0.893, 0.440),
    "Nixtla mlforecast LightGBM reference": (10.207, 0.862, 0.458),
    "Seasonal naive (published)": (13.912, 1.193, 0.627),
}


def read_wide(path: Path) -> pd.DataFrame:
    """M4 wide CSV -> long (unique_id, ds, y), hourly ds from ``ORIGIN``."""
    if not path.exists():
        raise ForecastingError(f"M4 file {path} not found")
    wide = pd.read_csv(path)
    ids = wide.iloc[:, 0].astype(str).to_numpy()
    values = wide.iloc[:, 1:].to_numpy(dtype=float)
    frames = []
    for uid, row in zip(ids, values, strict=True):
        y = row[~np.isnan(row)]
        ds = pd.date_range(ORIGIN, periods=len(y), freq="h")
        frames.append(pd.DataFrame({ID: uid, DS: ds, Y: y}))
    return pd.concat(frames, ignore_index=True)


def read_test(path: Path, train: pd.DataFrame) -> pd.DataFrame:
    """The test values, timestamped right after each series' last training hour."""
    test = read_wide(path)
    last = train.groupby(ID, sort=False)[DS].max()
    offset = test[ID].map(last) + pd.Timedelta("1h") - ORIGIN
    test[DS] = test[DS] + offset
    return test


def owa(smape: float, mase: float) -> float:
    return 0.5 * (smape / NAIVE2["smape"] + mase / NAIVE2["mase"])


def score(train: pd.DataFrame, test: pd.DataFrame, forecasts: pd.DataFrame, column: str) -> dict:
    """Competition sMAPE / MASE (series means) and OWA of ``forecasts[column]``."""
    merged = test.merge(forecasts[[ID, DS, column]], on=[ID, DS], how="left")
    if merged[column].isna().any():
        missing = merged.loc[merged[column].isna(), ID].nunique()
        raise ForecastingError(f"{column}: no forecast for {missing} series")
    history = {uid: g[Y].to_numpy() for uid, g in train.groupby(ID, sort=False)}
    smapes, mases = [], []
    for uid, g in merged.groupby(ID, sort=False):
        y, f = g[Y].to_numpy(), g[column].to_numpy()
        smapes.append(M.smape(y, f))
        mases.append(M.mase(y, f, history[uid], SEASON))
    s, m = float(np.mean(smapes)), float(np.nanmean(mases))
    return {"smape": s, "mase": m, "owa": owa(s, m)}


def seasonal_naive(train: pd.DataFrame, h: int = HORIZON, m: int = SEASON) -> pd.DataFrame:
    rows = []
    for uid, g in train.groupby(ID, sort=False):
        y = g[Y].to_numpy()
        steps = np.arange(h)
        ds = pd.date_range(g[DS].iloc[-1], periods=h + 1, freq="h")[1:]
        rows.append(pd.DataFrame({ID: uid, DS: ds, "snaive": y[len(y) - m + steps % m]}))
    return pd.concat(rows, ignore_index=True)


def mstl(train: pd.DataFrame, h: int = HORIZON, n_jobs: int = 2) -> pd.DataFrame:
    """statsforecast MSTL with daily and weekly seasonality (AutoETS on the trend)."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL

    sf = StatsForecast(models=[MSTL(season_length=[SEASON, 7 * SEASON])], freq="h", n_jobs=n_jobs)
    return sf.forecast(df=train, h=h).rename(columns={"MSTL": "mstl"})


@dataclass
class Split:
    name: str
    train: pd.DataFrame
    test: pd.DataFrame


def splits(data: Path, validation: bool, windows: int = 2) -> list[Split]:
    train = read_wide(data / "Hourly-train.csv")
    if not validation:
        return [Split("test", train, read_test(data / "Hourly-test.csv", train))]
    out = []
    for k in range(windows):
        hist, test = holdout_split(train, k * HORIZON, HORIZON)
        out.append(Split(f"validation_{k}", hist, test))
    return out


def run(
    data: Path,
    config: ForecastConfig,
    validation: bool = False,
    baselines: bool = True,
) -> dict[str, Any]:
    """Fit the product forecaster on each split, forecast 48 h, score it and the baselines.

    Figures: ``smape``, ``mase``, ``owa`` (the point forecast ``yhat``: the members' mean),
    ``p50_*`` (the calibrated median), ``snaive_*``, ``mstl_*``, timings, p90/p95 coverage."""
    if config.horizon < HORIZON:
        config = config.model_copy(update={"horizon": HORIZON})
    figures: dict[str, Any] = {}
    per_split: list[dict[str, float]] = []
    for split in splits(data, validation):
        f: dict[str, float] = {}
        started = time.perf_counter()
        forecaster = DemandForecaster(config).fit(split.train)
        f["fit_s"] = time.perf_counter() - started
        started = time.perf_counter()
        pred = forecaster.predict(HORIZON, with_point=True)
        f["predict_s"] = time.perf_counter() - started
        for key, value in score(split.train, split.test, pred, "yhat").items():
            f[key] = value
        for key, value in score(split.train, split.test, pred, "p50").items():
            f[f"p50_{key}"] = value
        merged = split.test.merge(pred, on=[ID, DS])
        for col in ("p90", "p95"):
            f[f"coverage_{col}"] = float((merged[Y] <= merged[col]).mean())
        if baselines:
            for key, value in score(
                split.train, split.test, seasonal_naive(split.train), "snaive"
            ).items():
                f[f"snaive_{key}"] = value
            started = time.perf_counter()
            stat = mstl(split.train)
            f["mstl_s"] = time.perf_counter() - started
            for key, value in score(split.train, split.test, stat, "mstl").items():
                f[f"mstl_{key}"] = value
        per_split.append(f)
        if validation:
            figures.update({f"{split.name}_{k}": round(v, 4) for k, v in f.items()})
    for key in per_split[0]:
        figures[key] = round(float(np.mean([f[key] for f in per_split])), 4)
    figures["n_series"] = int(pred[ID].nunique())
    figures["horizon"] = HORIZON
    figures["split"] = "validation (windows inside Hourly-train)" if validation else "test"
    figures["members"] = ",".join(m.name for m in config.member_list)
    return figures


def table(figures: dict[str, Any]) -> str:
    """The result beside the published entries and this run's baselines."""
    rows: list[tuple[str, float, float, float]] = [
        (name, *values) for name, values in PUBLISHED.items()
    ]
    ours = [("scaleahead LightGBM ensemble (this run)", "")]
    ours += [("scaleahead calibrated p50 (this run)", "p50_")]
    if "snaive_smape" in figures:
        ours += [
            ("seasonal naive (this run)", "snaive_"),
            ("MSTL statsforecast (this run)", "mstl_"),
        ]
    for label, prefix in ours:
        rows.append(
            (label, figures[f"{prefix}smape"], figures[f"{prefix}mase"], figures[f"{prefix}owa"])
        )
    width = max(len(r[0]) for r in rows)
    lines = [f"M4 Hourly ({figures['split']}, {figures['n_series']} series, h=48)"]
    lines.append(f"{'entry':<{width}}  {'sMAPE':>7}  {'MASE':>6}  {'OWA':>6}")
    for label, s, m, o in sorted(rows, key=lambda r: r[3]):
        lines.append(f"{label:<{width}}  {s:7.3f}  {m:6.3f}  {o:6.3f}")
    return "\n".join(lines)
