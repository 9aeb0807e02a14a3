"""The demo end to end: simulator -> broker -> edge agent -> broker -> cloud ingest -> database."""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forewarn.demo import run_demo
from forewarn.localservices import MosquittoServer
from forewarn.settings import DemoSettings
from shared.config import load_settings


@pytest.mark.slow
def test_demo_runs_the_whole_data_path(broker: MosquittoServer, db: str, tmp_path: Path) -> None:
    settings = load_settings(
        DemoSettings,
        environ={},
        overrides={
            "scenario": "smoke",
            "speed": 1200.0,
            "broker_url": f"mqtt://{broker.host}:{broker.port}",
            "database": db,
            "workdir": tmp_path,
            "gateway_id": "gw-demo-test",
        },
    )
    out = io.StringIO()
    report = run_demo(settings, out=out)
    assert report.assets == 3
    assert report.raw_samples > 1_000_000
    assert report.aggregates_stored > 100  # every asset, every 10 s period, made it to the database
    assert report.dead_letters == 0
    pump_failures = [r for r in report.truth if r.event == "failure" and r.asset_id == "pump-001"]
    assert pump_failures, "the smoke scenario's pump fails"
    lead = report.lead_times_h[f"pump-001@{pump_failures[0].ts_ns}"]
    assert lead is not None, "the degrading pump is alerted before it fails"
    assert lead > 0
    text = out.getvalue()
    assert "Fleet status" in text
    assert "pump-001" in text


@pytest.mark.slow
def test_sigterm_stops_the_demo_and_its_local_services(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "forewarn.cli", "demo", "--scenario", "smoke", "--workdir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ports: list[int] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if match := re.search(r"started a local (?:Mosquitto|PostgreSQL) on port (\d+)", line):
                ports.append(int(match.group(1)))
            if "PostgreSQL" in line:
                break
        assert len(ports) == 2, "the demo starts its own broker and database when none is configured"
        time.sleep(2)  # the children (cloud service, edge agent) are starting
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"a local service still listens on {port}"
