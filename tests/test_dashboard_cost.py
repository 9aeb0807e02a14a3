"""The Cost page: bandwidth from heartbeat counters (restarts included), storage per table, lifecycle job
durations; against the real PostgreSQL, and in the real browser."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from cloud_service.queries import gateway_traffic, job_durations, storage_use
from cloud_service.writer import BatchWriter
from dashboard.cost_page import bytes_text
from shared.messages import Status
from shared.timebase import datetime_to_ns
from tests.dashboard_support import dashboard_settings, seed_plant, serving
from tests.test_dashboard_browser import _log_in, _screenshot, _wait
from tests.test_dashboard_browser import browser as browser  # noqa: PLC0414 - the fixture, re-exported

EDGE = "gw-edge2"


def _heartbeats(conninfo: str, now: datetime) -> None:
    """Four heartbeats of `EDGE`, one an hour; the agent restarts before the last (its counters drop)."""
    counters = [(100.0, 10_000.0), (300.0, 30_000.0), (700.0, 70_000.0), (50.0, 5_000.0)]
    with psycopg.connect(conninfo) as conn:
        BatchWriter(conn).write(
            [
                Status(
                    gateway_id=EDGE,
                    ts_ns=datetime_to_ns(now - timedelta(hours=4 - i)),
                    state="online",
                    seq=i,
                    uptime_s=3600.0 * (i + 1),
                    metrics={"uplink.bytes_out": up, "intake.received_bytes": raw},
                    model_versions={},
                )
                for i, (up, raw) in enumerate(counters)
            ]
        )


def test_traffic_adds_the_counter_steps_across_a_restart(db: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _heartbeats(db, now)
    with psycopg.connect(db) as conn:
        (edge,) = gateway_traffic(conn, start=now - timedelta(days=1), end=now + timedelta(minutes=1))
        (late,) = gateway_traffic(conn, start=now - timedelta(hours=2, minutes=30), end=now)
    assert edge.gateway_id == EDGE
    assert edge.heartbeats == 4
    assert edge.upstream_bytes == 200 + 400 + 50  # the step after the restart counts from zero
    assert edge.raw_bytes == 20_000 + 40_000 + 5_000
    assert edge.saved_share == pytest.approx(1 - 650 / 65_000)
    assert (late.heartbeats, late.upstream_bytes) == (2, 50)  # the range's first heartbeat is its origin


def test_storage_counts_small_tables_and_sums_partitions(db: str) -> None:
    now = datetime.now(UTC)
    _heartbeats(db, now)
    with psycopg.connect(db) as conn:
        exact = {t.table: t for t in storage_use(conn).tables}
        conn.execute("ANALYZE heartbeats")
        estimated = {t.table: t for t in storage_use(conn, exact_below_bytes=0).tables}
        size = storage_use(conn).database_bytes
    assert exact["heartbeats"].rows == 4
    assert exact["heartbeats"].is_exact
    assert exact["heartbeats"].total_bytes > 0  # a partitioned table: the sizes of its partitions
    assert estimated["heartbeats"].rows == 4
    assert not estimated["heartbeats"].is_exact
    assert size >= sum(t.total_bytes for t in exact.values())
    assert "heartbeats_p" not in " ".join(exact)  # partitions are counted in their parent, not listed


def _jobs(conninfo: str, started: datetime) -> None:
    """A retraining that took 95 s, and a forecast recompute still running."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO lifecycle_jobs (job_id, trigger, next_run_at, last_started_at, last_finished_at, "
            "last_status, runs) VALUES ('retrain', 'cron', %s, %s, %s, 'ok', 3), "
            "('forecast-recompute', 'interval', %s, %s, %s, 'ok', 9)",
            (
                started + timedelta(days=1),
                started,
                started + timedelta(seconds=95),
                started,
                started + timedelta(minutes=5),
                started,
            ),
        )


def test_job_durations_of_finished_and_running_jobs(db: str) -> None:
    _jobs(db, datetime(2026, 1, 5, 2, 0, tzinfo=UTC))
    with psycopg.connect(db) as conn:
        jobs = {j.job_id: j for j in job_durations(conn)}
    assert jobs["retrain"].last_duration_s == pytest.approx(95.0)
    assert not jobs["retrain"].is_running
    assert jobs["forecast-recompute"].is_running
    assert jobs["forecast-recompute"].last_duration_s is None


def test_bytes_are_shown_in_binary_units() -> None:
    assert [bytes_text(v) for v in (None, 512, 1536, 5 * 1024**3)] == ["–", "512 B", "1.5 KiB", "5.0 GiB"]


@pytest.mark.slow
def test_cost_page_in_a_real_browser(db: str, tmp_path: Path, browser: WebDriver) -> None:
    shots = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    seed_plant(db)
    _heartbeats(db, datetime.now(UTC))
    _jobs(db, datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    with serving(dashboard_settings(db, tmp_path)) as served:
        browser.get(f"{served.url}/cost")
        _wait(browser, "#username")
        _log_in(browser, served.url, "erin")
        _wait(browser, "#cost-traffic-table tbody tr")
        _wait(browser, "#cost-storage-table tbody tr")
        _wait(browser, "#cost-traffic-graph .main-svg")
        traffic = browser.find_element(By.ID, "cost-traffic-table").text
        assert EDGE in traffic
        assert "99.0%" in traffic  # 650 B sent of 65,000 B received
        assert "total" in traffic
        assert "aggregates" in browser.find_element(By.ID, "cost-storage-table").text
        assert "bytes (log scale)" in browser.find_element(By.ID, "cost-traffic-graph").text
        jobs = browser.find_element(By.ID, "cost-jobs-table").text
        assert "95.0 s" in jobs  # the retraining
        assert "running" in jobs
        _screenshot(browser, shots, "cost")
