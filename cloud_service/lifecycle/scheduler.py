"""Scheduled lifecycle jobs (APScheduler 3): retraining, drift checks, rollup refresh; once across processes.

Job state lives in PostgreSQL, in `lifecycle_jobs` (one row per job: the next run time, the last run's
start, end, status and error, a run count). On start, each job is scheduled for the next run time stored
there, not for one computed afresh, so a restart keeps the schedule, and a run that fell due while no
process was up runs at once (coalesced into one).

Every cloud process may run a scheduler. When a job fires, its process takes a PostgreSQL advisory lock
for the job (`pg_try_advisory_lock`; busy means another process is running it: skip), then claims the
run by moving `next_run_at` forward only if it is still due. A process whose timer fires a moment later
finds the run claimed and skips it: each run happens once, however many processes there are.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from cloud_service.forecasting.settings import ForecastSettings
from cloud_service.lifecycle.settings import LifecycleSettings

__all__ = ["JobSpec", "LifecycleScheduler", "SchedulerMetrics", "lifecycle_jobs"]

logger = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x4657_4A00_0000_0000  # "FWJ": advisory locks of lifecycle jobs
_DUE_SLACK = timedelta(seconds=1)


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A scheduled job: its id, when it runs, and what it does (a plain function given its dependencies)."""

    job_id: str
    trigger: BaseTrigger
    func: Callable[[], object]
    description: str = ""


@dataclasses.dataclass
class SchedulerMetrics:
    """What this process's scheduler did."""

    runs: int = 0
    failures: int = 0
    skipped_locked: int = 0
    skipped_claimed: int = 0


def _lock_key(job_id: str) -> int:
    return _LOCK_NAMESPACE | zlib.crc32(job_id.encode())


def _next_fire(trigger: BaseTrigger, after: datetime) -> datetime:
    fire: datetime | None = trigger.get_next_fire_time(None, after)
    if fire is None:
        raise ValueError("a lifecycle job trigger must fire again")
    return fire


class LifecycleScheduler:
    """Runs lifecycle jobs on schedule, with their state in PostgreSQL and each run once across processes.

    Args:
        conninfo: the database (migrated, with `lifecycle_jobs`).
        jobs: the jobs to run.
        runner_id: this process's name in `lifecycle_jobs.last_runner`.
    """

    def __init__(self, *, conninfo: str, jobs: Sequence[JobSpec], runner_id: str) -> None:
        self.conninfo = conninfo
        self.jobs = {job.job_id: job for job in jobs}
        self.runner_id = runner_id
        self.metrics = SchedulerMetrics()
        self._metrics_lock = threading.Lock()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        """Register the jobs (keeping stored next run times) and start the timer thread."""
        stored = self._ensure_rows()
        for job in self.jobs.values():
            self._scheduler.add_job(
                self.run_job,
                trigger=job.trigger,
                args=[job.job_id],
                id=job.job_id,
                name=job.description or job.job_id,
                next_run_time=stored[job.job_id],
                replace_existing=True,
            )
        self._scheduler.start()
        logger.info("lifecycle scheduler started: %s", {k: v.isoformat() for k, v in stored.items()})

    def stop(self) -> None:
        """Stop the timer and wait for running jobs."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def next_run_times(self) -> dict[str, datetime | None]:
        """When this process's timer will next fire each job."""
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def _ensure_rows(self) -> dict[str, datetime]:
        now = datetime.now(UTC)
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            for job in self.jobs.values():
                conn.execute(
                    "INSERT INTO lifecycle_jobs (job_id, trigger, next_run_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (job_id) DO UPDATE SET trigger = EXCLUDED.trigger",
                    (job.job_id, str(job.trigger), _next_fire(job.trigger, now)),
                )
            rows = conn.execute(
                "SELECT job_id, next_run_at FROM lifecycle_jobs WHERE job_id = ANY(%s)", (list(self.jobs),)
            ).fetchall()
        return {str(job_id): next_run_at for job_id, next_run_at in rows}

    def _count(self, field: str) -> None:
        with self._metrics_lock:
            setattr(self.metrics, field, getattr(self.metrics, field) + 1)

    def run_job(self, job_id: str) -> bool:
        """Run `job_id` if it is due and no other process runs it; True if it ran (even if it failed)."""
        job = self.jobs[job_id]
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(job_id),)).fetchone()
            if not row or not row[0]:
                self._count("skipped_locked")
                return False
            try:
                if not self._claim(conn, job):
                    self._count("skipped_claimed")
                    return False
                self._execute(conn, job)
                return True
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(job_id),))

    def _claim(self, conn: psycopg.Connection[Any], job: JobSpec) -> bool:
        now = datetime.now(UTC)
        claimed = conn.execute(
            "UPDATE lifecycle_jobs SET next_run_at = %s, last_started_at = %s, last_runner = %s "
            "WHERE job_id = %s AND next_run_at <= %s RETURNING job_id",
            (_next_fire(job.trigger, now), now, self.runner_id, job.job_id, now + _DUE_SLACK),
        ).fetchone()
        return claimed is not None

    def _execute(self, conn: psycopg.Connection[Any], job: JobSpec) -> None:
        status, error = "ok", ""
        try:
            job.func()
        except Exception as exc:  # a failed job is recorded and retried at its next run; the timer goes on
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            self._count("failures")
            logger.exception("lifecycle job %s failed", job.job_id)
        self._count("runs")
        conn.execute(
            "UPDATE lifecycle_jobs SET last_finished_at = now(), last_status = %s, last_error = %s, "
            "runs = runs + 1 WHERE job_id = %s",
            (status, error, job.job_id),
        )


def lifecycle_jobs(
    settings: LifecycleSettings,
    *,
    retrain: Callable[[], object],
    drift: Callable[[], object],
    refresh_rollups: Callable[[], object] | None,
    push_pending: Callable[[], object] | None = None,
    rollup_interval_s: float = 300.0,
    forecast: ForecastSettings | None = None,
    refit_forecaster: Callable[[], object] | None = None,
    recompute_forecasts: Callable[[], object] | None = None,
    refresh_advice: Callable[[], object] | None = None,
    advice_interval_s: float = 900.0,
    diagnose_snapshots: Callable[[], object] | None = None,
    snapshot_diagnosis_interval_s: float = 60.0,
) -> list[JobSpec]:
    """The standard jobs from the settings: nightly retraining, hourly drift checks, push retries (auto
    approval), rollup refresh, and (with `forecast` enabled and both functions given) the forecaster refit
    and the forecast recompute; the advice refresh and the snapshot diagnosis when given.

    With `settings.shard` i/n (n > 1) the retraining and drift jobs are `retrain@iofn` and `drift@iofn`:
    each shard's run is claimed apart; the other jobs stay one per deployment."""
    suffix = settings.shard_job_suffix
    jobs = [
        JobSpec(
            f"retrain{suffix}",
            CronTrigger.from_crontab(settings.retrain_cron, timezone=UTC),
            retrain,
            "retraining",
        ),
        JobSpec(
            f"drift{suffix}",
            IntervalTrigger(seconds=settings.drift_interval_s, timezone=UTC),
            drift,
            "drift checks",
        ),
    ]
    if settings.approval == "auto" and push_pending is not None:
        jobs.append(
            JobSpec(
                "push-retry",
                IntervalTrigger(seconds=settings.push_retry_interval_s, timezone=UTC),
                push_pending,
                "push retries",
            )
        )
    if settings.rollup_refresh and refresh_rollups is not None:
        jobs.append(
            JobSpec(
                "rollups",
                IntervalTrigger(seconds=rollup_interval_s, timezone=UTC),
                refresh_rollups,
                "rollups",
            )
        )
    # --- live failure forecasting (cloud_service.forecasting.live) ---
    if forecast is not None and forecast.enabled and refit_forecaster and recompute_forecasts:
        jobs.append(
            JobSpec(
                "forecast-refit",
                CronTrigger.from_crontab(forecast.refit_cron, timezone=UTC),
                refit_forecaster,
                "forecaster refit",
            )
        )
        jobs.append(
            JobSpec(
                "forecast-recompute",
                IntervalTrigger(seconds=forecast.recompute_interval_s, timezone=UTC),
                recompute_forecasts,
                "forecast recompute",
            )
        )
    if refresh_advice is not None:
        jobs.append(
            JobSpec(
                "advice", IntervalTrigger(seconds=advice_interval_s, timezone=UTC), refresh_advice, "advice"
            )
        )
    if diagnose_snapshots is not None:
        jobs.append(
            JobSpec(
                "snapshot-diagnosis",
                IntervalTrigger(seconds=snapshot_diagnosis_interval_s, timezone=UTC),
                diagnose_snapshots,
                "snapshot diagnosis",
            )
        )
    return jobs
