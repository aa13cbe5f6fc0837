"""Multivariate view per service: IsolationForest over the service's metrics' residual z-scores.

Applies where a service has several metrics (the platform's telemetry: request rate, CPU,
latency); not to single-series NAB files. The forest is fitted on the service's history before
the scored window (causal with respect to that window) and its score is turned into [0, 1] as the
excess over the fitted rows' 99.9th percentile, relative to that percentile's distance from the
median.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest


def residual_z(values: np.ndarray, expected: np.ndarray, window: int = 288) -> np.ndarray:
    resid = pd.Series(np.asarray(values, dtype=float) - np.asarray(expected, dtype=float))
    past = resid.shift(1).rolling(window, min_periods=12)
    med = past.median()
    scale = ((past.quantile(0.75) - past.quantile(0.25)) / 1.349).clip(lower=1e-9)
    return np.nan_to_num(((resid - med) / scale).to_numpy(), nan=0.0)


def service_scores(features: np.ndarray, fit_rows: int, seed: int = 0) -> np.ndarray:
    """Scores in [0, 1] per row: 0 unless the row is more isolated than any fitted row."""
    n = len(features)
    scores = np.zeros(n)
    if features.ndim != 2 or features.shape[1] < 2 or fit_rows < 50 or n <= fit_rows:
        return scores
    clipped = np.clip(features, -50, 50)
    # Pairwise differences make "metrics that usually move together diverged" easy to isolate
    # (axis-parallel trees see joint structure poorly from the raw z-scores alone).
    k = clipped.shape[1]
    pairs = [clipped[:, i] - clipped[:, j] for i in range(k) for j in range(i + 1, k)]
    clipped = np.column_stack([clipped, *pairs])
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(clipped[:fit_rows])
    outlying = -forest.score_samples(clipped)  # higher = more anomalous, ~0.3..0.8
    ref = np.quantile(outlying[:fit_rows], 0.999)
    spread = max(ref - np.median(outlying[:fit_rows]), 1e-9)
    scores[fit_rows:] = np.clip((outlying[fit_rows:] - ref) / spread, 0.0, 1.0)
    return scores
