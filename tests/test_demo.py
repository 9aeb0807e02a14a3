"""The demo end to end: simulator -> broker -> edge agent -> broker -> cloud ingest -> database."""

from __future__ import annotations

import io
import json
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
            "step_s": 0,  # the smoke scenario's own continuous signal
            "speed": 1200.0,
            "gateways": 1,
            "dashboard": False,
            "warmup_windows": 200,
            "broker_url": f"mqtt://{broker.host}:{broker.port}",
            "database": db,
            "workdir": tmp_path,
            "gateway_id": "gw-demo-test",
        },
    )
    out = io.StringIO()
    report = run_demo(settings, out=out)
    summary = report.summary()
    assert summary["assets"] == 3
    assert report.raw_samples > 1_000_000
    assert report.aggregates_stored > 100  # every asset, every 10 s period, made it to the database
    assert (summary["dead_letters"], summary["lost"], summary["duplicated"]) == (0, 0, 0)
    (pump,) = [a for a in report.assets if a.asset_id == "pump-001"]
    assert pump.failures >= 1, "the smoke scenario's pump fails"
    assert pump.first_alert_lead_h is not None, "the degrading pump is alerted before it fails"
    assert pump.first_alert_lead_h > 0
    assert "pump-001" in out.getvalue()
    assert "failed 1 time (outer_race); first alert" in out.getvalue()


@pytest.mark.slow
def test_the_plant_demo_alerts_forecasts_and_retrains_both_gateways(tmp_path: Path) -> None:
    settings = load_settings(
        DemoSettings,
        environ={},
        overrides={"play_s": 120.0, "duration_s": 170.0, "dashboard": False, "workdir": tmp_path},
    )
    out = io.StringIO()
    summary = run_demo(settings, out=out, as_json=True).summary()
    assert json.loads(out.getvalue()) == json.loads(json.dumps(summary))
    assert summary["assets"] == 60
    assert summary["alerts"] > 0
    assert summary["alerts_diagnosed"] == summary["alerts_stored"], "every raised alert carries a diagnosis"
    assert summary["assets_with_forecast"] == summary["assets"]
    assert summary["gateways"] == summary["gateways_on_retrained_model"] == 2
    assert (summary["lost"], summary["duplicated"], summary["dead_letters"]) == (0, 0, 0)
    assert 0 < summary["upstream_bytes_per_raw_byte"] < 0.05


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
