"""Logins, sessions, CSRF protection and role checks on the dashboard's Flask server.

- Every request needs a logged-in user except the login page itself; pages redirect to it, Dash's
  callback requests get 401.
- Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax, Secure when configured), keyed by a secret
  read from a 0600 file, and expire a fixed time after login (checked on the server, not only by the cookie's
  expiry). A password change ends a user's other sessions: the session id includes when it was set.
- CSRF: each session holds a random token. The login and logout forms carry it as a field; Dash's renderer
  sends it with every callback request as the `X-CSRFToken` header, which it reads from the `_csrf_token`
  cookie (double-submit: a cross-site page can neither read the cookie nor set the header). Any POST
  without the session's token is refused with 403.
- Roles are checked on the server inside every state-changing callback (`require_role`).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from html import escape
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import flask
import flask_login
import psycopg
from psycopg_pool import PoolTimeout
from werkzeug.wrappers import Response

from cloud_service.database import Pool
from cloud_service.users import LoginOutcome, Role, User, get_user, verify_login
from dashboard.settings import DashboardSettings
from shared.errors import ConfigError

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SessionUser",
    "csrf_token",
    "current_role",
    "current_username",
    "install_security",
    "read_secret_key",
    "require_role",
]

logger = logging.getLogger(__name__)

CSRF_COOKIE = "_csrf_token"  # the name Dash's renderer reads
CSRF_HEADER = "X-CSRFToken"  # the header Dash's renderer sends
_CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC_PATHS = frozenset({"/login"})
_IDENTITY = "identity"  # [user id, role] as checked at login: used only while the database is down
_P = ParamSpec("_P")
_R = TypeVar("_R")


def read_secret_key(path: Path) -> bytes:
    """The session-signing key in `path`, created (64 random bytes, mode 0600) if the file is absent.

    Raises:
        ConfigError: the file cannot be read or created, or is too short to be a key.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes().strip()
        else:
            key = secrets.token_hex(64).encode()
            with os.fdopen(descriptor, "wb") as file:
                file.write(key + b"\n")
                file.flush()
                os.fsync(file.fileno())
            logger.info("created a new dashboard session key file (mode 0600)")
    except OSError as exc:
        raise ConfigError(
            "dashboard.session.secret_key_file", str(path), f"cannot be used: {exc.strerror}"
        ) from exc
    if len(key) < 32:
        raise ConfigError("dashboard.session.secret_key_file", str(path), "at least 32 bytes of key")
    return key


@dataclass(frozen=True, slots=True)
class SessionUser(flask_login.UserMixin):  # type: ignore[misc]  # flask_login is untyped
    """The logged-in user as Flask-Login holds it for one request."""

    username: str
    role: Role
    password_set_at: datetime

    def get_id(self) -> str:
        """The session's user id: when the password was set and the name (a new password ends sessions)."""
        return f"{self.password_set_at.timestamp():.6f}:{self.username}"

    @classmethod
    def from_user(cls, user: User) -> SessionUser:
        """Build from a stored user."""
        return cls(user.username, Role(user.role), user.password_set_at)


def current_username() -> str:
    """The logged-in user's name (for records such as who acknowledged)."""
    return str(flask_login.current_user.username)


def current_role() -> Role | None:
    """The logged-in user's role, or None when nobody is logged in."""
    user = flask_login.current_user
    return user.role if getattr(user, "is_authenticated", False) else None


def require_role(needed: Role) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a state-changing Dash callback: refuse (HTTP 403) users whose role lacks `needed`.

    The check runs on the server for every call, whatever the page showed or hid.
    """

    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @wraps(function)
        def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            role = current_role()
            if role is None or not role.allows(needed):
                logger.warning(
                    "refused %s for %s (role %s, needs %s)",
                    function.__name__,
                    getattr(flask_login.current_user, "username", "anonymous"),
                    role,
                    needed,
                )
                flask.abort(403)
            return function(*args, **kwargs)

        return checked

    return decorate


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = flask.session.get(_CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        flask.session[_CSRF_FIELD] = token
    return token


def _identity_in_session(user_id: str) -> SessionUser | None:
    identity = flask.session.get(_IDENTITY)
    if not isinstance(identity, list) or len(identity) != 2 or identity[0] != user_id:
        return None
    stamp, _, username = user_id.partition(":")
    try:
        return SessionUser(username, Role(identity[1]), datetime.fromtimestamp(float(stamp), UTC))
    except ValueError:
        return None


def _csrf_ok() -> bool:
    expected = flask.session.get(_CSRF_FIELD)
    sent = flask.request.headers.get(CSRF_HEADER) or flask.request.values.get(_CSRF_FIELD, "")
    return isinstance(expected, str) and bool(sent) and hmac.compare_digest(expected, sent)


def _safe_next(target: str | None) -> str:
    """Only a local path may follow a login (no open redirect to another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Forewarn: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; margin: 0; }}
main {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem; border-radius: 8px;
        box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
h1 {{ font-size: 1.4rem; margin-top: 0; }} label {{ display: block; margin-top: 1rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font-size: 1rem; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .6rem; font-size: 1rem; background: #0072B2; color: #fff;
         border: 0; border-radius: 4px; }}
.error {{ color: #a3320b; margin-top: 1rem; }}
</style></head>
<body><main><h1>Forewarn</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{token}">
<input type="hidden" name="next" value="{next}">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<button id="login" type="submit">Log in</button>
{error}
</form></main></body></html>
"""


def _login_page(*, error: str = "", status: int = 200) -> flask.Response:
    body = _LOGIN_PAGE.format(
        token=escape(csrf_token()),
        next=escape(_safe_next(flask.request.values.get("next"))),
        error=f'<p class="error" role="alert">{escape(error)}</p>' if error else "",
    )
    return flask.Response(body, status=status, mimetype="text/html")


class _Security:
    """The request hooks and routes of one dashboard server."""

    def __init__(self, settings: DashboardSettings, pool: Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._lifetime = timedelta(seconds=settings.session.lifetime_s)

    def load_user(self, user_id: str) -> SessionUser | None:
        stamp, _, username = user_id.partition(":")
        try:
            with self._pool.connection() as conn:
                user = get_user(conn, username)
        except (psycopg.Error, PoolTimeout):
            # Keep the session (its pages then show the database banner, no data) rather than log out.
            logger.warning("cannot check the session's user: the database is unavailable")
            return _identity_in_session(user_id)
        if user is None or f"{user.password_set_at.timestamp():.6f}" != stamp:
            return None
        return SessionUser.from_user(user)

    def before_request(self) -> Response | None:
        request = flask.request
        if request.method not in _SAFE_METHODS and not _csrf_ok():
            logger.warning("refused a %s to %s without a valid CSRF token", request.method, request.path)
            return flask.Response("CSRF token missing or wrong.", status=403, mimetype="text/plain")
        if request.path in _PUBLIC_PATHS:
            return None
        if not flask_login.current_user.is_authenticated or self._expired():
            flask_login.logout_user()
            if request.path.startswith("/_dash-") or request.method not in _SAFE_METHODS:
                return flask.Response("Log in first.", status=401, mimetype="text/plain")
            return flask.redirect(flask.url_for("login", next=request.full_path.rstrip("?")))
        return None

    def _expired(self) -> bool:
        login_at = flask.session.get("login_at")
        if not isinstance(login_at, (int, float)):
            return True
        return datetime.now(UTC) - datetime.fromtimestamp(login_at, UTC) > self._lifetime

    def after_request(self, response: flask.Response) -> flask.Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if _CSRF_FIELD in flask.session:
            response.set_cookie(
                CSRF_COOKIE,
                flask.session[_CSRF_FIELD],
                secure=self._settings.session.secure_cookies,
                httponly=False,  # Dash's renderer reads it to send the header
                samesite="Strict",
            )
        return response

    def login(self) -> Response:
        if flask.request.method == "GET":
            return _login_page()
        username = flask.request.form.get("username", "").strip()
        password = flask.request.form.get("password", "")
        login = self._settings.login
        try:
            with self._pool.connection() as conn:  # commits the recorded success or failure on exit
                result = verify_login(
                    conn,
                    username,
                    password,
                    free_failures=login.free_failures,
                    base_delay=timedelta(seconds=login.base_delay_s),
                    max_delay=timedelta(seconds=login.max_delay_s),
                )
        except (psycopg.Error, PoolTimeout):
            logger.exception("login failed: the database is unavailable")
            return _login_page(error="The database cannot be reached; try again shortly.", status=503)
        if result.outcome is LoginOutcome.LOCKED:
            seconds = int((result.retry_after or timedelta(0)).total_seconds()) + 1
            return _login_page(error=f"Too many failed logins: try again in {seconds} s.", status=429)
        if result.outcome is not LoginOutcome.OK or result.user is None:
            logger.info("failed login for %r", username[:64])
            return _login_page(error="Wrong user name or password.", status=401)
        flask.session.clear()  # a fresh session (and CSRF token) at every login: no session fixation
        flask.session.permanent = True
        flask.session["login_at"] = datetime.now(UTC).timestamp()
        user = SessionUser.from_user(result.user)
        flask_login.login_user(user)
        flask.session[_IDENTITY] = [user.get_id(), user.role.value]
        csrf_token()
        return flask.redirect(_safe_next(flask.request.form.get("next")))

    def logout(self) -> Response:
        flask_login.logout_user()
        flask.session.clear()
        return flask.redirect(flask.url_for("login"))


def install_security(server: flask.Flask, settings: DashboardSettings, pool: Pool) -> None:
    """Configure sessions and add the login/logout routes and the checks every request goes through."""
    server.secret_key = read_secret_key(settings.session.secret_key_file)
    server.config.update(
        SESSION_COOKIE_NAME="forewarn_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session.lifetime_s),
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    security = _Security(settings, pool)
    manager = flask_login.LoginManager()
    manager.init_app(server)
    manager.session_protection = "basic"
    manager.user_loader(security.load_user)
    server.before_request(security.before_request)
    server.after_request(security.after_request)
    server.add_url_rule("/login", "login", security.login, methods=["GET", "POST"])
    server.add_url_rule("/logout", "logout", security.logout, methods=["POST"])
