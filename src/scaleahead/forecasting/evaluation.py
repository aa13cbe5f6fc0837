"""Calibration checks of the demand forecaster on real and synthetic 5-minute series.

``python -m scaleahead.forecasting.evaluation`` runs the product backtest (``ml/forecast.yaml``:
rolling origins, seasonal naive, naive and MSTL on the same windows) on the NAB AWS CloudWatch
series (``<shared_data_dir>/nab/realAWSCloudwatch``) and on synthetic demand, and prints MASE,
sMAPE and the empirical coverage of p50/p90/p95 for each (figures quoted in ml/EVALUATION.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaleahead.config import Settings, get_settings
from scaleahead.forecasting.backtest import run_backtest
from scaleahead.forecasting.config import ForecastConfig, ForecastingError, load_config
from scaleahead.forecasting.model import DS, ID, Y


def read_nab_folder(folder: Path, freq: str = "5min") -> pd.DataFrame:
    """NAB CSVs (timestamp,value) -> long frame; timestamps floored onto the ``freq`` grid."""
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise ForecastingError(f"no NAB CSV files in {folder}")
    frames = []
    for path in files:
        raw = pd.read_csv(path)
        ds = pd.to_datetime(raw["timestamp"]).dt.floor(freq)
        frames.append(pd.DataFrame({ID: path.stem, DS: ds, Y: raw["value"].astype(float)}))
    return pd.concat(frames, ignore_index=True)


def synthetic_demand(n_series: int = 30, days: int = 14, seed: int = 3) -> pd.DataFrame:
    from scaleahead.bench.forecast import synthetic_fleet

    return synthetic_fleet(n_series, days, seed)


def coverage_figures(df: pd.DataFrame, config: ForecastConfig) -> dict[str, Any]:
    result = run_backtest(df, config)
    s = result.summary()
    merged = result.forecasts
    out: dict[str, Any] = {
        "n_series": result.n_series,
        "n_windows": result.n_windows,
        "backtest_s": round(result.duration_s, 1),
    }
    for key in ("mase", "smape", "snaive_mase", "snaive_smape", "naive_mase", "mstl_mase"):
        if key in s:
            out[key] = round(s[key], 4)
    for col in ("p50", "p90", "p95"):
        out[f"coverage_{col}"] = round(float(np.mean(merged[Y] <= merged[f"model_{col}"])), 4)
        if "mstl_p50" in merged:
            out[f"mstl_coverage_{col}"] = round(
                float(np.mean(merged[Y] <= merged[f"mstl_{col}"])), 4
            )
    return out


def run(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    settings = settings or get_settings()
    config = load_config(settings=settings)
    nab = read_nab_folder(settings.shared_data_dir / "nab" / "realAWSCloudwatch", config.freq)
    # NAB series are 2-4 weeks long: use all of it; windows spread over a day.
    nab_config = config.model_copy(
        update={
            "max_history_days": None,
            "backtest": config.backtest.model_copy(update={"n_windows": 8, "step_size": 36}),
        }
    )
    synth_config = nab_config
    return {
        "nab_aws": coverage_figures(nab, nab_config),
        "synthetic": coverage_figures(synthetic_demand(), synth_config),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
