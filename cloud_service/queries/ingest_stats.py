"""What ingest has stored and how it is doing: rate, lag, dead letters, worker counters, storage jobs, totals.

Functions take an open connection and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cloud_service.queries.storage_jobs import StorageJob, storage_jobs

__all__ = [
    "IngestStatus",
    "SequenceAccount",
    "StoredCounts",
    "ingest_status",
    "latest_gateway_metrics",
    "latest_gateway_model",
    "missing_sequences",
    "sequence_account",
    "stored_counts",
]


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """What `forewarn cloud status` shows."""

    backend: str
    schema_version: int
    aggregates_last_minute: int
    aggregates_per_s: float
    lag_p50_s: float | None
    lag_max_s: float | None
    dead_letters_total: int
    dead_letters_last_day: dict[str, int]
    workers: list[dict[str, Any]]
    storage_jobs: list[StorageJob]
    storage_jobs_failing: int


def ingest_status(conn: psycopg.Connection[Any], *, now: datetime | None = None) -> IngestStatus:
    """Ingest rate and lag over the last minute, dead letters, each worker's latest counters, storage jobs."""
    now = now or datetime.now(UTC)
    minute_ago = now - timedelta(minutes=1)
    meta = conn.execute(
        "SELECT (SELECT value FROM forewarn_meta WHERE key = 'storage_backend'), "
        "(SELECT coalesce(max(version), 0) FROM schema_migrations)"
    ).fetchone()
    rate = conn.execute(
        "SELECT count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - period_end)), "
        "max(extract(epoch FROM received_at - period_end)) FROM aggregates "
        "WHERE received_at >= %s AND period_start >= %s",
        (minute_ago, now - timedelta(days=2)),
    ).fetchone()
    dead_total = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    by_field = conn.execute(
        "SELECT field, count(*) FROM dead_letters WHERE received_at >= %s GROUP BY field ORDER BY 2 DESC",
        (now - timedelta(days=1),),
    ).fetchall()
    workers = conn.execute(
        "SELECT worker_id, updated_at, metrics FROM ingest_workers ORDER BY worker_id"
    ).fetchall()
    count = int(rate[0]) if rate else 0
    jobs = storage_jobs(conn)
    return IngestStatus(
        backend=str(meta[0]) if meta and meta[0] else "unmigrated",
        schema_version=int(meta[1]) if meta else 0,
        aggregates_last_minute=count,
        aggregates_per_s=round(count / 60.0, 1),
        lag_p50_s=float(rate[1]) if rate and rate[1] is not None else None,
        lag_max_s=float(rate[2]) if rate and rate[2] is not None else None,
        dead_letters_total=int(dead_total[0]) if dead_total else 0,
        dead_letters_last_day={str(row[0]): int(row[1]) for row in by_field},
        workers=[{"worker_id": row[0], "updated_at": row[1].isoformat(), **row[2]} for row in workers],
        storage_jobs=jobs,
        storage_jobs_failing=sum(job.failing for job in jobs),
    )


@dataclass(frozen=True, slots=True)
class StoredCounts:
    """How many rows ingest has stored, in total."""

    aggregates: int
    alerts: int
    dead_letters: int


def stored_counts(conn: psycopg.Connection[Any]) -> StoredCounts:
    """Total aggregates, alerts and dead letters stored (full counts: for demos and checks)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM aggregates), (SELECT count(*) FROM alerts), "
        "(SELECT count(*) FROM dead_letters)"
    ).fetchone()
    aggregates, alerts, dead_letters = row if row else (0, 0, 0)
    return StoredCounts(int(aggregates), int(alerts), int(dead_letters))


@dataclass(frozen=True, slots=True)
class SequenceAccount:
    """What the cloud holds of one gateway's sequence numbers (every uplink message kind shares them)."""

    gateway_id: str
    distinct_seqs: int
    rows: int
    highest_seq: int | None

    @property
    def duplicated(self) -> int:
        """Messages stored more than once (0 while ingest de-duplicates by `(gateway_id, seq)`)."""
        return self.rows - self.distinct_seqs


_SEQUENCES = """
SELECT count(DISTINCT seq), count(*), max(seq) FROM (
    SELECT seq FROM aggregates WHERE gateway_id = %(g)s
    UNION ALL SELECT seq FROM alert_messages WHERE gateway_id = %(g)s
    UNION ALL SELECT seq FROM snapshots WHERE gateway_id = %(g)s
    UNION ALL SELECT seq FROM deployment_acks WHERE gateway_id = %(g)s
) AS stored
"""


def sequence_account(conn: psycopg.Connection[Any], gateway_id: str) -> SequenceAccount:
    """How many of a gateway's sequence numbers are stored, and how many rows hold them (full scan of
    that gateway's rows: for demos, fault campaigns and checks, not for pages)."""
    row = conn.execute(_SEQUENCES, {"g": gateway_id}).fetchone()
    distinct, rows, highest = row if row else (0, 0, None)
    return SequenceAccount(gateway_id, int(distinct), int(rows), None if highest is None else int(highest))


def latest_gateway_metrics(conn: psycopg.Connection[Any], gateway_id: str) -> dict[str, float]:
    """The counters of a gateway's newest heartbeat that carried any (an offline status carries none)."""
    row = conn.execute(
        "SELECT metrics FROM heartbeats WHERE gateway_id = %s AND metrics <> '{}'::jsonb "
        "ORDER BY ts DESC LIMIT 1",
        (gateway_id,),
    ).fetchone()
    return {str(k): float(v) for k, v in row[0].items()} if row else {}


def latest_gateway_model(conn: psycopg.Connection[Any], gateway_id: str) -> str | None:
    """The model (`target:vN` or `baseline`) that scored a gateway's newest stored aggregate, if any."""
    row = conn.execute(
        "SELECT model_version FROM aggregates WHERE gateway_id = %s ORDER BY seq DESC LIMIT 1", (gateway_id,)
    ).fetchone()
    return str(row[0]) if row else None


def missing_sequences(
    conn: psycopg.Connection[Any], gateway_id: str, *, below: int, limit: int = 20
) -> list[int]:
    """Sequence numbers under `below` that no stored message of the gateway carries (the first `limit`)."""
    rows = conn.execute(
        "SELECT s FROM generate_series(0, %(below)s - 1) AS s WHERE NOT EXISTS ("
        "SELECT 1 FROM aggregates WHERE gateway_id = %(g)s AND seq = s "
        "UNION ALL SELECT 1 FROM alert_messages WHERE gateway_id = %(g)s AND seq = s "
        "UNION ALL SELECT 1 FROM snapshots WHERE gateway_id = %(g)s AND seq = s "
        "UNION ALL SELECT 1 FROM deployment_acks WHERE gateway_id = %(g)s AND seq = s"
        ") ORDER BY s LIMIT %(limit)s",
        {"below": below, "g": gateway_id, "limit": limit},
    ).fetchall()
    return [int(row[0]) for row in rows]
