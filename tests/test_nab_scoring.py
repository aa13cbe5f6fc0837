"""NAB scoring against hand-computed cases, and the null / perfect reference points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaleahead.anomaly.nab import (
    PROFILES,
    file_score,
    file_weights,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    sweep,
    window_indices,
)

STD = PROFILES["standard"]


def S(y: float) -> float:  # noqa: N802 - the README's name
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def test_scaled_sigmoid_values() -> None:
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == pytest.approx(0.0)
    assert float(scaled_sigmoid(-0.5)) == pytest.approx(0.84828, abs=1e-5)
    assert float(scaled_sigmoid(1.0)) == pytest.approx(-0.98661, abs=1e-5)
    assert float(scaled_sigmoid(3.5)) == -1.0


def test_probation_length() -> None:
    assert probation_length(100) == 15
    assert probation_length(4033) == 604
    assert probation_length(22696) == 750


def test_window_indices_match_rows() -> None:
    import pandas as pd

    ts = pd.Series(pd.date_range("2024-01-01", periods=10, freq="5min").astype(str))
    rows = window_indices(ts, [("2024-01-01 00:10:00.000000", "2024-01-01 00:25:00.000000")])
    assert rows == [(2, 5)]


def test_hand_computed_file() -> None:
    # 100 rows, probation 15; one window [40, 59] (W = 20).
    w = file_weights("f", 100, [(40, 59)])
    scores = np.zeros(100)
    scores[10] = 1.0  # in probation: ignored
    scores[20] = 1.0  # before any window: -A_FP
    scores[45] = 1.0  # in window: S(-(59-45+1)/20) / S(-1)
    scores[50] = 1.0  # later in the same window: not counted (only the best)
    scores[70] = 1.0  # after the window: A_FP * S(|59-70| / 19)
    expected = -0.11 + S(-15 / 20) / S(-1) + 0.11 * S(11 / 19)
    assert file_score(w, scores, 0.5, STD) == pytest.approx(expected, abs=1e-12)
    best, _ = sweep([(w, scores)], STD)
    assert best.raw == pytest.approx(expected, abs=1e-12)
    assert (best.tp, best.fp, best.fn) == (1, 2, 0)


def test_missed_window_costs_a_fn_and_threshold_is_optimised() -> None:
    w = file_weights("f", 100, [(40, 59)])
    scores = np.zeros(100)
    scores[30] = 0.9  # FP before the window, higher score than the TP
    scores[41] = 0.6  # TP, early in the window
    best, table = sweep([(w, scores)], PROFILES["reward_low_FN_rate"])
    by_threshold = {round(r.threshold, 3): r.raw for r in table}
    assert by_threshold[1.1] == pytest.approx(-2.0)  # nothing detected: -A_FN
    assert by_threshold[0.9] == pytest.approx(-2.0 - 0.11)
    tp = S(-(59 - 41 + 1) / 20) / S(-1)
    assert by_threshold[0.6] == pytest.approx(-0.11 + tp)
    assert best.threshold == pytest.approx(0.6)


def test_null_scores_zero_and_perfect_scores_hundred() -> None:
    files = [
        (file_weights("a", 200, [(60, 79), (150, 169)]), None),
        (file_weights("b", 300, []), None),
        (file_weights("c", 120, [(30, 45)]), None),
    ]
    perfect = []
    null = []
    for w, _ in files:
        s = np.zeros(len(w.window))
        for k in {int(x) for x in w.window if x >= 0}:
            s[np.flatnonzero(w.window == k)[0]] = 1.0
        perfect.append((w, s))
        null.append((w, np.full(len(w.window), 0.5)))
    for profile in PROFILES.values():
        assert score_corpus(perfect, profile).score == pytest.approx(100.0)
        assert score_corpus(null, profile).score == pytest.approx(0.0)


def test_one_threshold_over_the_corpus() -> None:
    # File a's detection needs threshold <= 0.4; file b then adds an FP at 0.45.
    wa = file_weights("a", 100, [(40, 59)])
    wb = file_weights("b", 100, [])
    sa = np.zeros(100)
    sa[40] = 0.4
    sb = np.zeros(100)
    sb[50] = 0.45
    best, _ = sweep([(wa, sa), (wb, sb)], STD)
    assert best.threshold == pytest.approx(0.4)
    assert best.raw == pytest.approx(1.0 - 0.11)
    result = score_corpus([(wa, sa), (wb, sb)], STD)
    assert result.score == pytest.approx(100 * (0.89 + 1.0) / 2.0)
