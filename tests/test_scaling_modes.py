"""Scaling modes (shadow | predictive | reactive): the guard's rule, its persistence in
serving.scaling_modes, the scheduled guard task, and the API serving each service in its mode
(REST, fast path, /metrics; gRPC in tests/test_grpc.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from scaleahead.api.app import create_app
from scaleahead.api.models import RecommendationOut
from scaleahead.config import Settings
from scaleahead.domain.modes import (
    DEFAULT_DEMOTE_RATIO,
    DEFAULT_MIN_INCIDENTS,
    DEFAULT_PROMOTE_RATIO,
    DEFAULT_WINDOW_DAYS,
    Evidence,
    GuardRule,
    ModeReason,
    ScalingMode,
    decide_mode,
    pinned_mode,
    serving_mode,
)
from scaleahead.twin import modes_stage
from scaleahead.twin.runner import POLICIES
from scaleahead.warehouse import connect, read_sql
from test_api_scaling import DATA_END, LAST_ACTUAL

RULE = GuardRule()
D1 = datetime(2026, 11, 15)
D2 = D1 + timedelta(days=1)


def ev(predictive: float, matched: float, days: float = 5.0, incidents: int = 5) -> Evidence:
    return Evidence(
        days=days,
        predictive_under_min=predictive,
        matched_under_min=matched,
        incidents=incidents,
        predictive_replica_hours=120.0,
        reactive_replica_hours=100.0,
        window_start="2026-11-10 00:00:00",
        window_end="2026-11-14 23:55:00",
    )


# --- the rule --------------------------------------------------------------------------------


def test_shadow_service_whose_predictive_loses_stays_shadow() -> None:
    d = decide_mode(ScalingMode.SHADOW, ev(60, 40))
    assert (d.mode, d.reason, d.changed) == (
        ScalingMode.SHADOW,
        ModeReason.NOT_WINNING_ENOUGH,
        False,
    )


def test_clear_win_with_enough_evidence_promotes() -> None:
    d = decide_mode("shadow", ev(10, 40))
    assert (d.mode, d.reason, d.changed) == (
        ScalingMode.PREDICTIVE,
        ModeReason.PREDICTIVE_WINS,
        True,
    )


@pytest.mark.parametrize(
    "evidence", [ev(0, 40, days=0.5), ev(0, 40, incidents=DEFAULT_MIN_INCIDENTS - 1)]
)
def test_insufficient_evidence_keeps_shadow(evidence: Evidence) -> None:
    d = decide_mode("shadow", evidence)
    assert (d.mode, d.reason) == (ScalingMode.SHADOW, ModeReason.INSUFFICIENT_EVIDENCE)


def test_regime_change_demotes() -> None:
    d = decide_mode("predictive", ev(80, 40))  # ratio 2 > demote
    assert (d.mode, d.reason, d.changed) == (
        ScalingMode.SHADOW,
        ModeReason.PREDICTIVE_STOPPED_WINNING,
        True,
    )


def test_ratio_inside_the_band_keeps_either_mode() -> None:
    ratio = (DEFAULT_PROMOTE_RATIO + DEFAULT_DEMOTE_RATIO) / 2
    evidence = ev(40 * ratio, 40)
    assert decide_mode("predictive", evidence).mode is ScalingMode.PREDICTIVE
    assert decide_mode("predictive", evidence).reason is ModeReason.STILL_WINNING
    assert decide_mode("shadow", evidence).mode is ScalingMode.SHADOW
    # No flapping: a ratio wandering inside the band, day after day, never changes a mode.
    for previous in ("shadow", "predictive"):
        mode = previous
        lo, hi = RULE.promote_ratio, RULE.demote_ratio
        for f in (0.1, 0.9, 0.3, 0.7, 1.0):
            mode = decide_mode(mode, ev(40 * (lo + f * (hi - lo)), 40)).mode
            assert mode == previous


def test_pin_wins_and_new_services_start_in_shadow() -> None:
    d = decide_mode("predictive", ev(10, 40), pinned="reactive")
    assert (d.mode, d.reason) == (ScalingMode.REACTIVE, ModeReason.PINNED)
    assert decide_mode(None, None).reason is ModeReason.NEW_SERVICE
    assert decide_mode(None, None).mode is ScalingMode.SHADOW
    assert decide_mode("shadow", None).reason is ModeReason.NO_EVIDENCE
    pins = {"*": "predictive", "ledger": "shadow"}
    assert pinned_mode(pins, "ledger") is ScalingMode.SHADOW  # its own entry beats "*"
    assert pinned_mode(pins, "other") is ScalingMode.PREDICTIVE
    assert pinned_mode({}, "other") is None


def test_serving_mode_applies_pins_and_forgets_removed_ones() -> None:
    assert serving_mode(None, None, None) == (ScalingMode.SHADOW, ModeReason.NEW_SERVICE)
    assert serving_mode("predictive", "predictive_wins", ev(10, 40), "reactive") == (
        ScalingMode.REACTIVE,
        ModeReason.PINNED,
    )
    # A reactive pin removed since: back to shadow, judged again on the stored evidence.
    assert serving_mode("reactive", "pinned", ev(60, 40)) == (
        ScalingMode.SHADOW,
        ModeReason.NOT_WINNING_ENOUGH,
    )
    assert serving_mode("predictive", "still_winning", None) == (
        ScalingMode.PREDICTIVE,
        ModeReason.STILL_WINNING,
    )


def test_settings_pins_and_guard_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(home=tmp_path)
    assert s.guard_rule() == GuardRule()
    assert s.guard_window_days == DEFAULT_WINDOW_DAYS and s.guard_schedule == "@daily"
    s = Settings(
        home=tmp_path,
        scaling_dry_run_services=["ledger", "search"],
        scaling_modes_pinned={"search": "Predictive", "*": "reactive"},
    )
    # Dry-run is the older name of shadow; an explicit pin for the same service wins.
    assert s.scaling_mode_pins == {"ledger": "shadow", "search": "predictive", "*": "reactive"}
    with pytest.raises(ValidationError, match="must be one of"):
        Settings(home=tmp_path, scaling_modes_pinned={"a": "aggressive"})
    with pytest.raises(ValidationError, match="promote_ratio"):
        Settings(home=tmp_path, guard_promote_ratio=1.5, guard_demote_ratio=1.0)
    monkeypatch.setenv("SCALEAHEAD_SCALING_MODES_PINNED", '{"checkout": "reactive"}')
    assert Settings(home=tmp_path).scaling_mode_pins == {"checkout": "reactive"}


# --- persistence -----------------------------------------------------------------------------


def _store(
    settings: Settings,
    as_of: datetime,
    evidence: dict[str, Evidence],
    pins=None,
    services=("a", "b", "c"),
    rule: GuardRule = RULE,
) -> None:
    """One guard run on hand-made evidence, as run_guard decides and writes it."""
    with connect(path=settings.warehouse_path) as con:
        previous = modes_stage.previous_modes(con, as_of)
        stays = modes_stage.shadow_stays(con, as_of, rule.trial_waits_for_evidence)
        decisions = modes_stage.decide_all(
            services, evidence, previous, rule, pins or {}, as_of, stays
        )
        rows = modes_stage.decision_rows(decisions, f"run-{as_of:%d}", as_of, as_of)
        modes_stage.write_rows(con, rows, as_of)


def _table(settings: Settings) -> pd.DataFrame:
    return read_sql(
        "SELECT * FROM serving.scaling_modes ORDER BY as_of, service", path=settings.warehouse_path
    )


def test_decisions_are_history_and_reruns_replace(settings: Settings) -> None:
    # a wins, b loses, c has under two days of demand (no evidence).
    _store(settings, D1, {"a": ev(10, 40), "b": ev(60, 40)})
    first = _table(settings)
    assert list(first["mode"]) == ["predictive", "shadow", "shadow"]
    assert list(first.reason) == ["predictive_wins", "not_winning_enough", "new_service"]
    assert first.previous_mode.isna().all() and not first.changed.any()
    a = first.iloc[0]
    assert (a.ratio, a.minutes_saved, a.incidents, a.extra_replica_hours) == (0.25, 30.0, 5, 20.0)
    assert a.window_start == pd.Timestamp("2026-11-10") and a.evidence_days == 5.0
    assert first.iloc[2][["ratio", "window_start", "incidents"]].isna().all()

    # Next day: a's predictive loses (regime change), b now wins, c is still without evidence.
    later = {"a": ev(80, 40), "b": ev(5, 40)}
    _store(settings, D2, later)
    _store(settings, D2, later)  # a retry of the same interval replaces its rows
    stored = _table(settings)
    assert len(stored) == 6
    second = stored[stored.as_of == D2].set_index("service")
    assert second.loc["a", ["mode", "previous_mode", "reason"]].tolist() == [
        "shadow",
        "predictive",
        "predictive_stopped_winning",
    ]
    assert second.loc["b", ["mode", "previous_mode"]].tolist() == ["predictive", "shadow"]
    assert second.changed.tolist() == [True, True, False]
    assert second.loc["c", "reason"] == "no_evidence"
    with connect(read_only=True, path=settings.warehouse_path) as con:
        assert modes_stage.previous_modes(con, D2) == {
            "a": "predictive",
            "b": "shadow",
            "c": "shadow",
        }
        latest = modes_stage.latest_modes(con)
        assert list(latest["mode"]) == ["shadow", "predictive", "shadow"]
        assert list(modes_stage.history(con, "a")["mode"]) == ["predictive", "shadow"]
    # A pin in settings wins in the guard too, and the evidence is still stored.
    _store(settings, D2 + timedelta(days=1), {"a": ev(10, 40)}, pins={"a": "reactive"})
    pinned = _table(settings).iloc[-3]
    assert tuple(pinned[["service", "mode", "reason", "ratio"]]) == (
        "a",
        "reactive",
        "pinned",
        0.25,
    )

    # `scaleahead modes`: as served here (no pin in these settings: a's reactive pin is gone,
    # so a is judged again on its evidence), and one service's history.
    from typer.testing import CliRunner

    from scaleahead.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["modes", "--format", "json"])
    assert out.exit_code == 0, out.output
    listed = {r["service"]: r for r in json.loads(out.output)}
    assert [listed[s]["mode"] for s in "abc"] == ["predictive", "predictive", "shadow"]
    assert listed["a"]["decided_mode"] == "reactive" and listed["a"]["reason"] == "predictive_wins"
    assert listed["a"]["minutes_saved"] == 30.0
    out = runner.invoke(app, ["modes", "--history", "a", "--format", "json"])
    assert [r["mode"] for r in json.loads(out.output)] == ["predictive", "shadow", "reactive"]
    out = runner.invoke(app, ["modes"], env={"COLUMNS": "160"})
    assert out.exit_code == 0 and "predictive_wins" in out.output
    assert runner.invoke(app, ["modes", "guard", "--help"]).exit_code == 0

    # The trial: a shadow service is promoted only early in its stay in shadow (counted from
    # its first judged decision) or, with a re-trial, once the stay has lasted that long.
    rule = GuardRule(promote_within_days=1.0, window_days=14.0, retrial_days=14.0)
    t0 = D1 + timedelta(days=30)
    for day, evidence in ((0, ev(60, 40)), (1, ev(60, 40)), (2, ev(10, 40)), (14, ev(10, 40))):
        _store(settings, t0 + timedelta(days=day), {"t": evidence}, services=("t",), rule=rule)
    trial = _table(settings).query("service == 't'")
    assert trial.shadow_days.isna().iloc[0] and list(trial.shadow_days.iloc[1:]) == [1, 2, 14]
    assert list(trial.reason) == [
        "not_winning_enough",  # the first judged decision: its trial
        "not_winning_enough",  # a day into the stay: still the trial
        "trial_over",  # a win two days in: not promoted
        "predictive_wins",  # a whole window of shadow: the trial opens again
    ]

    # A trial that waits for evidence counts from the first decision with enough incidents: a
    # service whose first days had none is still judged once (``w``); without it, not (``n``).
    for name, waits, t0 in (
        ("w", True, D1 + timedelta(days=60)),
        ("n", False, D1 + timedelta(days=70)),
    ):
        # (a run replaces its as_of's rows: each service runs on its own days)
        rule = GuardRule(promote_within_days=1.0, trial_waits_for_evidence=waits)
        for day, evidence in ((0, ev(0, 0, incidents=0)), (1, ev(0, 0, incidents=0)),
                              (3, ev(10, 40)), (5, ev(10, 40))):  # fmt: skip
            _store(
                settings, t0 + timedelta(days=day), {name: evidence}, services=(name,), rule=rule
            )
    waited = _table(settings).query("service == 'w'")
    assert list(waited.reason) == [
        "insufficient_evidence", "insufficient_evidence", "predictive_wins", "still_winning",
    ]  # fmt: skip
    assert _table(settings).query("service == 'n'").reason.iloc[2] == "trial_over"


def _mart(settings: Settings, demand: pd.DataFrame) -> None:
    with connect(path=settings.warehouse_path) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.register("_demand", demand)
        con.execute(
            "CREATE TABLE marts.service_demand_5m AS SELECT service, ds, demand FROM _demand"
        )


def test_guard_task_reads_the_mart_and_stores_one_row_per_service(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The twin replay is stubbed (its end-to-end run is below): evidence per eligible service.
    end = datetime(2026, 11, 20)
    rows = pd.DataFrame(
        [
            (svc, end - timedelta(minutes=5 * (i + 1)), 10.0)
            for svc, n in (("long", 3 * 288), ("short", 288))
            for i in range(n)
        ],
        columns=["service", "ds", "demand"],
    )
    _mart(settings, rows)
    seen: list[set[str]] = []

    def replay(demand, services, rule, settings_):
        seen.append(set(demand.unique_id))
        return {s: ev(10, 40) for s in demand.unique_id.unique()}

    monkeypatch.setattr(modes_stage, "replay_evidence", replay)
    from scaleahead import tasks

    report = tasks.guard(as_of=end.replace(tzinfo=UTC), settings=settings)
    assert seen == [{"long"}]  # under two days of demand: no replay, no evidence
    assert report["status"] == "ok" and report["services"] == 2
    assert report["modes"] == {"shadow": 1, "predictive": 1, "reactive": 0}
    stored = _table(settings).set_index("service")
    assert stored.loc["long", "mode"] == "predictive"
    assert stored.loc["short", ["mode", "reason"]].tolist() == ["shadow", "new_service"]
    assert set(stored.as_of) == {pd.Timestamp(end)}  # the interval end, not the clock


@pytest.mark.skipif(
    "predictive_unguarded" not in POLICIES, reason="twin runner without the unguarded policies"
)
def test_guard_task_end_to_end_on_a_small_fleet(settings: Settings) -> None:
    """The real twin replay (3 synthetic services x 5 days) after a day's decisions: every
    decision is decide_mode's on the stored evidence and the previous run's mode. (The dbt
    marts over such rows: tests/test_dbt.py.)"""
    from scaleahead import tasks
    from scaleahead.bench.twin import synthetic_services

    demand = synthetic_services(3, 5, seed=5).rename(
        columns={"unique_id": "service", "y": "demand"}
    )
    _mart(settings, demand)
    end = (demand.ds.max() + timedelta(minutes=5)).to_pydatetime()
    before = {"svc-0000": "predictive", "svc-0001": "shadow"}  # svc-0002: new
    yesterday = {s: decide_mode(None, None, pinned=m) for s, m in before.items()}
    with connect(path=settings.warehouse_path) as con:
        day = end - timedelta(days=1)
        modes_stage.write_rows(con, modes_stage.decision_rows(yesterday, "g-1", day, day), day)
    report = tasks.guard(as_of=end, settings=settings)
    assert report["services_with_evidence"] == 3 and report["replay_skipped"] is None
    stored = _table(settings)
    latest = stored[stored.as_of == end]
    assert len(stored) == 5 and len(latest) == 3
    for row in latest.itertuples():
        evidence = Evidence(
            row.evidence_days, row.predictive_under_min, row.matched_under_min, row.incidents
        )
        decision = decide_mode(before.get(row.service), evidence, settings.guard_rule())
        assert (row.mode, row.reason) == (decision.mode.value, decision.reason.value)
        previous = None if pd.isna(row.previous_mode) else row.previous_mode
        assert previous == before.get(row.service)
        assert row.evidence_days > 0 and row.window_start < row.window_end <= end


# --- the API ---------------------------------------------------------------------------------


def _serving_warehouse(settings: Settings) -> None:
    """tests/test_api_scaling.py's forecasts and marts, written in three statements."""
    forecasts = pd.DataFrame(
        [
            ("b1", service, "request_rate", DATA_END + timedelta(minutes=5 * (step - 1)), step,
             100.0 + 10 * step, 150.0 + 10 * step, 180.0 + 10 * step,
             "scaleahead-demand-request_rate", "3", DATA_END)
            for service in ("checkout", "search")
            for step in range(1, 13)
        ]
    )  # fmt: skip
    demand = pd.DataFrame(
        [
            (service, LAST_ACTUAL - timedelta(minutes=5 * i), value, 1.0, 1.0, 5, False, value)
            for service, latest in (("checkout", 100.0), ("search", 40.0), ("ledger", 55.0))
            for i in range(12)
            for value in [latest if i == 0 else 2 * latest]
        ],
        columns=["service", "ds", "request_rate", "cpu_cores", "latency_ms", "samples",
                 "is_gap", "demand"],
    )  # fmt: skip
    services = pd.DataFrame(
        [
            ("checkout", "critical", 20.0, 0.5, 2, 40, "catalog"),
            ("search", "standard", 10.0, 1.0, 1, 8, "catalog"),
            ("ledger", "standard", 10.0, 1.0, 3, 30, "derived"),
        ],
        columns=["service", "tier", "capacity_per_replica", "target_utilization",
                 "min_replicas", "max_replicas", "capacity_source"],
    )  # fmt: skip
    with connect(path=settings.warehouse_path) as con:
        con.register("_f", forecasts)
        con.execute("INSERT INTO serving.forecasts SELECT * FROM _f")
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.register("_d", demand)
        con.execute("CREATE TABLE marts.service_demand_5m AS SELECT * FROM _d")
        con.register("_s", services)
        con.execute("CREATE TABLE marts.services AS SELECT * FROM _s")


@pytest.fixture(scope="module")
def api_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(home=tmp_path_factory.mktemp("modes_api"), scaling_clock="data")
    _serving_warehouse(settings)
    return settings


def _api_settings(base: Settings, **pins) -> Settings:
    """The shared warehouse with no guard decision yet, served with ``pins``."""
    with connect(path=base.warehouse_path) as con:
        con.execute("DELETE FROM serving.scaling_modes")
    return base.model_copy(update=pins)


def _decide(settings: Settings, evidence: dict[str, Evidence], previous=None) -> None:
    decisions = modes_stage.decide_all(evidence, evidence, previous or {}, RULE, {})
    with connect(path=settings.warehouse_path) as con:
        rows = modes_stage.decision_rows(decisions, "run-api", DATA_END, DATA_END)
        modes_stage.write_rows(con, rows, DATA_END)


def _rec(client: TestClient, service: str) -> dict:
    response = client.get(f"/v1/services/{service}/recommendation")
    assert response.status_code == 200, response.text
    RecommendationOut.model_validate(response.json())
    return response.json()


def test_api_serves_each_service_in_its_mode(api_warehouse: Settings) -> None:
    # checkout: predictive 18 replicas (p90 peak 180 / usable 10), reactive 10 (actual 100).
    settings = _api_settings(api_warehouse)
    with TestClient(create_app(settings, refresh_interval_s=3600)) as client:
        body = _rec(client, "checkout")  # no guard decision yet: shadow
        assert (body["scaling_mode"], body["scaling_mode_reason"]) == ("shadow", "new_service")
        assert body["replicas"] == body["reactive_replicas"] == 10
        assert body["predictive_replicas"] == 18  # still computed and reported
        assert body["mode"] == "dry_run" and body["dry_run"] is True
        assert body["scaling_evidence"] is None

        # The guard promotes checkout (a clear win) and keeps search in shadow.
        _decide(settings, {"checkout": ev(10, 40), "search": ev(60, 40)})
        client.app.state.forecast_cache.refresh()
        body = _rec(client, "checkout")
        assert (body["scaling_mode"], body["scaling_mode_reason"]) == (
            "predictive",
            "predictive_wins",
        )
        assert body["replicas"] == 18 and body["mode"] == "predictive" and body["dry_run"] is False
        evidence = body["scaling_evidence"]
        assert evidence["minutes_saved"] == 30.0 and evidence["ratio"] == 0.25
        assert evidence["extra_replica_hours"] == 20.0 and evidence["incidents"] == 5
        assert evidence["window"] == {
            "start": "2026-11-10T00:00:00Z",
            "end": "2026-11-14T23:55:00Z",
        }
        assert evidence["decided_at"] == "2026-11-16T12:00:00Z"
        search = _rec(client, "search")
        assert (
            search["scaling_mode"] == "shadow"
            and search["scaling_mode_reason"] == "not_winning_enough"
        )
        assert search["replicas"] == search["reactive_replicas"] == 4
        # The full FastAPI route (a parameter the fast path does not take) gives the same body.
        full = client.get("/v1/services/checkout/recommendation", params={"extra": "1"})
        assert full.json() == body
        listed = {s["service"]: s for s in client.get("/v1/services").json()["services"]}
        assert listed["checkout"]["scaling_mode"] == "predictive"
        assert listed["search"]["dry_run"] is True and listed["ledger"]["scaling_mode"] == "shadow"

        text = client.get("/metrics").text
        assert 'scaleahead_scaling_mode{mode="predictive",service="checkout"} 1.0' in text
        assert 'scaleahead_scaling_mode{mode="shadow",service="checkout"} 0.0' in text
        assert 'scaleahead_scaling_mode{mode="shadow",service="ledger"} 1.0' in text
        assert 'scaleahead_guard_minutes_saved{service="checkout"} 30.0' in text
        assert 'scaleahead_guard_extra_replica_hours{service="checkout"} 20.0' in text
        assert 'scaleahead_guard_underprovisioned_ratio{service="search"} 1.5' in text
        assert 'scaleahead_recommended_replicas{mode="dry_run",service="search"} 4.0' in text


def test_pins_win_in_the_api(api_warehouse: Settings) -> None:
    settings = _api_settings(
        api_warehouse,
        scaling_modes_pinned={"checkout": "reactive", "search": "predictive"},
        scaling_dry_run_services=["ledger"],
    )
    _decide(settings, {"checkout": ev(10, 40), "ledger": ev(10, 40)})  # both promoted
    with TestClient(create_app(settings, refresh_interval_s=3600)) as client:
        checkout = _rec(client, "checkout")
        assert (checkout["scaling_mode"], checkout["scaling_mode_reason"]) == ("reactive", "pinned")
        assert checkout["replicas"] == 10 and checkout["mode"] == "reactive"
        assert checkout["reasons"][0] == "scaling_mode_reactive"
        assert checkout["predictive_replicas"] == 18
        assert checkout["scaling_evidence"]["decided_mode"] == "predictive"
        search = _rec(client, "search")  # pinned predictive without any guard decision
        assert search["scaling_mode"] == "predictive" and search["replicas"] == 8
        ledger = _rec(client, "ledger")  # the older dry-run list: pinned shadow
        assert (ledger["scaling_mode"], ledger["scaling_mode_reason"]) == ("shadow", "pinned")
        assert ledger["mode"] == "dry_run"


def test_guard_section_of_the_twin_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from scaleahead.twin import guard, report

    # A replay's evidence (stubbed): a wins clearly, b was never short.
    monkeypatch.setattr(guard, "service_evidence", lambda result: [ev(10, 40), ev(0, 0)])
    rule = {"promote_ratio": 0.8, "demote_ratio": 1.0, "min_days": 1.0, "min_incidents": 2}
    fake = SimpleNamespace(
        ids=["a", "b"],
        metrics={guard.UNGUARDED: None},
        details={"guard": {"rule": {**rule, "window_days": 14.0}}},
    )
    html = report._guard_section(fake)
    assert "<h2>Scaling guard</h2>" in html and "<b>1</b> of 2" in html
    assert "predictive_wins" in html and "not_winning_enough" in html
    assert report._guard_section(SimpleNamespace(metrics={})) == ""
