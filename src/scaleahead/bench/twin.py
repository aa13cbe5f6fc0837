"""Capacity twin benchmark (``scaleahead bench twin``).

Traces (nothing tuned per trace): every NAB ``realAWSCloudwatch`` file (``aws_all.*``, 17),
every ``realKnownCause`` file (``rkc_all.*``, 7), the synthetic 20-service trace at generator
seeds 11-14 (``synthetic20``, ``heldout.*``) and a fleet of 1,000 synthetic services. Each trace
is forecast once (:func:`scaleahead.twin.runner.prepare`) and every policy replayed on it.

``predictive`` is the policy a user gets by default: guarded (a new service starts in shadow;
the guard of :mod:`scaleahead.domain.modes` promotes it on causal evidence) with the online
headroom calibration of :mod:`scaleahead.domain.headroom`; ``predictive_unguarded`` is the same
policy without the guard. Policies are judged after the guard's one-day warm-up, against the
HPA given the same replica-hours (cost-matched by bisection). Per trace
``pred_vs_matched_under`` (guarded) and ``unguarded_vs_matched_under``; per set the summed
minutes' ratio and how many traces are worse than their cost-matched HPA.

``guard_selection``: the headroom calibration and the guard rule chosen leave-one-trace-out
over all 28 traces (:mod:`scaleahead.bench.twin_selection`): the left-out totals are the
headline, the in-sample best (what ships as the defaults) beside them.

Fleet scale: 1,000 synthetic services at 5 minutes, 7 days of training then a 14-day replay,
through the same ``simulate_frame`` as ``scaleahead simulate``, timed end to end
(``fleet_1000_replay_s``) with its parts. ``guard_task_1000_s``: the scheduled guard's work for
1,000 services x 14 days (twin replay, evidence, decisions). ``fleet.load_avg_1m`` and
``fleet.cpu_s`` tell how loaded the shared machine was. ``SCALEAHEAD_BENCH_TWIN_SERVICES``
changes the fleet size; ``SCALEAHEAD_BENCH_TWIN_FLEET=0`` skips the fleet and the guard timing.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaleahead.bench import twin_selection
from scaleahead.config import Settings
from scaleahead.domain.modes import ScalingMode, decide_mode
from scaleahead.synth import telemetry
from scaleahead.twin.guard import MATCHED_UNGUARDED, UNGUARDED, service_evidence
from scaleahead.twin.runner import (
    DS,
    ID,
    TwinConfig,
    Y,
    prepare,
    read_trace,
    replay_policies,
    simulate_frame,
)

_START = datetime(2024, 1, 1)


def synthetic_services(n: int, days: int, seed: int = 7) -> pd.DataFrame:
    """The generator's request-rate model (daily/weekly shape, drift, bursts, noise) at 5 min."""
    rng = np.random.default_rng(seed)
    minutes = days * 1440
    parts = []
    for lo in range(0, n, 100):
        k = min(100, n - lo)
        p = telemetry._draw_profiles(rng, k)  # noqa: SLF001 - the generator's own demand model
        y = telemetry._baseline(p, _START, minutes)  # noqa: SLF001
        y *= telemetry._slow_wobble(rng, k, minutes)  # noqa: SLF001
        y *= telemetry._bursts(rng, k, minutes)  # noqa: SLF001
        y *= np.exp(rng.normal(0, p.noise_sigma[:, None], y.shape))
        y5 = y.reshape(k, -1, 5).mean(axis=2)
        ds = pd.date_range(_START, periods=y5.shape[1], freq="5min")
        ids = [f"svc-{lo + i:04d}" for i in range(k)]
        parts.append(
            pd.DataFrame({ID: np.repeat(ids, y5.shape[1]), DS: np.tile(ds, k), Y: y5.ravel()})
        )
    return pd.concat(parts, ignore_index=True)


def _figures(name: str, summary: dict) -> dict[str, float | None]:
    def r(a: str, b: str, key: str) -> float | None:
        den = summary[b][key]
        return None if den == 0 else round(summary[a][key] / den, 4)

    pred, oracle = summary["predictive"], summary["oracle"]
    return {
        f"{name}.pred_vs_matched_under": r(
            "predictive", "reactive_cost_matched", "underprovisioned_minutes"
        ),
        f"{name}.unguarded_vs_matched_under": r(
            UNGUARDED, MATCHED_UNGUARDED, "underprovisioned_minutes"
        ),
        f"{name}.pred_vs_reactive_under": r("predictive", "reactive", "underprovisioned_minutes"),
        f"{name}.pred_vs_matched_replica_hours": r(
            "predictive", "reactive_cost_matched", "replica_hours"
        ),
        f"{name}.pred_vs_reactive_replica_hours": r("predictive", "reactive", "replica_hours"),
        f"{name}.cloud_vs_matched_under": r(
            "cloud_scheduled", "reactive_cost_matched", "underprovisioned_minutes"
        ),
        f"{name}.pred_minus_oracle_under_min": round(
            pred["underprovisioned_minutes"] - oracle["underprovisioned_minutes"], 1
        ),
        f"{name}.reactive_under_min": summary["reactive"]["underprovisioned_minutes"],
        f"{name}.matched_under_min": summary["reactive_cost_matched"]["underprovisioned_minutes"],
        f"{name}.predictive_under_min": pred["underprovisioned_minutes"],
        f"{name}.unguarded_under_min": summary[UNGUARDED]["underprovisioned_minutes"],
        f"{name}.matched_unguarded_under_min": summary[MATCHED_UNGUARDED][
            "underprovisioned_minutes"
        ],
        f"{name}.predictive_share": round(summary["details"]["guard"]["predictive_share"], 3),
    }


def traces(settings: Settings) -> dict[str, pd.DataFrame | Path]:
    """Every trace of the bench by set-qualified name (NAB files as paths, read on use)."""
    nab = settings.shared_data_dir / "nab"
    out: dict[str, pd.DataFrame | Path] = {}
    for folder, prefix in (("realAWSCloudwatch", "aws_all"), ("realKnownCause", "rkc_all")):
        for path in sorted((nab / folder).glob("*.csv")):
            out[f"{prefix}.{path.stem}"] = path
    out["synthetic.synthetic20"] = synthetic_services(20, 21, seed=11)
    for seed in HELDOUT_SEEDS:
        out[f"heldout.synthetic20_seed{seed}"] = synthetic_services(20, 21, seed=seed)
    return out


HELDOUT_SEEDS = (12, 13, 14)


def _totals(prefix: str, minutes: dict[str, tuple[float, float, float, float]]) -> dict:
    """Over a set: summed minutes (guarded, its cost-matched HPA, unguarded, its HPA)."""
    rows = [v for k, v in minutes.items() if k.startswith(prefix + ".") or prefix == "all"]
    if not rows:
        return {}
    g, m, u, um = (sum(r[i] for r in rows) for i in range(4))
    judged = [r for r in rows if r[0] or r[1]]
    return {
        f"{prefix}.traces": len(rows),
        f"{prefix}.predictive_under_min": g,
        f"{prefix}.matched_under_min": m,
        f"{prefix}.pred_vs_matched_under_total": round(g / m, 4) if m else None,
        f"{prefix}.unguarded_vs_matched_under_total": round(u / um, 4) if um else None,
        f"{prefix}.traces_worse_than_matched": sum(r[0] > r[1] + 1e-6 for r in judged),
        f"{prefix}.traces_worse_than_matched_unguarded": sum(r[2] > r[3] + 1e-6 for r in rows),
        f"{prefix}.traces_meeting_0.5": f"{sum(r[0] <= 0.5 * r[1] for r in judged)}/{len(judged)}",
    }


def _fleet_replay(settings: Settings, n: int) -> dict[str, float | str]:
    """The whole twin (every policy, both forecasters re-run on their schedules) on ``n``
    synthetic services: 7 days of training, then a 14-day replay, timed end to end."""
    df = synthetic_services(n, 21)
    cfg = TwinConfig(train_fraction=7 / 21)
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    result = simulate_frame(df, cfg, settings)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = result.summary()
    timings = result.details["timings_s"]
    out: dict[str, float | str] = {
        "fleet.services": n,
        "fleet.train_days": 7,
        "fleet.replay_days": round(result.demand.shape[1] * result.details["step_s"] / 86400, 2),
        "fleet.forecast_origins": result.details["forecast_origins"],
        f"fleet_{n}_replay_s": round(total, 1),
        "fleet.total_s": round(total, 1),
        "fleet.forecast_5m_s": round(timings["forecast_5m_s"], 1),
        "fleet.forecast_5m_fit_s": round(timings["forecast_5m_fit_s"], 1),
        "fleet.forecast_5m_predict_s": round(timings["forecast_5m_predict_s"], 1),
        "fleet.forecast_hourly_s": round(timings["forecast_hourly_s"], 1),
        "fleet.replay_kernels_s": round(timings["replay_s"], 1),
        "fleet.guard_s": round(timings["guard_s"], 1),
        "fleet.target_s": 300,
        "fleet.cpu_s": round(cpu, 1),
        "fleet.load_avg_1m": round(max(load_before, os.getloadavg()[0]), 2),
    }
    out.update(_figures("fleet", summary))
    return out


def _guard_task(settings: Settings, n: int) -> dict[str, float]:
    """What the scheduled guard does for ``n`` services: replay their last 14 days through the
    twin (the stage's 70 / 30 split), take the evidence, decide every mode."""
    df = synthetic_services(n, 14, seed=21)
    t0 = time.perf_counter()
    result = simulate_frame(df, TwinConfig(), settings, evidence_only=True)
    rule = TwinConfig().guard_rule()
    decisions = [decide_mode(None, e, rule) for e in service_evidence(result)]
    seconds = time.perf_counter() - t0
    promoted = sum(d.mode is ScalingMode.PREDICTIVE for d in decisions)
    return {f"guard_task_{n}_s": round(seconds, 1), "guard_task.promoted": promoted}


def run(settings: Settings) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    n = int(os.environ.get("SCALEAHEAD_BENCH_TWIN_SERVICES", "1000"))
    if os.environ.get("SCALEAHEAD_BENCH_TWIN_FLEET", "1") != "0":
        figures.update(_fleet_replay(settings, n))
        figures.update(_guard_task(settings, n))
    cfg = TwinConfig()
    minutes: dict[str, tuple[float, float, float, float]] = {}
    scores = {}
    t0 = time.perf_counter()
    for name, source in traces(settings).items():
        df = read_trace(source) if isinstance(source, Path) else source
        prep = prepare(df, cfg, settings)
        summary = replay_policies(prep, cfg).summary()
        short = name.split(".", 1)[1]
        figures.update(
            {f"{name.split('.')[0]}.{k}": v for k, v in _figures(short, summary).items()}
        )
        minutes[name] = tuple(
            summary[p]["underprovisioned_minutes"]
            for p in ("predictive", "reactive_cost_matched", UNGUARDED, MATCHED_UNGUARDED)
        )
        scores[name] = twin_selection.score_trace(prep, cfg)
    figures["traces_seconds"] = round(time.perf_counter() - t0, 1)
    for prefix in ("aws_all", "rkc_all", "synthetic", "heldout", "all"):
        figures.update(_totals(prefix, minutes))
    figures["guard_selection"] = twin_selection.select(scores)
    return figures
