"""The demo end to end: simulator -> broker -> edge agent -> broker -> cloud ingest -> database."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.fleet import STATES
from forewarn.demo import run_demo
from forewarn.localservices import MosquittoServer, running
from forewarn.settings import DemoSettings
from shared.config import load_settings
from tests.test_dashboard_alerts_browser import _choose, _result
from tests.test_dashboard_browser import _screenshot, _wait
from tests.test_dashboard_browser import browser as browser  # noqa: PLC0414 - the fixture, re-exported


@pytest.mark.slow
def test_demo_runs_the_whole_data_path(db: str, tmp_path: Path) -> None:
    # its own broker: the session broker keeps other tests' retained messages (heartbeats with hostile
    # gateway ids among them), which this demo's ingest would dead-letter
    with running(MosquittoServer(tmp_path / "broker")) as broker:
        _run_the_smoke_demo(broker, db, tmp_path)


def _run_the_smoke_demo(broker: MosquittoServer, db: str, tmp_path: Path) -> None:
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
def _dashboard_login(
    stderr: io.StringIO, report_printed: threading.Event, demo_ended: threading.Event
) -> tuple[str, str, str]:
    """The URL, user and password the demo printed for its dashboard, once its report is out."""
    while not report_printed.wait(1):
        assert not demo_ended.is_set(), "the demo ended without printing its report"
    match = re.search(r"dashboard at (\S+), login (\S+) / (\S+)", stderr.getvalue())
    assert match is not None, stderr.getvalue()
    return match.group(1).rstrip("/"), match.group(2), match.group(3)


def _fleet_risk(state: str, p_fail: str) -> tuple[int, float]:
    """A fleet row's sort key as read off the page: its state's rank, then p(fail) (higher first)."""
    percent = re.match(r"(\d+(?:\.\d+)?) % in \d+ h", p_fail)
    return STATES.index(state.strip()), -float(percent.group(1)) if percent else 1.0


def _check_the_pages(browser: WebDriver, url: str, user: str, password: str, shots: Path) -> None:
    """Every page on the demo's own data, in a real browser, with a screenshot of each."""
    browser.get(f"{url}/")
    _wait(browser, "#username")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login").click()
    _wait(browser, "#fleet tbody tr", timeout_s=60)
    # read in one script: the table re-renders on its refresh interval, which makes held elements stale
    header: list[str] = browser.execute_script(
        "return [...document.querySelectorAll('#fleet thead th')].map(c => c.innerText)"
    )
    rows: list[list[str]] = browser.execute_script(
        "return [...document.querySelectorAll('#fleet tbody tr')]"
        ".map(r => [...r.querySelectorAll('td')].map(c => c.innerText))"
    )
    assert len(rows) == 60
    cell = {name: header.index(name) for name in ("state", "RUL (interval)", "p(fail)")}
    assert not [row for row in rows if row[cell["RUL (interval)"]] == "no forecast yet"]
    risks = [_fleet_risk(row[cell["state"]], row[cell["p(fail)"]]) for row in rows]
    assert risks == sorted(risks), "most at risk first: by state, then p(fail) within a state"
    href = browser.execute_script("return document.querySelector('#fleet tbody tr a').getAttribute('href')")
    _screenshot(browser, shots, "fleet")
    browser.get(f"{url}{href}")
    _wait(browser, "#asset-score .main-svg", timeout_s=60)
    WebDriverWait(browser, 60).until(lambda d: "threshold" in d.find_element(By.ID, "asset-score").text)
    assert "No data in this range" not in browser.find_element(By.TAG_NAME, "body").text  # scores drawn
    _screenshot(browser, shots, "asset")
    _acknowledge_an_alert(browser, url, shots)
    for page, filled in (
        ("gateways", "#gateways tbody tr"),
        ("models", "#models tbody tr"),
        ("cost", "#cost-traffic-table tbody tr"),
    ):
        browser.get(f"{url}/{page}")
        _wait(browser, filled, timeout_s=60)
        _screenshot(browser, shots, page)
    assert "database unavailable" not in browser.page_source


def _acknowledge_an_alert(browser: WebDriver, url: str, shots: Path) -> None:
    """Acknowledge the first unacknowledged alert (active or returned) with a comment; the asset's page,
    read back from the database, shows who acknowledged it and the comment."""
    browser.get(f"{url}/alerts")
    _wait(browser, "#alerts-active-unacknowledged, #alerts-returned-unacknowledged", timeout_s=60)
    _screenshot(browser, shots, "alerts")
    asset_id: str = browser.execute_script(
        "return document.querySelector('#alerts-active-unacknowledged tbody tr td:nth-child(2) a, "
        "#alerts-returned-unacknowledged tbody tr td:nth-child(2) a').innerText"
    )
    _choose(browser, "alerts-target", asset_id)
    comment = f"checked {asset_id} on site"
    browser.find_element(By.ID, "alerts-comment").send_keys(comment)
    browser.find_element(By.ID, "alerts-acknowledge").click()
    _result(browser, "Acknowledged")
    # an acknowledged alert that had returned leaves the alerts page's tables: its asset's page keeps it
    browser.get(f"{url}/asset/{asset_id}")
    _wait(browser, "#asset-score .main-svg", timeout_s=60)
    _choose(browser, "asset-range", "last 90 days")
    WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: re.search(r"demo, [^,]+: " + re.escape(comment), d.find_element(By.ID, "asset-alerts").text)
    )


class _ReportOut(io.StringIO):
    """The demo's standard output; says when the report has been printed."""

    def __init__(self) -> None:
        super().__init__()
        self.printed = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "}" in text:
            self.printed.set()
        return written


class _Browsing(threading.Thread):
    """Checks the dashboard once the demo's report is out, then stops the demo (its `stop` event).

    A thread and an event, not a signal: under pytest-xdist a test does not run in its process's main
    thread, so a SIGINT would interrupt the worker, not the demo.
    """

    def __init__(self, browser: WebDriver, stderr: io.StringIO, out: _ReportOut, shots: Path) -> None:
        super().__init__(daemon=True)
        self.browser, self.stderr, self.out, self.shots = browser, stderr, out, shots
        self.stop_demo, self.demo_ended = threading.Event(), threading.Event()
        self.failures: list[str] = []

    def run(self) -> None:
        try:
            login = _dashboard_login(self.stderr, self.out.printed, self.demo_ended)
            _check_the_pages(self.browser, *login, self.shots)
        except Exception:  # noqa: BLE001 - reported to the test's thread, which fails with it
            self.failures.append(traceback.format_exc())
        finally:
            self.stop_demo.set()


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 200 s alone; under the full suite's load it took over 300 s
def test_the_plant_demo_alerts_forecasts_retrains_both_gateways_and_shows_it_all_on_the_dashboard(
    tmp_path: Path, browser: WebDriver
) -> None:
    shots = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    settings = load_settings(DemoSettings, environ={}, overrides={"play_s": 120.0, "workdir": tmp_path})
    out, stderr = _ReportOut(), io.StringIO()
    browsing = _Browsing(browser, stderr, out, shots)
    browsing.start()
    # without a duration the demo keeps serving the dashboard after its report, until stopped
    try:
        with contextlib.redirect_stderr(stderr):
            run_demo(settings, out=out, as_json=True, stop=browsing.stop_demo)
    finally:
        browsing.demo_ended.set()
        browsing.join(60)
    assert not browsing.failures, browsing.failures[0]
    summary = json.loads(out.getvalue())
    assert summary["assets"] == 60
    assert summary["alerts"] > 0
    assert summary["alerts_diagnosed"] == summary["alerts_stored"], "every raised alert carries a diagnosis"
    assert summary["assets_with_forecast"] == summary["assets"]
    assert summary["gateways"] == summary["gateways_on_retrained_model"] == 2
    assert (summary["lost"], summary["duplicated"], summary["dead_letters"]) == (0, 0, 0)
    assert 0 < summary["upstream_bytes_per_raw_byte"] < 0.05
    assert summary["dashboard_url"]


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
