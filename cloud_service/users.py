"""Dashboard users: add, list, remove, set a password, verify a login; roles viewer, engineer, admin.

Passwords are stored only as argon2id hashes (argon2-cffi's `PasswordHasher`: salted, slow, with its
parameters in the hash so they can be raised later; a login re-hashes an outdated hash). Repeated failed
logins are slowed: after `free_failures` failures in a row the account is locked for a delay that doubles
per further failure, up to `max_delay`; a success resets the count. A locked account refuses even the right
password until the delay has passed, and the refusal does not say whether the password was right.

Functions take an open connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg.rows import class_row

from shared.errors import ContractError

__all__ = [
    "LoginOutcome",
    "LoginResult",
    "Role",
    "User",
    "add_user",
    "get_user",
    "list_users",
    "remove_user",
    "set_password",
    "set_time_zone",
    "verify_login",
]

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
_MIN_PASSWORD = 8
_MAX_PASSWORD = 1024
_HASHER = PasswordHasher()
# Verifying against this when the user does not exist takes as long as a real check (no timing oracle).
_DUMMY_HASH = _HASHER.hash("forewarn-no-such-user")


class Role(StrEnum):
    """What a dashboard user may do: viewers read; engineers also handle alerts; admins also models, users."""

    VIEWER = "viewer"
    ENGINEER = "engineer"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role includes everything `needed` may do."""
        order = (Role.VIEWER, Role.ENGINEER, Role.ADMIN)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard user as listed (never with the password hash)."""

    username: str
    role: str
    created_at: datetime
    password_set_at: datetime
    last_login_at: datetime | None
    failed_logins: int
    locked_until: datetime | None
    time_zone: str | None = None  # an IANA zone name; None: the browser's own


class LoginOutcome(StrEnum):
    """How a login attempt ended."""

    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A login attempt's outcome; `user` on success, `retry_after` when locked."""

    outcome: LoginOutcome
    user: User | None = None
    retry_after: timedelta | None = None


_USER_COLUMNS = (
    "username, role, created_at, password_set_at, last_login_at, failed_logins, locked_until, time_zone"
)
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+/-]{1,64}$")  # as the column's CHECK: never a path or markup


def _check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise ContractError("username", username, "1-64 of a-z 0-9 _ . @ -, starting with a letter or digit")
    return username


def _check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ContractError("role", role, "one of viewer, engineer, admin") from None


def _hash(password: str) -> str:
    if not _MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        raise ContractError("password", "(hidden)", f"{_MIN_PASSWORD} to {_MAX_PASSWORD} characters")
    return _HASHER.hash(password)


def _check_zone(zone: str | None) -> str | None:
    if zone is None:
        return None
    try:
        if _ZONE_NAME.match(zone) and ".." not in zone:
            zoneinfo.ZoneInfo(zone)
            return zone
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    raise ContractError("time_zone", zone, "an IANA time zone name such as Europe/Berlin")


def add_user(
    conn: psycopg.Connection[Any], username: str, *, role: str, password: str, time_zone: str | None = None
) -> User:
    """Create a user with a role, a password and optionally a time zone (None: the browser's).

    Raises:
        ContractError: a bad user name, role, password or zone, or the user exists already.
    """
    _check_username(username)
    checked = _check_role(role)
    zone = _check_zone(time_zone)
    hashed = _hash(password)
    with conn.cursor(row_factory=class_row(User)) as cur:
        row = cur.execute(
            f"INSERT INTO users (username, role, password_hash, time_zone) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (username) DO NOTHING RETURNING {_USER_COLUMNS}",
            (username, checked.value, hashed, zone),
        ).fetchone()
    if row is None:
        raise ContractError("username", username, "a user name not taken yet")
    return row


def list_users(conn: psycopg.Connection[Any]) -> list[User]:
    """Every user, by name."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username").fetchall()


def get_user(conn: psycopg.Connection[Any], username: str) -> User | None:
    """One user, or None."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s", (username,)).fetchone()


def remove_user(conn: psycopg.Connection[Any], username: str) -> bool:
    """Delete a user (their dashboard sessions go with them); False if there was none."""
    return conn.execute("DELETE FROM users WHERE username = %s", (username,)).rowcount == 1


def set_password(conn: psycopg.Connection[Any], username: str, password: str) -> bool:
    """Replace a user's password (clearing a lock and ending their dashboard sessions); False if there is
    no such user.

    Raises:
        ContractError: the password is too short or too long.
    """
    hashed = _hash(password)
    cur = conn.execute(
        "UPDATE users SET password_hash = %s, password_set_at = now(), failed_logins = 0, "
        "locked_until = NULL WHERE username = %s",
        (hashed, username),
    )
    conn.execute("DELETE FROM dashboard_sessions WHERE username = %s", (username,))
    return cur.rowcount == 1


def set_time_zone(conn: psycopg.Connection[Any], username: str, time_zone: str | None) -> bool:
    """Set the zone the dashboard shows this user's times in (None: the browser's); False if no such user.

    Raises:
        ContractError: not an IANA zone name this machine knows.
    """
    zone = _check_zone(time_zone)
    return conn.execute("UPDATE users SET time_zone = %s WHERE username = %s", (zone, username)).rowcount == 1


def _lock_delay(
    failures: int, *, free_failures: int, base_delay: timedelta, max_delay: timedelta
) -> timedelta:
    if failures < free_failures:
        return timedelta(0)
    return min(base_delay * (1 << min(failures - free_failures, 30)), max_delay)


def verify_login(
    conn: psycopg.Connection[Any],
    username: str,
    password: str,
    *,
    free_failures: int = 3,
    base_delay: timedelta = timedelta(seconds=2),
    max_delay: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
) -> LoginResult:
    """Check a login, recording a failure or a success (the caller commits either).

    Args:
        conn: an open connection.
        username: the name typed.
        password: the password typed.
        free_failures: failures in a row before the account is locked.
        base_delay: the first lock's length; each further failure doubles it.
        max_delay: the longest lock.
        now: the current time (tests).

    Returns:
        OK with the user, BAD_CREDENTIALS (unknown user or wrong password, not told apart), or LOCKED with
        the time left.
    """
    now = now or datetime.now(UTC)
    row = conn.execute(
        "SELECT password_hash, failed_logins, locked_until FROM users WHERE username = %s FOR UPDATE",
        (username,),
    ).fetchone()
    if row is None:
        _matches(_DUMMY_HASH, password)
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)
    stored_hash, failures, locked_until = str(row[0]), int(row[1]), row[2]
    if locked_until is not None and locked_until > now:
        return LoginResult(LoginOutcome.LOCKED, retry_after=locked_until - now)
    if not _matches(stored_hash, password):
        failures += 1
        delay = _lock_delay(failures, free_failures=free_failures, base_delay=base_delay, max_delay=max_delay)
        conn.execute(
            "UPDATE users SET failed_logins = %s, last_failed_at = %s, locked_until = %s WHERE username = %s",
            (failures, now, now + delay if delay else None, username),
        )
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)
    if _HASHER.check_needs_rehash(stored_hash):
        conn.execute(
            "UPDATE users SET password_hash = %s WHERE username = %s", (_HASHER.hash(password), username)
        )
    conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = %s WHERE username = %s",
        (now, username),
    )
    return LoginResult(LoginOutcome.OK, user=get_user(conn, username))


def _matches(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False
