"""The time-zone selector in the dashboard's header: each user picks the zone their times are shown in,
stored with the user on the server (`cloud_service.users.set_time_zone`), or "browser's zone" (the
default). Choosing saves the zone, then reloads the page so that every time on it is drawn again."""

from __future__ import annotations

import functools
import zoneinfo
from contextlib import AbstractContextManager
from typing import Any, Protocol

import dash
import flask_login
import psycopg
from dash import Input, Output, dcc, html

from cloud_service.users import Role, set_time_zone
from dashboard.security import current_username, require_role

__all__ = ["BROWSER_ZONE", "register_zone_choice", "zone_selector"]

BROWSER_ZONE = "browser"  # the option that clears the user's choice
# Runs in the browser once the choice is saved; Dash lists it for the page's CSP hashes.
_RELOAD = "function(saved) { if (saved) { window.location.reload(); } return ''; }"


class Connections(Protocol):
    """Where callbacks get a database connection (the dashboard's pool; commits on a clean exit)."""

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection for one callback; raises the dashboard's database-down error if unreachable."""
        ...


@functools.cache
def _zone_names() -> tuple[str, ...]:
    """IANA region zones (`Europe/Berlin`) and UTC; not the legacy aliases (`posix/…`, `EST5EDT`)."""
    names = zoneinfo.available_timezones()
    regions = {n for n in names if "/" in n and not n.startswith(("posix/", "right/", "Etc/", "SystemV/"))}
    return ("UTC", *sorted(regions))


def zone_selector() -> html.Div:
    """The selector with the logged-in user's current choice."""
    chosen = getattr(flask_login.current_user, "time_zone", None) or BROWSER_ZONE
    options = [{"label": "browser's zone", "value": BROWSER_ZONE}]
    options += [{"label": name, "value": name} for name in _zone_names()]
    return html.Div(
        [
            dcc.Dropdown(
                id="user-zone",
                options=options,
                value=chosen,
                clearable=False,
                searchable=True,
                style={"width": "14rem", "color": "#1d1d1f"},
            ),
            dcc.Store(id="user-zone-saved"),
            html.Span(id="user-zone-reload", hidden=True),
        ],
        title="The time zone your times are shown in",
    )


def register_zone_choice(app: dash.Dash, connections: Connections, *, database_down: type[Exception]) -> None:
    """Register saving the choice (any logged-in user, for themselves only) and the reload after it."""

    @app.callback(Output("user-zone-saved", "data"), Input("user-zone", "value"), prevent_initial_call=True)
    @require_role(Role.VIEWER)
    def save(choice: str | None) -> Any:
        zone = None if choice in (None, "", BROWSER_ZONE) else choice
        if zone is not None and zone not in _zone_names():
            return dash.no_update  # not one the selector offers (a forged request): nothing stored
        try:
            with connections.connection() as conn:
                set_time_zone(conn, current_username(), zone)
        except database_down:
            return dash.no_update
        return zone or BROWSER_ZONE

    app.clientside_callback(  # type: ignore[no-untyped-call]  # Dash leaves this one untyped
        _RELOAD, Output("user-zone-reload", "children"), Input("user-zone-saved", "data")
    )
