"""Self-contained HTML report of a twin run (plotly.js inlined once: works offline, no CDN)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from scaleahead.twin.runner import POLICIES, TwinResult
from scaleahead.twin.verdicts import service_verdicts

LABELS = {
    "reactive": "Reactive HPA (default)",
    "reactive_cost_matched": "Reactive HPA, same cost as predictive",
    "predictive": "scaleahead predictive (guarded: shadow until the guard promotes)",
    "predictive_unguarded": "scaleahead predictive without the guard",
    "reactive_cost_matched_unguarded": "Reactive HPA, same cost as unguarded predictive",
    "cloud_scheduled": "Cloud-style scheduled",
    "static": "Static",
    "oracle": "Oracle (lower bound)",
}
COLORS = {
    "reactive": "#d62728",
    "reactive_cost_matched": "#ff7f0e",
    "predictive": "#2ca02c",
    "predictive_unguarded": "#98df8a",
    "reactive_cost_matched_unguarded": "#ffbb78",
    "cloud_scheduled": "#9467bd",
    "static": "#7f7f7f",
    "oracle": "#1f77b4",
}
MAX_SERVICES_PLOTTED = 3


def _capacity_figure(result: TwinResult, i: int, slo: float) -> go.Figure:
    fig = go.Figure()
    x = result.ds
    fig.add_trace(
        go.Scatter(x=x, y=result.demand[i], name="Demand", line={"color": "black", "width": 1.5})
    )
    for p in POLICIES:
        served = result.trajectories[p].ready[i] * result.capacity[i] * slo
        fig.add_trace(
            go.Scatter(
                x=x,
                y=served,
                name=LABELS[p],
                line={"color": COLORS[p], "width": 1, "shape": "hv"},
                visible=True
                if p in ("reactive", "reactive_cost_matched", "predictive")
                else "legendonly",
            )
        )
    fig.update_layout(
        title=f"{result.ids[i]}: demand vs serving capacity at the SLO utilization",
        xaxis_title="time",
        yaxis_title="demand (trace units)",
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _tradeoff_figure(summary: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for p in POLICIES:
        s = summary[p]
        fig.add_trace(
            go.Scatter(
                x=[s["replica_hours"]],
                y=[s["underprovisioned_minutes"]],
                mode="markers+text",
                text=[LABELS[p]],
                textposition="top center",
                marker={"size": 14, "color": COLORS[p]},
                name=LABELS[p],
            )
        )
    fig.update_layout(
        title="Cost vs under-provisioning (lower-left is better)",
        xaxis_title="replica-hours (cost, starting replicas included)",
        yaxis_title="under-provisioned minutes",
        height=420,
        showlegend=False,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return fig


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, dict):
        return f"{v['median']:.2f} (median)"
    return f"{v:,.{digits}f}"


def _table(summary: dict[str, Any]) -> str:
    head = (
        "<tr><th>Policy</th><th>Under-provisioned min</th><th>vs reactive</th>"
        "<th>Unserved demand</th><th>Replica-hours</th><th>vs reactive</th>"
        "<th>Peak replicas</th><th>Scaling actions</th><th>HPA target</th></tr>"
    )
    rows = []
    for p in POLICIES:
        s = summary[p]
        vs = s["vs_reactive"]
        rows.append(
            f"<tr><td>{html.escape(LABELS[p])}</td>"
            f"<td>{_fmt(s['underprovisioned_minutes'], 0)}</td>"
            f"<td>{_fmt(vs['underprovisioned_minutes'], 2)}</td>"
            f"<td>{_fmt(s['unserved_demand'], 0)}</td>"
            f"<td>{_fmt(s['replica_hours'], 1)}</td>"
            f"<td>{_fmt(vs['replica_hours'], 2)}</td>"
            f"<td>{_fmt(s['peak_replicas'], 0)}</td>"
            f"<td>{_fmt(s['scaling_actions'], 0)}</td>"
            f"<td>{_fmt(s.get('hpa_target'), 2)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def headline(summary: dict[str, Any]) -> str:
    """The report's first sentence: predictive against the HPA given the same budget, and what
    it costs against today's default HPA. Says so when the trace does not favour predictive."""
    pred, matched, react = (summary[p] for p in ("predictive", "reactive_cost_matched", "reactive"))
    p_min, m_min = pred["underprovisioned_minutes"], matched["underprovisioned_minutes"]
    cost = _ratio_text(pred["replica_hours"], react["replica_hours"])
    same_cost = f"At the same cost (±{abs(pred['replica_hours'] - matched['replica_hours']):.1f} "
    same_cost += "replica-hours)"
    default = f"Against today's default HPA ({react['underprovisioned_minutes']:,.0f} minutes)"
    if p_min == 0 and m_min == 0:
        return (
            f"{same_cost}, neither predictive scaling nor an over-provisioned reactive HPA was "
            f"ever under-provisioned. {default} predictive scaling costs {cost}."
        )
    if p_min < m_min:
        return (
            f"{same_cost}, predictive scaling is under-provisioned for {p_min:,.0f} minutes "
            f"against {m_min:,.0f} for an over-provisioned reactive HPA ({m_min - p_min:,.0f} "
            f"SLO-minutes saved). {default} it costs {cost}."
        )
    return (
        f"{same_cost}, predictive scaling is under-provisioned for {p_min:,.0f} minutes against "
        f"{m_min:,.0f} for a reactive HPA at target {_fmt(matched.get('hpa_target'), 2)}: on "
        f"this trace over-provisioning the HPA does as well or better, so it does not make the "
        f"case for predictive scaling (keep the service reactive, or forecast in dry-run). "
        f"{default} predictive scaling costs {cost}."
    )


def _services_section(result: TwinResult) -> str:
    """Fleet runs only: how many services predictive helps, and where it does not."""
    if len(result.ids) < 2:
        return ""
    v = service_verdicts(result)
    text = (
        f"<p>Of {v.services:,} services, predictive scaling is under-provisioned less than the "
        f"reactive HPA given the same replica-hours on <b>{v.better:,}</b> ({v.meets_target:,} "
        f"of them by at least 30 %), as much on {v.same:,} ({v.never_short:,} where neither is "
        f"ever under-provisioned) and more on <b>{v.worse:,}</b>.</p>"
    )
    if not v.worst:
        return f"<h2>Per service</h2>{text}"
    rows = "".join(
        f"<tr><td>{html.escape(w['service'])}</td><td>{_fmt(w['predictive'], 0)}</td>"
        f"<td>{_fmt(w['cost_matched'], 0)}</td><td>{_fmt(w['cost_matched_target'], 2)}</td>"
        f"<td>{_fmt(w['reactive'], 0)}</td></tr>"
        for w in v.worst
    )
    table = (
        "<table><tr><th>Service (predictive loses most first)</th><th>Predictive under-prov. "
        "min</th><th>Same-cost HPA min</th><th>at HPA target</th><th>Default HPA min</th></tr>"
        f"{rows}</table>"
    )
    note = (
        '<p class="muted">On these services an HPA with the target shown does as well at the '
        "same cost: keep them reactive (or forecast in dry-run) until their forecasts improve.</p>"
    )
    return f"<h2>Per service</h2>{text}{table}{note}"


MAX_GUARD_ROWS = 20


def _guard_section(result: TwinResult) -> str:
    """What the scaling guard would decide for each service of this replay, as a new service
    (``decide_mode`` with no previous mode on the whole replay's evidence)."""
    from scaleahead.domain.modes import GuardRule, decide_mode
    from scaleahead.twin.guard import UNGUARDED, service_evidence

    if UNGUARDED not in result.metrics:
        return ""
    rule_args = result.details.get("guard", {}).get("rule")
    rule = GuardRule(**rule_args) if rule_args else GuardRule()
    decisions = [
        (sid, decide_mode(None, e, rule))
        for sid, e in zip(result.ids, service_evidence(result), strict=True)
    ]
    promoted = sum(d.mode.value == "predictive" for _, d in decisions)
    rows = "".join(
        f"<tr><td>{html.escape(sid)}</td><td>{d.mode.value}</td><td>{d.reason.value}</td>"
        f"<td>{_fmt(d.evidence.ratio, 2) if d.evidence.ratio is not None else '–'}</td>"
        f"<td>{_fmt(d.evidence.minutes_saved, 0)}</td><td>{d.evidence.incidents:,}</td></tr>"
        for sid, d in decisions[:MAX_GUARD_ROWS]
    )
    more = len(decisions) - MAX_GUARD_ROWS
    note = f'<p class="muted">{more:,} more services not shown.</p>' if more > 0 else ""
    return (
        f"<h2>Scaling guard</h2><p>On this replay's evidence the guard (promote at a ratio "
        f"&le; {rule.promote_ratio:g} with &ge; {rule.min_days:g} days and &ge; "
        f"{rule.min_incidents} incidents) would move <b>{promoted:,}</b> of {len(decisions):,} "
        "new service(s) from shadow to predictive.</p>"
        "<table><tr><th>Service</th><th>Mode</th><th>Reason</th><th>Predictive / same-cost "
        f"HPA min</th><th>Minutes saved</th><th>Incidents</th></tr>{rows}</table>{note}"
    )


def _ratio_text(a: float, b: float) -> str:
    if b <= 0:
        return "n/a"
    r = a / b
    return f"{(r - 1) * 100:+.0f}% replica-hours"


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1100px;color:#222}
h1{font-size:24px} h2{font-size:18px;margin-top:28px}
.lead{font-size:16px;background:#f3f8f3;border-left:4px solid #2ca02c;padding:12px 16px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:right}
th:first-child,td:first-child{text-align:left} .muted{color:#666;font-size:12px}
"""


def render(result: TwinResult, summary: dict[str, Any]) -> str:
    d = summary["details"]
    slo = float(d["slo_target_utilization"])
    figs = [_tradeoff_figure(summary)]
    # The services plotted: the ones where policies differ most (largest reactive shortfall).
    order = np.argsort(-result.metrics["reactive"].underprovisioned_minutes)
    figs += [_capacity_figure(result, int(i), slo) for i in order[:MAX_SERVICES_PLOTTED]]
    parts = []
    for k, fig in enumerate(figs):
        parts.append(
            pio.to_html(
                fig, full_html=False, include_plotlyjs=(k == 0), config={"displaylogo": False}
            )
        )
    how = (
        f"{d['services']} service(s), replay {html.escape(d['replay_start'])} → "
        f"{html.escape(d['replay_end'])} ({d['replay_steps']} steps of {d['step_s']:.0f} s); "
        f"start-up delay {d['startup_delay_s']:.0f} s; SLO utilization {slo:.2f}; "
        f"forecast {html.escape(d['forecast_quantile'])} refreshed every "
        f"{d['forecast_refresh_s']:.0f} s; cloud-style forecast: {html.escape(d['cloud_method'])}."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Capacity twin report</title>
<style>{CSS}</style></head><body>
<h1>Capacity digital twin: reactive vs predictive scaling</h1>
<p class="lead">{html.escape(headline(summary))}</p>
<p class="muted">{how} Under-provisioned = demand above ready replicas × capacity × the SLO
utilization; replicas count as cost from the moment they start. Every policy sees only the past,
except the oracle.</p>
<h2>Summary</h2>
{_table(summary)}
<h2>Cost vs under-provisioning</h2>
{parts[0]}
{_services_section(result)}
{_guard_section(result)}
<h2>Demand vs serving capacity</h2>
{"".join(parts[1:])}
</body></html>
"""


def write_report(result: TwinResult, summary: dict[str, Any], path: Path) -> Path:
    path.write_text(render(result, summary), encoding="utf-8")
    return path
