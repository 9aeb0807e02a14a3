"""The asset page's "why this alert" panel: what the alert message stored, its top features against their
baselines (the model's training reference, else the asset's week before), and the raw snapshot."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cloud_service.lifecycle.records import DriftReference
from cloud_service.queries import alert_detail, alert_snapshots, feature_baselines
from cloud_service.writer import BatchWriter
from dashboard.why_panel import snapshot_figures
from shared.messages import Alert, Contribution, Snapshot
from shared.timebase import datetime_to_ns
from tests.dashboard_support import DEGRADING, GATEWAY, dashboard_settings, seed_plant, serving
from tests.test_dashboard_browser import _log_in, _screenshot, _wait
from tests.test_dashboard_browser import browser as browser  # noqa: PLC0414 - the fixture, re-exported

ALERT_ID = f"{DEGRADING}-why"
RATE_HZ = 1000.0
TONE_HZ = 50.0
RMS = "vibration.rms"
PEAK = "vibration.peak"


def _explained_alert(conninfo: str, at: datetime) -> None:
    """An alert with two top features, and a one-second 50 Hz snapshot with it."""
    t = np.arange(int(RATE_HZ)) / RATE_HZ
    with psycopg.connect(conninfo) as conn:
        BatchWriter(conn).write(
            [
                Alert(
                    gateway_id=GATEWAY,
                    asset_id=DEGRADING,
                    seq=90_000,
                    alert_id=ALERT_ID,
                    state="raised",
                    severity="warning",
                    ts_ns=datetime_to_ns(at),
                    score=1.5,
                    threshold=1.0,
                    model_version="pump:v2",
                    model_kind="onnx",
                    top_features=[
                        Contribution(feature=RMS, value=9.0, contribution=0.7),
                        Contribution(feature=PEAK, value=4.0, contribution=0.2),
                    ],
                    message="3 of the last 5 windows scored above 1",
                ),
                Snapshot(
                    gateway_id=GATEWAY,
                    asset_id=DEGRADING,
                    sensor="vibration",
                    seq=90_001,
                    alert_id=ALERT_ID,
                    start_ns=datetime_to_ns(at - timedelta(seconds=1)),
                    sample_rate_hz=RATE_HZ,
                    samples=(2.0 * np.sin(2 * np.pi * TONE_HZ * t)).tolist(),
                ),
            ]
        )


@pytest.mark.slow
def test_the_panel_reads_the_alerts_story_and_its_snapshot(db: str) -> None:
    seed_plant(db)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    _explained_alert(db, at)
    with psycopg.connect(db) as conn:
        alert = alert_detail(conn, GATEWAY, ALERT_ID)
        assert alert is not None
        assert alert.score_share == pytest.approx(1.5)
        assert alert.message.startswith("3 of the last 5")
        assert [t.feature for t in alert.top_features] == [RMS, PEAK]
        # the seeded model has no drift reference: the asset's own mean over the week before
        own = feature_baselines(conn, alert)
        assert own[RMS].source.startswith("asset mean")
        assert own[RMS].low is None
        mean = conn.execute(
            "SELECT avg(feature_mean[1]) FROM aggregates WHERE asset_id = %s AND period_start < %s",
            (DEGRADING, at),
        ).fetchone()
        assert own[RMS].centre == pytest.approx(float(mean[0]) if mean else 0.0, rel=1e-5)
        # with the model's training reference, its deciles are the baseline
        edges = [[float(i) for i in range(1, 10)], [float(i) / 10 for i in range(1, 10)]]
        reference = DriftReference(n_rows=100, feature_names=[RMS, PEAK], edges=edges, props=[[0.1] * 10] * 2)
        conn.execute(
            "UPDATE models SET reference = %s::jsonb WHERE target = 'pump' AND version = 2",
            (reference_json(reference),),
        )
        from_model = feature_baselines(conn, alert)
        assert (from_model[RMS].centre, from_model[RMS].low, from_model[RMS].high) == (5.0, 1.0, 9.0)
        assert from_model[PEAK].source == "model pump v2 training data"
        (snapshot,) = alert_snapshots(conn, GATEWAY, ALERT_ID)
    assert snapshot.sample_rate_hz == RATE_HZ
    ((_, spectrum),) = snapshot_figures([snapshot], revision="x")
    frequencies, amplitude = np.asarray(spectrum.data[0].x), np.asarray(spectrum.data[0].y)
    assert frequencies[int(np.argmax(amplitude))] == pytest.approx(TONE_HZ)
    assert amplitude.max() == pytest.approx(2.0, rel=0.05)  # amplitude in sensor units


def reference_json(reference: DriftReference) -> str:
    """A drift reference as the registry stores it."""
    import msgspec  # noqa: PLC0415 - only this helper needs it

    return msgspec.json.encode(reference).decode()


@pytest.mark.slow
def test_why_panel_in_a_real_browser(db: str, tmp_path: Path, browser: WebDriver) -> None:
    shots = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    seed_plant(db)
    _explained_alert(db, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30))
    with serving(dashboard_settings(db, tmp_path)) as served:
        browser.get(f"{served.url}/asset/{DEGRADING}")
        _wait(browser, "#username")
        _log_in(browser, served.url, "erin")
        _wait(browser, "#why-facts")
        facts = browser.find_element(By.ID, "why-facts").text
        assert "1.5 / 1 (1.50x)" in facts
        assert "3 of the last 5 windows" in facts
        assert "pump:v2" in facts
        assert RMS in browser.find_element(By.ID, "why-features").text
        WebDriverWait(browser, 20).until(
            lambda d: (
                "frequency (Hz)" in d.find_element(By.ID, "why-panel").text
                and "time from the snapshot's start (ms)" in d.find_element(By.ID, "why-panel").text
            )
        )
        _wait(browser, "#asset-score .main-svg")
        _screenshot(browser, shots, "asset")
