"""Model lifecycle jobs: the schedule survives a restart, two schedulers run one training, drift is stored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from apscheduler.triggers.interval import IntervalTrigger

from cloud_service.lifecycle import registry
from cloud_service.lifecycle.drift import check_drift, psi
from cloud_service.lifecycle.retraining import train_target
from cloud_service.lifecycle.scheduler import JobSpec, LifecycleScheduler, lifecycle_jobs
from cloud_service.lifecycle.service import LifecycleService
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.lifecycle.signing import init_keys, load_private_key
from cloud_service.migrate import migrate
from cloud_service.settings import CloudSettings
from forewarn.bench.retrain import seed_fleet
from forewarn.localservices import wait_until
from shared.config import load_settings

FAST = LifecycleSettings(min_training_rows=100, model_types=("pca",), approval="manual")


def _job_row(db: str, job_id: str) -> tuple[datetime, int, str]:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT next_run_at, runs, last_status FROM lifecycle_jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _set_next_run(db: str, job_id: str, when: datetime) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE lifecycle_jobs SET next_run_at = %s WHERE job_id = %s", (when, job_id))


def test_a_restart_keeps_the_schedule_and_runs_a_job_missed_while_down(db: str) -> None:
    migrate(db)
    runs: list[int] = []
    job = JobSpec("hourly", IntervalTrigger(hours=1, timezone=UTC), lambda: runs.append(1))
    first = LifecycleScheduler(conninfo=db, jobs=[job], runner_id="a")
    first.start()
    stored, _, _ = _job_row(db, "hourly")
    first.stop()
    assert stored > datetime.now(UTC) + timedelta(minutes=59)
    second = LifecycleScheduler(conninfo=db, jobs=[job], runner_id="b")
    second.start()
    try:
        assert second.next_run_times()["hourly"] == stored  # kept, not recomputed from the restart
    finally:
        second.stop()
    # the process was down when the run fell due: the next start runs it at once, once
    _set_next_run(db, "hourly", datetime.now(UTC) - timedelta(minutes=5))
    third = LifecycleScheduler(conninfo=db, jobs=[job], runner_id="c")
    third.start()
    try:
        wait_until(lambda: _job_row(db, "hourly")[1] == 1, timeout_s=10)
        next_run, count, status = _job_row(db, "hourly")
    finally:
        third.stop()
    assert runs == [1]
    assert status == "ok"
    assert count == 1
    assert next_run > datetime.now(UTC) + timedelta(minutes=59)


@pytest.mark.slow
def test_two_schedulers_run_one_training_not_two(
    db: str, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    migrate(db)
    target = unique_id("pump")
    seed_fleet(db, asset_ids=[f"{target}-0", f"{target}-1"], asset_type=target, rows_per_asset=150)
    key = load_private_key(init_keys(workdir / "keys").private_key)
    trainings: list[int] = []
    lock = threading.Lock()

    def train() -> None:
        with psycopg.connect(db) as conn:
            report = train_target(conn, FAST, target, private_key=key)
        with lock:
            trainings.append(report.candidates[0].version)

    job = JobSpec("retrain", IntervalTrigger(hours=24, timezone=UTC), train)
    setup = LifecycleScheduler(conninfo=db, jobs=[job], runner_id="setup")
    setup.start()  # creates the job's row
    setup.stop()
    # due in a moment: both processes start before it and their timers fire at the same time
    _set_next_run(db, "retrain", datetime.now(UTC) + timedelta(seconds=2))
    schedulers = [LifecycleScheduler(conninfo=db, jobs=[job], runner_id=name) for name in ("p1", "p2")]
    for scheduler in schedulers:
        scheduler.start()
    try:

        def both_decided() -> bool:
            m = [s.metrics for s in schedulers]
            return sum(x.runs + x.skipped_locked + x.skipped_claimed for x in m) == 2

        try:
            wait_until(both_decided, timeout_s=30)
        except TimeoutError:
            raise AssertionError(
                f"{[s.metrics for s in schedulers]} {[s.next_run_times() for s in schedulers]} "
                f"{_job_row(db, 'retrain')} {trainings}"
            ) from None
    finally:
        for scheduler in schedulers:
            scheduler.stop()
    assert trainings == [1]
    assert sum(s.metrics.runs for s in schedulers) == 1
    with psycopg.connect(db) as conn:
        assert len(registry.list_models(conn, target=target)) == 1
    assert _job_row(db, "retrain")[1] == 1


def test_psi_is_zero_for_equal_and_large_for_shifted_distributions() -> None:
    assert psi([0.1] * 10, [0.1] * 10) == 0.0
    assert psi([0.1] * 10, [0.55, 0.45] + [0.0] * 8) > 1.0


def test_drift_is_stored_per_asset_and_flags_a_changed_asset(
    db: str, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    migrate(db)
    target = unique_id("fan")
    assets = [f"{target}-0", f"{target}-1"]
    now = datetime.now(UTC)
    seed_fleet(db, asset_ids=assets, asset_type=target, rows_per_asset=300, end=now - timedelta(hours=2))
    key = load_private_key(init_keys(workdir / "keys").private_key)
    with psycopg.connect(db) as conn:
        report = train_target(conn, FAST, target, private_key=key, now=now - timedelta(hours=1))
        assert report.selected is not None
        registry.set_status(conn, target, report.selected, "approved")
        registry.mark_deployed(conn, target, report.selected)
    # recent data: asset 0 as before, asset 1 with a developing bearing fault
    seed_fleet(db, asset_ids=assets, asset_type=target, rows_per_asset=160, end=now, failing_asset=assets[1])
    with psycopg.connect(db) as conn:
        settings = FAST.model_copy(update={"drift_recent_h": 0.5})
        results = {r.asset_id: r for r in check_drift(conn, settings, target, now=now + timedelta(seconds=1))}
        stored = registry.drift_history(conn, target=target)
    assert set(results) == set(assets)
    assert not results[assets[0]].is_drifted
    assert results[assets[1]].is_drifted
    assert len(stored) == 2
    assert {check.asset_id for check in stored if check.is_drifted} == {assets[1]}


def test_the_cloud_service_schedules_retraining_drift_and_rollups(
    db: str, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    migrate(db)
    target = unique_id("pump")
    now = datetime.now(UTC)
    seed_fleet(
        db, asset_ids=[f"{target}-0"], asset_type=target, rows_per_asset=150, end=now - timedelta(hours=1)
    )
    keys = init_keys(workdir / "keys")
    params = psycopg.conninfo.conninfo_to_dict(db)
    settings = load_settings(
        CloudSettings,
        environ={},
        overrides={
            "db": {"host": params["host"], "port": int(str(params["port"])), "dbname": params["dbname"]},
            "lifecycle": {
                "signing_key": str(keys.private_key),
                "targets": [target],
                "model_types": ["pca"],
                "min_training_rows": 100,
                "drift_recent_h": 0.5,
                "exclude_before_event_h": 0.5,  # the failure at the end does not exclude the older data
            },
        },
    )
    service = LifecycleService(settings, runner_id="test")
    scheduler = service.scheduler()
    scheduler.start()
    try:
        assert set(scheduler.next_run_times()) == {
            "retrain",
            "drift",
            "rollups",
            "forecast-refit",
            "forecast-recompute",
            "snapshot-diagnosis",
            "advice",
        }
    finally:
        scheduler.stop()
    service.retrain_all()  # what the nightly job runs
    service.check_drift_all()  # nothing deployed yet: no drift rows
    service.refresh_rollups()
    with psycopg.connect(db) as conn:
        (model,) = registry.list_models(conn, target=target)
        assert model.status == "candidate"
        assert registry.drift_history(conn, target=target) == []
        rolled = conn.execute("SELECT count(*) FROM rollup_hourly").fetchone()
        jobs = conn.execute("SELECT job_id FROM lifecycle_jobs ORDER BY job_id").fetchall()
    assert rolled is not None
    assert rolled[0] > 0
    assert [j[0] for j in jobs] == [
        "advice",
        "drift",
        "forecast-recompute",
        "forecast-refit",
        "retrain",
        "rollups",
        "snapshot-diagnosis",
    ]
    # once deployed, a drifting asset (a bearing fault in the last half hour) triggers a retraining
    with psycopg.connect(db) as conn:
        registry.set_status(conn, target, model.version, "approved")
        registry.mark_deployed(conn, target, model.version)
    seed_fleet(
        db, asset_ids=[f"{target}-0"], asset_type=target, rows_per_asset=160, failing_asset=f"{target}-0"
    )
    service.check_drift_all()
    with psycopg.connect(db) as conn:
        drift = registry.drift_history(conn, target=target)
        versions = [m.version for m in registry.list_models(conn, target=target)]
    assert [check.is_drifted for check in drift] == [True]
    assert versions == [model.version + 1, model.version]


def test_shards_split_the_targets_and_bad_shards_are_refused() -> None:
    targets = tuple(f"pump-{i}" for i in range(30))
    shares = [LifecycleSettings(targets=targets, shard=f"{i}/3").shard_targets for i in (1, 2, 3)]
    assert sorted(t for share in shares for t in share) == sorted(targets)  # each target in one shard
    assert all(share for share in shares)
    assert LifecycleSettings(targets=targets).shard_targets == targets
    assert LifecycleSettings(targets=targets, shard="2/3").shard_job_suffix == "@2of3"
    for bad in ("3/2", "0/1", "1", "1/0", "a/b"):
        with pytest.raises(ValueError, match="shard"):
            LifecycleSettings(shard=bad)


@pytest.mark.slow
def test_two_shards_each_run_their_own_retraining(db: str) -> None:
    migrate(db)
    ran: list[str] = []
    lock = threading.Lock()

    def jobs(shard: str) -> list[JobSpec]:
        settings = LifecycleSettings(targets=("a", "b", "c"), shard=shard, rollup_refresh=False)

        def retrain() -> None:
            with lock:
                ran.append(shard)

        return lifecycle_jobs(settings, retrain=retrain, drift=lambda: None, refresh_rollups=None)

    shards = ("1/2", "2/2")
    setups = [LifecycleScheduler(conninfo=db, jobs=jobs(s), runner_id=f"setup{s}") for s in shards]
    for setup in setups:
        setup.start()  # creates the jobs' rows
        setup.stop()
    assert {"retrain@1of2", "retrain@2of2", "drift@1of2", "drift@2of2"} <= set(setups[0].jobs) | set(
        setups[1].jobs
    )
    for job_id in ("retrain@1of2", "retrain@2of2"):
        _set_next_run(db, job_id, datetime.now(UTC) + timedelta(seconds=1))
    schedulers = [LifecycleScheduler(conninfo=db, jobs=jobs(s), runner_id=s) for s in shards]
    for scheduler in schedulers:
        scheduler.start()
    try:
        wait_until(lambda: len(ran) == 2, timeout_s=20)
    finally:
        for scheduler in schedulers:
            scheduler.stop()
    assert sorted(ran) == ["1/2", "2/2"]  # both ran: the shards' runs are claimed apart
