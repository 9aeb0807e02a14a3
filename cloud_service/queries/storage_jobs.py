"""TimescaleDB's storage jobs (compression, retention, continuous aggregate refresh) and how they ran.

TimescaleDB runs its policies in background workers whose failures go only to the server log; these reads
bring each job's last run and failure count to `forewarn cloud status`. On plain PostgreSQL the same upkeep
runs inside the cloud service (`cloud_service.upkeep`), and there are no such jobs.

Functions take an open connection and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

__all__ = ["StorageJob", "storage_jobs"]

# TimescaleDB's policy jobs by `timescaledb_information.jobs.proc_name`; user-defined actions are left out.
_POLICY_PROCEDURES = (
    "policy_compression",
    "policy_retention",
    "policy_refresh_continuous_aggregate",
    "policy_columnstore",
)


@dataclass(frozen=True, slots=True)
class StorageJob:
    """One storage policy job and the outcome of its runs."""

    job_id: int
    policy: str
    table: str
    last_run_started_at: datetime | None
    last_run_status: str | None
    last_successful_finish: datetime | None
    next_start: datetime | None
    total_runs: int
    total_failures: int
    last_error: str | None

    @property
    def failing(self) -> bool:
        """Whether the job's latest run failed."""
        return self.last_run_status == "Failed"


def _job_errors_available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_views "
        "WHERE schemaname = 'timescaledb_information' AND viewname = 'job_errors'"
    ).fetchone()
    return bool(row and row[0])


def storage_jobs(conn: psycopg.Connection[Any]) -> list[StorageJob]:
    """Every TimescaleDB policy job with its latest run, or [] where TimescaleDB is not in this database."""
    installed = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if not installed or not installed[0]:
        return []
    # `job_errors` exists from TimescaleDB 2.9 on; older versions only count failures.
    last_error = (
        "(SELECT e.err_message FROM timescaledb_information.job_errors e WHERE e.job_id = j.job_id "
        "ORDER BY e.finish_time DESC NULLS LAST LIMIT 1)"
        if _job_errors_available(conn)
        else "NULL::text"
    )
    rows = conn.execute(
        "SELECT j.job_id, j.proc_name, coalesce(j.hypertable_name, ''), s.last_run_started_at, "
        "s.last_run_status, s.last_successful_finish, s.next_start, coalesce(s.total_runs, 0), "
        f"coalesce(s.total_failures, 0), {last_error} "
        "FROM timescaledb_information.jobs j "
        "LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id "
        "WHERE j.proc_name = ANY(%s) ORDER BY j.job_id",
        (list(_POLICY_PROCEDURES),),
    ).fetchall()
    return [
        StorageJob(
            job_id=int(row[0]),
            policy=str(row[1]).removeprefix("policy_"),
            table=str(row[2]),
            last_run_started_at=row[3],
            last_run_status=row[4],
            last_successful_finish=row[5],
            next_start=row[6],
            total_runs=int(row[7]),
            total_failures=int(row[8]),
            last_error=row[9],
        )
        for row in rows
    ]
