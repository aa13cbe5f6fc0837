"""NAB scoring (Numenta Anomaly Benchmark v1.1), implemented from the rules in
``../shared/data/README.md`` (and matching NAB's ``sweeper.py``).

Per file: the first ``min(floor(0.15 n), 750)`` rows are probation and not scored. A detection
at row ``i`` inside window ``[L, R]`` of width ``W`` is worth ``A_TP * S(-(R-i+1)/W) / S(-1)``
with ``S(y) = 2/(1+e^{5y}) - 1`` (``-1`` from ``y >= 3``); only the best detection per window
counts and a window without one costs ``-A_FN``. A detection outside every window costs
``A_FP * S(|R_prev - i| / (W_prev - 1))`` after a window and ``-A_FP`` before any window.
One threshold per detector and profile is chosen over the whole corpus (every distinct score
is tried, detections are rows with ``score >= threshold``); the corpus total is normalised
``100 (S - S_null) / (S_perfect - S_null)`` with ``S_perfect = A_TP * windows`` and ``S_null``
the (equally optimised) score of a constant-0.5 detector.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Profile:
    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}

# Published NAB v1.1 detectors on exactly this 35-file subset, standard profile
# (from ../shared/data/README.md).
PUBLISHED_STANDARD: dict[str, float] = {
    "ARTime": 67.9,
    "Numenta HTM": 66.6,
    "CAD OSE": 62.2,
    "KNN CAD": 53.0,
    "Random Cut Forest": 49.5,
    "Twitter ADVec": 36.2,
    "Windowed Gaussian": 22.0,
}

PROBATION_PERCENT = 0.15


def scaled_sigmoid(y: float | np.ndarray) -> np.ndarray:
    """NAB's S(y) = 2 / (1 + e^{5y}) - 1, and -1 for y >= 3 (far past a window)."""
    y = np.asarray(y, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y >= 3.0, -1.0, value)


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that are not scored: min(floor(0.15 n), 750)."""
    return int(min(math.floor(percent * n_rows), percent * 5000))


@dataclass
class FileWeights:
    """Per-row scoring facts of one file that do not depend on the detector.

    ``window`` is the window index a row belongs to (-1 outside windows, -2 in probation);
    ``tp_unit`` the row's TP value for A_TP = 1; ``fp_unit`` its FP value for A_FP = 1
    (negative). ``n_windows`` counts windows with at least one scored row.
    """

    name: str
    window: np.ndarray
    tp_unit: np.ndarray
    fp_unit: np.ndarray
    n_windows: int


def window_indices(timestamps: pd.Series, windows: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Row index ranges [L, R] of the windows (first row >= start, last row <= end)."""
    ts = pd.to_datetime(pd.Series(timestamps)).to_numpy()
    out = []
    for start, end in windows:
        left = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(start)), side="left"))
        right = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(end)), side="right")) - 1
        if right >= left:
            out.append((left, right))
    return out


def file_weights(name: str, n_rows: int, windows: list[tuple[int, int]]) -> FileWeights:
    window = np.full(n_rows, -1, dtype=int)
    tp_unit = np.zeros(n_rows)
    fp_unit = np.full(n_rows, -1.0)  # before any window: -A_FP
    max_tp = float(scaled_sigmoid(-1.0))
    idx = np.arange(n_rows)
    for k, (left, right) in enumerate(sorted(windows)):
        width = float(right - left + 1)
        window[left : right + 1] = k
        inside = idx[left : right + 1]
        tp_unit[left : right + 1] = scaled_sigmoid(-(right - inside + 1) / width) / max_tp
        # Rows after this window (until the next one) are FPs weighted by distance from it.
        stop = n_rows
        later = [w for w in sorted(windows) if w[0] > right]
        if later:
            stop = later[0][0]
        after = idx[right + 1 : stop]
        if len(after):
            denom = width - 1 if width > 1 else 1.0
            fp_unit[right + 1 : stop] = scaled_sigmoid(np.abs(right - after) / denom)
    probation = probation_length(n_rows)
    window[:probation] = -2
    n_windows = len({int(w) for w in window if w >= 0})
    return FileWeights(name, window, tp_unit, fp_unit, n_windows)


@dataclass
class SweepResult:
    threshold: float
    raw: float
    tp: int
    fp: int
    fn: int


def _file_events(weights: FileWeights, scores: np.ndarray):
    """Scored rows of one file: score, window index, TP unit value, FP unit value."""
    scored = weights.window != -2
    scores = np.asarray(scores, dtype=float)
    return scores[scored], weights.window[scored], weights.tp_unit[scored], weights.fp_unit[scored]


def sweep(
    files: list[tuple[FileWeights, np.ndarray]], profile: Profile
) -> tuple[SweepResult, list[SweepResult]]:
    """Try every distinct score as threshold over the whole corpus; return the best and all."""
    all_scores, all_keys, all_vals, is_fp = [], [], [], []
    n_windows = 0
    for file_no, (weights, scores) in enumerate(files):
        s, win, tp_u, fp_u = _file_events(weights, scores)
        n_windows += weights.n_windows
        in_win = win >= 0
        all_scores.append(s)
        all_keys.append(np.where(in_win, file_no * 10_000 + win, -1))
        all_vals.append(np.where(in_win, tp_u * profile.a_tp, fp_u * profile.a_fp))
        is_fp.append(~in_win)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    keys = np.concatenate(all_keys) if all_keys else np.zeros(0, dtype=int)
    vals = np.concatenate(all_vals) if all_vals else np.zeros(0)
    fps = np.concatenate(is_fp) if is_fp else np.zeros(0, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, keys, vals, fps = scores[order], keys[order], vals[order], fps[order]

    total = -profile.a_fn * n_windows
    best_by_window: dict[int, float] = {}
    tp = fp = 0
    results = [SweepResult(1.1, total, 0, 0, n_windows)]
    n = len(scores)
    i = 0
    while i < n:
        threshold = scores[i]
        j = i
        while j < n and scores[j] == threshold:
            if fps[j]:
                total += vals[j]
                fp += 1
            else:
                key = int(keys[j])
                prev = best_by_window.get(key)
                if prev is None:
                    total += vals[j] + profile.a_fn
                    best_by_window[key] = vals[j]
                    tp += 1
                elif vals[j] > prev:
                    total += vals[j] - prev
                    best_by_window[key] = vals[j]
            j += 1
        results.append(SweepResult(float(threshold), total, tp, fp, n_windows - tp))
        i = j
    best = max(results, key=lambda r: r.raw)
    return best, results


def file_score(weights: FileWeights, scores: np.ndarray, threshold: float, profile: Profile):
    """Raw score of one file at a fixed threshold (detections: scored rows >= threshold)."""
    scored = weights.window != -2
    detected = scored & (np.asarray(scores, dtype=float) >= threshold)
    outside = detected & (weights.window == -1)
    total = float(np.sum(weights.fp_unit[outside])) * profile.a_fp
    for k in {int(w) for w in weights.window if w >= 0}:
        hits = detected & (weights.window == k)
        total += profile.a_tp * float(weights.tp_unit[hits].max()) if hits.any() else -profile.a_fn
    return total


@dataclass
class ProfileScore:
    profile: str
    score: float
    threshold: float
    raw: float
    null_raw: float
    perfect_raw: float
    tp: int
    fp: int
    fn: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def score_corpus(files: list[tuple[FileWeights, np.ndarray]], profile: Profile) -> ProfileScore:
    best, _ = sweep(files, profile)
    null_files = [(w, np.full(len(s), 0.5)) for w, s in files]
    null_best, _ = sweep(null_files, profile)
    perfect = profile.a_tp * sum(w.n_windows for w, _ in files)
    denom = perfect - null_best.raw
    score = 100.0 * (best.raw - null_best.raw) / denom if denom else 0.0
    return ProfileScore(
        profile.name,
        score,
        best.threshold,
        best.raw,
        null_best.raw,
        perfect,
        best.tp,
        best.fp,
        best.fn,
    )


@dataclass
class Corpus:
    """The NAB files under a data folder: relative path -> (frame, window row ranges)."""

    root: Path
    files: dict[str, pd.DataFrame] = field(default_factory=dict)
    windows: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Corpus:
        root = Path(root)
        labels = json.loads((root / "windows.json").read_text())
        corpus = cls(root)
        for rel in sorted(labels):
            frame = pd.read_csv(root / rel)
            corpus.files[rel] = frame
            corpus.windows[rel] = window_indices(frame["timestamp"], labels[rel])
        return corpus

    def weights(self) -> dict[str, FileWeights]:
        return {
            rel: file_weights(rel, len(frame), self.windows[rel])
            for rel, frame in self.files.items()
        }


def score_results(
    weights: dict[str, FileWeights], scores: dict[str, np.ndarray]
) -> dict[str, ProfileScore]:
    files = [(weights[rel], np.asarray(scores[rel], dtype=float)) for rel in sorted(weights)]
    return {name: score_corpus(files, profile) for name, profile in PROFILES.items()}
