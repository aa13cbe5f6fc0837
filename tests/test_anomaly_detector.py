"""The causal detector: prefix property, range, early detection, suppression; the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from scaleahead.anomaly.detector import COMPONENTS, DetectorConfig, detect, suppress
from scaleahead.anomaly.multivariate import service_scores
from scaleahead.anomaly.suppression import rest_below_record


def _series(n: int = 2000, seed: int = 0) -> tuple[pd.Series, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = pd.Series(pd.date_range("2024-01-01", periods=n, freq="5min"))
    day = np.sin(2 * np.pi * np.arange(n) / 288)
    return ts, 100 + 20 * day + rng.normal(0, 2, n)


def test_scores_are_causal_prefix_equal() -> None:
    ts, x = _series()
    x[1500:] += 40
    full = detect(x, ts).score
    for cut in (700, 1501, 1800):
        np.testing.assert_allclose(detect(x[:cut], ts[:cut]).score, full[:cut], atol=1e-12)


def test_scores_in_unit_interval_and_quiet_on_clean_data() -> None:
    ts, x = _series(seed=1)
    score = detect(x, ts).score
    assert score.min() >= 0.0 and score.max() <= 1.0
    assert (score[:150] == 0).all()  # warm-up
    assert score[400:].max() < 0.5


def test_spike_detected_at_onset() -> None:
    ts, x = _series(seed=2)
    x[1200] += 40
    score = detect(x, ts).score
    assert score[1200] > 0.5
    assert np.delete(score, 1200)[300:].max() < score[1200] / 2


def test_level_shift_detected_at_onset() -> None:
    ts, x = _series(seed=5)
    x[1600:] -= 30
    score = detect(x, ts).score
    assert score[1600:1603].max() > 0.5
    assert score[300:1600].max() < 0.25


def test_each_component_alone_runs() -> None:
    ts, x = _series(seed=3)
    x[1000:] *= 1.8
    for name in COMPONENTS:
        detection = detect(x, ts, DetectorConfig(components=(name,)))
        assert set(detection.surprise) == {name}
        # A 1.8x rise is no signal loss; the drop component has its own test.
        if name not in ("likelihood", "level", "drop"):
            assert detection.score[1000:1020].max() > 0
    full = detect(x, ts)
    assert full.score[1000:1010].max() > 0.5


def test_seasonal_component_flags_a_missing_daily_jump() -> None:
    # A daily step up from 20 to 80 between 08:00 and 16:00; on day 6 it does not happen. Each
    # value is ordinary next to its neighbours (residual) and its level is seen every night
    # (level): only the comparison with the same time yesterday sees it.
    rng = np.random.default_rng(12)
    n = 288 * 8
    ts = pd.Series(pd.date_range("2024-01-01", periods=n, freq="5min"))
    tod = np.arange(n) % 288
    x = np.where((tod >= 96) & (tod < 192), 80.0, 20.0) + rng.normal(0, 1, n)
    onset = 6 * 288 + 96
    x[onset : onset + 96] = 20 + rng.normal(0, 1, 96)
    window = slice(onset, onset + 96)
    without = detect(x, ts, DetectorConfig(components=("residual", "level")))
    assert without.score[window].max() == 0.0
    seasonal = detect(x, ts, DetectorConfig(components=("seasonal",)))
    assert seasonal.score[onset] > 0.5  # at the first row the jump is missing
    assert np.delete(seasonal.score, np.arange(onset, onset + 96)).max() == 0.0
    # On by default (what `scaleahead detect` runs); without timestamps there is no period.
    assert detect(x, ts).score[onset] > 0.5
    assert "seasonal" not in detect(x, None, DetectorConfig(components=("seasonal",))).surprise


def test_drop_fires_on_signal_loss_after_a_larger_burst_and_not_on_sparse_counts() -> None:
    ts, x = _series(seed=6)
    x[1000:1003] += 300  # a large burst first: the novelty scores of a later fall stay low
    x[1100:1106] = 0.5  # the service goes dark
    novelty_only = detect(x, ts, DetectorConfig(components=("residual", "level")))
    with_drop = detect(x, ts, DetectorConfig(components=("residual", "level", "drop")))
    assert novelty_only.raw_score[1100] < 0.5
    assert with_drop.raw_score[1100] == 1.0
    assert with_drop.dominant()[1100] == "drop"
    assert with_drop.surprise["drop"][:1100].sum() == 0  # nothing before the fall
    # A low-volume counter whose buckets are often zero: falls to 0 are noise, not outages.
    sparse = np.random.default_rng(8).poisson(0.7, 2000).astype(float)
    quiet = detect(sparse, ts, DetectorConfig(components=("residual", "level", "drop")))
    assert quiet.surprise["drop"].sum() == 0


def test_suppression_keeps_the_first_detection_only() -> None:
    score = np.array([0, 0.9, 0.8, 0.7, 0, 0, 0.6, 0.95])
    out = suppress(score, above=0.5, rows=3, factor=0.0)
    np.testing.assert_allclose(out, [0, 0.9, 0, 0, 0, 0, 0.6, 0])


def test_rest_below_record_keeps_only_rows_that_beat_the_recent_maximum() -> None:
    # rows=3: 0.8 at row 2 beats nothing before it; 0.7 and 0.8 after it are within 3 rows of
    # the 0.8 (a tie does not beat it); 0.9 beats it; 0.5 at row 9 is 4 rows after the 0.9,
    # whose record has expired (rows 6-8 hold 0.3, 0, 0).
    score = np.array([0, 0, 0.8, 0.7, 0.8, 0.9, 0.3, 0, 0, 0.5])
    out = rest_below_record(score, rows=3)
    np.testing.assert_allclose(out, [0, 0, 0.8, 0, 0, 0.9, 0, 0, 0, 0.5])
    np.testing.assert_allclose(rest_below_record(score, rows=0), score)
    assert rest_below_record(np.zeros(0), rows=3).shape == (0,)


def test_joined_parts_detect_one_incident_once() -> None:
    # Each part rests after its own detections only, so a burst of noise that several parts
    # see at slightly different rows would fire more than once; the joined score reports it
    # once per rest period (a larger score within the rest, the incident growing, would pass).
    rng = np.random.default_rng(0)
    ts = pd.Series(pd.date_range("2024-01-01", periods=1500, freq="5min"))
    x = 100 + 20 * np.sin(2 * np.pi * np.arange(1500) / 288) + rng.normal(0, 2, 1500)
    x[1200:1300] += rng.normal(0, 15, 100)
    cfg = DetectorConfig(context=True, discord=True)
    detection = detect(x, ts, cfg)
    statistics = detect(x, ts, DetectorConfig()).score  # the residual and level part alone
    parts = [statistics, detection.surprise["context"], detection.surprise["discord"]]
    unrested = np.maximum.reduce(parts)
    incident = slice(1200, 1200 + cfg.join_rest_rows)
    assert (unrested[incident] == 1.0).sum() >= 2  # the parts fire more than once
    assert (detection.score[incident] > 0).sum() == 1
    assert detection.score[incident].max() == unrested[incident].max()
    fired = np.flatnonzero(detection.score > 0)
    np.testing.assert_allclose(detection.score[fired], unrested[fired])
    for i in fired:  # every reported row beats everything reported in the rest before it
        assert detection.score[i] > unrested[max(0, i - cfg.join_rest_rows) : i].max(initial=0.0)
    # Still causal with the joined rest.
    np.testing.assert_allclose(detect(x[:1250], ts[:1250], cfg).score, detection.score[:1250])


def test_isolation_forest_flags_a_broken_metric_relationship() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(0, 1, 1000)
    features = np.column_stack([base, base + rng.normal(0, 0.1, 1000)])
    features[800] = [3.0, -3.0]  # each metric plausible alone, jointly unheard of
    scores = service_scores(features, fit_rows=500)
    assert (scores[:500] == 0).all()
    assert scores[800] > 0
    assert scores[800] == scores[500:].max()
    assert (np.delete(scores, 800)[500:] > 0).mean() < 0.01


def test_detect_cli_writes_one_row_per_input_row(tmp_path: Path) -> None:
    from scaleahead.cli import app

    ts, x = _series(n=600)
    src = tmp_path / "in" / "folder"
    src.mkdir(parents=True)
    pd.DataFrame({"timestamp": ts.dt.strftime("%Y-%m-%d %H:%M:%S"), "value": x}).to_csv(
        src / "a.csv", index=False
    )
    result = CliRunner().invoke(app, ["detect", str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out" / "folder" / "a.csv")
    assert list(out.columns) == ["timestamp", "value", "anomaly_score"]
    assert len(out) == 600
    assert out["timestamp"].tolist() == ts.dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
    assert out["anomaly_score"].between(0, 1).all()
