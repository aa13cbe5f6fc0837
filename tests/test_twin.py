"""Capacity twin: HPA arithmetic, equivalence with the real scaling policy, no look-ahead,
oracle bound, cost matching, the CLI and its HTML report rendered in headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scaleahead.cli import app
from scaleahead.config import Settings
from scaleahead.domain.scaling import (
    ScalingPolicy,
    ServiceSpec,
    Stabilizer,
    planned_peak,
    predictive_replicas,
    reactive_replicas,
    recurring_peak,
)
from scaleahead.twin import sim
from scaleahead.twin.runner import POLICIES, TwinConfig, simulate_frame


def _fleet(cap: float = 10.0, lo: int = 1, hi: int = 100) -> sim.Fleet:
    return sim.Fleet(np.array([cap]), np.array([float(lo)]), np.array([float(hi)]))


def test_hpa_raw_hand_computed() -> None:
    usable = np.array([5.0])  # capacity 10 at target 0.5
    cases = [
        (100.0, 10.0, 20.0),  # ratio 2.0 -> ceil(10 * 2) = 20
        (52.0, 10.0, 10.0),  # ratio 1.04: inside the 0.1 tolerance, keep 10
        (40.0, 10.0, 8.0),  # ratio 0.8 -> 8
        (56.0, 10.0, 12.0),  # ratio 1.12 -> ceil(11.2) = 12
        (0.0, 3.0, 0.0),  # no demand: 0 before bounds (min replicas applied by the caller)
    ]
    for observed, current, expected in cases:
        got = sim.hpa_raw(np.array([observed]), np.array([current]), usable, 0.1)
        assert got[0] == expected, (observed, current)


def test_scale_up_rate_policy_hand_computed() -> None:
    # One 15 s sync per step: max(+100 %, +4 pods).
    timing = sim.Timing(step_s=15.0)
    cap = np.array([1000.0])
    assert sim.scale_up_limit(np.array([2.0]), timing, cap)[0] == 6  # +4 pods beats doubling
    assert sim.scale_up_limit(np.array([10.0]), timing, cap)[0] == 20  # doubling beats +4
    # A 60 s step folds 4 syncs: 1 -> 5 -> 10 -> 20 -> 40.
    assert sim.scale_up_limit(np.array([1.0]), sim.Timing(step_s=60.0), cap)[0] == 40
    # Stopping once the limit reaches what is needed changes no min(need, limit).
    current = np.array([1.0, 3.0, 10.0, 50.0, 99.0])
    need = np.array([2.0, 60.0, 5.0, 100.0, 100.0])
    caps = np.full(5, 100.0)
    for step_s in (15.0, 60.0, 300.0):
        timing = sim.Timing(step_s=step_s)
        full = sim.scale_up_limit(current, timing, caps)
        early = sim.scale_up_limit(current, timing, caps, need=need)
        np.testing.assert_array_equal(np.minimum(need, full), np.minimum(need, early))


def test_controller_hand_computed_trajectory() -> None:
    """60 s steps, capacity 10 at target 0.5 (5 per replica), 2-minute start-up, 300 s
    stabilization (6 folded decisions)."""
    timing = sim.Timing(step_s=60.0, startup_delay_s=120.0, stabilization_s=300.0)
    demand = np.array([[10.0, 50.0, 50.0, 50.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]])
    traj = sim.run_controller(demand, np.array([10.0]), _fleet(), np.array([0.5]), timing)
    # Step t sees demand[t-1]; starts at ceil(10/5) = 2. 50 is seen at t=2 -> 10 replicas
    # (rate limit 2 -> 40 allows it); 10 is seen at t=5 -> raw 2, held by stabilization while
    # the last raw 10 (t=4) is within the last 6 decisions (t=4..9), released at t=10.
    expected = [2, 2, 10, 10, 10, 10, 10, 10, 10, 10, 2, 2]
    assert traj.desired[0].tolist() == expected
    # Ready lags scale-up by the 2-step delay; scale-in is immediate.
    assert traj.ready[0].tolist() == [2, 2, 2, 2, 10, 10, 10, 10, 10, 10, 2, 2]


def test_kernel_matches_real_scaling_policy() -> None:
    """The vector kernel against a scalar loop over the real ``reactive_replicas``,
    ``max(predictive, reactive)`` and ``Stabilizer`` (with the current count, at the folded
    syncs' times)."""
    rng = np.random.default_rng(3)
    n_steps = 400
    demand = np.abs(50 + np.cumsum(rng.normal(0, 8, n_steps)))[None, :]
    floor = np.where(rng.random(n_steps) < 0.3, 0.0, rng.integers(1, 30, n_steps))[None, :]
    timing = sim.Timing(step_s=60.0, startup_delay_s=120.0, stabilization_s=300.0)
    fleet = _fleet(cap=8.0, lo=2, hi=40)
    traj = sim.run_controller(demand, np.array([40.0]), fleet, np.array([0.7]), timing, floor)

    spec = ServiceSpec(
        capacity_per_replica=8.0, min_replicas=2, max_replicas=40, target_utilization=0.7
    )
    expected = _scalar_controller(
        demand[0], 40.0, spec, timing, lambda t, seen, current: int(floor[0, t])
    )
    assert traj.desired[0].astype(int).tolist() == expected


def _scalar_controller(demand, last: float, spec: ServiceSpec, timing: sim.Timing, predictive):
    """The real policy step by step: ``reactive_replicas`` on the demand seen (the previous
    step's), ``max`` with ``predictive(t, seen, current)`` (None: fallback), the ``Stabilizer``
    with the current count (Kubernetes' behavior rule) fed at the step's first and last sync
    times, and the default scale-up rate policy sync by sync, re-evaluated at each new count.
    The step pays for the count of its first syncs and the next one starts from the count
    the window allows at its last sync. Returns the replicas per step."""
    dt, n = timing.step_s, timing.syncs_per_step
    stab = Stabilizer(timing.stabilization_s)
    t0 = datetime(2024, 1, 1)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    current = reactive_replicas(last, spec)
    stab.stabilize("s", at(-dt / n), current)  # recordInitialRecommendation
    seen, out = last, []
    for t in range(len(demand)):

        def recommend(count: int, t: int = t, seen: float = seen) -> int:
            raw = reactive_replicas(seen, spec, count)
            other = predictive(t, seen, count)
            return raw if other is None else max(raw, other)

        target = stab.stabilize("s", at(dt * t), recommend(current), current)
        count = min(target, current)
        for _ in range(n):
            if target <= count:
                break
            count = min(target, max(count * 2, count + 4), spec.max_replicas)
            target = max(recommend(count), count)
        out.append(count)
        end = stab.stabilize("s", at(dt * t + (n - 1) * dt / n), recommend(count), count)
        current = spec.bound(min(count, end))
        seen = float(demand[t])
    return out


def test_predictive_floor_matches_scalar_planned_peak() -> None:
    """The kernel's per-step predictive replicas against ``recommend``'s on the demand the
    controller has seen (the previous step's): the forecast peak, never below that demand."""
    rng = np.random.default_rng(5)
    demand = rng.uniform(0, 120, (1, 60))
    peaks = rng.uniform(0, 120, (1, 60))
    peaks[0, ::7] = np.nan  # no usable forecast: fallback
    fleet = _fleet(cap=10.0, lo=1, hi=40)
    usable = np.array([7.0])
    observed = sim.observed_demand(demand, np.array([55.0]))
    floor = sim.predictive_floor(peaks, fleet, usable, observed)
    spec = ServiceSpec(capacity_per_replica=10.0, max_replicas=40, target_utilization=0.7)
    seen = [55.0, *demand[0, :-1]]
    for t in range(60):
        if np.isnan(peaks[0, t]):
            assert floor[0, t] == 0
        else:
            want = predictive_replicas(planned_peak(float(peaks[0, t]), seen[t]), spec)
            assert floor[0, t] == want
    assert (floor >= sim.predictive_floor(peaks, fleet, usable)).all()


def test_recurring_peaks_match_the_scalar_rule() -> None:
    """The kernel's recurring peak per replay step against ``recurring_peak`` on the history
    before each decision, at 5-, 30- and 60-minute steps and a 7-minute one whose steps do not
    divide the 30-minute padding (window = start-up, at least one step, + one step)."""
    rng = np.random.default_rng(11)
    for step_s, days in ((300.0, 3), (1800.0, 2), (3600.0, 2), (420.0, 2)):
        per_day = int(86400 / step_s)
        n_known, n_replay = 3 * per_day + 7, 60
        values = rng.uniform(0, 10, (2, n_known + n_replay))
        values[:, ::37] = 100.0  # spikes that recur or not
        policy = ScalingPolicy(
            lead_time_s=max(300.0, step_s), window_s=step_s, step_s=step_s, recurring_days=days
        )
        horizon = policy.lead_time_s + policy.window_s
        got = sim.recurring_peaks(values, n_known, step_s, horizon, days, policy.recurring_pad_s)
        t0 = datetime(2024, 1, 1, tzinfo=UTC)
        times = np.array(
            [(t0 + timedelta(seconds=step_s * i)).timestamp() for i in range(n_known + n_replay)]
        )
        checked = 0
        for t in range(n_replay):
            g = n_known + t
            now = t0 + timedelta(seconds=step_s * g)
            for s in range(2):
                # Only the rows before the decision are handed over (no look-ahead).
                want = recurring_peak(times[:g], values[s, :g], now, policy)
                if want is None:
                    assert np.isnan(got[s, t])
                else:
                    assert got[s, t] == want
                    checked += 1
        assert checked > 0


def test_predictive_hold_matches_scalar_hysteresis() -> None:
    """The controller with ``hold`` against a scalar loop over ``predictive_replicas`` with the
    current count and ``planned_peak`` with the recurring peak (``recommend``'s rules)."""
    rng = np.random.default_rng(8)
    n_steps = 300
    demand = rng.uniform(5, 30, (1, n_steps))
    peaks = np.clip(demand + rng.normal(0, 4, (1, n_steps)), 0, None)
    peaks[0, ::23] = np.nan
    recurring = np.where(rng.random((1, n_steps)) < 0.1, 90.0, 12.0)
    timing = sim.Timing(step_s=300.0, startup_delay_s=300.0, stabilization_s=300.0)
    fleet = _fleet(cap=10.0, lo=1, hi=40)
    usable = np.array([7.0])
    last = np.array([14.0])
    observed = sim.observed_demand(demand, last)
    floor = sim.predictive_floor(peaks, fleet, usable, observed, recurring)
    hold = sim.predictive_floor(peaks, fleet, usable, observed, recurring, hysteresis=0.1)
    traj = sim.run_controller(demand, last, fleet, np.array([0.7]), timing, floor, hold)

    spec = ServiceSpec(capacity_per_replica=10.0, max_replicas=40, target_utilization=0.7)

    def predictive(t: int, seen: float, current: int) -> int | None:
        if np.isnan(peaks[0, t]):
            return None
        planned = planned_peak(float(peaks[0, t]), seen, float(recurring[0, t]))
        return predictive_replicas(planned, spec, current, 0.1)

    expected = _scalar_controller(demand[0], 14.0, spec, timing, predictive)
    assert traj.desired[0].astype(int).tolist() == expected
    # The hysteresis held replicas somewhere, and never scaled out on its own.
    plain = sim.run_controller(demand, last, fleet, np.array([0.7]), timing, floor)
    assert (traj.desired >= plain.desired).all() and (traj.desired > plain.desired).any()


def _synthetic(days: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * 288
    ds = pd.date_range("2024-03-04", periods=n, freq="5min")
    t = np.arange(n)
    parts = []
    for uid, scale in (("small", 3.0), ("large", 4000.0)):
        y = scale * (1 + 0.6 * np.sin(2 * np.pi * t / 288)) * np.exp(rng.normal(0, 0.05, n))
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def twin_pair() -> tuple:
    from scaleahead.config import get_settings

    settings = get_settings()
    df = _synthetic()
    base = simulate_frame(df, TwinConfig(), settings)
    cut = 200  # replay step from which the future is rewritten
    changed = df.copy()
    replay_ds = base.ds[cut:]
    mask = changed["ds"].isin(replay_ds)
    changed.loc[mask, "y"] = changed.loc[mask, "y"] * 3.0 + 50.0
    other = simulate_frame(changed, TwinConfig(), settings)
    return base, other, cut


def test_no_look_ahead(twin_pair: tuple) -> None:
    base, other, cut = twin_pair
    assert not np.array_equal(base.demand, other.demand)
    for p in ("reactive", "predictive", "cloud_scheduled", "static"):
        a, b = base.trajectories[p], other.trajectories[p]
        # Decisions up to and including `cut` only saw demand before `cut`.
        np.testing.assert_array_equal(a.desired[:, : cut + 1], b.desired[:, : cut + 1], p)
        np.testing.assert_array_equal(a.ready[:, : cut + 1], b.ready[:, : cut + 1], p)
    # ...and the rewritten future does change what happens after it (the test can fail).
    assert not np.array_equal(
        base.trajectories["reactive"].desired[:, cut + 2 :],
        other.trajectories["reactive"].desired[:, cut + 2 :],
    )


def test_oracle_is_lower_bound_and_cost_matched(twin_pair: tuple) -> None:
    base = twin_pair[0]
    oracle = base.metrics["oracle"]
    for p in POLICIES:
        m = base.metrics[p]
        assert np.all(oracle.underprovisioned_minutes <= m.underprovisioned_minutes), p
        assert np.all(oracle.unserved_demand <= m.unserved_demand + 1e-9), p
    pred = base.metrics["predictive"].replica_hours
    matched = base.metrics["reactive_cost_matched"].replica_hours
    np.testing.assert_allclose(matched, pred, rtol=0.03)
    summary = base.summary()
    for p in POLICIES:
        for key in (
            "underprovisioned_minutes",
            "unserved_demand",
            "replica_hours",
            "scaling_actions",
        ):
            assert math.isfinite(summary[p][key])
    assert "hpa_target" in summary["reactive"] and "hpa_target" in summary["reactive_cost_matched"]
    # Per-series scaling: the 3-unit and the 4000-unit service both got forecast coverage.
    assert summary["details"]["forecast_coverage"] > 0.9


def test_replays_the_real_pipeline_and_api_forecast_use(twin_pair: tuple) -> None:
    from scaleahead.config import get_settings

    details = twin_pair[0].details
    # The API reads its configured quantile; the publish DAG follows every 5-minute ingest.
    assert details["forecast_quantile"] == get_settings().scaling_quantile
    assert Settings.model_fields["ingest_schedule"].default == "*/5 * * * *"
    assert details["forecast_refresh_s"] == 300.0


def test_capped_horizon_gives_the_same_forecasts() -> None:
    from scaleahead.twin import forecasts

    df = _synthetic(days=5, seed=2)
    values = df.pivot(index="ds", columns="unique_id", values="y").to_numpy().T
    train, replay = values[:, :1100], values[:, 1100:1124]
    start = df["ds"].min()
    args = (["large", "small"], start, 300.0, train, replay, 6)
    o_full, full, col = forecasts.rolling_upper(*args, column="p90")
    o_cut, cut, _ = forecasts.rolling_upper(*args, column="p90", horizon=3)
    assert col == "p90" and full.shape[2] > 3 == cut.shape[2]
    np.testing.assert_array_equal(o_full, o_cut)
    np.testing.assert_allclose(cut, full[:, :, :3], rtol=1e-12)
    assert np.isfinite(cut).all()


def _dump_dom(html: Path, tmp: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/install-system-deps.sh installs it)")
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_cli_simulate_nab_csv_and_report_renders(settings: Settings, tmp_path: Path) -> None:
    df = _synthetic(days=5, seed=1)
    nab = df[df["unique_id"] == "large"].rename(columns={"ds": "timestamp", "y": "value"})
    trace = tmp_path / "trace.csv"
    nab[["timestamp", "value"]].to_csv(trace, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["simulate", "--trace", str(trace), "--output", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    for p in POLICIES:
        assert {
            "underprovisioned_minutes",
            "unserved_demand",
            "replica_hours",
            "scaling_actions",
        } <= set(summary[p])
    assert summary["details"]["capacity_per_replica"] == pytest.approx(
        nab["value"].iloc[: int(len(nab) * 0.7)].max() / 7.0
    )
    html = (out / "report.html").read_text()
    assert "<script src=" not in html and 'src="https://cdn' not in html  # self-contained
    dom = _dump_dom(out / "report.html", tmp_path)
    # 1 trade-off chart + 1 capacity chart (one service), each rendered to SVG by plotly.js.
    assert dom.count('class="plotly-graph-div') == 2
    assert dom.count('class="main-svg"') >= 2
    assert "Cost vs under-provisioning" in dom and "scaleahead predictive" in dom


def _policy_summary(minutes: dict[str, float], hours: dict[str, float]) -> dict:
    return {
        p: {
            "underprovisioned_minutes": minutes.get(p, 0.0),
            "replica_hours": hours.get(p, 100.0),
            "hpa_target": 0.58 if p == "reactive_cost_matched" else None,
        }
        for p in POLICIES
    }


def test_headline_says_when_predictive_does_not_pay() -> None:
    from scaleahead.twin.report import headline

    hours = {"predictive": 120.0, "reactive_cost_matched": 119.5, "reactive": 100.0}
    wins = headline(_policy_summary({"predictive": 10, "reactive_cost_matched": 30}, hours))
    assert "(±0.5 replica-hours)" in wins and "10 minutes against 30" in wins
    assert "20 SLO-minutes saved" in wins and "+20% replica-hours" in wins
    # EC2 CPU 24ae8d's shape: predictive short longer than the HPA given its budget.
    loses = headline(_policy_summary({"predictive": 80, "reactive_cost_matched": 40}, hours))
    assert "80 minutes against 40 for a reactive HPA at target 0.58" in loses
    assert "does not make the case for predictive scaling" in loses and "saved" not in loses
    tie = headline(_policy_summary({"predictive": 40, "reactive_cost_matched": 40}, hours))
    assert "does as well or better" in tie
    never = headline(_policy_summary({}, hours))
    assert "neither predictive scaling nor an over-provisioned reactive HPA" in never


def test_service_verdicts_hand_computed() -> None:
    from scaleahead.twin.report import _services_section
    from scaleahead.twin.runner import TwinResult
    from scaleahead.twin.verdicts import service_verdicts

    def metrics(minutes: list[float]) -> sim.Metrics:
        m = np.array(minutes, dtype=float)
        return sim.Metrics(m, m, m, m, m)

    result = TwinResult(
        ids=["a", "b", "c", "d", "e"],
        ds=pd.DatetimeIndex([]),
        demand=np.zeros((5, 0)),
        capacity=np.ones(5),
        trajectories={},
        metrics={
            "predictive": metrics([10, 5, 0, 20, 19]),
            "reactive_cost_matched": metrics([20, 5, 0, 10, 20]),
            "reactive": metrics([50, 50, 0, 60, 30]),
        },
        hpa_targets={"reactive_cost_matched": np.array([0.6, 0.6, 0.7, 0.5, 0.65])},
    )
    v = service_verdicts(result)
    # a: 10 <= 0.7 x 20 (meets); e: better but by 5 % only; b, c: same (c never short); d: worse.
    assert (v.services, v.better, v.meets_target, v.same, v.never_short, v.worse) == (
        5, 2, 1, 2, 1, 1,
    )  # fmt: skip
    assert v.worst == [
        {
            "service": "d",
            "predictive": 20.0,
            "cost_matched": 10.0,
            "cost_matched_target": 0.5,
            "reactive": 60.0,
        }
    ]
    section = _services_section(result)
    assert "Of 5 services" in section and "<td>d</td>" in section and "<td>a</td>" not in section
