"""Dashboard sessions kept on the server (`dashboard_sessions`): a login starts one, each request looks it
up, logging out ends it; a new password or removing the user ends all of that user's sessions.

The browser holds a random session id (inside the dashboard's signed cookie); the table holds only its
SHA-256, so reading the table gives nobody a session. Functions never commit: the caller owns the
transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from cloud_service.users import User

__all__ = ["end_session", "end_user_sessions", "session_user", "start_session"]

_COLUMNS = (
    "u.username, u.role, u.created_at, u.password_set_at, u.last_login_at, u.failed_logins, "
    "u.locked_until, u.time_zone"
)


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def start_session(conn: psycopg.Connection[Any], username: str, *, lifetime: timedelta) -> str:
    """Start a session for `username` that ends after `lifetime`; returns its new random id.

    Expired sessions of every user are deleted on the way (the table stays small).
    """
    conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= now()")
    session_id = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO dashboard_sessions (id_sha256, username, expires_at) VALUES (%s, %s, now() + %s)",
        (_digest(session_id), username, lifetime),
    )
    return session_id


def session_user(
    conn: psycopg.Connection[Any], session_id: str, *, now: datetime | None = None
) -> User | None:
    """The user of a live session, or None (unknown, ended or expired id)."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM dashboard_sessions s JOIN users u USING (username) "
            "WHERE s.id_sha256 = %s AND s.expires_at > coalesce(%s, now())",
            (_digest(session_id), now),
        ).fetchone()


def end_session(conn: psycopg.Connection[Any], session_id: str) -> bool:
    """End one session (logout); False if it had ended already."""
    return (
        conn.execute("DELETE FROM dashboard_sessions WHERE id_sha256 = %s", (_digest(session_id),)).rowcount
        == 1
    )


def end_user_sessions(conn: psycopg.Connection[Any], username: str) -> int:
    """End every session of `username`; returns how many there were."""
    return conn.execute("DELETE FROM dashboard_sessions WHERE username = %s", (username,)).rowcount
