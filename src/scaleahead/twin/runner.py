"""Run every policy of the capacity twin on a demand trace and summarise (the use case).

Input: a long frame ``unique_id, ds, y`` on a regular grid. The first ``train_fraction`` of the
common time range trains the forecasters and sizes the static policy; the rest is replayed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, Field

from scaleahead.config import Settings, get_settings
from scaleahead.domain import headroom
from scaleahead.domain import modes as guard_rules
from scaleahead.domain.modes import GuardRule
from scaleahead.domain.scaling import DEFAULT_FORECAST_MAX_AGE_S, ScalingPolicy
from scaleahead.twin import forecasts, guard, sim

POLICIES = (
    "reactive",
    "reactive_cost_matched",
    "predictive",
    "predictive_unguarded",
    "reactive_cost_matched_unguarded",
    "cloud_scheduled",
    "static",
    "oracle",
)
ID, DS, Y = "unique_id", "ds", "y"


class TwinConfig(BaseModel):
    """Defaults are the issue's: the training peak needs 10 replicas, 70 % target utilization,
    5-minute start-up, 1..100 replicas, the first 70 % of the trace for training."""

    capacity_per_replica: float | dict[str, float] | None = None
    target_utilization: float = Field(0.7, gt=0, le=1)
    startup_delay_s: float = Field(300.0, ge=0)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(100, ge=1)
    train_fraction: float = Field(0.7, gt=0, lt=1)
    static_percentile: float = Field(95.0, ge=0, le=100)
    # The real pipeline publishes a forecast after every ingest: the ingest DAG runs every
    # 5 minutes (``ingest_schedule``), the warehouse DAG on its asset and forecast_publish on the
    # demand mart's. Replaying a 30-minute cadence instead left the policy reading 35-40 minute
    # old forecasts (wider bands, blind to the last half hour) and made predictive lose to the
    # cost-matched HPA on the synthetic fleet.
    forecast_refresh_s: float = Field(300.0, gt=0)
    # The forecast column the policy reads: None = the API's ``scaling_quantile`` setting.
    forecast_quantile: str | None = None
    cloud_refresh_s: float = Field(6 * 3600.0, gt=0)
    cloud_horizon_h: int = Field(48, ge=1)
    cloud_buffer_s: float = Field(300.0, ge=0)
    stabilization_s: float = Field(300.0, ge=0)
    # The guard (scaleahead.domain.modes): how often it decides, and its rule.
    guard_period_s: float = Field(86400.0, gt=0)
    # Policies are judged after this much replay (the guard's shadow evidence before its first
    # decision); 0 judges the whole replay.
    guard_warmup_s: float = Field(86400.0, ge=0)
    guard_promote_ratio: float = Field(guard_rules.DEFAULT_PROMOTE_RATIO, ge=0)
    guard_demote_ratio: float = Field(guard_rules.DEFAULT_DEMOTE_RATIO, ge=0)
    guard_min_days: float = Field(guard_rules.DEFAULT_MIN_DAYS, ge=0)
    guard_min_incidents: int = Field(guard_rules.DEFAULT_MIN_INCIDENTS, ge=0)
    guard_window_days: float = Field(guard_rules.DEFAULT_WINDOW_DAYS, gt=0)
    guard_promote_within_days: float | None = Field(guard_rules.DEFAULT_PROMOTE_WITHIN_DAYS, ge=0)
    guard_retrial_days: float | None = Field(None, ge=0)
    guard_trial_waits_for_evidence: bool = guard_rules.DEFAULT_TRIAL_WAITS_FOR_EVIDENCE

    # Online headroom calibration of the scaling quantile (scaleahead.domain.headroom); off
    # (gamma 0) because leave-one-trace-out chose it off (``guard_selection`` in twin.json).
    headroom_alpha: float = Field(headroom.DEFAULT_ALPHA, gt=0, lt=1)
    headroom_gamma: float = Field(0.0, ge=0)

    def guard_rule(self) -> GuardRule:
        return GuardRule.from_prefixed(self)

    @classmethod
    def load(cls, path: Path | None) -> TwinConfig:
        if path is None:
            return cls()
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.model_validate(raw or {})


@dataclass
class TwinResult:
    ids: list[str]
    ds: pd.DatetimeIndex  # replay timestamps
    demand: np.ndarray  # (S, T) replay demand
    capacity: np.ndarray
    trajectories: dict[str, sim.Trajectory]
    metrics: dict[str, sim.Metrics]
    hpa_targets: dict[str, np.ndarray]
    details: dict[str, Any] = field(default_factory=dict)
    # (S, T) True where the guarded policy ran in predictive mode (else shadow).
    modes: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        """Fleet totals per policy plus ratios to reactive and to the oracle."""
        out: dict[str, Any] = {}
        totals = {p: _totals(m) for p, m in self.metrics.items()}
        for p in POLICIES:
            entry: dict[str, Any] = dict(totals[p])
            if p in self.hpa_targets:
                targets = self.hpa_targets[p]
                entry["hpa_target"] = (
                    float(targets[0])
                    if len(targets) == 1
                    else {
                        "median": float(np.median(targets)),
                        "min": float(targets.min()),
                        "max": float(targets.max()),
                    }
                )
            for base in ("reactive", "oracle"):
                entry[f"vs_{base}"] = {k: _ratio(v, totals[base][k]) for k, v in totals[p].items()}
            out[p] = entry
        out["details"] = self.details
        return out


def _totals(m: sim.Metrics) -> dict[str, float]:
    return {
        "underprovisioned_minutes": float(m.underprovisioned_minutes.sum()),
        "unserved_demand": float(m.unserved_demand.sum()),
        "replica_hours": float(m.replica_hours.sum()),
        "peak_replicas": float(m.peak_replicas.max()),
        "scaling_actions": float(m.scaling_actions.sum()),
    }


def _ratio(a: float, b: float) -> float | None:
    if b == 0:
        return None if a != 0 else 1.0
    return a / b


def read_trace(path: Path) -> pd.DataFrame:
    """CSV/Parquet long format ``unique_id, ds, y``, or a NAB ``timestamp, value`` CSV (one
    series named after the file)."""
    suffix = path.suffix.lower()
    df = pd.read_parquet(path) if suffix in (".parquet", ".pq") else pd.read_csv(path)
    if {"timestamp", "value"} <= set(df.columns) and Y not in df.columns:
        df = pd.DataFrame({ID: path.stem, DS: df["timestamp"], Y: df["value"]})
    missing = {ID, DS, Y} - set(df.columns)
    if missing:
        raise ValueError(f"{path.name}: expected columns unique_id, ds, y (or timestamp, value)")
    df = df[[ID, DS, Y]].copy()
    df[ID] = df[ID].astype(str)
    df[DS] = pd.to_datetime(df[DS])
    df[Y] = pd.to_numeric(df[Y], errors="coerce")
    return df.dropna(subset=[DS])


def to_grid(df: pd.DataFrame) -> tuple[list[str], pd.DatetimeIndex, np.ndarray, float]:
    """Long frame -> (ids, common grid, matrix (S, T) forward/back-filled, step seconds)."""
    df = df.drop_duplicates([ID, DS], keep="last").sort_values([ID, DS])
    step = df.groupby(ID)[DS].diff().dropna().mode()
    if step.empty:
        raise ValueError("a trace needs at least two timestamps per series")
    step_td = pd.Timedelta(step.iloc[0])
    grid = pd.date_range(df[DS].min(), df[DS].max(), freq=step_td)
    wide = df.pivot(index=DS, columns=ID, values=Y).reindex(grid).ffill().bfill()
    wide = wide.clip(lower=0.0)  # demand is a rate
    return [str(c) for c in wide.columns], grid, wide.to_numpy().T, step_td.total_seconds()


def _capacity(cfg: TwinConfig, ids: list[str], train: np.ndarray) -> np.ndarray:
    auto = np.nanmax(train, axis=1) / (10 * cfg.target_utilization)
    auto = np.where(auto > 0, auto, 1.0)
    cap = cfg.capacity_per_replica
    if cap is None:
        return auto
    if isinstance(cap, dict):
        return np.array([cap.get(u, a) for u, a in zip(ids, auto, strict=True)], dtype=float)
    return np.full(len(ids), float(cap))


@dataclass
class Prepared:
    """A trace on its grid with every forecast the policies read (the expensive part of a
    replay), so the policies can be replayed again on the same forecasts (parameter studies)."""

    ids: list[str]
    grid: pd.DatetimeIndex
    values: np.ndarray  # (S, n_train + T) the whole trace
    n_train: int
    step_s: float
    fleet: sim.Fleet
    timing: sim.Timing
    policy: ScalingPolicy
    peaks: np.ndarray  # (S, T) the scaling quantile's peak over each step's window; NaN: none
    level: np.ndarray  # (S, T) the cloud-style scheduled capacity
    recurring: np.ndarray  # (S, T) the recurring peak of each step's window
    details: dict[str, Any]
    timings: dict[str, float]

    @property
    def train(self) -> np.ndarray:
        return self.values[:, : self.n_train]

    @property
    def replay(self) -> np.ndarray:
        return self.values[:, self.n_train :]


def prepare(
    df: pd.DataFrame,
    cfg: TwinConfig | None = None,
    settings: Settings | None = None,
    capacity: np.ndarray | None = None,
    min_replicas: np.ndarray | None = None,
    max_replicas: np.ndarray | None = None,
) -> Prepared:
    """Grid the trace, size the fleet, and run both forecasters on their schedules."""
    cfg = cfg or TwinConfig()
    settings = settings or get_settings()
    ids, grid, values, step_s = to_grid(df)
    n_train = int(len(grid) * cfg.train_fraction)
    train, replay = values[:, :n_train], values[:, n_train:]
    if replay.shape[1] < 2:
        raise ValueError("the replay period is empty: lower train_fraction")
    n = len(ids)
    fleet = sim.Fleet(
        capacity=capacity if capacity is not None else _capacity(cfg, ids, train),
        min_replicas=min_replicas if min_replicas is not None else np.full(n, cfg.min_replicas),
        max_replicas=max_replicas if max_replicas is not None else np.full(n, cfg.max_replicas),
    )
    timing = sim.Timing(
        step_s=step_s, startup_delay_s=cfg.startup_delay_s, stabilization_s=cfg.stabilization_s
    )
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    # Replicas asked for now serve once started: the forecast window starts at the start-up
    # delay (rounded up to the trace step) and spans one step, as the API's lead/window do.
    lead = max(cfg.startup_delay_s, step_s)
    policy = ScalingPolicy(
        lead_time_s=lead,
        window_s=step_s,
        step_s=step_s,
        stabilization_window_s=cfg.stabilization_s,
        forecast_max_age_s=max(DEFAULT_FORECAST_MAX_AGE_S, cfg.forecast_refresh_s),
        scale_in_hysteresis=settings.scaling_scale_in_hysteresis,
        recurring_days=settings.scaling_recurring_days,
        recurring_gate=settings.scaling_recurring_gate,
    )
    refresh = max(1, int(round(cfg.forecast_refresh_s / step_s)))
    # A forecast serves the steps until the next one: the policy reads its buckets
    # ``a .. a + span`` for ``a < refresh`` (peaks_from_origins), so no later step is predicted.
    span = forecasts.window_span(step_s, policy.lead_time_s, policy.window_s)
    origins, fc, column = forecasts.rolling_upper(
        ids,
        grid[0],
        step_s,
        train,
        replay,
        refresh,
        settings,
        timings,
        column=cfg.forecast_quantile or settings.scaling_quantile,
        horizon=refresh + span,
    )
    peaks = forecasts.peaks_from_origins(
        origins,
        fc,
        replay.shape[1],
        step_s,
        policy.lead_time_s,
        policy.window_s,
        policy.forecast_max_age_s,
    )
    timings["forecast_5m_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    level, cloud_method = forecasts.scheduled_capacity(
        ids,
        grid[0],
        step_s,
        train,
        replay,
        cfg.cloud_refresh_s,
        cfg.cloud_horizon_h,
        cfg.cloud_buffer_s,
        settings,
    )
    timings["forecast_hourly_s"] = time.perf_counter() - t0
    # The API's recurring peak of the same window on the last days, read from the observed
    # demand (no look-ahead).
    recurring = sim.recurring_peaks(
        values,
        n_train,
        step_s,
        policy.lead_time_s + policy.window_s,
        policy.recurring_days,
        policy.recurring_pad_s,
    )
    details = {
        "services": n,
        "step_s": step_s,
        "train_start": str(grid[0]),
        "replay_start": str(grid[n_train]),
        "replay_end": str(grid[-1]),
        "replay_steps": int(replay.shape[1]),
        "startup_delay_s": cfg.startup_delay_s,
        "slo_target_utilization": cfg.target_utilization,
        "capacity_per_replica": float(fleet.capacity[0]) if n == 1 else "per service",
        "forecast_quantile": column,
        "forecast_refresh_s": cfg.forecast_refresh_s,
        "forecast_origins": len(origins),
        "forecast_coverage": float(np.mean(~np.isnan(peaks))),
        "cloud_method": cloud_method,
        "static_percentile": cfg.static_percentile,
    }
    return Prepared(
        ids, grid, values, n_train, step_s, fleet, timing, policy, peaks, level, recurring,
        details, timings,
    )  # fmt: skip


def judged_start(n_steps: int, step_s: float, cfg: TwinConfig) -> int:
    """The first judged replay step: after the guard's warm-up, but never past the middle of
    the replay (a short replay is judged on at least its second half)."""
    return min(int(round(cfg.guard_warmup_s / step_s)), n_steps // 2)


def replay_policies(
    prep: Prepared,
    cfg: TwinConfig | None = None,
    rule: GuardRule | None = None,
    evidence_only: bool = False,
) -> TwinResult:
    """Every policy on the prepared forecasts. ``predictive`` is the guarded policy a user gets
    (a new service starting in shadow, the guard deciding on the replay so far); the policy
    without the guard is ``predictive_unguarded``. Each has its own cost-matched HPA.

    ``evidence_only``: only what the scheduled guard reads (:func:`guard.service_evidence`):
    ``reactive``, ``predictive_unguarded`` and its cost-matched HPA."""
    cfg = cfg or TwinConfig()
    rule = rule or cfg.guard_rule()
    fleet, timing, step_s = prep.fleet, prep.timing, prep.step_s
    train, replay = prep.train, prep.replay
    n = len(prep.ids)
    slo = cfg.target_utilization
    last = train[:, -1]
    timings = dict(prep.timings)

    t0 = time.perf_counter()
    targets = np.full(n, slo)
    usable = fleet.capacity * slo
    traj: dict[str, sim.Trajectory] = {}
    traj["reactive"] = sim.run_controller(replay, last, fleet, targets, timing)
    observed = sim.observed_demand(replay, last)
    gate, policy = prep.policy.recurring_gate, prep.policy
    peaks = sim.calibrated_peaks(
        prep.peaks,
        replay,
        timing.delay_steps,
        cfg.headroom_alpha,
        cfg.headroom_gamma,
        headroom.DEFAULT_BOUND,
    )
    floor = sim.predictive_floor(peaks, fleet, usable, observed, prep.recurring, gate)
    hold = sim.predictive_floor(
        peaks, fleet, usable, observed, prep.recurring, gate, policy.scale_in_hysteresis
    )
    traj[guard.UNGUARDED] = sim.run_controller(replay, last, fleet, targets, timing, floor, hold)
    step_h = step_s / 3600.0
    # The judged window starts after the guard's first decision: before it every service is in
    # shadow (new), gathering the evidence the guard needs. Every policy runs through the
    # warm-up (their state carries over) but is judged, and cost-matched, after it.
    j0 = judged_start(replay.shape[1], step_s, cfg)
    modes: np.ndarray | None = None
    if evidence_only:
        matched_unguarded, traj[guard.MATCHED_UNGUARDED] = sim.cost_matched_targets(
            replay, last, fleet, timing, _judged_hours(traj[guard.UNGUARDED], j0, step_h), start=j0
        )
        hpa_targets = {"reactive": targets, guard.MATCHED_UNGUARDED: matched_unguarded}
    else:
        t1 = time.perf_counter()
        modes = guard.guarded_modes(
            traj[guard.UNGUARDED],
            replay,
            guard.hpa_grid(replay, last, fleet, timing, slo),
            fleet,
            timing,
            slo,
            rule,
            period_steps=max(1, int(round(cfg.guard_period_s / step_s))),
        )
        timings["guard_s"] = time.perf_counter() - t1
        on = modes.astype(float)
        traj["predictive"] = sim.run_controller(
            replay, last, fleet, targets, timing, floor * on, hold * on
        )
        traj["cloud_scheduled"] = sim.run_controller(
            replay, last, fleet, targets, timing, sim.predictive_floor(prep.level, fleet, usable)
        )
        # Each policy against the HPA given its replica-hours over the judged window.
        (
            (matched, traj["reactive_cost_matched"]),
            (matched_unguarded, traj[guard.MATCHED_UNGUARDED]),
        ) = sim.cost_matched_many(
            replay,
            last,
            fleet,
            timing,
            [_judged_hours(traj[p], j0, step_h) for p in ("predictive", guard.UNGUARDED)],
            start=j0,
        )
        hpa_targets = {
            "reactive": targets,
            "reactive_cost_matched": matched,
            guard.MATCHED_UNGUARDED: matched_unguarded,
        }
        traj["static"] = sim.static(train, replay.shape[1], fleet, slo, cfg.static_percentile)
        traj["oracle"] = sim.oracle(replay, fleet, slo, timing)
    timings["replay_s"] = time.perf_counter() - t0

    initial = fleet.bound(sim.ceil_replicas(last, usable))
    judged = replay[:, j0:]
    mets = {}
    for p, t in traj.items():
        before = (
            None if p in ("static", "oracle") else (initial if j0 == 0 else t.desired[:, j0 - 1])
        )
        traj[p] = sim.Trajectory(t.desired[:, j0:], t.ready[:, j0:])
        mets[p] = sim.metrics(traj[p], judged, fleet, slo, step_s, before)
    details = dict(prep.details)
    details["headroom"] = {"alpha": cfg.headroom_alpha, "gamma": cfg.headroom_gamma}
    details["guard"] = {
        "rule": asdict(rule),
        "period_s": cfg.guard_period_s,
        "predictive_share": None if modes is None else float(modes.mean()),
        "services_ever_promoted": None if modes is None else int(modes.any(axis=1).sum()),
    }
    details["judged_start"] = str(prep.grid[prep.n_train + j0])
    details["judged_steps"] = int(judged.shape[1])
    details["timings_s"] = timings
    return TwinResult(
        ids=prep.ids,
        ds=prep.grid[prep.n_train + j0 :],
        demand=judged,
        capacity=fleet.capacity,
        trajectories=traj,
        metrics=mets,
        hpa_targets=hpa_targets,
        details=details,
        modes=None if modes is None else modes[:, j0:],
    )


def _judged_hours(traj: sim.Trajectory, j0: int, step_h: float) -> np.ndarray:
    return traj.desired[:, j0:].sum(axis=1) * step_h


def simulate_frame(
    df: pd.DataFrame,
    cfg: TwinConfig | None = None,
    settings: Settings | None = None,
    capacity: np.ndarray | None = None,
    min_replicas: np.ndarray | None = None,
    max_replicas: np.ndarray | None = None,
    evidence_only: bool = False,
) -> TwinResult:
    cfg = cfg or TwinConfig()
    prep = prepare(df, cfg, settings, capacity, min_replicas, max_replicas)
    return replay_policies(prep, cfg, evidence_only=evidence_only)


def simulate_file(
    trace: Path, output: Path, config: Path | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """``scaleahead simulate``: writes ``summary.json`` and ``report.html`` into ``output``."""
    from scaleahead.twin.report import write_report

    cfg = TwinConfig.load(config)
    result = simulate_frame(read_trace(trace), cfg, settings)
    summary = result.summary()
    summary["details"]["trace"] = str(trace)
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    write_report(result, summary, output / "report.html")
    return summary
