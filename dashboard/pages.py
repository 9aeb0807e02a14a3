"""Page layouts and tables of the dashboard, built from the cloud's records.

Every string from the database (asset names, messages, comments) is a text child of a component, which
React renders as text: nothing here renders markup or Markdown from data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dash import dcc, html

from cloud_service.lifecycle.records import CandidateMetrics, Gates
from cloud_service.lifecycle.registry import GatewayState, ModelRecord
from cloud_service.queries import AlertRecord, GatewayHealth, ModelPeriod
from dashboard.fleet import STATES, FleetRow, failure_mode_text, rul_text
from dashboard.timezones import display_zone

__all__ = [
    "FLEET_ROWS_SHOWN",
    "RANGES",
    "asset_alerts_table",
    "asset_layout",
    "banner",
    "elapsed_text",
    "empty_state",
    "fleet_layout",
    "fleet_table",
    "fleet_top",
    "gateways_layout",
    "gateways_table",
    "model_periods_table",
    "models_layout",
    "models_tables",
    "not_found",
    "time_text",
]

FLEET_ROWS_SHOWN = 100  # the fleet table's default length (DashboardSettings.fleet_rows_shown)

# Asset page ranges: label -> (hours shown, bucket seconds).
RANGES: dict[str, tuple[int, int]] = {
    "last 24 hours": (24, 600),
    "last 7 days": (7 * 24, 3600),
    "last 30 days": (30 * 24, 6 * 3600),
    "last 90 days": (90 * 24, 24 * 3600),
}


def time_text(ts: datetime | None) -> str:
    """A timestamp as the tables show it (in the browser's zone, to the minute, with the zone's
    abbreviation); a dash when unknown."""
    return "–" if ts is None else ts.astimezone(display_zone()).strftime("%Y-%m-%d %H:%M %Z")


def elapsed_text(seconds: float) -> str:
    """A span of time as the pages say it: seconds under 2 min, minutes under 2 h, hours under 2 days,
    then days."""
    whole = max(0, int(seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{whole // 60} min"
    if whole < 172800:
        return f"{whole // 3600} h"
    return f"{whole // 86400} d"


def _age_text(ts: datetime | None, now: datetime) -> str:
    return "never" if ts is None else f"{elapsed_text((now - ts).total_seconds())} ago"


def banner(text: str) -> html.Div:
    """A clear message across the page (the database is down, a refusal)."""
    return html.Div(text, className="banner", role="alert")


def empty_state(text: str) -> html.Div:
    """What a page shows when it has nothing to show yet, saying what to do."""
    return html.Div(text, className="empty")


def not_found(path: str) -> html.Div:
    """The page for an unknown address."""
    return html.Div(
        [html.H2("Not found"), html.P(f"No page at {path}."), dcc.Link("Back to the fleet", href="/")]
    )


def _dropdown(component_id: str, placeholder: str) -> dcc.Dropdown:
    return dcc.Dropdown(
        id=component_id, multi=True, placeholder=placeholder, persistence=True, persistence_type="session"
    )


def fleet_layout() -> html.Div:
    """The fleet page: filters over a table filled by the fleet callback."""
    return html.Div(
        [
            html.H2("Fleet"),
            html.P("Every asset, most at risk first. Click an asset for its history.", className="hint"),
            html.Div(
                [
                    _dropdown("fleet-site", "site"),
                    _dropdown("fleet-line", "line"),
                    _dropdown("fleet-type", "asset type"),
                    _dropdown("fleet-criticality", "criticality"),
                    dcc.Dropdown(
                        id="fleet-state",
                        options=list(STATES),
                        multi=True,
                        placeholder="state",
                        persistence=True,
                        persistence_type="session",
                    ),
                ],
                className="filters",
            ),
            dcc.Graph(id="fleet-risk", config={"displaylogo": False}),
            html.Div(id="fleet-table"),
        ]
    )


def _score_cell(row: FleetRow) -> html.Td:
    if row.score is None:
        return html.Td("no score", className="muted")
    threshold = f" / {row.threshold:.3g}" if row.threshold is not None else ""
    share = row.score_share
    meter = (
        html.Div(
            html.Div(style={"width": f"{min(share, 1.5) / 1.5 * 100:.0f}%"}, className="meter-fill"),
            className="meter" + (" over" if share >= 1.0 else ""),
        )
        if share is not None
        else None
    )
    return html.Td([html.Span(f"{row.score:.3g}{threshold}"), meter])


def _state_cell(row: FleetRow) -> html.Td:
    since = (
        f"out of service since {time_text(row.out_of_service_since)}: alerts recorded, not annunciated"
        if row.out_of_service_since is not None
        else None
    )
    return html.Td(html.Span(row.state, className=f"state state-{row.state.replace(' ', '-')}", title=since))


def _mode_cell(row: FleetRow) -> html.Td:
    text = failure_mode_text(row.diagnosis)
    if row.diagnosis is None:
        return html.Td(text, className="muted", title="no diagnosis yet")
    at = f"diagnosed {time_text(row.diagnosis.ts)} ({row.diagnosis.source}), alert {row.diagnosis.alert_id}"
    return html.Td(text, className="nowrap" + (" muted" if text == "unknown" else ""), title=at)


def _p_fail_text(row: FleetRow) -> str:
    if row.forecast is None:
        return "–"
    return f"{100 * row.forecast.p_fail:.0f} % in {row.forecast.horizon_h:.0f} h"


def _last_alert_text(alert: AlertRecord | None) -> str:
    if alert is None:
        return "none"
    return f"{alert.severity} {alert.state}, {time_text(alert.raised_at)}"


def fleet_top(rows: Sequence[FleetRow], *, limit: int) -> html.Div:
    """The fleet table of the `limit` most at-risk rows (already sorted and filtered), and how many more
    there are: a thousand rows are neither read nor drawn quickly."""
    shown = rows[:limit]
    note = (
        f"Showing the {len(shown)} most at risk of {len(rows)} assets: filter by site, line, type, "
        "criticality or state to see the others."
        if len(rows) > limit
        else f"{len(rows)} assets."
    )
    return html.Div([html.P(note, className="muted", id="fleet-count"), fleet_table(shown)])


# The two forecasts answer different questions, so a healthy asset may show an interval reaching under
# the horizon beside a small p(fail) (docs/forecasting.md): the headers say which question each answers.
_COLUMN_MEANING = {
    "RUL (interval)": (
        "Remaining useful life if this life ends in a failure, with its interval "
        "(calibrated on the fleet's run-to-failure lives)"
    ),
    "p(fail)": (
        "Probability of a failure within the forecast horizon (calibrated on every asset, healthy ones too)"
    ),
}


def fleet_table(rows: Sequence[FleetRow]) -> html.Table:
    """The fleet table (rows already sorted and filtered)."""
    header = html.Tr(
        [
            html.Th(name, title=_COLUMN_MEANING.get(name))
            for name in (
                "asset",
                "site",
                "line",
                "type",
                "criticality",
                "state",
                "score / threshold",
                "RUL (interval)",
                "p(fail)",
                "probable failure mode",
                "last alert",
            )
        ]
    )
    body = [
        html.Tr(
            [
                html.Td(dcc.Link(row.asset_id, href=f"/asset/{row.asset_id}")),
                html.Td(row.site_id or "–", className="nowrap"),
                html.Td(row.line or "–"),
                html.Td(row.asset_type or "–"),
                html.Td(row.criticality),
                _state_cell(row),
                _score_cell(row),
                html.Td(rul_text(row.forecast), className="nowrap"),
                html.Td(_p_fail_text(row), className="nowrap"),
                _mode_cell(row),
                html.Td(_last_alert_text(row.last_alert)),
            ],
            className="fleet-row",
        )
        for row in rows
    ]
    return html.Table([html.Thead(header), html.Tbody(body)], id="fleet", className="table")


def asset_layout(asset_id: str) -> html.Div:
    """The asset page: range and feature choosers over the charts, filled by the asset callback."""
    return html.Div(
        [
            dcc.Store(id="asset-id", data=asset_id),
            html.H2(["Asset ", html.Span(asset_id, className="mono")]),
            html.Div(
                [
                    dcc.Dropdown(
                        id="asset-range",
                        options=list(RANGES),
                        value="last 7 days",
                        clearable=False,
                        persistence=True,
                        persistence_type="session",
                    ),
                    dcc.Dropdown(
                        id="asset-feature",
                        placeholder="feature",
                        clearable=False,
                        persistence=True,
                        persistence_type="session",
                    ),
                ],
                className="filters",
            ),
            html.Div(id="asset-message"),
            dcc.Graph(id="asset-score", config={"displaylogo": False}),
            dcc.Graph(id="asset-feature-graph", config={"displaylogo": False}),
            dcc.Graph(id="asset-forecast", config={"displaylogo": False}),
            html.H3("Alerts in the range"),
            html.Div(id="asset-alerts"),
            html.Div(id="asset-acknowledge"),
            html.H3("Model versions that scored the range"),
            html.Div(id="asset-models"),
        ]
    )


def asset_alerts_table(alerts: Sequence[AlertRecord]) -> html.Div | html.Table:
    """An asset's alerts in the range, newest first."""
    if not alerts:
        return empty_state("No alerts in this range.")
    header = html.Tr(
        [html.Th(n) for n in ("raised", "severity", "state", "score", "message", "acknowledged")]
    )
    rows = [
        html.Tr(
            [
                html.Td(time_text(a.raised_at)),
                html.Td(a.severity),
                html.Td(a.state),
                html.Td("–" if a.score is None else f"{a.score:.3g}"),
                html.Td(a.message),
                html.Td(
                    f"{a.acknowledged_by}, {time_text(a.acknowledged_at)}: {a.comment}"
                    if a.acknowledged_by
                    else "–"
                ),
            ]
        )
        for a in reversed(alerts)
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table")


def model_periods_table(periods: Sequence[ModelPeriod]) -> html.Div | html.Table:
    """Which model version scored which stretch of the range."""
    if not periods:
        return empty_state("No scored periods in this range.")
    header = html.Tr([html.Th(n) for n in ("model version", "kind", "from", "to", "periods")])
    rows = [
        html.Tr(
            [
                html.Td(p.model_version, className="mono"),
                html.Td(p.model_kind),
                html.Td(time_text(p.first_start)),
                html.Td(time_text(p.last_end)),
                html.Td(str(p.n_periods)),
            ]
        )
        for p in periods
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table")


def gateways_layout() -> html.Div:
    """The gateways page."""
    return html.Div(
        [
            html.H2("Gateways"),
            html.P(
                "Online when a heartbeat arrived recently; counters are the gateway's own. Clock skew: the "
                "gateway's clock minus the cloud's, measured from its heartbeats; past "
                "ingest.max_clock_skew_s its data is stored flagged.",
                className="hint",
            ),
            html.Div(id="gateways-table"),
        ]
    )


def _metric(gateway: GatewayHealth, key: str) -> float | None:
    value = gateway.metrics.get(key)
    return None if value is None else float(value)


def _count_text(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _skew_text(skew_s: float | None) -> str:
    """The gateway's clock minus the cloud's, measured from its heartbeats (positive: ahead)."""
    return "–" if skew_s is None else f"{skew_s:+.1f}"


def gateways_table(gateways: Sequence[GatewayHealth], *, now: datetime) -> html.Div | html.Table:
    """Every gateway: online or offline, heartbeat age, queue depth, dropped and rejected, clock skew, model
    versions."""
    if not gateways:
        return empty_state(
            "No gateway has reported yet: start one with `forewarn edge run --config edge.toml` "
            "(or `forewarn demo`), and the cloud ingest with `forewarn cloud run`."
        )
    header = html.Tr(
        [
            html.Th(n)
            for n in (
                "gateway",
                "site",
                "state",
                "last heartbeat",
                "queue depth (messages)",
                "dropped (messages)",
                "rejected (payloads)",
                "sent upstream (bytes)",
                "clock skew (s)",
                "model versions",
            )
        ]
    )
    rows = []
    for gateway in gateways:
        is_online = gateway.state == "online" and not gateway.is_stale
        dropped = sum(v for k, v in gateway.metrics.items() if k.startswith("queue.dropped."))
        versions = ", ".join(
            f"{asset}: {version}" for asset, version in sorted(gateway.model_versions.items())
        )
        rows.append(
            html.Tr(
                [
                    html.Td(gateway.gateway_id, className="mono"),
                    html.Td(gateway.site_id or "–"),
                    html.Td(
                        html.Span(
                            "online" if is_online else "offline",
                            className="state state-normal" if is_online else "state state-offline",
                        )
                    ),
                    html.Td(_age_text(gateway.status_received_at, now)),
                    html.Td(_count_text(_metric(gateway, "queue.depth"))),
                    html.Td(_count_text(float(dropped) if gateway.metrics else None)),
                    html.Td(_count_text(_metric(gateway, "rejected.total"))),
                    html.Td(_count_text(_metric(gateway, "uplink.bytes_out"))),
                    html.Td(_skew_text(gateway.clock_skew_s)),
                    html.Td(versions or "–"),
                ]
            )
        )
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="gateways")


def models_layout() -> html.Div:
    """The models page."""
    return html.Div(
        [
            html.H2("Models"),
            html.P("The model registry and what each gateway did with each version.", className="hint"),
            html.Div(id="models-tables"),
        ]
    )


def _metrics_text(metrics: CandidateMetrics | None) -> str:
    if metrics is None:
        return "–"
    shown = {
        "threshold": metrics.threshold,
        "validation_alarm_rate": metrics.validation_alarm_rate,
        "fault_detection_rate": metrics.fault_detection_rate,
        "int8_latency_us": metrics.int8_latency_us,
    }
    return ", ".join(f"{name} {value:.3g}" for name, value in shown.items() if value is not None)


def _gates_text(gates: Gates | None) -> str:
    if gates is None:
        return "–"
    verdicts = [gate.passed for gate in gates.own().values()]
    if gates.champion is not None:
        verdicts.append(gates.champion.passed)
    return f"{sum(verdicts)} of {len(verdicts)} passed"


def models_tables(models: Sequence[ModelRecord], states: dict[str, list[GatewayState]]) -> html.Div:
    """The registry table and, per target, each gateway's state of each version."""
    if not models:
        return empty_state(
            "No model trained yet: the cloud trains one per target once enough aggregates are stored "
            "(`forewarn models train`), or run `forewarn demo`."
        )
    header = html.Tr(
        [
            html.Th(n)
            for n in (
                "target",
                "version",
                "type",
                "status",
                "threshold",
                "metrics",
                "gates",
                "created",
                "deployed",
                "reason",
            )
        ]
    )
    rows = [
        html.Tr(
            [
                html.Td(m.target, className="mono"),
                html.Td(f"v{m.version}"),
                html.Td(m.model_type),
                html.Td(html.Span(m.status, className=f"status status-{m.status}")),
                html.Td(f"{m.threshold:.3g}"),
                html.Td(_metrics_text(m.metrics)),
                html.Td(_gates_text(m.gates)),
                html.Td(time_text(m.created_at)),
                html.Td(time_text(m.deployed_at)),
                html.Td(m.reason or "–"),
            ]
        )
        for m in models
    ]
    parts: list[Any] = [html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="models")]
    for target, target_states in sorted(states.items()):
        parts.append(html.H3(["Gateways for ", html.Span(target, className="mono")]))
        if not target_states:
            parts.append(empty_state("No gateway has acknowledged a version of this target yet."))
            continue
        parts.append(
            html.Table(
                [
                    html.Thead(
                        html.Tr([html.Th(n) for n in ("gateway", "version", "state", "reason", "when")])
                    ),
                    html.Tbody(
                        [
                            html.Tr(
                                [
                                    html.Td(s.gateway_id, className="mono"),
                                    html.Td(f"v{s.version}"),
                                    html.Td(s.state.replace("_", " ")),
                                    html.Td(s.reason or "–"),
                                    html.Td(time_text(s.updated_at)),
                                ]
                            )
                            for s in target_states
                        ]
                    ),
                ],
                className="table",
            )
        )
    return html.Div(parts)
