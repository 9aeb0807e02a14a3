"""The fleet page's out-of-service state and probable failure mode, and the asset page's diagnosis and
advice panels: the row and panel builders, the fleet's diagnosis read, and the pages in a real browser."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from dash.development.base_component import Component
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cloud_service.advice import AdviceSettings, refresh_advice
from cloud_service.queries import (
    AdviceRecord,
    AlertDetail,
    AssetStatus,
    DiagnosisRecord,
    EventRecord,
    closed_advice,
    fleet_diagnoses,
    set_out_of_service,
    store_diagnosis,
)
from cloud_service.writer import BatchWriter
from dashboard import diagnosis_panel, pages
from dashboard.fleet import OUT_OF_SERVICE, STATES, failure_mode_text, fleet_rows
from shared.messages import Alert, AlertDiagnosis, DiagnosisEvidence, MaintenanceEvent
from shared.timebase import datetime_to_ns
from tests.dashboard_support import DEGRADING, GATEWAY, HEALTHY, dashboard_settings, seed_plant, serving
from tests.test_dashboard_browser import _log_in, _screenshot, _wait
from tests.test_dashboard_browser import browser as browser  # noqa: PLC0414 - the fixture, re-exported

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<img src=x onerror=alert(1)>"
BPFO = DiagnosisEvidence(
    name="bpfo x1", value=0.031, freq_hz=176.2, floor=0.004, baseline=0.005, is_found=True
)


def _texts(node: Any) -> list[str]:
    """Every text child under a component, depth first."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list | tuple):
        return [text for child in node for text in _texts(child)]
    if isinstance(node, Component):
        return _texts(getattr(node, "children", None))
    return []


def _components(node: Any) -> list[Component]:
    if isinstance(node, list | tuple):
        return [c for child in node for c in _components(child)]
    if isinstance(node, Component):
        return [node, *_components(getattr(node, "children", None))]
    return []


def _status(asset_id: str, score: float) -> AssetStatus:
    return AssetStatus(asset_id, "gw", "s", "pump", "l", "high", NOW, score, score, 1.0, 0, "online")


def _diagnosis(
    mode: str, evidence: list[DiagnosisEvidence], *, asset_id: str = "p1", confidence: float = 0.82
) -> DiagnosisRecord:
    return DiagnosisRecord(
        "gw",
        f"{asset_id}-a1",
        "edge",
        asset_id,
        NOW,
        mode,
        confidence,
        msgspec.json.encode(evidence).decode(),
        24.8,
        5.1,
        "C",
    )


def _advice(*, state: str, action: str, inputs: dict[str, Any], note: str = "") -> AdviceRecord:
    closed = state == "closed"
    return AdviceRecord(
        1,
        "p1",
        NOW,
        NOW,
        "outer_race",
        action,
        "plan",
        NOW + timedelta(hours=84),
        json.dumps(inputs),
        state,
        NOW if closed else None,
        "outer_race" if closed else None,
        note,
    )


def test_out_of_service_wins_over_an_alarm_and_sorts_after_every_in_service_asset() -> None:
    rows = fleet_rows(
        [_status("p-alarm-oos", 2.0), _status("p-alarm", 1.5), _status("p-normal", 0.1)],
        open_alerts=[],
        last_alerts={},
        forecasts=[],
        gateways=[],
        out_of_service={"p-alarm-oos": NOW},
    )
    assert [(r.asset_id, r.state) for r in rows] == [
        ("p-alarm", "alarm"),
        ("p-normal", "normal"),
        ("p-alarm-oos", OUT_OF_SERVICE),
    ]
    assert STATES[-1] == OUT_OF_SERVICE  # the state filter offers it
    assert rows[2].out_of_service_since == NOW
    cell = pages.fleet_table(rows).children[1].children[2].children[5]
    assert cell.children.children == OUT_OF_SERVICE
    assert "state-out-of-service" in cell.children.className


def test_a_mode_is_shown_only_with_evidence_found() -> None:
    assert failure_mode_text(None) == "–"
    assert failure_mode_text(_diagnosis("unknown", [], confidence=0.0)) == "unknown"
    not_found = DiagnosisEvidence(name="bpfo x1", value=0.001, is_found=False)
    assert failure_mode_text(_diagnosis("outer_race", [not_found])) == "unknown"
    assert failure_mode_text(_diagnosis("outer_race", [BPFO])) == "outer_race (82 %)"
    rows = fleet_rows(
        [_status("p1", 0.5), _status("p2", 0.4)],
        open_alerts=[],
        last_alerts={},
        forecasts=[],
        gateways=[],
        diagnoses={"p1": _diagnosis("outer_race", [BPFO])},
    )
    table_text = _texts(pages.fleet_table(rows))
    assert "probable failure mode" in table_text
    assert "outer_race (82 %)" in table_text


def test_the_diagnosis_panel_shows_the_evidence_against_the_baseline_and_the_zone_beside_the_score() -> None:
    hostile = DiagnosisEvidence(name=HOSTILE, value=0.2, freq_hz=49.5, baseline=0.1, is_found=True)
    alert = AlertDetail("gw", "p1-a1", "p1", "open", "critical", NOW, 1.5, 1.0, "pump:v2", "onnx", "", [])
    panel = diagnosis_panel.diagnosis_panel([_diagnosis("outer_race", [BPFO, hostile])], alert)
    text = _texts(panel)
    for expected in (
        "outer_race",
        "82 %",
        "1.5 / 1 (1.50x the threshold)",
        "C (restricted: limited operation until a remedy), velocity RMS 5.1 mm/s",
        "176.2",
        "6.20x",  # 0.031 against the asset's baseline of 0.005
        HOSTILE,  # a text child, which React renders as text
    ):
        assert expected in text, expected
    assert not any("dangerously" in str(vars(c)) for c in _components(panel))
    empty = _texts(diagnosis_panel.diagnosis_panel([], None))
    assert empty == [diagnosis_panel.NO_DIAGNOSIS]
    unknown = _texts(diagnosis_panel.diagnosis_panel([_diagnosis("unknown", [], confidence=0.0)], None))
    assert "unknown: no evidence of a known failure mode" in unknown


def test_the_advice_panel_says_what_by_when_and_why_and_what_was_found() -> None:
    inputs = {
        "asset_type": "pump",
        "lead_time_h": 84.0,
        "diagnosis": {
            "alert_id": "p1-a1",
            "mode": "outer_race",
            "confidence": 0.8,
            "iso_zone": "C",
            "velocity_rms_mm_s": 5.1,
            "ts": NOW.isoformat(),
        },
        "forecast": {
            "rul_h": 30.0,
            "rul_low_h": 18.0,
            "rul_high_h": 45.0,
            "p_fail": 0.8,
            "horizon_h": 72.0,
            "as_of": NOW.isoformat(),
        },
        "extra": HOSTILE,
    }
    panel = diagnosis_panel.advice_panel(
        [_advice(state="open", action=HOSTILE + " inspect the bearing", inputs=inputs)],
        [_advice(state="closed", action="x", inputs={}, note=HOSTILE)],
        now=NOW,
    )
    text = " | ".join(_texts(panel))
    for expected in (
        HOSTILE + " inspect the bearing",
        "Why this advice",
        "outer_race (80 %) of alert p1-a1",
        "ISO zone C, velocity RMS 5.1 mm/s",
        "RUL 30 h (18 h to 45 h), p(fail) 80 % within 72 h",
        "84 h (asset type pump and this mode",
        json.dumps(HOSTILE),
        "(in 3 d)",  # due 84 h after NOW
        "Recently closed advice",
    ):
        assert expected in text, expected
    assert "OVERDUE" not in text
    assert _texts(diagnosis_panel.advice_panel([], [], now=NOW)) == [
        diagnosis_panel.NO_ADVICE,
        "Recently closed advice",
        diagnosis_panel.NO_CLOSED_ADVICE,
    ]
    listed = dataclasses.replace(_advice(state="open", action="a", inputs={}), inputs_json="[1, 2]")
    assert "[1, 2]" in _texts(diagnosis_panel.advice_panel([listed], [], now=NOW))  # shown as stored


def test_advice_past_its_due_time_is_marked_overdue() -> None:
    advice = _advice(state="open", action="inspect the bearing", inputs={})  # due NOW + 84 h
    late = diagnosis_panel.advice_panel([advice], [], now=NOW + timedelta(hours=100))
    assert any(t.endswith(": OVERDUE by 16 h") for t in _texts(late))
    assert [
        getattr(c, "className", None) for c in _components(late) if getattr(c, "id", "") == "advice-1"
    ] == ["table advice-overdue"]
    on_time = diagnosis_panel.advice_panel([advice], [], now=NOW + timedelta(hours=83))
    assert [
        getattr(c, "className", None) for c in _components(on_time) if getattr(c, "id", "") == "advice-1"
    ] == ["table"]


def test_each_diagnosis_shows_the_maintenance_that_followed_it() -> None:
    older = dataclasses.replace(_diagnosis("imbalance", [BPFO]), alert_id="p1-a0", ts=NOW - timedelta(days=3))
    events = [
        EventRecord("p1", NOW - timedelta(days=4), "maintenance", "looseness", "before both"),
        EventRecord("p1", NOW - timedelta(days=2), "maintenance", "imbalance", HOSTILE),
        EventRecord("p1", NOW - timedelta(days=1), "failure", "", ""),
    ]
    panel = diagnosis_panel.diagnosis_panel([_diagnosis("outer_race", [BPFO]), older], None, events=events)
    facts = [c for c in _components(panel) if getattr(c, "id", "") == "diagnosis-facts"]
    assert "nothing recorded since" in _texts(facts)  # the newest: nothing after it
    earlier = [c for c in _components(panel) if getattr(c, "id", "") == "diagnosis-earlier"]
    (followed,) = [t for t in _texts(earlier) if t.startswith("maintenance 2026")]
    assert followed.endswith(f", found imbalance: {HOSTILE}")  # the first after it, not the one before
    assert diagnosis_panel.what_followed(older, events[2:]).endswith(", no mode recorded")


@pytest.mark.slow
def test_the_fleet_reads_each_assets_newest_alerts_best_diagnosis_until_maintenance(db: str) -> None:
    def store(alert_id: str, asset_id: str, hours_ago: float, diagnosis: AlertDiagnosis, source: Any) -> None:
        store_diagnosis(
            conn,
            gateway_id="gw",
            alert_id=alert_id,
            asset_id=asset_id,
            ts_ns=datetime_to_ns(NOW - timedelta(hours=hours_ago)),
            diagnosis=diagnosis,
            source=source,
        )

    found = AlertDiagnosis(mode="outer_race", confidence=0.7, evidence=[BPFO])
    with psycopg.connect(db) as conn:
        for asset_id in ("p1", "p2"):
            conn.execute("INSERT INTO assets (asset_id) VALUES (%s)", (asset_id,))
        store("old", "p1", 10, AlertDiagnosis(mode="imbalance", confidence=0.9), "edge")
        store("new", "p1", 1, AlertDiagnosis(mode="unknown", confidence=0.0), "edge")
        store("new", "p1", 1, found, "cloud")  # a mode before `unknown`
        store("p2-a", "p2", 5, found, "edge")
        BatchWriter(conn).write(
            [
                MaintenanceEvent(
                    asset_id="p2", ts_ns=datetime_to_ns(NOW - timedelta(hours=2)), event="maintenance"
                )
            ]
        )
        diagnoses = fleet_diagnoses(conn)
    assert set(diagnoses) == {"p1"}  # p2's diagnosis was answered by the maintenance after it
    assert (diagnoses["p1"].alert_id, diagnoses["p1"].source, diagnoses["p1"].mode) == (
        "new",
        "cloud",
        "outer_race",
    )


def _seed_diagnosis_and_advice(conninfo: str, now: datetime) -> None:
    """Through the write path and the advice job: an imbalance advice closed by a maintenance two days ago,
    then a new alert whose gateway diagnosed an outer-race defect (with a hostile evidence name), its open
    advice, and a healthy asset out of service."""
    alert_at = now - timedelta(minutes=30)
    diagnosis = AlertDiagnosis(
        mode="outer_race",
        confidence=0.8,
        evidence=[
            BPFO,
            DiagnosisEvidence(name=HOSTILE, value=0.012, freq_hz=352.4, baseline=0.004, is_found=True),
        ],
        shaft_hz=24.8,
        velocity_rms_mm_s=5.1,
        iso_zone="C",
    )
    with psycopg.connect(conninfo) as conn:
        store_diagnosis(
            conn,
            gateway_id=GATEWAY,
            alert_id=f"{DEGRADING}-a0",
            asset_id=DEGRADING,
            ts_ns=datetime_to_ns(now - timedelta(days=3)),
            diagnosis=AlertDiagnosis(mode="imbalance", confidence=0.6, evidence=[BPFO]),
        )
        refresh_advice(conn, settings=AdviceSettings(), now=now - timedelta(days=3) + timedelta(hours=1))
        event = MaintenanceEvent(
            asset_id=DEGRADING,
            ts_ns=datetime_to_ns(now - timedelta(days=2)),
            event="maintenance",
            mode="imbalance",
            note="rotor balanced " + HOSTILE,
        )
        writer = BatchWriter(conn)
        writer.write([event])
        writer.write(
            [
                Alert(
                    gateway_id=GATEWAY,
                    asset_id=DEGRADING,
                    seq=95_000,
                    alert_id=f"{DEGRADING}-a2",
                    state="raised",
                    severity="critical",
                    ts_ns=datetime_to_ns(alert_at),
                    score=1.4,
                    threshold=1.0,
                    model_version="pump:v2",
                    model_kind="onnx",
                    diagnosis=diagnosis,
                )
            ]
        )
        refresh_advice(conn, settings=AdviceSettings(), now=now)
        assert set_out_of_service(conn, asset_id=HEALTHY[0], by="erin", reason="bearing change")
        assert [a.found_mode for a in closed_advice(conn, asset_id=DEGRADING)] == ["imbalance"]
        conn.commit()


def _element_screenshot(driver: WebDriver, element_id: str, path: Path) -> None:
    """One element, whole: the window is made as tall as the page first (a screenshot stops at its edge)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(700, min(int(height) + 200, 4000)))
    assert driver.find_element(By.ID, element_id).screenshot(str(path))


@pytest.mark.slow
def test_failure_mode_out_of_service_and_the_asset_panels_in_a_real_browser(
    db: str, tmp_path: Path, browser: WebDriver
) -> None:
    shots = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    plant = seed_plant(db)
    _seed_diagnosis_and_advice(db, plant.now)
    with serving(dashboard_settings(db, tmp_path)) as served:
        browser.get(f"{served.url}/")
        _wait(browser, "#username")
        _log_in(browser, served.url, "erin")
        _wait(browser, "#fleet tbody tr")
        rows = browser.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")
        assert rows[0].text.startswith(DEGRADING)
        assert "outer_race (80 %)" in rows[0].text
        assert rows[-1].text.startswith(HEALTHY[0])  # out of service sorts last
        assert "out of service" in rows[-1].text
        assert browser.find_elements(By.CSS_SELECTOR, "#fleet .state-out-of-service")
        _screenshot(browser, shots, "fleet-diagnosis")

        browser.get(f"{served.url}/asset/{DEGRADING}")
        _wait(browser, "#diagnosis-evidence tbody tr")
        _wait(browser, "#advice-closed tbody tr")
        facts = browser.find_element(By.ID, "diagnosis-facts").text
        for expected in ("outer_race", "80 %", "velocity RMS 5.1 mm/s", "1.4 / 1 (1.40x the threshold)"):
            assert expected in facts, expected
        assert HOSTILE in browser.find_element(By.ID, "diagnosis-evidence").text  # text, not an image
        advice = browser.find_element(By.ID, "advice-panel").text
        assert "Inspect the bearing (outer race defect)" in advice
        assert "Why this advice" in advice
        assert f"of alert {DEGRADING}-a2" in advice
        assert "rotor balanced " + HOSTILE in browser.find_element(By.ID, "advice-closed").text
        earlier = browser.find_element(By.ID, "diagnosis-earlier").text  # what the maintenance found
        assert f"found imbalance: rotor balanced {HOSTILE}" in earlier
        assert "nothing recorded since" in facts
        assert browser.find_elements(By.CSS_SELECTOR, "#asset-diagnosis-panels img") == []
        _element_screenshot(browser, "asset-diagnosis-panels", shots / "asset-diagnosis.png")

        browser.get(f"{served.url}/asset/{HEALTHY[0]}")
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "asset-out-of-service"))
        assert "Out of service since" in browser.find_element(By.ID, "asset-out-of-service").text
        assert diagnosis_panel.NO_DIAGNOSIS in browser.find_element(By.ID, "diagnosis-panel").text
