"""Times in the user's time zone: the one chosen for the user (stored on the server, changed with the
header's selector), else the browser's: the cookie the page sets, what the server makes of it, and the
asset page in a browser told it is in Tokyo or Berlin."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import flask
import psycopg
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cloud_service.users import get_user, set_time_zone
from dashboard.pages import time_text
from dashboard.timezones import ZONE_COOKIE, to_display, zone_name
from tests.dashboard_support import DEGRADING, dashboard_settings, seed_plant, serving
from tests.test_dashboard_browser import _log_in, _wait
from tests.test_dashboard_browser import browser as browser  # noqa: PLC0414 - the fixture, re-exported

NOON_UTC = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cookie", "expected_text", "expected_zone"),
    [
        ("Europe/Berlin", "2026-07-01 14:00 CEST", "Europe/Berlin"),
        ("Asia%2FTokyo", "2026-07-01 21:00 JST", "Asia/Tokyo"),  # as the page's script encodes it
        (None, "2026-07-01 12:00 UTC", "UTC"),
        ("../../etc/passwd", "2026-07-01 12:00 UTC", "UTC"),  # never a path
        ("<b>Mars/Olympus</b>", "2026-07-01 12:00 UTC", "UTC"),
        ("Mars/Olympus", "2026-07-01 12:00 UTC", "UTC"),  # unknown zone
    ],
)
def test_times_follow_the_browsers_zone_cookie(
    cookie: str | None, expected_text: str, expected_zone: str
) -> None:
    app = flask.Flask("t")
    headers = {"Cookie": f"{ZONE_COOKIE}={cookie}"} if cookie else {}
    with app.test_request_context("/", headers=headers):
        assert time_text(NOON_UTC) == expected_text
        assert zone_name() == expected_zone
        assert to_display(NOON_UTC).tzinfo is None


def test_outside_a_request_times_are_utc() -> None:
    assert time_text(NOON_UTC) == "2026-07-01 12:00 UTC"
    assert zone_name() == "UTC"


def _log_in_and_see_tokyo_times_on_the_asset_page(browser: WebDriver, url: str) -> None:
    browser.get(f"{url}/asset/{DEGRADING}")
    _wait(browser, "#username")
    _log_in(browser, url, "erin")
    _wait(browser, "#asset-score .main-svg")
    WebDriverWait(browser, 20).until(
        lambda d: "time (Asia/Tokyo)" in d.find_element(By.ID, "asset-score").text
    )
    _wait(browser, "#asset-alerts table")
    assert "JST" in browser.find_element(By.ID, "asset-alerts").text


@pytest.mark.slow
def test_the_asset_page_in_a_browser_in_tokyo(db: str, tmp_path: Path, browser: WebDriver) -> None:
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        _log_in_and_see_tokyo_times_on_the_asset_page(browser, served.url)
        assert "UTC" not in browser.find_element(By.ID, "asset-alerts").text


@pytest.mark.slow
def test_a_users_chosen_zone_wins_over_the_browsers_and_the_selector_changes_it(
    db: str, tmp_path: Path, browser: WebDriver
) -> None:
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Berlin"})
    seed_plant(db)
    with psycopg.connect(db) as conn:
        assert set_time_zone(conn, "erin", "Asia/Tokyo")
    with serving(dashboard_settings(db, tmp_path)) as served:
        _log_in_and_see_tokyo_times_on_the_asset_page(browser, served.url)
        assert "Asia/Tokyo" in browser.find_element(By.ID, "user-zone").text

        browser.find_element(By.ID, "user-zone").click()
        _wait(browser, ".dash-dropdown-search")
        browser.find_element(By.CSS_SELECTOR, ".dash-dropdown-search").send_keys("America/New_Y")
        option = WebDriverWait(browser, 10).until(
            lambda d: next(
                (
                    o
                    for o in d.find_elements(By.CSS_SELECTOR, ".dash-dropdown-option")
                    if o.text == "America/New_York"
                ),
                None,
            )
        )
        browser.execute_script("arguments[0].click();", option)
        reloading = (StaleElementReferenceException, NoSuchElementException)
        WebDriverWait(browser, 30, ignored_exceptions=reloading).until(  # saved, then the page reloads
            lambda d: "time (America/New_York)" in d.find_element(By.ID, "asset-score").text
        )
        _wait(browser, "#asset-alerts table")
        assert re.search(r"E[DS]T", browser.find_element(By.ID, "asset-alerts").text)
        with psycopg.connect(db) as conn:
            user = get_user(conn, "erin")
            assert user is not None
            assert user.time_zone == "America/New_York"
