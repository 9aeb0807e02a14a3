"""The lifecycle jobs wired to the cloud settings: what the scheduler runs, and `forewarn models` uses."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import psycopg

from cloud_service import advice, snapshot_diagnosis
from cloud_service.database import Pool, pooled_connection
from cloud_service.forecasting import live as forecast_live
from cloud_service.lifecycle import operations, registry
from cloud_service.lifecycle.drift import check_drift
from cloud_service.lifecycle.records import TrainingReport
from cloud_service.lifecycle.retraining import TrainingSkippedError, deploy_selected, train_target
from cloud_service.lifecycle.scheduler import LifecycleScheduler, lifecycle_jobs
from cloud_service.lifecycle.signing import load_private_key
from cloud_service.queries import latest_period_end
from cloud_service.settings import CloudSettings
from cloud_service.upkeep import run_upkeep
from shared.errors import StorageError

__all__ = ["LifecycleService"]

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


class LifecycleService:
    """Training, deployment, drift and rollup jobs for one cloud process.

    Args:
        settings: the cloud settings (database, broker, `lifecycle`, `storage`).
        runner_id: this process's name in the job table.
        pool: the process's connection pool: each job takes its connection from it for its unit of work;
            None connects anew for each (one-shot commands).
    """

    def __init__(
        self, settings: CloudSettings, *, runner_id: str = "cloud", pool: Pool | None = None
    ) -> None:
        self.settings = settings
        self.lifecycle = settings.lifecycle
        self.conninfo = settings.db.conninfo()
        self.runner_id = runner_id
        self._pool = pool

    def _connection(self, *, autocommit: bool = False) -> contextlib.AbstractContextManager[Conn]:
        """A connection for one unit of work, committed when the block ends normally."""
        if self._pool is not None:
            return pooled_connection(self._pool, autocommit=autocommit)
        return psycopg.connect(self.conninfo, autocommit=autocommit)

    def reference_now(self, conn: Conn) -> datetime:
        """What the jobs take as now: the clock, or the newest stored aggregate (`reference_time`)."""
        if self.lifecycle.reference_time == "latest_data":
            latest = latest_period_end(conn)
            if latest is not None:
                return latest
        return datetime.now(UTC)

    def train(self, target: str) -> TrainingReport:
        """Train `target` now and commit the registered candidates; with auto approval the winner is deployed.

        Raises:
            TrainingSkippedError: not enough usable data.
            ConfigError: the signing key cannot be read.
            StorageError: the winner's push failed (it stays approved; `push_pending` retries it).
        """
        key = load_private_key(self.lifecycle.signing_key)
        with self._connection() as conn:
            report = train_target(conn, self.lifecycle, target, private_key=key, now=self.reference_now(conn))
            conn.commit()
        return deploy_selected(report, self.lifecycle, self.deploy)

    def deploy(self, target: str, version: int) -> None:
        """Push an approved model to the gateways.

        Raises:
            ConfigError: the signing key cannot be read.
            StorageError: the broker could not be reached or did not acknowledge (the model stays approved;
                with auto approval, `push_pending` retries it).
        """
        key = load_private_key(self.lifecycle.signing_key)  # read per push: a rotated key applies at once
        with self._connection() as conn:
            operations.deploy(
                conn,
                self.settings.mqtt,
                target,
                version,
                chunk_bytes=self.lifecycle.chunk_bytes,
                timeout_s=self.lifecycle.push_timeout_s,
                private_key=key,
            )

    def push_pending(self) -> list[tuple[str, int]]:
        """Auto approval: push every target's approved model that is newer than its deployed one (a push
        that failed, e.g. while the broker was down). Returns the (target, version) pushed now.

        Raises:
            StorageError: a push failed again (the others were still tried; the job retries them all).
        """
        if self.lifecycle.approval != "auto":
            return []
        with self._connection() as conn:
            pending = registry.pending_pushes(conn)
        pushed: list[tuple[str, int]] = []
        failed: list[str] = []
        for model in pending:
            logger.warning("pushing %s v%d: approved, not delivered yet", model.target, model.version)
            try:
                self.deploy(model.target, model.version)
            except StorageError as exc:
                failed.append(f"{model.target} v{model.version}: {exc}")
                continue
            pushed.append((model.target, model.version))
        if failed:
            raise StorageError("models", "push failed again: " + "; ".join(failed))
        return pushed

    def retrain_all(self) -> None:
        """The scheduled retraining: every target of this process's shard, one after the other."""
        for target in self.lifecycle.shard_targets:
            try:
                self.train(target)
            except TrainingSkippedError as exc:
                logger.warning("%s", exc)

    def check_drift_all(self) -> None:
        """The scheduled drift check of this process's shard; a drifted target is retrained at once when
        configured."""
        for target in self.lifecycle.shard_targets:
            with self._connection() as conn:
                results = check_drift(conn, self.lifecycle, target, now=self.reference_now(conn))
                conn.commit()
            if self.lifecycle.drift_triggers_retraining and any(r.is_drifted for r in results):
                logger.warning("retraining %s after drift", target)
                try:
                    self.train(target)
                except TrainingSkippedError as exc:
                    logger.warning("%s", exc)

    def refresh_rollups(self) -> None:
        """Storage upkeep: partitions ahead and retention (plain PostgreSQL), rollups of recent hours."""
        with self._connection(autocommit=True) as conn:
            run_upkeep(conn, self.settings.storage)

    # --- live failure forecasting (cloud_service.forecasting.live) ---

    def refit_forecaster(self) -> forecast_live.RefitReport:
        """Refit the failure forecaster from the stored history (too few failures: skipped, old one kept)."""
        with self._connection(autocommit=True) as conn:
            return forecast_live.refit(conn, self.settings.forecast, now=self.reference_now(conn))

    def recompute_forecasts(self) -> forecast_live.RecomputeReport:
        """Recompute and store every asset's forecast with the active forecaster."""
        with self._connection(autocommit=True) as conn:
            return forecast_live.recompute(conn, self.settings.forecast, now=self.reference_now(conn))

    def refresh_advice(self) -> advice.AdviceRefresh:
        """Close advice after maintenance, then create or refresh every asset's advice, in one transaction.

        Now is the jobs' reference time (`reference_now`), the one the forecasts it reads were made at: with
        `latest_data`, a replay's diagnoses are fresh and its maintenance closes the advice it answered.
        """
        with self._connection() as conn:
            return advice.refresh_advice(conn, settings=self.settings.advice, now=self.reference_now(conn))

    def diagnose_snapshots(self) -> snapshot_diagnosis.SnapshotDiagnosisRun:
        """Diagnose the stored snapshots without a cloud diagnosis, one committed batch at a time."""
        settings = self.settings.diagnosis
        diagnosed = failed = 0
        while diagnosed + failed < settings.max_per_run:
            batch = min(settings.batch_size, settings.max_per_run - diagnosed - failed)
            with self._connection() as conn:
                run = snapshot_diagnosis.diagnose_pending_snapshots(conn, batch_size=batch)
                conn.commit()
            diagnosed, failed = diagnosed + run.diagnosed, failed + run.failed
            if run.diagnosed + run.failed < batch:
                break
        return snapshot_diagnosis.SnapshotDiagnosisRun(diagnosed=diagnosed, failed=failed)

    def scheduler(self) -> LifecycleScheduler:
        """A scheduler of the standard jobs (not started)."""
        jobs = lifecycle_jobs(
            self.lifecycle,
            retrain=self.retrain_all,
            drift=self.check_drift_all,
            push_pending=self.push_pending,
            refresh_rollups=self.refresh_rollups,
            rollup_interval_s=self.settings.storage.rollup_refresh_s,
            forecast=self.settings.forecast,
            refit_forecaster=self.refit_forecaster,
            recompute_forecasts=self.recompute_forecasts,
            refresh_advice=self.refresh_advice if self.settings.advice.enabled else None,
            advice_interval_s=self.settings.advice.refresh_interval_s,
            diagnose_snapshots=self.diagnose_snapshots if self.settings.diagnosis.enabled else None,
            snapshot_diagnosis_interval_s=self.settings.diagnosis.interval_s,
        )
        return LifecycleScheduler(conninfo=self.conninfo, jobs=jobs, runner_id=self.runner_id)
