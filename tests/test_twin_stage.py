"""The weekly capacity twin stage: from the demand mart to serving.capacity_simulations and the
dbt mart, idempotent per interval end (its DAG: tests/test_dags.py)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from scaleahead import tasks
from scaleahead.bench.twin import synthetic_services
from scaleahead.config import Settings
from scaleahead.transform.dbt import build
from scaleahead.twin.runner import POLICIES
from scaleahead.warehouse import connect, read_sql


def _seed_marts(settings: Settings, days: int = 7) -> pd.Timestamp:
    """A hand-made demand mart (three services) and service dimension; returns its end."""
    demand = synthetic_services(3, days, seed=5).rename(
        columns={"unique_id": "service", "ds": "ds", "y": "demand"}
    )
    services = pd.DataFrame(
        {
            "service": ["svc-0000"],
            "capacity_per_replica": [50.0],
            "min_replicas": [2],
            "max_replicas": [40],
        }
    )
    with connect(path=settings.warehouse_path) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.register("d", demand)
        con.execute("CREATE TABLE marts.service_demand_5m AS SELECT service, ds, demand FROM d")
        con.register("s", services)
        con.execute("CREATE TABLE marts.services AS SELECT * FROM s")
    return demand["ds"].max() + timedelta(minutes=5)


def _rows(settings: Settings, sql: str) -> pd.DataFrame:
    return read_sql(sql, path=settings.warehouse_path)


def test_twin_stage_stores_each_service_and_policy_once_per_run(settings: Settings) -> None:
    end = _seed_marts(settings)
    report = tasks.twin(as_of=end.to_pydatetime(), settings=settings)
    assert report["status"] == "ok" and report["services"] == 3
    assert report["rows"] == 3 * len(POLICIES)

    again = tasks.twin(as_of=end.to_pydatetime(), settings=settings)  # a retry or backfill
    stored = _rows(settings, "SELECT * FROM serving.capacity_simulations")
    assert len(stored) == 3 * len(POLICIES)
    assert set(stored.run_id) == {again["run_id"]}
    assert stored.groupby(["service", "policy"]).size().eq(1).all()
    # Bounds come from marts.services where the service is known.
    svc0 = stored[stored.service == "svc-0000"]
    assert svc0[svc0.policy == "oracle"].peak_replicas.iloc[0] <= 40
    assert (stored.replica_hours > 0).all() and stored.underprovisioned_minutes.ge(0).all()
    oracle = stored[stored.policy == "oracle"].set_index("service")
    assert (oracle.replica_hours_vs_oracle == 1.0).all()
    # The stage report's triage agrees with the stored per-service minutes.
    minutes = stored.pivot(index="service", columns="policy", values="underprovisioned_minutes")
    pred, matched = minutes["predictive"], minutes["reactive_cost_matched"]
    triage = again["predictive_vs_cost_matched"]
    assert triage["services"] == 3
    assert (triage["better"], triage["same"], triage["worse"]) == (
        int((pred < matched).sum()),
        int((pred == matched).sum()),
        int((pred > matched).sum()),
    )
    assert [w["service"] for w in triage["worst"]] == list(
        (pred - matched)[pred > matched].sort_values(ascending=False, kind="stable").index
    )
    cost_matched = stored[stored.policy == "reactive_cost_matched"]
    assert cost_matched.hpa_target.notna().all() and (cost_matched.hpa_target <= 0.7).all()

    earlier = tasks.twin(as_of=(end - timedelta(days=1)).to_pydatetime(), settings=settings)
    assert earlier["status"] == "ok"
    assert len(_rows(settings, "SELECT * FROM serving.capacity_simulations")) == 6 * len(POLICIES)

    # The mart keeps the latest run per service: one row per (service, policy), data tests pass.
    result = build(settings, select="stg_serving__capacity_simulations+")
    assert result.success, result.failures
    mart = _rows(settings, "SELECT * FROM marts.capacity_simulations")
    assert len(mart) == 3 * len(POLICIES)
    assert set(mart.as_of) == {end.to_pydatetime().replace(tzinfo=None)}
    matched = mart[mart.policy == "reactive_cost_matched"]
    assert matched.underprovisioned_vs_cost_matched.dropna().eq(1.0).all()


def test_twin_stage_skips_without_enough_demand(settings: Settings) -> None:
    with connect(path=settings.warehouse_path) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(
            "CREATE TABLE marts.service_demand_5m AS SELECT 'a' AS service, "
            "TIMESTAMP '2024-01-01' AS ds, 1.0 AS demand"
        )
    report = tasks.twin(settings=settings)
    assert report["status"] == "skipped" and "two days" in report["reason"]
