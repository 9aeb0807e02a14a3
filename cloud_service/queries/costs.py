"""What the system costs to run: the bandwidth each gateway used against what it received, what the
database stores, and how long the lifecycle jobs take.

Functions take an open connection, only read, and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

__all__ = [
    "EXACT_COUNT_BELOW_BYTES",
    "GatewayTraffic",
    "JobDuration",
    "StorageUse",
    "TableStorage",
    "gateway_traffic",
    "job_durations",
    "storage_use",
]

# Tables smaller than this are counted exactly; larger ones report the planner's estimate (no full scan).
EXACT_COUNT_BELOW_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class GatewayTraffic:
    """A gateway's bytes over a range, from its heartbeats' counters: sent upstream and raw received."""

    gateway_id: str
    site_id: str | None
    upstream_bytes: float
    raw_bytes: float
    heartbeats: int
    first_ts: datetime | None
    last_ts: datetime | None

    @property
    def saved_share(self) -> float | None:
        """The share of the raw bytes the edge did not send upstream (None without raw bytes)."""
        return 1.0 - self.upstream_bytes / self.raw_bytes if self.raw_bytes > 0 else None


# The heartbeat counters count from the agent's start: their increase over the range is the sum of the
# steps between consecutive heartbeats, where a drop means a restart (the new value is all new bytes).
_TRAFFIC = """
WITH beats AS (
    SELECT gateway_id, ts,
           coalesce((metrics->>'uplink.bytes_out')::float8, 0) AS up,
           coalesce((metrics->>'intake.received_bytes')::float8, 0) AS raw
    FROM heartbeats WHERE ts >= %(start)s AND ts < %(end)s
), steps AS (
    SELECT gateway_id, ts, up, raw,
           lag(up) OVER w AS previous_up, lag(raw) OVER w AS previous_raw
    FROM beats WINDOW w AS (PARTITION BY gateway_id ORDER BY ts)
)
SELECT s.gateway_id, g.site_id,
       sum(CASE WHEN previous_up IS NULL THEN 0 WHEN up >= previous_up THEN up - previous_up ELSE up END)
           AS upstream_bytes,
       sum(CASE WHEN previous_raw IS NULL THEN 0 WHEN raw >= previous_raw THEN raw - previous_raw
                ELSE raw END) AS raw_bytes,
       count(*) AS heartbeats, min(ts) AS first_ts, max(ts) AS last_ts
FROM steps s LEFT JOIN gateways g USING (gateway_id)
GROUP BY s.gateway_id, g.site_id ORDER BY s.gateway_id
"""


def gateway_traffic(conn: psycopg.Connection[Any], *, start: datetime, end: datetime) -> list[GatewayTraffic]:
    """Each gateway's upstream and raw bytes over `[start, end)`, by gateway id.

    The bytes before a gateway's first heartbeat in the range are not counted (the counters' increase
    between heartbeats is), so a range should span many heartbeat intervals.
    """
    with conn.cursor(row_factory=class_row(GatewayTraffic)) as cur:
        return cur.execute(_TRAFFIC, {"start": start, "end": end}).fetchall()


@dataclass(frozen=True, slots=True)
class TableStorage:
    """One table's size on disk (with its indexes, TOAST and partitions) and its rows."""

    table: str
    total_bytes: int
    rows: int | None
    is_exact: bool


@dataclass(frozen=True, slots=True)
class StorageUse:
    """The database's size and each of its tables', largest first."""

    database_bytes: int
    tables: list[TableStorage]


# Each table of the schema with its partitions (or TimescaleDB chunks: inheritance children too).
_TABLES = """
WITH RECURSIVE tree AS (
    SELECT c.oid AS root, c.oid AS rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    UNION ALL
    SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel
)
SELECT r.relname::text, sum(pg_total_relation_size(t.rel))::bigint AS total_bytes,
       sum(greatest(c.reltuples, 0)) FILTER (WHERE c.relkind = 'r')::bigint AS estimate,
       coalesce(bool_and(c.reltuples >= 0) FILTER (WHERE c.relkind = 'r'), true) AS is_analysed
FROM tree t JOIN pg_class c ON c.oid = t.rel JOIN pg_class r ON r.oid = t.root
GROUP BY r.relname ORDER BY total_bytes DESC, r.relname
"""


def storage_use(
    conn: psycopg.Connection[Any], *, exact_below_bytes: int = EXACT_COUNT_BELOW_BYTES
) -> StorageUse:
    """The database's size and each table's (`pg_total_relation_size` over its partitions) with its rows:
    counted when the table is smaller than `exact_below_bytes`, else the planner's estimate (None when a
    large table was never analysed)."""
    tables = []
    for name, total_bytes, estimate, is_analysed in conn.execute(_TABLES).fetchall():
        if total_bytes < exact_below_bytes:
            counted = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
            tables.append(TableStorage(name, int(total_bytes), int(counted[0]) if counted else 0, True))
        else:
            rows = int(estimate) if is_analysed and estimate is not None else None
            tables.append(TableStorage(name, int(total_bytes), rows, False))
    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return StorageUse(int(size[0]) if size else 0, tables)


@dataclass(frozen=True, slots=True)
class JobDuration:
    """A lifecycle job (training, drift checks, forecast refit and recompute, rollups) and its last run."""

    job_id: str
    trigger: str
    next_run_at: datetime
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_duration_s: float | None
    is_running: bool
    last_status: str
    last_error: str
    runs: int


def job_durations(conn: psycopg.Connection[Any]) -> list[JobDuration]:
    """Every lifecycle job with how long its last run took (None before a run finished, and while one is
    in progress: the table keeps the last start only)."""
    with conn.cursor(row_factory=class_row(JobDuration)) as cur:
        return cur.execute(
            "SELECT job_id, trigger, next_run_at, last_started_at, last_finished_at, "
            "CASE WHEN last_finished_at >= last_started_at "
            "THEN extract(epoch FROM last_finished_at - last_started_at)::float8 END AS last_duration_s, "
            "(last_started_at IS NOT NULL "
            "AND (last_finished_at IS NULL OR last_finished_at < last_started_at)) AS is_running, "
            "last_status, last_error, runs FROM lifecycle_jobs ORDER BY job_id"
        ).fetchall()
