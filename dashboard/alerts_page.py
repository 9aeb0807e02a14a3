"""The alerts page, modelled on ISA-18.2 / IEC 62682: alerts by state, acknowledge, shelve, out of service,
each alert's event history and the alarm-health panel.

States shown: active and unacknowledged, active and acknowledged, returned (cleared) but unacknowledged,
shelved, out of service. Engineers and admins acknowledge with a comment, shelve an alarm point for a
limited time with a reason (at most `dashboard.alerts.max_shelve_s`), unshelve, and take an asset out of
service and back; the role is checked on the server inside the action callback, whatever the page shows.
The page refreshes on the dashboard's interval, and after every action, without a reload; its choosers
keep their values (`persistence`) and its chart its zoom (`uirevision`). Every string from the database is a
text child, never markup. Ended shelves are swept (their automatic unshelve logged) on each refresh.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import dash
import plotly.graph_objects as go
import psycopg
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from cloud_service.queries import (
    ATTENTION_STATES,
    AlarmState,
    AlertEvent,
    ManagedAlert,
    SiteAlarmHealth,
    acknowledge,
    alarm_health,
    alert_history,
    expire_shelves,
    known_assets,
    list_alerts,
    out_of_service_assets,
    raises_per_hour,
    return_to_service,
    set_out_of_service,
    shelve_alert,
    unshelve_alert,
)
from cloud_service.queries.alarm_health import (
    CHATTER_RAISES,
    CHATTER_WINDOW,
    FLOOD_PERIOD,
    FLOOD_RAISES,
    STALE_AFTER,
    TOP_POINTS,
)
from cloud_service.users import Role
from dashboard import pages
from dashboard.figures import PALETTE
from dashboard.security import current_role, current_username, require_role
from dashboard.settings import AlertsSettings
from dashboard.timezones import to_display, zone_name
from shared.errors import ContractError

__all__ = ["STATE_LABELS", "Connections", "alerts_layout", "parse_duration", "register_alerts_page"]

# The order operators read them in: what needs action first.
SHOWN_STATES: Final = (
    AlarmState.ACTIVE_UNACKNOWLEDGED,
    AlarmState.RETURNED_UNACKNOWLEDGED,
    AlarmState.ACTIVE_ACKNOWLEDGED,
    AlarmState.SHELVED,
    AlarmState.OUT_OF_SERVICE,
)
STATE_LABELS: Final = {
    AlarmState.ACTIVE_UNACKNOWLEDGED: "active, unacknowledged",
    AlarmState.RETURNED_UNACKNOWLEDGED: "returned, unacknowledged",
    AlarmState.ACTIVE_ACKNOWLEDGED: "active, acknowledged",
    AlarmState.SHELVED: "shelved",
    AlarmState.OUT_OF_SERVICE: "out of service",
    AlarmState.NORMAL: "normal",
}
# Okabe-Ito colours, each with a text colour that reads on it.
_STATE_STYLE: Final = {
    AlarmState.ACTIVE_UNACKNOWLEDGED: (PALETTE["vermillion"], "#fff"),
    AlarmState.RETURNED_UNACKNOWLEDGED: (PALETTE["sky"], "#000"),
    AlarmState.ACTIVE_ACKNOWLEDGED: (PALETTE["orange"], "#000"),
    AlarmState.SHELVED: (PALETTE["purple"], "#000"),
    AlarmState.OUT_OF_SERVICE: ("#6b6b6b", "#fff"),
    AlarmState.NORMAL: (PALETTE["green"], "#fff"),
}
_ACTIONS: Final = (
    "alerts-acknowledge",
    "alerts-shelve",
    "alerts-unshelve",
    "alerts-out-of-service",
    "alerts-return-to-service",
)
_DURATION = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?)?\s*$", re.IGNORECASE
)
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600}
_MAX_OPTIONS: Final = 1000


class Connections(Protocol):
    """Where callbacks get a database connection (the dashboard's pools; commits on a clean exit)."""

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection for one callback that only reads (a replica's, when the dashboard has one);
        raises the dashboard's database-down error if unreachable."""
        ...

    def writing(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection for one callback that writes (the primary's)."""
        ...


def parse_duration(text: str) -> timedelta:
    """A shelve duration typed by a person: `90 s`, `15 min`, `2 h`; a bare number is minutes.

    Raises:
        ValueError: the text is not a number with one of those units.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r}: expected a number and a unit, e.g. 45 s, 30 min or 2 h")
    unit = (match.group(2) or "min").lower()
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[unit[0]])


def _time_text(ts: datetime | None) -> str:
    """A timestamp to the second (shelves and transitions can be seconds apart), in UTC."""
    return "–" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration_text(duration: timedelta) -> str:
    seconds = duration.total_seconds()
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


# ------------------------------------------------------------------------------------------------ layout


def _can_act() -> bool:
    role = current_role()
    return role is not None and role.allows(Role.ENGINEER)


def _field(component_id: str, placeholder: str, *, width: str = "14rem") -> dcc.Input:
    return dcc.Input(
        id=component_id, placeholder=placeholder, maxLength=500, type="text", style={"minWidth": width}
    )


def _actions_panel(settings: AlertsSettings) -> html.Div:
    longest = _duration_text(timedelta(seconds=settings.max_shelve_s))
    return html.Div(
        [
            html.H3("Act on the chosen alert"),
            html.Div(
                [
                    _field("alerts-comment", "comment (what you saw or did)", width="22rem"),
                    html.Button("Acknowledge", id="alerts-acknowledge"),
                ],
                className="ack",
            ),
            html.Div(
                [
                    _field("alerts-shelve-reason", "reason for shelving", width="18rem"),
                    _field("alerts-shelve-duration", f"for how long (at most {longest})", width="14rem"),
                    html.Button("Shelve", id="alerts-shelve"),
                    html.Button("Unshelve", id="alerts-unshelve"),
                ],
                className="ack",
            ),
            html.H3("Out of service (maintenance)"),
            html.Div(
                [
                    dcc.Dropdown(id="alerts-oos-asset", placeholder="asset", style={"minWidth": "14rem"}),
                    _field("alerts-oos-reason", "reason (e.g. bearing replacement)", width="18rem"),
                    html.Button("Take out of service", id="alerts-out-of-service"),
                    html.Button("Return to service", id="alerts-return-to-service"),
                ],
                className="ack",
            ),
            html.Div(id="alerts-action-result", role="status", style={"margin": ".6rem 0"}),
        ]
    )


def alerts_layout(settings: AlertsSettings) -> html.Div:
    """The alerts page; the action panel only for engineers and admins (the server checks again)."""
    states = [{"label": STATE_LABELS[state], "value": state.value} for state in SHOWN_STATES]
    return html.Div(
        [
            html.H2("Alerts"),
            html.P(
                "Active and acknowledged are separate facts: an alert that cleared before anyone "
                "acknowledged it stays here as returned, unacknowledged. Shelved and out-of-service "
                "alerts are recorded but not annunciated.",
                className="hint",
            ),
            dcc.Store(id="alerts-changed", data=0),
            html.Div(
                [
                    dcc.Checklist(
                        id="alerts-states",
                        options=states,
                        value=[state.value for state in SHOWN_STATES],
                        inline=True,
                        persistence=True,
                        persistence_type="session",
                        style={"gridColumn": "span 3"},
                        inputStyle={"marginRight": ".3rem", "marginLeft": ".8rem"},
                    ),
                    dcc.Dropdown(
                        id="alerts-site",
                        multi=True,
                        placeholder="site",
                        persistence=True,
                        persistence_type="session",
                    ),
                ],
                className="filters",
            ),
            html.Div(id="alerts-sections"),
            html.H3("Alert"),
            dcc.Dropdown(
                id="alerts-target",
                placeholder="choose an alert for its history (and to act on it)",
                persistence=True,
                persistence_type="session",
            ),
            _actions_panel(settings) if _can_act() else html.Div(),
            html.H3("History of the chosen alert"),
            html.Div(id="alerts-history"),
            html.H3(f"Alarm health, last {settings.health_window_days} days"),
            _health_hint(),
            html.Div(id="alerts-health"),
            dcc.Graph(id="alerts-rate", config={"displaylogo": False}),
        ]
    )


def _health_hint() -> html.P:
    stale_h = STALE_AFTER.total_seconds() / 3600
    flood_min = FLOOD_PERIOD.total_seconds() / 60
    return html.P(
        f"Counted over annunciated raises. Stale: active longer than {stale_h:.0f} h. "
        f"Chattering (EEMUA 191): one asset and rule raised {CHATTER_RAISES} or more times within "
        f"{CHATTER_WINDOW.total_seconds():.0f} s. Flood (ISA-18.2): a {flood_min:.0f}-minute period with "
        f"more than {FLOOD_RAISES} raises. Top-{TOP_POINTS} share: raises from the {TOP_POINTS} most "
        "frequent alarm points.",
        className="hint",
    )


# ------------------------------------------------------------------------------------------------ tables


def _chip(state: AlarmState) -> html.Span:
    background, colour = _STATE_STYLE[state]
    return html.Span(
        STATE_LABELS[state], className="state", style={"background": background, "color": colour}
    )


def _alert_key(alert: ManagedAlert) -> str:
    return f"{alert.gateway_id}/{alert.alert_id}"


def _option_label(alert: ManagedAlert) -> str:
    raised = pages.time_text(alert.raised_at)
    return f"{alert.asset_id} · {alert.alert_id} · {STATE_LABELS[alert.state]} · raised {raised}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _suppression_text(alert: ManagedAlert) -> str:
    if alert.out_of_service_since is not None:
        return f"asset out of service since {pages.time_text(alert.out_of_service_since)}"
    if alert.shelved_until is not None:
        until = _time_text(alert.shelved_until)
        return f"until {until} by {alert.shelved_by}: {alert.shelve_reason}"
    return "–"


def _acknowledged_text(alert: ManagedAlert) -> str:
    if not alert.is_acknowledged:
        return "not yet"
    comment = f": {alert.comment}" if alert.comment else ""
    return f"{alert.acknowledged_by}, {pages.time_text(alert.acknowledged_at)}{comment}"


def _alert_row(alert: ManagedAlert) -> html.Tr:
    return html.Tr(
        [
            html.Td(pages.time_text(alert.raised_at), className="nowrap", title=f"alert {alert.alert_id}"),
            html.Td(
                [dcc.Link(alert.asset_id, href=f"/asset/{alert.asset_id}"), f" / {alert.rule or '–'}"],
                className="nowrap",
            ),
            html.Td(alert.site_id or "–", className="nowrap"),
            html.Td(alert.severity),
            html.Td(f"{_number(alert.score)} / {_number(alert.threshold)}", className="nowrap"),
            html.Td(alert.message, style={"minWidth": "12rem"}),
            html.Td(pages.time_text(alert.cleared_at) if alert.cleared_at else "active", className="nowrap"),
            html.Td(_acknowledged_text(alert)),
            html.Td(_suppression_text(alert), style={"minWidth": "11rem"}),
        ],
        className="alert-row",
    )


_ALERT_COLUMNS: Final = (
    "raised",
    "asset / rule",
    "site",
    "severity",
    "score / threshold",
    "message",
    "cleared",
    "acknowledged",
    "shelved or out of service",
)


def alert_sections(alerts: Sequence[ManagedAlert], states: Sequence[AlarmState]) -> html.Div:
    """One table per state, in `states`' order, each headed by its state and count."""
    parts: list[Any] = []
    for state in states:
        chosen = [a for a in alerts if a.state is state]
        parts.append(html.H3([_chip(state), f" {len(chosen)}"], className="alerts-state-heading"))
        if not chosen:
            parts.append(html.P("None.", className="muted"))
            continue
        table = html.Table(
            [
                html.Thead(html.Tr([html.Th(name) for name in _ALERT_COLUMNS])),
                html.Tbody([_alert_row(a) for a in chosen]),
            ],
            className="table",
            id=f"alerts-{state.value.replace('_', '-')}",
        )
        parts.append(html.Div(table, style={"overflowX": "auto"}))
    return html.Div(parts)


def history_table(events: Sequence[AlertEvent]) -> html.Div | html.Table:
    """An alert's transitions, oldest first."""
    if not events:
        return pages.empty_state("Choose an alert above to see every transition it went through.")
    header = html.Tr([html.Th(n) for n in ("when", "transition", "who", "comment or reason", "annunciated")])
    rows = [
        html.Tr(
            [
                html.Td(_time_text(e.ts), className="nowrap"),
                html.Td(e.transition.value.replace("_", " ")),
                html.Td(e.actor),
                html.Td(
                    e.comment
                    + (f" (until {_time_text(e.shelved_until)})" if e.shelved_until is not None else "")
                ),
                html.Td("yes" if e.annunciated else "no"),
            ]
        )
        for e in events
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="alerts-history-table")


def _share_text(site: SiteAlarmHealth) -> str:
    if site.top_ten_share is None:
        return "–"
    points = "1 alarm point" if site.points == 1 else f"{site.points} alarm points"
    return f"{100 * site.top_ten_share:.0f} % (of {points})"


def health_table(sites: Sequence[SiteAlarmHealth]) -> html.Div | html.Table:
    """The alarm-health panel: one row per site."""
    if not sites:
        return pages.empty_state("No assets yet: start a gateway or the simulator, or run `forewarn demo`.")
    header = html.Tr(
        [
            html.Th(n)
            for n in (
                "site",
                "assets",
                "alerts raised",
                "alerts per asset-week",
                f"stale (active > {STALE_AFTER.total_seconds() / 3600:.0f} h)",
                "chattering points",
                "flood periods",
                f"top-{TOP_POINTS} share",
            )
        ]
    )
    rows = [
        html.Tr(
            [
                html.Td(site.site_id or "no site"),
                html.Td(str(site.assets)),
                html.Td(str(site.raised)),
                html.Td(f"{site.alerts_per_asset_week:.2f}"),
                html.Td(str(site.stale)),
                html.Td(", ".join(f"{p.asset_id} / {p.rule}" for p in site.chattering) or "none"),
                html.Td(f"{site.flood_periods} of {site.periods}"),
                html.Td(_share_text(site)),
            ]
        )
        for site in sites
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="alarm-health")


_HOUR_MS = 3_600_000


def rate_figure(
    per_hour: dict[str, list[tuple[datetime, int]]], *, window: tuple[datetime, datetime]
) -> go.Figure:
    """Alerts raised per hour and site over the health window, in the user's time zone (zoom kept across
    refreshes); the axis spans the whole window, also when one hour has raises."""
    figure = go.Figure()
    for site, counts in sorted(per_hour.items()):
        figure.add_trace(
            go.Bar(
                x=[to_display(hour) for hour, _ in counts],
                y=[n for _, n in counts],
                # an hour wide, in the date axis' milliseconds: Plotly draws a lone bar 1 ms wide (invisible)
                width=[_HOUR_MS] * len(counts),
                offset=0,  # the bar covers its hour, from the hour's start
                name=site or "no site",
            )
        )
    days = round((window[1] - window[0]) / timedelta(days=1))
    figure.update_layout(
        title={"text": f"Alerts raised per hour, last {days} days", "x": 0.01},
        xaxis={"type": "date", "range": [to_display(window[0]), to_display(window[1])]},
        xaxis_title=f"time ({zone_name()})",
        yaxis_title="alerts raised (per hour)",
        uirevision="alerts-rate",
        template="plotly_white",
        colorway=list(PALETTE.values()),
        barmode="stack",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.25},
        height=300,
    )
    return figure


# --------------------------------------------------------------------------------------------- callbacks


class _Page:
    """The alerts page's callbacks over one connection source."""

    def __init__(
        self, connections: Connections, *, settings: AlertsSettings, database_down: type[Exception]
    ) -> None:
        self._connections = connections
        self._settings = settings
        self._down = database_down

    @property
    def _window(self) -> tuple[datetime, datetime]:
        end = datetime.now(UTC)
        return end - timedelta(days=self._settings.health_window_days), end

    def refresh(self, states: list[str] | None, sites: list[str] | None) -> tuple[Any, ...]:
        chosen = [state for state in SHOWN_STATES if state.value in (states or [])]
        start, end = self._window
        try:
            with self._connections.writing() as conn:  # sweeping ended shelves writes
                expire_shelves(conn)
                alerts = list_alerts(conn, states=ATTENTION_STATES, limit=_MAX_OPTIONS)
                health = alarm_health(conn, start=start, end=end)
                per_hour = raises_per_hour(conn, start=start, end=end)
        except self._down as exc:
            return (pages.banner(str(exc)), dash.no_update, dash.no_update, dash.no_update, dash.no_update)
        site_options = sorted(
            {a.site_id for a in alerts if a.site_id} | {h.site_id for h in health if h.site_id}
        )
        shown = [a for a in alerts if not sites or a.site_id in sites]
        options = [{"label": _option_label(a), "value": _alert_key(a)} for a in shown]
        sections = (
            alert_sections(shown, chosen)
            if alerts
            else pages.empty_state("No alert needs attention. New alerts appear here on their own.")
        )
        return (
            sections,
            options,
            site_options,
            health_table(health),
            rate_figure(per_hour, window=(start, end)),
        )

    def assets(self) -> Any:
        try:
            with self._connections.connection() as conn:
                asset_ids = known_assets(conn)
                out = out_of_service_assets(conn)
        except self._down:
            return dash.no_update
        return [
            {"label": f"{asset_id} (out of service)" if asset_id in out else asset_id, "value": asset_id}
            for asset_id in asset_ids
        ]

    def history(self, alert_key: str | None) -> Any:
        if not alert_key or "/" not in alert_key:
            return history_table([])
        gateway_id, _, alert_id = alert_key.partition("/")
        try:
            with self._connections.connection() as conn:
                events = alert_history(conn, gateway_id=gateway_id, alert_id=alert_id)
        except self._down as exc:
            return pages.banner(str(exc))
        return history_table(events)

    def act(self, action: str, fields: _ActionFields) -> str:
        """Run one action for the logged-in user; the text says what happened."""
        try:
            with self._connections.writing() as conn:
                return self._run(conn, action, fields)
        except self._down as exc:
            return str(exc)
        except ContractError as exc:
            return f"Not done: {exc}"

    def _run(self, conn: psycopg.Connection[Any], action: str, fields: _ActionFields) -> str:
        by = current_username()
        if action in ("alerts-out-of-service", "alerts-return-to-service"):
            return self._service(conn, action, fields, by)
        if not fields.alert_key or "/" not in fields.alert_key:
            return "Choose an alert first."
        gateway_id, _, alert_id = fields.alert_key.partition("/")
        if action == "alerts-acknowledge":
            done = acknowledge(conn, gateway_id=gateway_id, alert_id=alert_id, by=by, comment=fields.comment)
            return f"Acknowledged {alert_id}." if done else f"{alert_id} was already acknowledged."
        if action == "alerts-unshelve":
            done = unshelve_alert(
                conn, gateway_id=gateway_id, alert_id=alert_id, by=by, comment=fields.comment
            )
            return f"Unshelved {alert_id}." if done else f"{alert_id} is not shelved."
        return self._shelve(conn, gateway_id, alert_id, fields, by)

    def _shelve(
        self, conn: psycopg.Connection[Any], gateway_id: str, alert_id: str, fields: _ActionFields, by: str
    ) -> str:
        longest = timedelta(seconds=self._settings.max_shelve_s)
        try:
            duration = parse_duration(fields.duration)
        except ValueError as exc:
            return f"Not shelved: {exc}."
        if duration > longest:
            return f"Not shelved: at most {_duration_text(longest)} (the site's limit)."
        until = shelve_alert(
            conn,
            gateway_id=gateway_id,
            alert_id=alert_id,
            by=by,
            reason=fields.reason,
            duration=duration,
            max_duration=longest,
        )
        if until is None:
            return f"{alert_id} needs no attention: nothing to shelve."
        return f"Shelved {alert_id} until {_time_text(until)}."

    @staticmethod
    def _service(conn: psycopg.Connection[Any], action: str, fields: _ActionFields, by: str) -> str:
        if not fields.asset_id:
            return "Choose an asset first."
        if action == "alerts-out-of-service":
            done = set_out_of_service(conn, asset_id=fields.asset_id, by=by, reason=fields.oos_reason)
            return (
                f"{fields.asset_id} is out of service."
                if done
                else f"{fields.asset_id} was already out of service."
            )
        done = return_to_service(conn, asset_id=fields.asset_id, by=by, comment=fields.oos_reason)
        return (
            f"{fields.asset_id} is back in service." if done else f"{fields.asset_id} was not out of service."
        )


@dataclass(frozen=True, slots=True)
class _ActionFields:
    """What the action panel's fields held when a button was pressed (blank when empty)."""

    alert_key: str
    comment: str
    reason: str
    duration: str
    asset_id: str
    oos_reason: str

    @classmethod
    def of(cls, values: Sequence[str | None]) -> _ActionFields:
        """From the callback's State values, in the dataclass's field order."""
        return cls(*((value or "").strip() for value in values))


def register_alerts_page(
    app: dash.Dash, connections: Connections, *, settings: AlertsSettings, database_down: type[Exception]
) -> None:
    """Register the alerts page's callbacks.

    Args:
        app: the dashboard's Dash app.
        connections: the callbacks' connection source.
        settings: the alerts page's settings.
        database_down: the error `connections` raises when the database cannot be reached (its text is
            shown as a banner).
    """
    page = _Page(connections, settings=settings, database_down=database_down)

    @app.callback(
        Output("alerts-sections", "children"),
        Output("alerts-target", "options"),
        Output("alerts-site", "options"),
        Output("alerts-health", "children"),
        Output("alerts-rate", "figure"),
        Input("refresh", "n_intervals"),
        Input("alerts-changed", "data"),
        Input("alerts-states", "value"),
        Input("alerts-site", "value"),
    )
    def alerts(_tick: int | None, _changed: int, states: list[str] | None, sites: list[str] | None) -> Any:
        return page.refresh(states, sites)

    @app.callback(
        Output("alerts-oos-asset", "options"),
        Input("refresh", "n_intervals"),
        Input("alerts-changed", "data"),
    )
    def assets(_tick: int | None, _changed: int) -> Any:
        return page.assets()

    @app.callback(
        Output("alerts-history", "children"),
        Input("alerts-target", "value"),
        Input("alerts-changed", "data"),
        Input("refresh", "n_intervals"),
    )
    def history(alert_key: str | None, _changed: int, _tick: int | None) -> Any:
        return page.history(alert_key)

    @app.callback(
        Output("alerts-action-result", "children"),
        Output("alerts-changed", "data"),
        *(Input(action, "n_clicks") for action in _ACTIONS),
        State("alerts-target", "value"),
        State("alerts-comment", "value"),
        State("alerts-shelve-reason", "value"),
        State("alerts-shelve-duration", "value"),
        State("alerts-oos-asset", "value"),
        State("alerts-oos-reason", "value"),
        State("alerts-changed", "data"),
        prevent_initial_call=True,
    )
    @require_role(Role.ENGINEER)
    def act(*values: Any) -> tuple[str, int]:
        action = dash.ctx.triggered_id
        # Only a real click counts: the renderer also calls this with n_clicks None (seen when the
        # asset chooser's options refresh), which must neither act nor overwrite the last result.
        if action not in _ACTIONS or not values[_ACTIONS.index(str(action))]:
            raise PreventUpdate
        fields = _ActionFields.of(values[len(_ACTIONS) : -1])
        return page.act(str(action), fields), int(values[-1] or 0) + 1
