"""One way to build the PostgreSQL connection pool of a process from `DatabaseSettings`, for every component.

A process that shares connections among its jobs (the cloud service's scheduled jobs and upkeep timer, the
dashboard's requests) opens one pool, passes it down, and closes it on shutdown. A unit of work takes a
connection with `pooled_connection` and gives it back at the end: committed if the block ends normally,
rolled back if it raises. `pooled_connection` sets the connection's autocommit mode every time, so no unit
of work inherits the previous one's (the pool has no reset callback: it would return connections on a
background task, and a connection returned just before the pool closes would then stay open). A
connection held for a long stream of work (an ingest writer's COPY connection) is opened on its own with
`psycopg.connect`, not taken from a pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from shared.config import DatabaseSettings

__all__ = ["Pool", "open_pool", "pooled_connection"]

Pool = ConnectionPool[psycopg.Connection[Any]]


def open_pool(settings: DatabaseSettings, *, name: str) -> Pool:
    """A pool of `settings.pool_min_size` to `settings.pool_max_size` connections, opening in the background.

    Args:
        settings: the database and the pool's sizes.
        name: the pool's name, also each connection's `application_name` (seen in `pg_stat_activity`).

    Returns:
        The open pool; close it (or use it as a context manager) on shutdown.
    """
    return ConnectionPool(
        settings.conninfo(),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        name=name,
        kwargs={"application_name": name},
        timeout=float(settings.connect_timeout_s),
        check=ConnectionPool.check_connection,
        open=True,
    )


@contextmanager
def pooled_connection(pool: Pool, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection of `pool` for one unit of work; committed at the end unless the block raises.

    Args:
        pool: the process's pool.
        autocommit: hand out the connection in autocommit mode (for statements that refuse to run in a
            transaction); False gives it in transaction mode, whatever the previous holder chose.

    Raises:
        psycopg_pool.PoolTimeout: no connection became free within `connect_timeout_s`.
    """
    with pool.connection() as conn:
        conn.autocommit = autocommit
        yield conn
