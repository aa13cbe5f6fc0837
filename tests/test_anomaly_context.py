"""The contextual detector: causality, range, learning a sequence, resting after an incident."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaleahead.anomaly.context import (
    ContextConfig,
    ContextDetector,
    context_scores,
    warmup_range,
)
from scaleahead.anomaly.detector import DetectorConfig, detect


def _periodic(n: int = 1500, seed: int = 0) -> np.ndarray:
    """A noisy repeating pattern of period 24 (a daily cycle at one-hour steps)."""
    rng = np.random.default_rng(seed)
    return 10 + 5 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 0.2, n)


def test_prefix_scores_equal_full_run_scores() -> None:
    x = _periodic()
    x[1100:1110] += 12
    full = context_scores(x)
    for cut in (120, 600, 601, 1105, 1400):
        np.testing.assert_array_equal(context_scores(x[:cut]), full[:cut])


def test_scores_in_unit_interval_and_zero_during_warm_up() -> None:
    x = _periodic(seed=1)
    x[900] = 40.0
    score = context_scores(x)
    assert score.min() >= 0.0 and score.max() <= 1.0
    assert (score[: ContextConfig().warm_rows] == 0).all()


def test_learned_sequence_is_quiet_and_a_break_is_flagged() -> None:
    x = _periodic(seed=2)
    x[1200:1230] = 25.0  # far above the learned cycle
    score = context_scores(x)
    assert score[1200:1203].max() >= 0.75
    assert score[700:1200].max() < score[1200:1203].max()


def test_rests_after_an_incident() -> None:
    cfg = ContextConfig(rest_rows=50)
    x = _periodic(seed=3)
    x[1000] = 40.0
    x[1020] = -30.0  # a second spike inside the rest period is not reported
    score = context_scores(x, cfg)
    first = int(np.argmax(score[950:] >= cfg.base_threshold)) + 950
    assert score[first + 1 : first + cfg.rest_rows].max() == 0.0


def test_facts_outside_the_range_are_new_facts() -> None:
    detector = ContextDetector((0.0, 7.0), ContextConfig(value_bits=3))
    inside = detector.facts(3.0)
    above = detector.facts(20.0)
    below = detector.facts(-5.0)
    assert len(inside) == 3 and set(inside) == {0 * 2 + 1, 1 * 2 + 1, 2 * 2 + 0}
    assert len(above) == 5  # level 20 needs 5 bits
    assert set(below) - set(detector.facts(5.0))  # a sign fact marks values below the range
    assert warmup_range(np.array([1.0, 3.0]), 1.0) == (-1.0, 5.0)


def test_detector_with_context_is_causal_and_in_range() -> None:
    n = 1200
    ts = pd.Series(pd.date_range("2024-01-01", periods=n, freq="5min"))
    x = _periodic(n, seed=4)
    x[900:] += 8
    cfg = DetectorConfig(context=True)
    full = detect(x, ts, cfg)
    assert "context" in full.surprise
    assert full.score.min() >= 0.0 and full.score.max() <= 1.0
    assert full.score[900:905].max() > 0.5
    for cut in (500, 901):
        np.testing.assert_allclose(detect(x[:cut], ts[:cut], cfg).score, full.score[:cut])
