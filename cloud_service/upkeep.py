"""Timer-driven storage upkeep: partitions ahead, rollup refresh, retention, TimescaleDB policies.

`forewarn cloud` runs `run_upkeep` every `storage.rollup_refresh_s`: on the `UpkeepLoop` timer, or as the
lifecycle scheduler's `rollups` job when the scheduler runs.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from cloud_service.database import Pool, pooled_connection
from cloud_service.rollups import record_refreshed_through, refresh_pending_days, refresh_rollups
from cloud_service.schema import Backend, current_backend
from cloud_service.settings import StorageSettings

__all__ = ["UpkeepLoop", "apply_storage_policies", "run_upkeep"]

logger = logging.getLogger(__name__)

_TIME_SERIES = ("aggregates", "heartbeats")


def apply_storage_policies(conn: psycopg.Connection[Any], storage: StorageSettings) -> None:
    """TimescaleDB: (re)set compression and retention policies from the settings; plain: nothing to do.

    `conn` must be in autocommit mode.
    """
    if current_backend(conn) is not Backend.TIMESCALE:
        return
    for table in _TIME_SERIES:
        conn.execute("SELECT remove_compression_policy(%s, if_exists => TRUE)", (table,))
        conn.execute(
            "SELECT add_compression_policy(%s, compress_after => make_interval(days => %s))",
            (table, storage.compress_after_days),
        )
        conn.execute("SELECT remove_retention_policy(%s, if_exists => TRUE)", (table,))
        conn.execute(
            "SELECT add_retention_policy(%s, drop_after => make_interval(days => %s))",
            (table, storage.retention_days),
        )


def run_upkeep(
    conn: psycopg.Connection[Any], storage: StorageSettings, *, now: datetime | None = None
) -> None:
    """One round of upkeep on an autocommit connection: partitions, rollups, retention."""
    now = now or datetime.now(UTC)
    backend = current_backend(conn)
    if backend is Backend.POSTGRES:
        day = timedelta(days=1)
        for table in _TIME_SERIES:
            for offset in range(0, storage.partitions_ahead_days + 1, 7):
                conn.execute("SELECT forewarn_ensure_partition(%s, %s)", (table, now + offset * day))
            cutoff = now - storage.retention_days * day
            row = conn.execute("SELECT forewarn_drop_partitions_before(%s, %s)", (table, cutoff)).fetchone()
            if row and row[0]:
                logger.info("dropped %d partitions of %s older than %s", row[0], table, cutoff)
    lookback_start = now - timedelta(hours=storage.rollup_lookback_h)
    refresh_rollups(conn, start=lookback_start, end=now)
    # Readers take the lookback's hours from the raw aggregates: data still arrives there (a gateway's
    # backlog, the seconds since this refresh), and reading it raw is exact whatever the refresh lag.
    record_refreshed_through(conn, lookback_start)
    refresh_pending_days(conn)


class UpkeepLoop:
    """Runs `run_upkeep` on a named thread every `storage.rollup_refresh_s` until stopped.

    Args:
        pool: the process's pool; each round takes a connection from it (in autocommit mode).
        storage: the storage settings.
    """

    def __init__(self, *, pool: Pool, storage: StorageSettings) -> None:
        self._pool = pool
        self._storage = storage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloud-upkeep", daemon=True)

    def start(self) -> None:
        """Start the thread (the first round runs at once)."""
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with pooled_connection(self._pool, autocommit=True) as conn:
                    run_upkeep(conn, self._storage)
            except (psycopg.Error, PoolTimeout) as exc:
                logger.warning("storage upkeep failed (will retry): %s", exc)
            except Exception:  # a boundary that must survive: log with the traceback and go on
                logger.exception("storage upkeep failed unexpectedly")
            self._stop.wait(self._storage.rollup_refresh_s)
