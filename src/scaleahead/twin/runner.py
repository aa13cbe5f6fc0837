"""Run every policy of the capacity twin on a demand trace and summarise (the use case).

Input: a long frame ``unique_id, ds, y`` on a regular grid. The first ``train_fraction`` of the
common time range trains the forecasters and sizes the static policy; the rest is replayed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, Field

from scaleahead.config import Settings, get_settings
from scaleahead.domain.scaling import DEFAULT_FORECAST_MAX_AGE_S, ScalingPolicy
from scaleahead.twin import forecasts, sim

POLICIES = (
    "reactive",
    "reactive_cost_matched",
    "predictive",
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


def simulate_frame(
    df: pd.DataFrame,
    cfg: TwinConfig | None = None,
    settings: Settings | None = None,
    capacity: np.ndarray | None = None,
    min_replicas: np.ndarray | None = None,
    max_replicas: np.ndarray | None = None,
) -> TwinResult:
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
    slo = cfg.target_utilization
    last = train[:, -1]
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

    t0 = time.perf_counter()
    targets = np.full(n, slo)
    usable = fleet.capacity * slo
    traj: dict[str, sim.Trajectory] = {}
    traj["reactive"] = sim.run_controller(replay, last, fleet, targets, timing)
    observed = sim.observed_demand(replay, last)
    # The API's rules: the recurring peak of the same window on the last days, read from the
    # observed demand (no look-ahead), and the scale-in hysteresis.
    recurring = sim.recurring_peaks(
        values,
        n_train,
        step_s,
        policy.lead_time_s + policy.window_s,
        policy.recurring_days,
        policy.recurring_pad_s,
    )
    gate = policy.recurring_gate
    traj["predictive"] = sim.run_controller(
        replay,
        last,
        fleet,
        targets,
        timing,
        sim.predictive_floor(peaks, fleet, usable, observed, recurring, gate),
        sim.predictive_floor(
            peaks, fleet, usable, observed, recurring, gate, policy.scale_in_hysteresis
        ),
    )
    traj["cloud_scheduled"] = sim.run_controller(
        replay, last, fleet, targets, timing, sim.predictive_floor(level, fleet, usable)
    )
    pred_rh = traj["predictive"].desired.sum(axis=1) * step_s / 3600.0
    matched, traj["reactive_cost_matched"] = sim.cost_matched_targets(
        replay, last, fleet, timing, pred_rh
    )
    traj["static"] = sim.static(train, replay.shape[1], fleet, slo, cfg.static_percentile)
    traj["oracle"] = sim.oracle(replay, fleet, slo, timing)
    timings["replay_s"] = time.perf_counter() - t0

    initial = fleet.bound(sim.ceil_replicas(last, usable))
    mets = {
        p: sim.metrics(
            t, replay, fleet, slo, step_s, None if p in ("static", "oracle") else initial
        )
        for p, t in traj.items()
    }
    covered = float(np.mean(~np.isnan(peaks)))
    details = {
        "services": n,
        "step_s": step_s,
        "train_start": str(grid[0]),
        "replay_start": str(grid[n_train]),
        "replay_end": str(grid[-1]),
        "replay_steps": int(replay.shape[1]),
        "startup_delay_s": cfg.startup_delay_s,
        "slo_target_utilization": slo,
        "capacity_per_replica": float(fleet.capacity[0]) if n == 1 else "per service",
        "forecast_quantile": column,
        "forecast_refresh_s": cfg.forecast_refresh_s,
        "forecast_origins": len(origins),
        "forecast_coverage": covered,
        "cloud_method": cloud_method,
        "static_percentile": cfg.static_percentile,
        "timings_s": timings,
    }
    return TwinResult(
        ids=ids,
        ds=grid[n_train:],
        demand=replay,
        capacity=fleet.capacity,
        trajectories=traj,
        metrics=mets,
        hpa_targets={"reactive": targets, "reactive_cost_matched": matched},
        details=details,
    )


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
