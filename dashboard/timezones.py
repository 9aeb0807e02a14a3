"""The time zone the dashboard shows times in: the one the logged-in user chose (stored with the user,
`cloud_service.users.set_time_zone`), else the browser's own, which the page stores in a cookie
(`ZONE_COOKIE`, set by a line of script in the page) and every request carries, so that each callback
formats times and draws time axes in it. UTC without either (or with a zone this server does not know),
and outside a request (benchmarks, tests of the figures alone)."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, tzinfo
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import flask
import flask_login

__all__ = ["SET_ZONE_SCRIPT", "ZONE_COOKIE", "ZONE_SCRIPT", "display_zone", "to_display", "zone_name"]

ZONE_COOKIE = "forewarn_tz"
# Runs before the Dash renderer's first request: every callback request then carries the zone.
ZONE_SCRIPT = (
    "document.cookie = '" + ZONE_COOKIE + "=' + encodeURIComponent("
    "Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC') + '; path=/; SameSite=Lax';"
)
SET_ZONE_SCRIPT = f"<script>{ZONE_SCRIPT}</script>"  # the page's tag; its CSP hash is of ZONE_SCRIPT
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")  # IANA names: never a path or markup


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo | None:
    if not _ZONE_NAME.match(name) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def display_zone() -> tzinfo:
    """The logged-in user's chosen zone, else the browser's (UTC if unknown or outside a request)."""
    if not flask.has_request_context():
        return UTC
    chosen = getattr(flask_login.current_user, "time_zone", None)
    if isinstance(chosen, str) and (zone := _zone(chosen)) is not None:
        return zone
    return _zone(unquote(flask.request.cookies.get(ZONE_COOKIE, "UTC"))) or UTC


def zone_name() -> str:
    """The display zone's name, as axis titles show it (`Europe/Berlin`, `UTC`)."""
    zone = display_zone()
    return "UTC" if zone is UTC else str(zone)


def to_display(ts: datetime) -> datetime:
    """`ts` as a wall-clock time in the display zone, without an offset (what Plotly draws as is)."""
    return ts.astimezone(display_zone()).replace(tzinfo=None)
