"""The dashboard in a real headless Chromium (Debian's, driven through its chromedriver; nothing is
downloaded), served by waitress against the real PostgreSQL fixture. Saves a screenshot of each page to
the test's temporary directory, or to $FOREWARN_SCREENSHOT_DIR (`FOREWARN_SCREENSHOT_DIR=docs/screenshots`
refreshes the ones in docs/dashboard-overview.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboard_support import DEGRADING, HOSTILE_LINE, PASSWORD, dashboard_settings, seed_plant, serving

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile; the system driver is given explicitly (no selenium manager)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Chromium is missing: run scripts/bootstrap as root (apt-get install chromium chromium-driver)"
        )
    profile = tempfile.mkdtemp(prefix="forewarn-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: WebDriver, css: str, timeout_s: float = 20) -> None:
    WebDriverWait(driver, timeout_s).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def _screenshot(driver: WebDriver, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1400, 700)  # measure the page, not the window the last page needed
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(700, min(int(height) + 200, 4000)))
    assert driver.save_screenshot(str(directory / f"{name}.png"))


def _log_in(driver: WebDriver, url: str, username: str) -> None:
    """Log in on the open login page and wait until the login has gone through (the password hash is slow
    under load: a page requested before the redirect would abort the login and land on it again)."""
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 60).until(lambda d: "/login" not in d.current_url)


@pytest.mark.slow
def test_pages_in_a_real_browser(db: str, tmp_path: Path, browser: WebDriver) -> None:
    shots = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        browser.get(f"{served.url}/gateways")
        assert "/login" in browser.current_url  # unauthenticated: sent to the login page
        _wait(browser, "#username")
        _screenshot(browser, shots, "login")
        _log_in(browser, served.url, "erin")

        _wait(browser, "#gateways tbody tr")  # back where the login interrupted
        assert "online" in browser.find_element(By.ID, "gateways").text
        _screenshot(browser, shots, "gateways")

        browser.get(f"{served.url}/")
        _wait(browser, "#fleet tbody tr")
        rows = browser.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")
        assert rows[0].text.startswith(DEGRADING)
        assert "alarm" in rows[0].text
        assert "beyond the horizon" in browser.find_element(By.ID, "fleet").text
        assert HOSTILE_LINE in browser.find_element(By.ID, "fleet").text  # shown as text, not an image
        assert browser.find_elements(By.CSS_SELECTOR, "#fleet img") == []
        _screenshot(browser, shots, "fleet")

        rows[0].find_element(By.LINK_TEXT, DEGRADING).click()
        _wait(browser, "#asset-score .main-svg")
        WebDriverWait(browser, 20).until(
            lambda d: (
                "threshold" in d.find_element(By.ID, "asset-score").text
                and "score, mean" in d.find_element(By.ID, "asset-score").text
            )
        )
        assert browser.find_elements(By.CSS_SELECTOR, "#asset-score .scatterlayer .trace")
        _wait(browser, "#ack-button")  # an engineer sees the acknowledge form
        _screenshot(browser, shots, "asset")

        browser.get(f"{served.url}/models")
        _wait(browser, "#models tbody tr")
        assert "deployed" in browser.find_element(By.ID, "models").text
        _screenshot(browser, shots, "models")
