"""The demo end to end: simulator -> broker -> edge agent -> broker -> cloud ingest -> database."""

from __future__ import annotations

import io
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
