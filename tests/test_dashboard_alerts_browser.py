"""The alerts page in a real headless Chromium (Debian's, through its chromedriver), served by waitress
against the real PostgreSQL fixture, seeded through the write path: a cleared-unacknowledged alert shows
as such, a new alert appears without a reload and without losing the chosen alert, acknowledging persists
with who and the comment, and a short shelve hides an alarm point and ends on time. Saves
`alerts.png` to $FOREWARN_SCREENSHOT_DIR (`docs/screenshots` refreshes the docs') or the test's directory."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import psycopg
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cloud_service.queries import AlarmState, Transition, alert_history, list_alerts, set_out_of_service
from cloud_service.queries import update_asset as set_asset
from cloud_service.writer import BatchWriter
from shared.messages import Alert
from shared.timebase import datetime_to_ns
from tests.dashboard_support import DEGRADING, GATEWAY, HEALTHY, dashboard_settings, seed_plant, serving
from tests.test_dashboard_browser import _log_in, _screenshot, _wait, browser

__all__ = ["browser"]  # the fixture, shared with the other browser tests

pytestmark = pytest.mark.slow

FAN, MOTOR = HEALTHY
CONVEYOR = "conveyor-03"
SHELVE_S = 8


def _alert(
    alert_id: str, asset_id: str, state: Literal["raised", "cleared"], at: datetime, seq: int
) -> Alert:
    return Alert(
        gateway_id=GATEWAY,
        asset_id=asset_id,
        seq=seq,
        alert_id=alert_id,
        state=state,
        severity="warning",
        ts_ns=datetime_to_ns(at),
        score=1.4,
        threshold=1.0,
        model_version="pump:v2",
        model_kind="onnx",
        message="4 of the last 5 windows scored above 1",
    )


def _seed_alarm_history(conninfo: str, now: datetime) -> None:
    """A cleared-unacknowledged alert, a chattering point and an asset out of service."""
    messages = [
        _alert(f"{FAN}-a1", FAN, "raised", now - timedelta(hours=3), 10_000),
        _alert(f"{FAN}-a1", FAN, "cleared", now - timedelta(hours=2), 10_001),
        _alert(f"{CONVEYOR}-a1", CONVEYOR, "raised", now - timedelta(hours=1), 10_002),
    ]
    for i, offset_s in enumerate((0, 20, 40)):  # three raises within 60 s: chattering
        at = now - timedelta(minutes=50) + timedelta(seconds=offset_s)
        messages.append(_alert(f"{MOTOR}-c{i}", MOTOR, "raised", at, 10_010 + 2 * i))
        messages.append(_alert(f"{MOTOR}-c{i}", MOTOR, "cleared", at + timedelta(seconds=5), 10_011 + 2 * i))
    with psycopg.connect(conninfo) as conn:
        BatchWriter(conn).write(messages)
        set_asset(conn, CONVEYOR, site_id="plant-1", line="line 2", asset_type="conveyor")
        set_out_of_service(conn, asset_id=CONVEYOR, by="erin", reason="gearbox overhaul")
        conn.commit()


def _raise_new_alert(conninfo: str, now: datetime) -> None:
    with psycopg.connect(conninfo) as conn:
        BatchWriter(conn).write([_alert(f"{FAN}-a2", FAN, "raised", now, 10_100)])


def _table_text(driver: WebDriver, state: AlarmState) -> str:
    """The text of a state's table now ("" when it has no table); retried while a refresh replaces it."""
    for _ in range(20):
        try:
            tables = driver.find_elements(By.ID, f"alerts-{state.value.replace('_', '-')}")
            return tables[0].text if tables else ""
        except StaleElementReferenceException:
            continue
    pytest.fail(f"the {state.value} table kept being replaced")


def _wait_for(
    driver: WebDriver, state: AlarmState, text: str, *, present: bool = True, timeout_s: float = 20
) -> None:
    WebDriverWait(driver, timeout_s).until(lambda d: (text in _table_text(d, state)) is present)


def _choose(driver: WebDriver, dropdown_id: str, text: str) -> None:
    """Open a Dash dropdown, search for `text` and pick the first option containing it."""
    driver.find_element(By.ID, dropdown_id).click()
    search = WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".dash-dropdown-search")
    )
    search.send_keys(text)
    option = WebDriverWait(driver, 10).until(
        lambda d: next(
            (o for o in d.find_elements(By.CSS_SELECTOR, ".dash-dropdown-option") if text in o.text), None
        )
    )
    driver.execute_script("arguments[0].click();", option)
    WebDriverWait(driver, 10).until(lambda d: text in d.find_element(By.ID, dropdown_id).text)
    driver.find_element(By.TAG_NAME, "h2").click()  # close the dropdown


def _result(driver: WebDriver, expected: str) -> None:
    # A liveness wait, generous: under load the action's callback can queue behind the 2 s refreshes.
    try:
        WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: expected in d.find_element(By.ID, "alerts-action-result").text
        )
    except TimeoutException:
        shown = driver.find_element(By.ID, "alerts-action-result").text
        raise AssertionError(f"{expected!r} not shown within 30 s; the result line reads {shown!r}") from None


def test_the_alerts_page_in_a_real_browser(db: str, tmp_path: Path, browser: WebDriver) -> None:
    shots = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    plant = seed_plant(db)
    _seed_alarm_history(db, plant.now)
    with serving(dashboard_settings(db, tmp_path, refresh_s=2)) as served:
        browser.get(f"{served.url}/alerts")
        _wait(browser, "#username")
        _log_in(browser, served.url, "erin")
        _wait(browser, "#alerts-active-unacknowledged")
        assert DEGRADING in _table_text(browser, AlarmState.ACTIVE_UNACKNOWLEDGED)
        # Cleared before anyone acknowledged it: returned, unacknowledged (not active, not gone).
        assert FAN in _table_text(browser, AlarmState.RETURNED_UNACKNOWLEDGED)
        assert FAN not in _table_text(browser, AlarmState.ACTIVE_UNACKNOWLEDGED)
        assert CONVEYOR in _table_text(browser, AlarmState.OUT_OF_SERVICE)
        assert "vibration rising <b>bold?</b>" in _table_text(browser, AlarmState.ACTIVE_UNACKNOWLEDGED)
        assert f"{MOTOR} / onnx" in browser.find_element(By.ID, "alarm-health").text  # chattering

        _choose(browser, "alerts-target", DEGRADING)
        _raise_new_alert(db, datetime.now(UTC))
        _wait_for(browser, AlarmState.ACTIVE_UNACKNOWLEDGED, FAN)  # the new alert, without a reload
        assert (
            DEGRADING in browser.find_element(By.ID, "alerts-target").text
        )  # the choice survived the refresh

        comment = "bearing noise <b>checked</b> on site"
        browser.find_element(By.ID, "alerts-comment").send_keys(comment)
        browser.find_element(By.ID, "alerts-acknowledge").click()
        _result(browser, f"Acknowledged {plant.alert_id}")
        _wait_for(browser, AlarmState.ACTIVE_ACKNOWLEDGED, "erin, ")
        assert comment in _table_text(browser, AlarmState.ACTIVE_ACKNOWLEDGED)
        assert (
            browser.find_elements(By.CSS_SELECTOR, "#alerts-active-acknowledged b") == []
        )  # text, not markup
        with psycopg.connect(db) as conn:
            (acknowledged,) = list_alerts(conn, states={AlarmState.ACTIVE_ACKNOWLEDGED})
            assert (acknowledged.alert_id, acknowledged.acknowledged_by, acknowledged.comment) == (
                plant.alert_id,
                "erin",
                comment,
            )
        WebDriverWait(browser, 10).until(
            lambda d: "acknowledged" in d.find_element(By.ID, "alerts-history").text
        )

        _choose(browser, "alerts-target", MOTOR)
        browser.find_element(By.ID, "alerts-shelve-reason").send_keys("chattering: sensor cable loose")
        browser.find_element(By.ID, "alerts-shelve-duration").send_keys(f"{SHELVE_S} s")
        browser.find_element(By.ID, "alerts-shelve").click()
        _result(browser, "Shelved")
        _wait_for(browser, AlarmState.SHELVED, MOTOR)
        assert MOTOR not in _table_text(browser, AlarmState.RETURNED_UNACKNOWLEDGED)  # hidden while shelved
        _screenshot(browser, shots, "alerts")

        _wait_for(browser, AlarmState.RETURNED_UNACKNOWLEDGED, MOTOR, timeout_s=SHELVE_S + 20)  # on time
        _wait_for(browser, AlarmState.SHELVED, MOTOR, present=False)
    with psycopg.connect(db) as conn:
        shelved = [
            e
            for i in range(3)
            for e in alert_history(conn, gateway_id=GATEWAY, alert_id=f"{MOTOR}-c{i}")
            if e.transition in (Transition.SHELVED, Transition.UNSHELVED)
        ]
    assert [(e.transition, e.actor) for e in shelved][:2] == [
        (Transition.SHELVED, "erin"),
        (Transition.UNSHELVED, "system"),
    ]
    assert shelved[1].ts == shelved[0].shelved_until
