"""`forewarn cloud` runs the scheduled jobs (retraining, drift, upkeep, forecasts) inside the service."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from forewarn.localservices import MosquittoServer, wait_until


def _job_ids(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return [
            row[0] for row in conn.execute("SELECT job_id FROM lifecycle_jobs ORDER BY job_id").fetchall()
        ]


@pytest.mark.slow
def test_cloud_service_runs_the_scheduler_and_stops_cleanly(
    broker: MosquittoServer, db: str, tmp_path: Path
) -> None:
    params = psycopg.conninfo.conninfo_to_dict(db)
    config = tmp_path / "cloud.toml"
    config.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[db]\nhost = "{params["host"]}"\nport = {params["port"]}\ndbname = "{params["dbname"]}"\n'
        '[ingest]\nworkers = 1\ngroup = "sched-test"\n'
    )
    log = (tmp_path / "cloud.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "forewarn.cli", "--log-level", "INFO", "cloud", "--config", str(config)],
        stdout=log,
        stderr=log,
    )
    try:
        jobs = wait_until(lambda: len(_job_ids(db)) == 7 and _job_ids(db), timeout_s=60)
        assert jobs == [
            "advice",
            "drift",
            "forecast-recompute",
            "forecast-refit",
            "retrain",
            "rollups",
            "snapshot-diagnosis",
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        log.close()
