"""The shared connection pool on a real PostgreSQL: sizes from the settings, jobs draw from it, it closes."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg_pool import PoolTimeout

from cloud_service.database import Pool, open_pool, pooled_connection
from cloud_service.lifecycle.service import LifecycleService
from cloud_service.service import POOL_NAME, run_service
from cloud_service.settings import CloudSettings
from forewarn.localservices import MosquittoServer, wait_until
from shared.config import DatabaseSettings, load_settings
from shared.errors import ConfigError


def _db_overrides(conninfo: str, **pool: int) -> dict[str, Any]:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    return {"host": params["host"], "port": int(str(params["port"])), "dbname": params["dbname"], **pool}


def _connections_named(conninfo: str, name: str) -> int:
    """Sessions on the test's database whose application_name is `name` (a pool's connections)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (name,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_pool_sizes_come_from_the_settings_and_closing_ends_its_sessions(db: str) -> None:
    settings = DatabaseSettings.model_validate(_db_overrides(db, pool_min_size=2, pool_max_size=3))
    with open_pool(settings, name="test-pool") as pool:
        pool.wait(timeout=5)
        assert _connections_named(db, "test-pool") == 2
        held = [pool.getconn(timeout=5) for _ in range(3)]
        assert _connections_named(db, "test-pool") == 3
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.3)
        for conn in held:
            pool.putconn(conn)
    assert pool.closed
    assert wait_until(lambda: _connections_named(db, "test-pool") == 0, timeout_s=5)


def test_pool_sizes_out_of_order_are_refused() -> None:
    with pytest.raises(ConfigError, match="pool_min_size"):
        load_settings(CloudSettings, environ={}, overrides={"db": {"pool_min_size": 5, "pool_max_size": 2}})


def _failing_unit_of_work(pool: Pool) -> None:
    with pooled_connection(pool) as conn:
        conn.execute("INSERT INTO unit_of_work VALUES (2)")
        raise RuntimeError("the job failed")


def test_a_unit_of_work_commits_or_rolls_back_and_sets_its_mode(db: str) -> None:
    settings = DatabaseSettings.model_validate(_db_overrides(db, pool_min_size=1, pool_max_size=1))
    with open_pool(settings, name="test-unit") as pool:
        with pooled_connection(pool, autocommit=True) as conn:
            assert conn.autocommit
            conn.execute("CREATE TABLE unit_of_work (n int)")
        with pooled_connection(pool) as conn:
            assert not conn.autocommit  # the same, only connection, back in transaction mode
            conn.execute("INSERT INTO unit_of_work VALUES (1)")
        with pytest.raises(RuntimeError, match="the job failed"):
            _failing_unit_of_work(pool)
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT n FROM unit_of_work").fetchall() == [(1,)]


def test_a_scheduled_job_takes_its_connection_from_the_pool(db: str) -> None:
    settings = load_settings(CloudSettings, environ={}, overrides={"db": _db_overrides(db)})
    with open_pool(settings.db, name="test-jobs") as pool:
        pool.wait(timeout=5)
        service = LifecycleService(settings, runner_id="test", pool=pool)
        before = pool.get_stats().get("requests_num", 0)
        service.refresh_rollups()  # the scheduler's `rollups` job
        assert pool.get_stats()["requests_num"] == before + 1
        assert _connections_named(db, "test-jobs") == settings.db.pool_min_size


def test_the_service_upkeep_timer_uses_the_pool_and_closes_it_on_shutdown(
    db: str, broker: MosquittoServer
) -> None:
    settings = load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": {"host": broker.host, "port": broker.port, "receive_maximum": 256},
            "db": _db_overrides(db, pool_min_size=1, pool_max_size=2),
            "ingest": {"group": "pool-test", "client_id_prefix": "pool-test", "queue_size": 512},
        },
    )
    stop = threading.Event()
    service = threading.Thread(target=run_service, args=(settings, stop), name="test-cloud", daemon=True)
    service.start()
    try:
        assert wait_until(lambda: _connections_named(db, POOL_NAME) >= 1, timeout_s=10)
    finally:
        stop.set()
        service.join(20)
    assert not service.is_alive()
    assert wait_until(lambda: _connections_named(db, POOL_NAME) == 0, timeout_s=5)
