"""Discords: how far the latest stretch of a series is from everything it has done before.

The *left matrix profile* at row ``t`` for a subsequence length ``m`` is the Euclidean distance
from the window ``x[t-m+1 .. t]`` to its nearest neighbour among the earlier, non-overlapping
windows (those ending at ``t - m`` or before): a row whose recent shape and level the series has
never shown is far from all of them (a *discord*). Only rows ``<= t`` enter the value at ``t``,
so it is causal as NAB requires (the streaming form of DAMP, Lu et al., KDD 2022).

Distances are not z-normalised: a level shift or a spike is as much an anomaly as a new shape,
and flat or quantised metrics (CPU at 0.134 % for days) have no defined z-normalisation.

The profile is turned into a score by novelty: a row scores when its distance exceeds the
largest distance of the previous ``window`` rows (``1 - record / distance``, times ``gain``), the
maximum over the lengths. The first ``warm_rows`` rows neither score nor set a record; after
a scoring row the next ``rest_rows`` rows are silenced, so one incident gives one early
detection.

Cost: every earlier window is compared with every later one, O(n^2) element operations per
series (one vectorised pass per lag, shared by all lengths): 1.5 s for NAB's 22,695-row file,
5 s for the 35 files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaleahead.anomaly.suppression import suppress


@dataclass(frozen=True)
class DiscordConfig:
    # Octaves of subsequence length: 40 min, 80 min, 160 min at 5-minute steps (no single
    # length fits every incident; the maximum over them needs no choice between them).
    lengths: tuple[int, ...] = (8, 16, 32)
    # Rows whose largest distance a row must exceed: one week at 5-minute steps, so the
    # weekday/weekend transitions of service telemetry have set a record before they recur.
    window: int = 2016
    warm_rows: int = 150  # rows scored 0 while the profile has few neighbours to compare with
    rest_rows: int = 150  # rows silenced after a scoring row
    # 1 - record / distance is small (0.07 = 7 % above the record); the gain puts it on the
    # scale of the other parts, which are joined by max under one corpus threshold.
    gain: float = 10.0


def left_matrix_profile(values: np.ndarray, lengths: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per length ``m``: the distance from the window ending at each row to its nearest
    earlier window ending at least ``m`` rows before it (``inf`` where there is none yet)."""
    x = np.nan_to_num(np.asarray(values, dtype=float))
    n = len(x)
    # A constant rescale changes no ratio below; it keeps the running sums well conditioned
    # for metrics in the 1e7 range (network bytes).
    scale = float(np.max(np.abs(x[: min(n, 150)]))) if n else 0.0
    if scale > 0:
        x = x / scale
    best = {m: np.full(n, np.inf) for m in lengths}
    for lag in range(min(lengths), n):
        diff = x[lag:] - x[:-lag]
        # csum[i] = sum of squared differences of the pairs (j, j - lag) for j < lag + i.
        csum = np.concatenate(([0.0], np.cumsum(diff * diff)))
        for m in lengths:
            if lag < m or n - lag < m:
                continue
            # The window ending at row r = lag + i (i >= m - 1) against the one ending at i.
            dist = csum[m:] - csum[:-m]
            target = best[m][lag + m - 1 :]
            np.minimum(target, dist, out=target)
    unit = scale if scale > 0 else 1.0
    return {m: unit * np.sqrt(np.maximum(b, 0.0)) for m, b in best.items()}


def _novelty(distance: np.ndarray, window: int, warm_rows: int) -> np.ndarray:
    """``1 - record / distance`` where the distance beats the largest of the previous
    ``window`` rows, else 0. The first ``warm_rows`` rows set no record: with few earlier
    windows to compare with, their distances say little about the series."""
    dist = np.where(np.isfinite(distance), distance, np.nan)
    dist[:warm_rows] = np.nan
    record = pd.Series(dist).shift(1).rolling(window, min_periods=1).max().to_numpy()
    beats = np.isfinite(dist) & np.isfinite(record) & (record > 0) & (dist > record)
    out = np.zeros(len(dist))
    out[beats] = 1.0 - record[beats] / dist[beats]
    return out


def discord_scores(values: np.ndarray, config: DiscordConfig | None = None) -> np.ndarray:
    """Scores in [0, 1] per row (causal): the gain-scaled novelty of the left matrix profile,
    the maximum over the lengths, silenced for ``rest_rows`` after each scoring row."""
    cfg = config or DiscordConfig()
    if not len(np.asarray(values)):
        return np.zeros(0)
    profiles = left_matrix_profile(values, cfg.lengths)
    novelty = np.max([_novelty(p, cfg.window, cfg.warm_rows) for p in profiles.values()], axis=0)
    # Any row that beats the record starts a rest (novelty is > 0 only there).
    rested = suppress(novelty, np.finfo(float).tiny, cfg.rest_rows, 0.0)
    return np.minimum(1.0, cfg.gain * rested)
