"""The dashboard's app factory: Dash on its Flask server, behind a login, reading the cloud database.

`create_app(settings)` opens the one connection pool of the process, installs logins, sessions and CSRF
checks on the Flask server (`dashboard.security`), and registers the pages and their callbacks. Every
callback reads through `cloud_service` (no SQL here); when the database cannot be reached a page shows a
banner and tries again on the next refresh.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dash
import flask
import psycopg
import psycopg.errors
from dash import Input, Output, State, dcc, html
from psycopg_pool import PoolTimeout
from werkzeug.middleware.proxy_fix import ProxyFix

from cloud_service.database import Pool, open_pool
from cloud_service.lifecycle.registry import gateway_states, list_models
from cloud_service.queries import (
    LIKELY_P_FAIL,
    POSSIBLE_P_FAIL,
    AlertRecord,
    acknowledge_alert,
    alert_detail,
    alert_snapshots,
    asset_alerts,
    feature_baselines,
    gateway_health,
)
from cloud_service.users import Role
from dashboard import cost_page, diagnosis_panel, figures, model_actions, pages, why_panel, zone_choice
from dashboard.alerts_page import alerts_layout, register_alerts_page
from dashboard.fleet import FleetRow
from dashboard.page_data import (
    asset_diagnosis_data,
    asset_page_data,
    cost_page_data,
    fleet_page_data,
    fleet_risk_data,
    risk_span,
)
from dashboard.security import (
    allow_inline_scripts,
    csrf_token,
    current_role,
    current_username,
    install_security,
    require_role,
    script_hash,
)
from dashboard.settings import DashboardSettings, ModelActionSettings
from dashboard.timezones import SET_ZONE_SCRIPT, ZONE_SCRIPT

__all__ = ["DashboardApp", "create_app"]

logger = logging.getLogger(__name__)

_DB_DOWN = (
    "The database cannot be reached. This page tries again every {refresh:.0f} s; "
    "check the database and `forewarn cloud status`."
)
_NO_SCHEMA = "The database has no Forewarn tables yet: run `forewarn cloud migrate --config cloud.toml`."
_INDEX = """<!DOCTYPE html>
<html lang="en"><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}
{zone_script}
<style>
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d1d1f; }
header { display: flex; align-items: center; gap: 1.5rem; background: #1d2733; color: #fff;
  padding: .6rem 1.2rem; }
header a { color: #fff; text-decoration: none; } header a:hover { text-decoration: underline; }
header .brand { font-weight: 700; font-size: 1.15rem; } header .spacer { flex: 1; }
header form { margin: 0; } header button { background: transparent; color: #fff; border: 1px solid #8896a5;
  border-radius: 4px; padding: .25rem .7rem; cursor: pointer; }
main { padding: 1rem 1.5rem; } .hint { color: #555; margin-top: -.5rem; }
.filters { display: grid; grid-template-columns: repeat(5, minmax(9rem, 1fr)); gap: .6rem;
  margin: .8rem 0; }
.table { border-collapse: collapse; width: 100%; background: #fff; font-size: .92rem; margin-bottom: 1rem; }
.table th, .table td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #e3e5e8; }
.table th { background: #eef0f3; font-weight: 600; } .table tr.total td { font-weight: 700; }
.mono { font-family: ui-monospace, monospace; }
.table td a, .table .mono, .state, .nowrap { white-space: nowrap; }
.state { padding: .1rem .5rem; border-radius: 10px; font-size: .85rem; font-weight: 600; }
.state-alarm { background: #D55E00; color: #fff; } .state-warning { background: #E69F00; color: #000; }
.state-offline { background: #6b6b6b; color: #fff; } .state-normal { background: #009E73; color: #fff; }
.state-no-data { background: #ddd; color: #333; }
.state-out-of-service { background: #fff; color: #1d1d1f; border: 2px dashed #56B4E9; }
.advice-overdue { border-left: 6px solid #D55E00; } .advice-overdue th { background: #fde3d3; }
.meter { height: 5px; background: #e3e5e8; border-radius: 3px; margin-top: 3px; width: 7rem; }
.meter-fill { height: 5px; background: #0072B2; border-radius: 3px; }
.over .meter-fill { background: #D55E00; }
.banner { background: #fff3cd; border: 2px solid #D55E00; color: #000; padding: .8rem 1rem; margin: .6rem 0;
  border-radius: 4px; font-weight: 600; }
.empty { background: #fff; border: 1px dashed #8896a5; padding: 1.2rem; color: #333; border-radius: 4px; }
.muted { color: #777; }
.ack { display: flex; gap: .6rem; align-items: center; background: #fff; padding: .6rem; }
.ack > * { min-width: 12rem; }
</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>
"""


@dataclass(frozen=True, slots=True)
class DashboardApp:
    """A built dashboard: the Dash app, the WSGI application to serve, and the pool to close at the end."""

    dash_app: dash.Dash
    wsgi: Callable[..., Any]
    pool: Pool
    read_pool: Pool | None = None  # `read_db`'s, when set

    @property
    def server(self) -> flask.Flask:
        """The Flask server under Dash."""
        server: flask.Flask = self.dash_app.server
        return server

    def close(self) -> None:
        """Close the connection pools."""
        if self.read_pool is not None:
            self.read_pool.close()
        self.pool.close()


class _DatabaseDownError(Exception):
    """The database could not be reached (or has no schema) for a page's reads; the text says what to do."""

    @property
    def banner(self) -> html.Div:
        """The banner the page shows instead of its data."""
        return pages.banner(str(self))


class _Reads:
    """Connections for callbacks: reads from the read pool (a replica's, or the primary's), writes from
    the primary's, and one way to report that the database is down."""

    def __init__(self, pool: Pool, *, read_pool: Pool, timeout_s: float, refresh_s: float) -> None:
        self._pool = pool
        self._read_pool = read_pool
        self._timeout_s = timeout_s
        self._refresh_s = refresh_s

    def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        """A connection for a callback that only reads (from `read_db` when set)."""
        return self._connect(self._read_pool)

    def writing(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        """A connection for a callback that writes (always the primary, `db`)."""
        return self._connect(self._pool)

    @contextmanager
    def _connect(self, pool: Pool) -> Iterator[psycopg.Connection[Any]]:
        try:
            with pool.connection(timeout=self._timeout_s) as conn:  # commits on a clean exit
                yield conn
        except psycopg.errors.UndefinedTable as exc:
            logger.warning("dashboard read failed: the database has no Forewarn schema")
            raise _DatabaseDownError(_NO_SCHEMA) from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            logger.warning("dashboard read failed, database unavailable: %s", type(exc).__name__)
            raise _DatabaseDownError(_DB_DOWN.format(refresh=self._refresh_s)) from exc


def _shell(settings: DashboardSettings) -> html.Div:
    role = current_role()
    user = f"{current_username()} ({role.value})" if role is not None else ""
    return html.Div(
        [
            dcc.Location(id="url"),
            dcc.Interval(id="refresh", interval=int(settings.refresh_s * 1000)),
            html.Header(
                [
                    html.Span("Forewarn", className="brand"),
                    dcc.Link("Fleet", href="/"),
                    dcc.Link("Alerts", href="/alerts"),
                    dcc.Link("Gateways", href="/gateways"),
                    dcc.Link("Models", href="/models"),
                    dcc.Link("Cost", href="/cost"),
                    html.Span(className="spacer"),
                    html.Span(user, id="user"),
                    zone_choice.zone_selector(),
                    html.Form(
                        html.Button("Log out", type="submit", id="logout"),
                        action=f"/logout?csrf_token={csrf_token()}",
                        method="post",
                    ),
                ]
            ),
            html.Main(id="page"),
        ]
    )


def create_app(
    settings: DashboardSettings, *, pool: Pool | None = None, read_pool: Pool | None = None
) -> DashboardApp:
    """Build the dashboard.

    Args:
        settings: the dashboard's settings.
        pool: a connection pool to use instead of opening one from `settings.db` (tests).
        read_pool: a pool for the pages' reads instead of one from `settings.read_db` (tests).

    Returns:
        The app; serve `wsgi`, and call `close()` at the end.

    Raises:
        ConfigError: the session key file cannot be used.
    """
    if pool is None:
        # Opens in the background: a database that is down at start shows the banner, not a crash.
        pool = open_pool(settings.db, name="dashboard")
    if read_pool is None and settings.read_db is not None:
        read_pool = open_pool(settings.read_db, name="dashboard-read")
    server = flask.Flask("dashboard")
    install_security(server, settings, pool)
    dash_app = dash.Dash(
        "dashboard",
        server=False,
        title="Forewarn",
        update_title="",
        suppress_callback_exceptions=True,
        serve_locally=True,
        compress=False,
        index_string=_INDEX.replace("{zone_script}", SET_ZONE_SCRIPT),
    )
    dash_app.init_app(server)
    dash_app.layout = lambda: _shell(settings)
    reads = _Reads(
        pool,
        read_pool=read_pool or pool,
        timeout_s=float(settings.db.connect_timeout_s),
        refresh_s=settings.refresh_s,
    )
    _register_callbacks(dash_app, reads, settings)
    allow_inline_scripts(server, [*dash_app.csp_hashes(), script_hash(ZONE_SCRIPT)])  # after every callback
    wsgi: Callable[..., Any] = server.wsgi_app
    if settings.proxy.behind_proxy:
        n = settings.proxy.trusted_proxies
        wsgi = ProxyFix(server.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n)
    server.wsgi_app = wsgi  # type: ignore[method-assign]  # the documented way to add WSGI middleware
    return DashboardApp(dash_app, server, pool, read_pool)


def _filter_options(rows: list[FleetRow], attribute: str) -> list[str]:
    return sorted({str(getattr(row, attribute)) for row in rows if getattr(row, attribute)})


def _register_callbacks(app: dash.Dash, reads: _Reads, settings: DashboardSettings) -> None:
    _register_routing(app, settings)
    register_alerts_page(app, reads, settings=settings.alerts, database_down=_DatabaseDownError)
    _register_fleet(app, reads, rows_shown=settings.fleet_rows_shown)
    _register_fleet_risk(app, reads)
    _register_asset(app, reads)
    _register_acknowledge(app, reads)
    _register_why(app, reads)
    _register_diagnosis(app, reads)
    _register_system(app, reads)
    _register_cost(app, reads)
    _register_model_actions(app, reads, settings.models)
    zone_choice.register_zone_choice(app, reads, database_down=_DatabaseDownError)


def _models_layout() -> Any:
    role = current_role()
    is_admin = role is not None and role.allows(Role.ADMIN)
    return html.Div([pages.models_layout(), model_actions.action_form() if is_admin else None])


def _register_routing(app: dash.Dash, settings: DashboardSettings) -> None:
    pages_by_path: dict[str, Callable[[], Any]] = {
        "/": pages.fleet_layout,
        "/fleet": pages.fleet_layout,
        "/alerts": lambda: alerts_layout(settings.alerts),
        "/gateways": pages.gateways_layout,
        "/models": _models_layout,
        "/cost": cost_page.cost_layout,
    }

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def route(pathname: str | None) -> Any:
        path = pathname or "/"
        if path.startswith("/asset/") and len(path) > len("/asset/"):
            return html.Div(
                [
                    pages.asset_layout(path.removeprefix("/asset/")),
                    diagnosis_panel.panel_layout(),
                    why_panel.panel_layout(),
                ]
            )
        layout = pages_by_path.get(path)
        return layout() if layout is not None else pages.not_found(path)


def _register_fleet(app: dash.Dash, reads: _Reads, *, rows_shown: int) -> None:
    @app.callback(
        Output("fleet-table", "children"),
        Output("fleet-site", "options"),
        Output("fleet-line", "options"),
        Output("fleet-type", "options"),
        Output("fleet-criticality", "options"),
        Input("refresh", "n_intervals"),
        Input("fleet-site", "value"),
        Input("fleet-line", "value"),
        Input("fleet-type", "value"),
        Input("fleet-criticality", "value"),
        Input("fleet-state", "value"),
    )
    def fleet(
        _tick: int | None,
        sites: list[str] | None,
        lines: list[str] | None,
        types: list[str] | None,
        criticalities: list[str] | None,
        states: list[str] | None,
    ) -> tuple[Any, ...]:
        no_options = (dash.no_update,) * 4
        try:
            with reads.connection() as conn:
                rows = fleet_page_data(conn)
        except _DatabaseDownError as exc:
            return (exc.banner, *no_options)
        options = tuple(_filter_options(rows, a) for a in ("site_id", "line", "asset_type", "criticality"))
        if not rows:
            return (
                pages.empty_state(
                    "No assets yet: start a gateway (`forewarn edge run --config edge.toml`) or the "
                    "simulator (`forewarn sim run`) with the cloud ingest (`forewarn cloud run`), "
                    "or try `forewarn demo`."
                ),
                *options,
            )
        chosen = [
            row
            for row in rows
            if (not sites or row.site_id in sites)
            and (not lines or row.line in lines)
            and (not types or row.asset_type in types)
            and (not criticalities or row.criticality in criticalities)
            and (not states or row.state in states)
        ]
        if not chosen:
            return (pages.empty_state("No asset matches these filters: clear one to see more."), *options)
        return (pages.fleet_top(chosen, limit=rows_shown), *options)


def _register_fleet_risk(app: dash.Dash, reads: _Reads) -> None:
    @app.callback(Output("fleet-risk", "figure"), Input("refresh", "n_intervals"))
    def fleet_risk(_tick: int | None) -> Any:
        try:
            with reads.connection() as conn:
                now = datetime.now(UTC)
                days = fleet_risk_data(conn, end=now)
        except _DatabaseDownError:
            return figures.empty_figure("database unavailable")
        return figures.risk_figure(
            days, likely=LIKELY_P_FAIL, possible=POSSIBLE_P_FAIL, span=risk_span(now), revision="fleet-risk"
        )


def _register_asset(app: dash.Dash, reads: _Reads) -> None:
    @app.callback(
        Output("asset-score", "figure"),
        Output("asset-feature-graph", "figure"),
        Output("asset-forecast", "figure"),
        Output("asset-feature", "options"),
        Output("asset-feature", "value"),
        Output("asset-alerts", "children"),
        Output("asset-models", "children"),
        Output("asset-message", "children"),
        Output("asset-acknowledge", "children"),
        Input("asset-id", "data"),
        Input("asset-range", "value"),
        Input("asset-feature", "value"),
        Input("refresh", "n_intervals"),
    )
    def asset(asset_id: str, range_label: str, feature: str | None, _tick: int | None) -> tuple[Any, ...]:
        hours, bucket_s = pages.RANGES.get(range_label, pages.RANGES["last 7 days"])
        end = datetime.now(UTC)
        start = end - timedelta(hours=hours)
        revision = f"{asset_id}:{range_label}"
        try:
            with reads.connection() as conn:
                data = asset_page_data(
                    conn,
                    asset_id,
                    start=start,
                    end=end,
                    resolution=timedelta(seconds=bucket_s),
                    feature=feature,
                )
        except _DatabaseDownError as exc:
            empty = figures.empty_figure("database unavailable")
            return (empty, empty, empty, [], None, None, None, exc.banner, None)
        message = None
        if data.status is None:
            message = pages.empty_state(f"There is no asset {asset_id}. Pick one on the fleet page.")
        elif not data.series.points:
            message = pages.empty_state("No data in this range: choose a longer range, or start its gateway.")
        threshold = data.status.threshold if data.status is not None else None
        return (
            figures.score_figure(
                data.series, threshold=threshold, alerts=data.alerts, revision=revision, x_range=(start, end)
            ),
            figures.feature_figure(
                data.feature_points,
                feature=data.feature or "no feature",
                revision=f"{revision}:{data.feature}",
                x_range=(start, end),
            ),
            figures.forecast_figure(data.forecasts, revision=revision, x_range=(start, end)),
            data.feature_names,
            data.feature,
            pages.asset_alerts_table(data.alerts),
            pages.model_periods_table(data.periods),
            message,
            _acknowledge_form(data.open_alerts),
        )


def _register_why(app: dash.Dash, reads: _Reads) -> None:
    @app.callback(
        Output("asset-why-choice", "options"),
        Output("asset-why-choice", "value"),
        Input("asset-id", "data"),
        Input("asset-range", "value"),
        State("asset-why-choice", "value"),
    )
    def why_choices(asset_id: str, range_label: str | None, chosen: str | None) -> tuple[Any, Any]:
        hours, _ = pages.RANGES.get(range_label or "", pages.RANGES["last 7 days"])
        end = datetime.now(UTC)
        try:
            with reads.connection() as conn:
                alerts = asset_alerts(conn, asset_id, start=end - timedelta(hours=hours), end=end)
        except _DatabaseDownError:
            return dash.no_update, dash.no_update
        options = why_panel.alert_choices(alerts)
        values = [o["value"] for o in options]
        return options, chosen if chosen in values else (values[0] if values else None)

    @app.callback(Output("asset-why", "children"), Input("asset-why-choice", "value"))
    def why(choice: str | None) -> Any:
        gateway_id, _, alert_id = (choice or "").partition("/")
        try:
            with reads.connection() as conn:
                alert = alert_detail(conn, gateway_id, alert_id) if alert_id else None
                baselines = feature_baselines(conn, alert) if alert else {}
                snapshots = alert_snapshots(conn, gateway_id, alert_id) if alert else []
        except _DatabaseDownError as exc:
            return exc.banner
        return why_panel.panel(alert, baselines, snapshots)


def _register_diagnosis(app: dash.Dash, reads: _Reads) -> None:
    @app.callback(
        Output("asset-service", "children"),
        Output("asset-diagnosis", "children"),
        Output("asset-advice", "children"),
        Input("asset-id", "data"),
        Input("refresh", "n_intervals"),
    )
    def diagnosis(asset_id: str, _tick: int | None) -> tuple[Any, Any, Any]:
        try:
            with reads.connection() as conn:
                data = asset_diagnosis_data(conn, asset_id)
        except _DatabaseDownError as exc:
            return exc.banner, None, None
        return diagnosis_panel.panels(data)


def _register_acknowledge(app: dash.Dash, reads: _Reads) -> None:
    @app.callback(
        Output("ack-result", "children"),
        Input("ack-button", "n_clicks"),
        State("ack-alert", "value"),
        State("ack-comment", "value"),
        prevent_initial_call=True,
    )
    @require_role(Role.ENGINEER)
    def acknowledge(_clicks: int | None, alert_key: str | None, comment: str | None) -> Any:
        if not alert_key or "/" not in alert_key:
            return "Choose an alert first."
        gateway_id, _, alert_id = alert_key.partition("/")
        try:
            with reads.writing() as conn:
                done = acknowledge_alert(
                    conn,
                    gateway_id=gateway_id,
                    alert_id=alert_id,
                    by=current_username(),
                    comment=comment or "",
                )
        except _DatabaseDownError as exc:
            return exc.banner
        return f"Acknowledged {alert_id}." if done else f"{alert_id} is no longer open."


def _register_system(app: dash.Dash, reads: _Reads) -> None:
    @app.callback(Output("gateways-table", "children"), Input("refresh", "n_intervals"))
    def gateways(_tick: int | None) -> Any:
        try:
            with reads.connection() as conn:
                health = gateway_health(conn)
        except _DatabaseDownError as exc:
            return exc.banner
        return pages.gateways_table(health, now=datetime.now(UTC))

    @app.callback(Output("models-tables", "children"), Input("refresh", "n_intervals"))
    def models(_tick: int | None) -> Any:
        try:
            with reads.connection() as conn:
                registry = list_models(conn)
                states = {
                    target: gateway_states(conn, target) for target in sorted({m.target for m in registry})
                }
        except _DatabaseDownError as exc:
            return exc.banner
        return pages.models_tables(registry, states)


def _register_model_actions(app: dash.Dash, reads: _Reads, settings: ModelActionSettings) -> None:
    @app.callback(
        Output("model-action-choice", "options"),
        Input("model-action-result", "children"),
    )
    def choices(_result: Any) -> Any:
        try:
            with reads.connection() as conn:
                return model_actions.choices(list_models(conn))
        except _DatabaseDownError:
            return dash.no_update

    @app.callback(
        Output("model-action-result", "children"),
        Output("models-tables", "children", allow_duplicate=True),
        Input("model-action-button", "n_clicks"),
        State("model-action", "value"),
        State("model-action-choice", "value"),
        State("model-action-reason", "value"),
        prevent_initial_call=True,
    )
    @require_role(Role.ADMIN)
    def act(
        _clicks: int | None, action: str | None, choice: str | None, reason: str | None
    ) -> tuple[Any, Any]:
        try:
            with reads.writing() as conn:
                done = model_actions.perform(
                    conn, settings, action=action, choice=choice, by=current_username(), reason=reason or ""
                )
                registry = list_models(conn)
                states = {t: gateway_states(conn, t) for t in sorted({m.target for m in registry})}
        except _DatabaseDownError as exc:
            return exc.banner, dash.no_update
        return done, pages.models_tables(registry, states)


def _register_cost(app: dash.Dash, reads: _Reads) -> None:
    @app.callback(
        Output("cost-traffic", "children"),
        Output("cost-traffic-graph", "figure"),
        Output("cost-storage", "children"),
        Output("cost-jobs", "children"),
        Input("cost-range", "value"),
        Input("refresh", "n_intervals"),
    )
    def cost(range_label: str | None, _tick: int | None) -> tuple[Any, ...]:
        label = range_label if range_label in cost_page.TRAFFIC_RANGES else "last 7 days"
        end = datetime.now(UTC)
        try:
            with reads.connection() as conn:
                data = cost_page_data(conn, start=end - cost_page.TRAFFIC_RANGES[label], end=end)
        except _DatabaseDownError as exc:
            return (exc.banner, figures.empty_figure("database unavailable"), None, None)
        return (
            cost_page.traffic_table(data.traffic),
            cost_page.traffic_figure(data.traffic, revision=label),
            cost_page.storage_table(data.storage),
            cost_page.jobs_table(data.jobs),
        )


def _acknowledge_form(alerts: list[AlertRecord]) -> html.Div:
    """The acknowledge form, for engineers and admins only (the callback checks the role again)."""
    role = current_role()
    if role is None or not role.allows(Role.ENGINEER) or not alerts:
        return html.Div(id="ack-result")
    options = [
        {
            "label": f"{a.alert_id} ({a.severity}, raised {pages.time_text(a.raised_at)})",
            "value": f"{a.gateway_id}/{a.alert_id}",
        }
        for a in alerts
        if a.state == "open"
    ]
    if not options:
        return html.Div(id="ack-result")
    return html.Div(
        [
            dcc.Dropdown(id="ack-alert", options=options, placeholder="open alert"),
            dcc.Input(id="ack-comment", placeholder="comment", maxLength=500),
            html.Button("Acknowledge", id="ack-button"),
            html.Span(id="ack-result"),
        ],
        className="ack",
    )
