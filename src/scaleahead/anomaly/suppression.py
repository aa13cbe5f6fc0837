"""One detection per incident: after a row reaches a level, the next rows are damped (causal).

Shared by the detector's statistics and the discords (the NAB rule rewards the earliest
detection of a window and charges every extra one outside it)."""

from __future__ import annotations

import numpy as np


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
