"""The Cost page: the bandwidth the edge saved per gateway and in total, what the database stores, and how
long the lifecycle jobs (training, forecasts, rollups) take. Layout, tables and the figure only; the
reads are `cloud_service.queries.costs`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import plotly.graph_objects as go
from dash import dcc, html

from cloud_service.queries import GatewayTraffic, JobDuration, StorageUse
from dashboard import figures
from dashboard.pages import empty_state, time_text

__all__ = [
    "TRAFFIC_RANGES",
    "bytes_text",
    "cost_layout",
    "jobs_table",
    "storage_table",
    "traffic_figure",
    "traffic_table",
]

TRAFFIC_RANGES: dict[str, timedelta] = {
    "last 24 hours": timedelta(hours=24),
    "last 7 days": timedelta(days=7),
    "last 30 days": timedelta(days=30),
}
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def bytes_text(value: float | None) -> str:
    """A byte count in binary units (`1.5 MiB`); a dash when unknown."""
    if value is None:
        return "–"
    size = float(value)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} {_UNITS[-1]}"  # pragma: no cover - the loop always returns


def _share_text(share: float | None) -> str:
    return "–" if share is None else f"{share:.1%}"


def cost_layout() -> html.Div:
    """The cost page: a range chooser over the traffic, then storage and jobs, filled by its callback."""
    return html.Div(
        [
            html.H2("Cost"),
            html.P(
                "Bandwidth from the gateways' heartbeat counters; sizes from PostgreSQL; job times from the "
                "lifecycle scheduler.",
                className="hint",
            ),
            html.Div(
                dcc.Dropdown(
                    id="cost-range",
                    options=list(TRAFFIC_RANGES),
                    value="last 7 days",
                    clearable=False,
                    persistence=True,
                    persistence_type="session",
                ),
                className="filters",
            ),
            html.H3("Bandwidth: sent upstream against raw data received"),
            html.Div(id="cost-traffic"),
            dcc.Graph(id="cost-traffic-graph", config={"displaylogo": False}),
            html.H3("Storage"),
            html.Div(id="cost-storage"),
            html.H3("Lifecycle jobs"),
            html.Div(id="cost-jobs"),
        ]
    )


def _total(traffic: Sequence[GatewayTraffic]) -> GatewayTraffic:
    return GatewayTraffic(
        gateway_id="total",
        site_id=None,
        upstream_bytes=sum(t.upstream_bytes for t in traffic),
        raw_bytes=sum(t.raw_bytes for t in traffic),
        heartbeats=sum(t.heartbeats for t in traffic),
        first_ts=min((t.first_ts for t in traffic if t.first_ts), default=None),
        last_ts=max((t.last_ts for t in traffic if t.last_ts), default=None),
    )


def traffic_table(traffic: Sequence[GatewayTraffic]) -> html.Div | html.Table:
    """Per gateway and in total: raw bytes received, bytes sent upstream, and the share saved."""
    if not traffic:
        return empty_state(
            "No heartbeats in this range: start a gateway (`forewarn edge run --config edge.toml`) or "
            "`forewarn demo`, with the cloud ingest running; or choose a longer range."
        )
    header = html.Tr(
        [
            html.Th(n)
            for n in ("gateway", "site", "raw received", "sent upstream", "saved by the edge", "heartbeats")
        ]
    )

    def row(t: GatewayTraffic, class_name: str = "") -> html.Tr:
        return html.Tr(
            [
                html.Td(t.gateway_id, className="mono"),
                html.Td(t.site_id or "–"),
                html.Td(bytes_text(t.raw_bytes)),
                html.Td(bytes_text(t.upstream_bytes)),
                html.Td(_share_text(t.saved_share)),
                html.Td(f"{t.heartbeats:,}"),
            ],
            className=class_name,
        )

    body = [row(t) for t in traffic] + [row(_total(traffic), "total")]
    return html.Table([html.Thead(header), html.Tbody(body)], className="table", id="cost-traffic-table")


def traffic_figure(traffic: Sequence[GatewayTraffic], *, revision: str) -> go.Figure:
    """Raw and upstream bytes per gateway, side by side on a logarithmic axis."""
    if not traffic:
        return figures.empty_figure("no heartbeats in this range")
    names = [t.gateway_id for t in traffic]
    figure = go.Figure(
        [
            go.Bar(x=names, y=[t.raw_bytes for t in traffic], name="raw received", marker_color="#E69F00"),
            go.Bar(
                x=names, y=[t.upstream_bytes for t in traffic], name="sent upstream", marker_color="#0072B2"
            ),
        ]
    )
    figure.update_layout(
        barmode="group",
        xaxis_title="gateway",
        yaxis={
            "title": "bytes (log scale)",
            "type": "log",
            "dtick": 1,
            "ticksuffix": " B",
            "exponentformat": "SI",
        },
        uirevision=revision,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": -0.25},
        height=320,
    )
    return figure


def storage_table(storage: StorageUse) -> html.Div:
    """The database's size, then each table's size and rows, largest first."""
    header = html.Tr([html.Th(n) for n in ("table", "size (with indexes)", "rows")])
    rows = [
        html.Tr(
            [
                html.Td(t.table, className="mono"),
                html.Td(bytes_text(t.total_bytes)),
                html.Td(
                    "not yet analysed"
                    if t.rows is None
                    else f"{t.rows:,}"
                    if t.is_exact
                    else f"about {t.rows:,}"
                ),
            ]
        )
        for t in storage.tables
    ]
    return html.Div(
        [
            html.P(["Database size: ", html.Strong(bytes_text(storage.database_bytes), id="cost-db-size")]),
            html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="cost-storage-table"),
        ]
    )


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def jobs_table(jobs: Sequence[JobDuration]) -> html.Div | html.Table:
    """Every lifecycle job: its last run's duration and outcome, and when it runs next."""
    if not jobs:
        return empty_state(
            "No lifecycle job has been scheduled yet: start the cloud service (`forewarn cloud run --config "
            "cloud.toml`), which trains models and computes forecasts on its schedule."
        )
    header = html.Tr(
        [
            html.Th(n)
            for n in ("job", "last started", "last duration", "status", "runs", "next run", "schedule")
        ]
    )
    rows = [
        html.Tr(
            [
                html.Td(j.job_id, className="mono"),
                html.Td(time_text(j.last_started_at)),
                html.Td("running" if j.is_running else _duration_text(j.last_duration_s)),
                html.Td(j.last_status or "–", title=j.last_error or None),
                html.Td(f"{j.runs:,}"),
                html.Td(time_text(j.next_run_at)),
                html.Td(j.trigger, className="mono"),
            ]
        )
        for j in jobs
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="cost-jobs-table")
