"""Which storage backend a database uses, decided once (at its first migration) and recorded in it."""

from __future__ import annotations

import enum
import logging
from typing import Any

import psycopg

__all__ = ["Backend", "current_backend", "detect_backend", "preloads_timescaledb"]

logger = logging.getLogger(__name__)


class Backend(enum.StrEnum):
    """Where time series live."""

    POSTGRES = "postgresql"
    TIMESCALE = "timescaledb"


def detect_backend(conn: psycopg.Connection[Any], *, allow_timescale: bool = True) -> Backend:
    """TimescaleDB if it is installed on the server and preloaded, else plain PostgreSQL.

    An extension that is installed but missing from `shared_preload_libraries` cannot be created: that
    case is logged with the fix, and plain PostgreSQL is used.
    """
    if not allow_timescale:
        return Backend.POSTGRES
    available = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if not available or not available[0]:
        return Backend.POSTGRES
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    if not preloads_timescaledb(str(preload[0] if preload else "")):
        logger.warning(
            "TimescaleDB is installed but not preloaded; using plain PostgreSQL. To use it, add "
            "shared_preload_libraries = 'timescaledb' to postgresql.conf and restart, on a new database"
        )
        return Backend.POSTGRES
    return Backend.TIMESCALE


def preloads_timescaledb(shared_preload_libraries: str) -> bool:
    """Whether a `shared_preload_libraries` value loads TimescaleDB.

    The server accepts the library by name or by path, quoted or not, so any list element whose file name is
    `timescaledb` counts:

    >>> preloads_timescaledb("pg_stat_statements, '$libdir/timescaledb'")
    True
    >>> preloads_timescaledb('"timescaledb"')
    True
    >>> preloads_timescaledb("timescaledb_toolkit")
    False
    """
    for element in shared_preload_libraries.split(","):
        library = element.strip().strip("'\"").rsplit("/", 1)[-1]
        if library == "timescaledb":
            return True
    return False


def current_backend(conn: psycopg.Connection[Any]) -> Backend:
    """The backend the database was migrated for (plain PostgreSQL if it was never migrated)."""
    try:
        row = conn.execute("SELECT value FROM forewarn_meta WHERE key = 'storage_backend'").fetchone()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return Backend.POSTGRES
    return Backend(row[0]) if row else Backend.POSTGRES
