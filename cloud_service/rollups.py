"""Hourly and daily per-asset rollups of the aggregates: `refresh_rollups` recomputes a time range.

On plain PostgreSQL the rollups are tables; a refresh replaces the buckets of whole days in one
transaction (hourly from the aggregates, daily from the hourly rows). On TimescaleDB they are continuous
aggregates kept fresh by their policies; a refresh asks TimescaleDB to materialise the range now.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cloud_service.schema import Backend, current_backend

__all__ = [
    "BUCKET_ORIGIN",
    "align_down",
    "align_up",
    "record_refreshed_through",
    "refresh_pending_days",
    "refresh_rollups",
    "rollups_refreshed_through",
]

logger = logging.getLogger(__name__)

# date_bin's origin: a midnight, UTC, so hourly and daily buckets start where TimescaleDB's time_bucket does.
BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
_LOCK_KEY = 0x466F_7265_526F_6C6C  # "ForeRoll": one refresh at a time

_THROUGH_KEY = "rollups_refreshed_through"  # forewarn_meta: the start of the latest lookback refresh
_PENDING_DAYS = "SELECT day, marked_at FROM rollup_pending_days ORDER BY day LIMIT %s"
# A mark newer than the one read (aggregates of that day written since) keeps the day pending.
_DONE_DAY = "DELETE FROM rollup_pending_days WHERE day = %s AND marked_at <= %s"
_REFRESH_HOURLY = """
DELETE FROM rollup_hourly WHERE bucket >= %(start)s AND bucket < %(end)s;
INSERT INTO rollup_hourly (asset_id, bucket, n_periods, score_mean_sum, score_max, n_windows, n_above)
SELECT asset_id, date_bin(INTERVAL '1 hour', period_start, %(origin)s), count(*),
       sum(score_mean::double precision), max(score_max), sum(n_windows), sum(n_above)
FROM aggregates
WHERE period_start >= %(start)s AND period_start < %(end)s
GROUP BY 1, 2
"""
_REFRESH_DAILY = """
DELETE FROM rollup_daily WHERE bucket >= %(start)s AND bucket < %(end)s;
INSERT INTO rollup_daily (asset_id, bucket, n_periods, score_mean_sum, score_max, n_windows, n_above)
SELECT asset_id, date_bin(INTERVAL '1 day', bucket, %(origin)s), sum(n_periods), sum(score_mean_sum),
       max(score_max), sum(n_windows), sum(n_above)
FROM rollup_hourly
WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1, 2
"""


def align_down(ts: datetime, step: timedelta) -> datetime:
    """`ts` rounded down to a multiple of `step` from `BUCKET_ORIGIN`."""
    return BUCKET_ORIGIN + step * ((ts - BUCKET_ORIGIN) // step)


def align_up(ts: datetime, step: timedelta) -> datetime:
    """`ts` rounded up to a multiple of `step` from `BUCKET_ORIGIN`."""
    down = align_down(ts, step)
    return down if down == ts else down + step


def refresh_rollups(
    conn: psycopg.Connection[Any], *, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """Recompute the hourly and daily rollups of the whole days that `[start, end)` touches.

    Args:
        conn: a connection in autocommit mode (TimescaleDB refuses to refresh inside a transaction).
        start: beginning of the range (aware datetime).
        end: end of the range (aware datetime).

    Returns:
        The day-aligned range that was refreshed.
    """
    day = timedelta(days=1)
    lower, upper = align_down(start, day), align_up(end, day)
    if upper <= lower:
        upper = lower + day
    if current_backend(conn) is Backend.TIMESCALE:
        conn.execute("CALL refresh_continuous_aggregate('rollup_hourly', %s, %s)", (lower, upper))
        conn.execute("CALL refresh_continuous_aggregate('rollup_daily', %s, %s)", (lower, upper))
        return lower, upper
    params = {"start": lower, "end": upper, "origin": BUCKET_ORIGIN}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for statement in (_REFRESH_HOURLY, _REFRESH_DAILY):
            for part in statement.split(";"):
                cur.execute(part, params)
    logger.debug("refreshed rollups from %s to %s", lower, upper)
    return lower, upper


def record_refreshed_through(conn: psycopg.Connection[Any], through: datetime) -> None:
    """Record that readers may take the hours before `through` from the rollups (`run_upkeep` gives the
    start of its lookback: older late data is refreshed within one round, `rollup_pending_days`); a later
    time only."""
    conn.execute(
        "INSERT INTO forewarn_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value ="
        " greatest(forewarn_meta.value::timestamptz, excluded.value::timestamptz)::text",
        (_THROUGH_KEY, through.isoformat()),
    )


def rollups_refreshed_through(conn: psycopg.Connection[Any]) -> datetime | None:
    """Before when readers take hours from the rollups (None: never refreshed); newer hours come from the
    raw aggregates."""
    row = conn.execute("SELECT value FROM forewarn_meta WHERE key = %s", (_THROUGH_KEY,)).fetchone()
    return datetime.fromisoformat(row[0]) if row else None


def refresh_pending_days(conn: psycopg.Connection[Any], *, limit: int = 400) -> int:
    """Refresh the rollups of the days marked by late aggregates (`rollup_pending_days`), oldest first, at
    most `limit` per call; the number refreshed. `conn` in autocommit mode, as for `refresh_rollups`."""
    pending = conn.execute(_PENDING_DAYS, (limit,)).fetchall()
    for day, marked_at in pending:
        refresh_rollups(conn, start=day, end=day + timedelta(days=1))
        conn.execute(_DONE_DAY, (day, marked_at))
    if pending:
        logger.info("refreshed the rollups of %d day(s) that received late aggregates", len(pending))
    return len(pending)
