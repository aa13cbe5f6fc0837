"""Discords (left matrix profile): hand-computed distances, causality, a new shape flagged once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaleahead.anomaly.detector import DetectorConfig, detect
from scaleahead.anomaly.discord import DiscordConfig, discord_scores, left_matrix_profile


def _periodic(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10 + 5 * np.sin(2 * np.pi * np.arange(n) / 24) + rng.normal(0, 0.2, n)


def test_left_profile_matches_hand_computed_distances() -> None:
    # m = 2. The window ending at row 3, (0, 1), has an exact earlier twin (rows 0-1); row 4's
    # (1, 0) matches rows 1-2; row 5's (0, 5) is nearest to (0, 1): distance 4. Rows 1 and 2 have
    # no earlier window ending m rows before them.
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 5.0])
    profile = left_matrix_profile(x, (2,))[2]
    assert np.isinf(profile[:3]).all()
    np.testing.assert_allclose(profile[3:], [0.0, 0.0, 4.0], atol=1e-12)
    # m = 3: row 5's (1, 0, 5) against (0, 1, 0) (rows 0-2): sqrt(1 + 1 + 25).
    profile3 = left_matrix_profile(x, (3,))[3]
    assert np.isinf(profile3[:5]).all()
    np.testing.assert_allclose(profile3[5], np.sqrt(27.0))


def test_profile_matches_a_brute_force_search_at_metric_scale() -> None:
    rng = np.random.default_rng(4)
    x = 3e7 + 1e6 * rng.normal(size=300)  # network bytes: the rescale keeps sums conditioned
    m = 8
    got = left_matrix_profile(x, (m,))[m]
    for t in (2 * m - 1, 100, 299):
        windows = [x[j - m + 1 : j + 1] for j in range(m - 1, t - m + 1)]
        expected = min(np.linalg.norm(x[t - m + 1 : t + 1] - w) for w in windows)
        np.testing.assert_allclose(got[t], expected, rtol=1e-9)


def test_scores_are_causal_prefix_equal_and_in_unit_interval() -> None:
    x = _periodic()
    x[1100:1130] += 8
    full = discord_scores(x)
    assert full.min() >= 0.0 and full.max() <= 1.0
    for cut in (100, 151, 700, 1110, 1400):
        np.testing.assert_allclose(discord_scores(x[:cut]), full[:cut], atol=1e-12)


def test_a_new_shape_is_flagged_once_and_the_learned_cycle_is_quiet() -> None:
    cfg = DiscordConfig()
    x = _periodic(seed=1)
    x[1200:1260] = 12.0  # the cycle stops: flat at a level it only ever passed through
    score = discord_scores(x, cfg)
    onset = score[1200:1240]
    assert onset.max() >= 0.5
    first = 1200 + int(np.argmax(onset > 0))
    assert score[first + 1 : first + 1 + cfg.rest_rows].max() == 0.0  # rests after it
    # The noisy cycle before it sets records now and then, none anywhere near the break's.
    assert score[cfg.warm_rows : 1200].max() < onset.max()


def test_detector_joins_discords_by_max() -> None:
    n = 1400
    ts = pd.Series(pd.date_range("2024-01-01", periods=n, freq="5min"))
    x = _periodic(n, seed=2)
    x[1000:1040] = 30.0
    base = detect(x, ts, DetectorConfig())
    joined = detect(x, ts, DetectorConfig(discord=True))
    np.testing.assert_array_equal(joined.surprise["discord"], discord_scores(x))
    np.testing.assert_array_equal(joined.score, np.maximum(base.score, discord_scores(x)))
    assert joined.score[1000:1010].max() >= 0.5
