"""One detection per incident: after a row reaches a level, the next rows are damped (causal).

Shared by the detector's statistics and the discords (the NAB rule rewards the earliest
detection of a window and charges every extra one outside it)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def suppress(score: np.ndarray, above: float, rows: int, factor: float) -> np.ndarray:
    """After a row reaches ``above``, damp the next ``rows`` rows by ``factor`` (causal)."""
    out = score.copy()
    if rows <= 0:
        return out
    hits = np.flatnonzero(score >= above)
    until = -1
    for i in hits:
        if i <= until:
            out[i] = score[i] * factor
            continue
        until = i + rows
        end = min(until + 1, len(out))
        out[i + 1 : end] = score[i + 1 : end] * factor
    return out


def rest_below_record(score: np.ndarray, rows: int) -> np.ndarray:
    """Keep a row's score only where it beats every score of the previous ``rows`` rows (causal).

    The rest for a score joined from parts that each rest on their own: one part's detection
    does not silence another's, so one incident could fire once per part. Needs no level: within
    ``rows`` of a score only a higher one (the incident growing) is reported again."""
    score = np.asarray(score, dtype=float)
    if rows <= 0 or not len(score):
        return score.copy()
    record = pd.Series(score).shift(1).rolling(rows, min_periods=1).max().to_numpy()
    return np.where(score > np.nan_to_num(record, nan=-np.inf), score, 0.0)
