"""Logins, sessions, CSRF protection and role checks on the dashboard's Flask server.

- Every request needs a logged-in user except the login page itself; pages redirect to it, Dash's
  callback requests get 401.
- Sessions live on the server (`cloud_service.sessions`): a login starts one with a new random id (no
  session fixation), each request looks it up, logging out ends it, and a new password or removing the
  user ends all of that user's sessions; a copied cookie then logs nobody in. The id travels in Flask's
  signed cookie (HttpOnly, SameSite=Lax, Secure when configured or when the request came by HTTPS through
  a trusted proxy), keyed by a secret read from a file only its owner may read. A session expires a fixed
  time after login, checked on the server.
- Failed logins are slowed per user (in the database) and, in this process, per user name (known or
  not: no user enumeration) and per client address (`dashboard.login_throttle`).
- Every response carries a Content-Security-Policy (scripts only from this server and the page's own
  inline scripts by hash; no framing), X-Frame-Options, X-Content-Type-Options and Referrer-Policy.
- CSRF: each session holds a random token. The login and logout forms carry it as a field; Dash's renderer
  sends it with every callback request as the `X-CSRFToken` header, which it reads from the `_csrf_token`
  cookie (double-submit: a cross-site page can neither read the cookie nor set the header). Any POST
  without the session's token is refused with 403.
- Roles are checked on the server inside every state-changing callback (`require_role`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
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
from flask.sessions import SecureCookieSessionInterface
from psycopg_pool import PoolTimeout
from werkzeug.wrappers import Response

from cloud_service.database import Pool
from cloud_service.sessions import end_session, session_user, start_session
from cloud_service.users import LoginOutcome, Role, User, verify_login
from dashboard.login_throttle import LoginThrottle
from dashboard.settings import DashboardSettings
from shared.errors import ConfigError

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SessionUser",
    "allow_inline_scripts",
    "csrf_token",
    "current_role",
    "current_username",
    "install_security",
    "read_secret_key",
    "require_role",
    "script_hash",
]

logger = logging.getLogger(__name__)

CSRF_COOKIE = "_csrf_token"  # the name Dash's renderer reads
CSRF_HEADER = "X-CSRFToken"  # the header Dash's renderer sends
_CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC_PATHS = frozenset({"/login"})
_IDENTITY = "identity"  # [session id, role, zone] as at login: used only while the database is down
_INLINE_SCRIPTS = "FOREWARN_INLINE_SCRIPT_HASHES"  # server.config key: CSP hashes of the page's scripts
_UNCACHED_PREFIXES = ("/_dash-component-suites/", "/assets/")  # fingerprinted files may be cached
_USERNAME_SHAPE = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            "dashboard.session.secret_key_file",
            f"{path} (mode {mode:04o})",
            "a file only its owner may read or write (chmod 600): anyone who reads it can forge sessions",
        )


def read_secret_key(path: Path) -> bytes:
    """The session-signing key in `path`, created (64 random bytes, mode 0600) if the file is absent.

    Raises:
        ConfigError: the file cannot be read or created, is readable or writable by its group or others,
            or is too short to be a key.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            _check_private(path)
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
    session_id: str
    time_zone: str | None = None  # the zone the user chose (None: the browser's)

    def get_id(self) -> str:
        """The server-side session's id (what the signed cookie carries)."""
        return self.session_id

    @classmethod
    def from_user(cls, user: User, session_id: str) -> SessionUser:
        """Build from a stored user and their session's id."""
        return cls(user.username, Role(user.role), session_id, user.time_zone)


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


def allow_inline_scripts(server: flask.Flask, hashes: list[str]) -> None:
    """Let the pages run these inline scripts (CSP source expressions such as `'sha256-...'`)."""
    server.config[_INLINE_SCRIPTS] = [*server.config.get(_INLINE_SCRIPTS, []), *hashes]


def script_hash(script: str) -> str:
    """The CSP source expression that allows one inline script (its text between the tags)."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def _content_security_policy(inline_scripts: list[str]) -> str:
    # Dash and Plotly set inline styles (React's style props, Plotly's injected rules): styles stay open,
    # scripts do not. No frames, no plugins, forms and connections only to this server.
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self' " + " ".join(inline_scripts),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _identity_in_session(session_id: str) -> SessionUser | None:
    identity = flask.session.get(_IDENTITY)
    if not isinstance(identity, list) or len(identity) != 4 or identity[0] != session_id:
        return None
    try:
        return SessionUser(str(identity[1]), Role(identity[2]), session_id, identity[3] or None)
    except ValueError:
        return None


def _cookie_secure(settings: DashboardSettings) -> bool:
    """Secure cookies when configured, and whenever this request came by HTTPS (directly or, with
    `proxy.behind_proxy`, through the trusted proxy's X-Forwarded-Proto)."""
    return settings.session.secure_cookies or (flask.has_request_context() and flask.request.is_secure)


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the Secure flag decided per request (`_cookie_secure`)."""

    def __init__(self, settings: DashboardSettings) -> None:
        self._settings = settings

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        del app
        return _cookie_secure(self._settings)


def _csrf_ok() -> bool:
    expected = flask.session.get(_CSRF_FIELD)
    sent = flask.request.headers.get(CSRF_HEADER) or flask.request.values.get(_CSRF_FIELD, "")
    return isinstance(expected, str) and bool(sent) and hmac.compare_digest(expected, sent)


def _safe_next(target: str | None) -> str:
    """Only a local path may follow a login (no open redirect to another site).

    Browsers read a backslash as a slash and drop tabs and newlines from addresses, so `/\\evil.example`
    and `/<tab>/evil.example` mean `//evil.example`: any backslash, control character or space is refused.
    """
    if not target or not target.startswith("/") or len(target) > 2048:
        return "/"
    if "\\" in target or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
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
        login = settings.login
        self._throttle = LoginThrottle(
            user_free_failures=login.free_failures,
            address_free_failures=login.address_free_failures,
            base_delay=timedelta(seconds=login.base_delay_s),
            max_delay=timedelta(seconds=login.max_delay_s),
        )

    def load_user(self, session_id: str) -> SessionUser | None:
        try:
            with self._pool.connection() as conn:
                user = session_user(conn, session_id)
        except (psycopg.Error, PoolTimeout):
            # Keep the session (its pages then show the database banner, no data) rather than log out.
            logger.warning("cannot check the session: the database is unavailable")
            return _identity_in_session(session_id)
        return SessionUser.from_user(user, session_id) if user is not None else None

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
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault(
            "Content-Security-Policy",
            _content_security_policy(flask.current_app.config.get(_INLINE_SCRIPTS, [])),
        )
        if not flask.request.path.startswith(_UNCACHED_PREFIXES):
            headers["Cache-Control"] = "no-store"  # pages and callback answers hold plant data
        if _CSRF_FIELD in flask.session:
            response.set_cookie(
                CSRF_COOKIE,
                flask.session[_CSRF_FIELD],
                secure=_cookie_secure(self._settings),
                httponly=False,  # Dash's renderer reads it to send the header
                samesite="Strict",
            )
        return response

    def login(self) -> Response:
        if flask.request.method == "GET":
            return _login_page()
        username = flask.request.form.get("username", "").strip()[:128]
        password = flask.request.form.get("password", "")
        keys = (f"user:{username}", f"addr:{flask.request.remote_addr or 'unknown'}")
        wait = self._throttle.begin(keys, now=datetime.now(UTC))
        if wait is not None:
            logger.info("login slowed for %s from %s", _loggable(username), keys[1].removeprefix("addr:"))
            return _locked_page(wait)
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
                session_id = (
                    start_session(conn, result.user.username, lifetime=self._lifetime)
                    if result.outcome is LoginOutcome.OK and result.user is not None
                    else None
                )
        except (psycopg.Error, PoolTimeout):
            logger.exception("login failed: the database is unavailable")
            return _login_page(error="The database cannot be reached; try again shortly.", status=503)
        if result.outcome is LoginOutcome.LOCKED:
            return _locked_page(result.retry_after or timedelta(0))
        if session_id is None or result.user is None:
            logger.info("failed login for %s", _loggable(username))
            return _login_page(error="Wrong user name or password.", status=401)
        self._throttle.succeeded(keys)
        self._start(SessionUser.from_user(result.user, session_id))
        return flask.redirect(_safe_next(flask.request.form.get("next")))

    @staticmethod
    def _start(user: SessionUser) -> None:
        flask.session.clear()  # a fresh session (new id, new CSRF token) at every login: no fixation
        flask.session.permanent = True
        flask.session["login_at"] = datetime.now(UTC).timestamp()
        flask_login.login_user(user)
        flask.session[_IDENTITY] = [user.session_id, user.username, user.role.value, user.time_zone]
        csrf_token()

    def logout(self) -> Response:
        user = flask_login.current_user
        if getattr(user, "is_authenticated", False):
            try:
                with self._pool.connection() as conn:
                    end_session(conn, user.session_id)
            except (psycopg.Error, PoolTimeout):
                logger.warning("logout could not end the session on the server: the database is unavailable")
        flask_login.logout_user()
        flask.session.clear()
        return flask.redirect(flask.url_for("login"))


def _loggable(username: str) -> str:
    """A typed user name for the log, unless it cannot be one (a password typed into the name field)."""
    return repr(username) if _USERNAME_SHAPE.match(username) else "(not a valid user name)"


def _locked_page(wait: timedelta) -> flask.Response:
    seconds = int(wait.total_seconds()) + 1
    response = _login_page(error=f"Too many failed logins: try again in {seconds} s.", status=429)
    response.headers["Retry-After"] = str(seconds)
    return response


def install_security(server: flask.Flask, settings: DashboardSettings, pool: Pool) -> None:
    """Configure sessions and add the login/logout routes and the checks every request goes through."""
    server.secret_key = read_secret_key(settings.session.secret_key_file)
    server.session_interface = _SessionInterface(settings)
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
