"""Attacks on the running dashboard (waitress, the real PostgreSQL fixture; the browser ones in a real
headless Chromium): every route without a session, CSRF, session fixation, logout, expiry and removal,
cookie flags behind a proxy, login slowing under concurrent attempts, user enumeration, open redirects,
response headers and the CSP in the browser, hostile strings arriving by MQTT and through the dashboard,
and secrets in logs, pages and `forewarn config show`. The role checks on forged callback requests are in
tests/test_dashboard.py, test_dashboard_alerts.py and test_dashboard_models.py."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cloud_service.service import IngestWorker
from cloud_service.users import remove_user, set_password
from dashboard.login_throttle import LoginThrottle
from dashboard.security import CSRF_HEADER, read_secret_key, script_hash
from forewarn.cli import main
from forewarn.localservices import free_port, wait_until
from shared import topics
from shared.errors import ConfigError
from shared.messages import Alert, encode
from shared.timebase import now_ns
from tests.dashboard_support import (
    DEGRADING,
    FLEET_INPUTS,
    FLEET_OUTPUTS,
    GATEWAY,
    PASSWORD,
    callback_headers,
    dash_callback,
    dashboard_settings,
    login,
    seed_plant,
    serving,
)
from tests.dashboard_support import _aggregate as plant_aggregate
from tests.test_cloud_ingest import Publisher
from tests.test_cloud_ingest import publisher as publisher  # noqa: PLC0414 - the fixture, re-exported
from tests.test_cloud_ingest import worker_factory as worker_factory  # noqa: PLC0414 - the fixture
from tests.test_dashboard_browser import _log_in, _wait
from tests.test_dashboard_browser import browser as browser  # noqa: PLC0414 - the fixture, re-exported

# What a page must never carry to someone without a session: names that exist only in the plant's data.
PLANT_DATA = (DEGRADING, GATEWAY, "plant-1")
SAMPLE_VALUES = {
    "path": "alerts",
    "filename": "x.css",
    "package_name": "dash",
    "fingerprinted_path": "dash.js",
}
# Each sets a flag if it ever runs, and names an element that exists only if it was parsed as markup.
HOSTILE_MESSAGE = '<img src=x id="xss-message" onerror="window.__xss=\'message\'">rising'
HOSTILE_COMMENT = '<script id="xss-comment">window.__xss=\'comment\'</script><b id="xss-bold">saw it</b>'
HOSTILE_ASSET = '<img src=x onerror="window.__xss=1">'
HOSTILE_GATEWAY_TOPIC = 'forewarn/v1/gw/<svg onload="window.__xss=2">/aggregate'
CSP_WATCH = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def _anonymous_with_token(url: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    page = session.get(f"{url}/login", timeout=10)
    return session, page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def _post_login(
    session: requests.Session, url: str, token: str, username: str, password: str, **extra: str
) -> requests.Response:
    return session.post(
        f"{url}/login",
        data={"csrf_token": token, "username": username, "password": password, **extra},
        timeout=30,
        allow_redirects=False,
    )


@pytest.mark.slow
def test_no_route_gives_data_without_a_session(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        rules = list(served.app.server.url_map.iter_rules())
        assert {"/_dash-layout", "/_dash-dependencies", "/_dash-update-component", "/_reload-hash"} <= {
            r.rule for r in rules
        }
        anonymous, token = _anonymous_with_token(served.url)
        tried = 0
        for rule in rules:
            path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE_VALUES[m.group(1)], rule.rule)
            for method in sorted((rule.methods or set()) - {"HEAD"}):
                for headers in ({}, {CSRF_HEADER: token}):
                    response = anonymous.request(
                        method, served.url + path, headers=headers, timeout=10, allow_redirects=False
                    )
                    tried += 1
                    where = f"{method} {path} {headers}"
                    if path == "/login":
                        assert response.status_code in (200, 401, 403), where  # form; no name; no token
                    elif response.status_code == 302:
                        assert "/login?next=" in response.headers["Location"], where
                    else:
                        assert response.status_code in (401, 403), where
                    assert not any(name in response.text for name in PLANT_DATA), where
        assert tried >= 2 * len(rules)


@pytest.mark.slow
def test_csrf_tokens_are_per_session_and_needed_for_logout_and_callbacks(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        victim = login(served.url, "erin")
        attacker = login(served.url, "vic")
        theirs = callback_headers(attacker)
        assert theirs != callback_headers(victim)
        for headers in ({}, theirs, {CSRF_HEADER: ""}):
            zone = dash_callback(
                victim,
                served.url,
                outputs=[("user-zone-saved", "data")],
                inputs=[("user-zone", "value", "Asia/Tokyo")],
                headers=headers,
            )
            assert zone.status_code == 403
        cross_site_logout = victim.post(f"{served.url}/logout", timeout=10, allow_redirects=False)
        assert cross_site_logout.status_code == 403
        assert victim.get(f"{served.url}/_dash-layout", timeout=10).status_code == 200  # still logged in
        with psycopg.connect(db) as conn:
            assert conn.execute("SELECT time_zone FROM users WHERE username = 'erin'").fetchone() == (None,)


@pytest.mark.slow
def test_sessions_are_new_at_login_and_end_on_the_server(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        before, token = _anonymous_with_token(served.url)
        planted = before.cookies.get("forewarn_session")
        assert _post_login(before, served.url, token, "vic", PASSWORD).status_code == 302
        assert before.cookies.get("forewarn_session") != planted  # no fixation: a new cookie at login
        fixed = requests.Session()
        fixed.cookies.set("forewarn_session", planted or "")
        assert fixed.get(f"{served.url}/_dash-layout", timeout=10).status_code == 401

        def replayed(session: requests.Session) -> int:
            copy = requests.Session()
            copy.cookies.update(session.cookies)
            return copy.get(f"{served.url}/_dash-layout", timeout=10).status_code

        assert replayed(before) == 200
        stolen = before.cookies.copy()
        logout = before.post(
            f"{served.url}/logout", headers=callback_headers(before), timeout=10, allow_redirects=False
        )
        assert logout.status_code == 302
        thief = requests.Session()
        thief.cookies.update(stolen)
        assert thief.get(f"{served.url}/_dash-layout", timeout=10).status_code == 401  # ended on the server

        expiring = login(served.url, "vic")
        with psycopg.connect(db) as conn:
            conn.execute("UPDATE dashboard_sessions SET expires_at = now() - interval '1 s'")
        assert replayed(expiring) == 401

        engineer, viewer = login(served.url, "erin"), login(served.url, "vic")
        with psycopg.connect(db) as conn:
            assert set_password(conn, "erin", "another long password")
            assert remove_user(conn, "vic")
        assert replayed(engineer) == 401
        assert replayed(viewer) == 401


@pytest.mark.slow
def test_cookies_are_private_and_secure_behind_an_https_proxy(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    cases = [
        ({}, {}, False),
        ({}, {"X-Forwarded-Proto": "https"}, False),
        ({"behind_proxy": True}, {}, False),
    ]
    cases.append(({"behind_proxy": True}, {"X-Forwarded-Proto": "https"}, True))
    for proxy, headers, secure in cases:
        with serving(dashboard_settings(db, tmp_path, proxy=proxy)) as served:
            session, token = _anonymous_with_token(served.url)
            response = session.post(
                f"{served.url}/login",
                data={"csrf_token": token, "username": "vic", "password": PASSWORD},
                headers=headers,
                timeout=30,
                allow_redirects=False,
            )
            assert response.status_code == 302
            cookies = response.raw.headers.getlist("Set-Cookie")
            session_cookie = next(c for c in cookies if c.startswith("forewarn_session="))
            csrf_cookie = next(c for c in cookies if c.startswith("_csrf_token="))
            assert "HttpOnly" in session_cookie
            assert "SameSite=Lax" in session_cookie
            assert "HttpOnly" not in csrf_cookie  # Dash's renderer reads it; a cross-site page cannot
            assert "SameSite=Strict" in csrf_cookie
            assert ("Secure" in session_cookie, "Secure" in csrf_cookie) == (secure, secure), (proxy, headers)


@pytest.mark.slow
def test_logins_are_slowed_per_name_and_address_even_when_concurrent(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    settings = dashboard_settings(
        db, tmp_path, login={"free_failures": 3, "address_free_failures": 6, "base_delay_s": 60}
    )
    with serving(settings) as served:

        def attempt(username: str, password: str = "wrong password") -> int:
            session, token = _anonymous_with_token(served.url)
            return _post_login(session, served.url, token, username, password).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(lambda _: attempt("erin"), range(8)))
        assert sorted(codes) == [401] * 3 + [429] * 5  # at most free_failures tried, however concurrent
        assert attempt("erin", PASSWORD) == 429
        with ThreadPoolExecutor(max_workers=8) as pool:  # many names from one address: 3 more, then none
            codes = list(pool.map(lambda i: attempt(f"nobody{i}"), range(8)))
        assert sorted(codes) == [401] * 3 + [429] * 5
        assert attempt("vic", PASSWORD) == 429  # the address is locked, even for a right password


@pytest.mark.slow
def test_an_unknown_user_is_answered_as_a_wrong_password(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    settings = dashboard_settings(db, tmp_path, login={"free_failures": 3, "address_free_failures": 100})
    with serving(settings) as served:
        answers: dict[str, list[tuple[int, str]]] = {}
        seconds: dict[str, list[float]] = {}
        for username in ("vic", "nobody"):
            session, token = _anonymous_with_token(served.url)
            for _ in range(4):
                started = time.perf_counter()
                response = _post_login(session, served.url, token, username, "wrong password")
                seconds.setdefault(username, []).append(time.perf_counter() - started)
                error = re.search(r'<p class="error" role="alert">([^<]*)</p>', response.text)
                answers.setdefault(username, []).append((response.status_code, error[1] if error else ""))
        assert answers["vic"] == answers["nobody"]
        assert [code for code, _ in answers["vic"]] == [401, 401, 401, 429]
        # Both check a password hash (argon2, tens of ms): an order of magnitude apart would be an oracle.
        known, unknown = statistics.median(seconds["vic"][:3]), statistics.median(seconds["nobody"][:3])
        assert 0.2 < unknown / known < 5, (known, unknown)


REDIRECTS = [
    ("/alerts?states=open", "/alerts?states=open"),
    ("//evil.example/x", "/"),
    ("/\\evil.example", "/"),  # a browser reads it as //evil.example
    ("/\t/evil.example", "/"),  # browsers drop the tab: //evil.example
    ("/\r\nSet-Cookie: planted=1", "/"),
    ("https://evil.example/", "/"),
    ("javascript:alert(1)", "/"),
    ("/%0d%0aSet-Cookie:planted=1", "/%0d%0aSet-Cookie:planted=1"),  # an encoded local path, no header
]


@pytest.mark.slow
def test_the_login_redirects_only_to_local_paths(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        for target, expected in REDIRECTS:
            session, token = _anonymous_with_token(served.url)
            response = _post_login(session, served.url, token, "vic", PASSWORD, next=target)
            assert response.status_code == 302, target
            assert response.headers["Location"] == expected, target
            assert "planted" not in session.cookies, target


@pytest.mark.slow
def test_every_response_forbids_framing_sniffing_and_caching(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        session = login(served.url, "vic")
        responses = [
            requests.get(f"{served.url}/login", timeout=10),
            session.get(f"{served.url}/", timeout=10),
            session.get(f"{served.url}/_dash-layout", timeout=10),
            dash_callback(session, served.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS),
        ]
        for response in responses:
            assert response.status_code == 200
            headers = response.headers
            policy = headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in policy
            script_src = next(p for p in policy.split("; ") if p.startswith("script-src"))
            assert "'unsafe-inline'" not in script_src
            assert "'unsafe-eval'" not in script_src
            assert headers["X-Frame-Options"] == "DENY"
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "same-origin"
            assert headers["Cache-Control"] == "no-store"
        page_scripts = re.findall(r"<script>(.*?)</script>", responses[1].text, flags=re.DOTALL)
        assert page_scripts  # the renderer's start and the time-zone script: each allowed by its hash
        assert all(
            script_hash(script) in responses[1].headers["Content-Security-Policy"] for script in page_scripts
        )


def test_a_secret_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    key = read_secret_key(path)
    for mode in (0o644, 0o640, 0o602):
        path.chmod(mode)
        with pytest.raises(ConfigError, match="chmod 600"):
            read_secret_key(path)
    path.chmod(0o600)
    assert read_secret_key(path) == key
    path.chmod(0o400)
    assert read_secret_key(path) == key


@pytest.mark.slow
def test_no_secret_in_the_log_the_pages_or_config_show(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_plant(db)
    info = psycopg.conninfo.conninfo_to_dict(db)
    port = free_port()
    key_file = tmp_path / "secret_key"
    env = {
        **os.environ,
        "FOREWARN_DASHBOARD_DB__HOST": str(info["host"]),
        "FOREWARN_DASHBOARD_DB__PORT": str(info["port"]),
        "FOREWARN_DASHBOARD_DB__DBNAME": str(info["dbname"]),
        "FOREWARN_DASHBOARD_DB__USER": str(info["user"]),
        "FOREWARN_DASHBOARD_SESSION__SECRET_KEY_FILE": str(key_file),
    }
    command = [sys.executable, "-m", "forewarn.cli", "--log-level", "DEBUG", "dashboard", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pages: list[str] = []
    try:

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout_s=60)
        url = f"http://127.0.0.1:{port}"
        session, token = _anonymous_with_token(url)
        _post_login(session, url, token, "vic", "a wrong password")
        _post_login(session, url, token, PASSWORD, PASSWORD)  # the password typed as the name too
        session = login(url, "vic")
        pages += [
            session.get(f"{url}/_dash-layout", timeout=10).text,
            session.get(f"{url}/", timeout=10).text,
        ]
        pages.append(dash_callback(session, url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS).text)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "login" in err.lower()  # the log did speak of the logins (DEBUG), and shows none of these:
    with psycopg.connect(db) as conn:
        (password_hash,) = conn.execute(
            "SELECT password_hash FROM users WHERE username = 'vic'"
        ).fetchone() or ("",)
    secrets = {"password": PASSWORD, "hash": password_hash, "key": key_file.read_text().strip()}
    secrets["hash salt"] = password_hash.rsplit("$", 2)[1]
    for name, value in {**env, "FOREWARN_DASHBOARD_DB__PASSWORD": "db-secret-4711"}.items():
        if name.startswith("FOREWARN_DASHBOARD_"):
            monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["config", "show", "dashboard"]) == 0
    shown = capsys.readouterr().out
    assert "secret_key_file" in shown
    secrets["db password"] = "db-secret-4711"
    for name, secret in secrets.items():
        for where, text in {
            "stdout": out,
            "log": err,
            "pages": "\n".join(pages),
            "config show": shown,
        }.items():
            assert secret not in text, f"the {name} appears in {where}"


def _hostile_uplink(publisher: Publisher, worker: IngestWorker, seq: int) -> None:
    """An alert whose message is markup, and markup where identifiers go (asset id, topic's gateway)."""
    alert = Alert(
        gateway_id=GATEWAY,
        asset_id=DEGRADING,
        seq=seq,
        alert_id=f"{DEGRADING}-x1",
        state="raised",
        severity="warning",
        ts_ns=now_ns() - 60 * 10**9,
        score=1.2,
        threshold=1.0,
        model_version="pump:v2",
        model_kind="onnx",
        message=HOSTILE_MESSAGE,
    )
    bad_asset = json.loads(encode(alert))
    bad_asset.update(seq=seq + 1, alert_id="x2", asset_id=HOSTILE_ASSET)
    good_aggregate = json.loads(encode(plant_aggregate(DEGRADING, seq + 2, datetime.now(UTC), 0.5)))
    publisher.publish(
        [
            (topics.alert(GATEWAY), encode(alert)),
            (topics.alert(GATEWAY), json.dumps(bad_asset).encode()),
            (HOSTILE_GATEWAY_TOPIC, json.dumps(good_aggregate).encode()),
        ]
    )
    wait_until(lambda: worker.metrics.acked >= 3, timeout_s=30)


def _no_injection(driver: WebDriver) -> None:
    assert driver.execute_script("return window.__xss === undefined"), driver.execute_script(
        "return window.__xss"
    )
    for element_id in ("xss-message", "xss-comment", "xss-bold"):
        assert driver.find_elements(By.ID, element_id) == [], element_id
    assert driver.find_elements(By.CSS_SELECTOR, "img[src='x'], svg[onload]") == []


@pytest.mark.slow
def test_hostile_strings_by_mqtt_and_the_dashboard_are_stored_and_shown_as_text(
    db: str,
    tmp_path: Path,
    browser: WebDriver,
    publisher: Publisher,
    worker_factory: Callable[..., IngestWorker],
) -> None:
    seed_plant(db)
    _hostile_uplink(publisher, worker_factory(), seq=1_000_000)
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT message FROM alerts WHERE alert_id = %s", (f"{DEGRADING}-x1",)
        ).fetchone()
        assert stored == (HOSTILE_MESSAGE,)  # as sent, not escaped or altered
        letters = conn.execute("SELECT topic, payload FROM dead_letters ORDER BY dead_letter_id").fetchall()
    assert [topic for topic, _ in letters] == [topics.alert(GATEWAY), HOSTILE_GATEWAY_TOPIC]
    assert json.loads(bytes(letters[0][1]))["asset_id"] == HOSTILE_ASSET  # kept whole, in no other table
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH})
    with serving(dashboard_settings(db, tmp_path)) as served:
        engineer = login(served.url, "erin")
        acknowledged = dash_callback(
            engineer,
            served.url,
            outputs=[("ack-result", "children")],
            inputs=[("ack-button", "n_clicks", 1)],
            state=[
                ("ack-alert", "value", f"{GATEWAY}/{DEGRADING}-x1"),
                ("ack-comment", "value", HOSTILE_COMMENT),
            ],
        )
        assert "Acknowledged" in acknowledged.text
        browser.get(f"{served.url}/login")
        hostile_name = HOSTILE_ASSET.replace("1", "'name'")
        browser.find_element(By.ID, "username").send_keys(hostile_name)
        browser.find_element(By.ID, "password").send_keys("whatever it is")
        browser.find_element(By.ID, "login").click()
        _wait(browser, "p.error")
        _no_injection(browser)
        assert hostile_name not in browser.page_source
        _log_in(browser, served.url, "erin")
        browser.get(f"{served.url}/alerts")
        WebDriverWait(browser, 30).until(
            lambda d: HOSTILE_MESSAGE in d.find_element(By.TAG_NAME, "main").text
        )
        assert HOSTILE_COMMENT in browser.find_element(By.TAG_NAME, "main").text
        _no_injection(browser)
        browser.get(f"{served.url}/asset/{DEGRADING}")
        WebDriverWait(browser, 30).until(
            lambda d: HOSTILE_MESSAGE in d.find_element(By.ID, "asset-alerts").text
        )
        _wait(browser, "#asset-score .main-svg")
        _no_injection(browser)
        assert browser.execute_script("return window.__csp") == []  # the pages ran under the CSP untouched


def test_the_login_throttle_stays_bounded_and_keeps_locked_keys() -> None:
    throttle = LoginThrottle(
        user_free_failures=1,
        address_free_failures=1000,
        base_delay=timedelta(seconds=60),
        max_delay=timedelta(seconds=60),
        max_keys=50,
    )
    now = datetime.now(UTC)
    assert throttle.begin(["user:locked"], now=now) is None  # its first failure locks it
    for i in range(200):  # a flood of names from many addresses
        throttle.begin([f"addr:10.0.{i}.1"], now=now + timedelta(seconds=1 + i / 1000))
    assert len(throttle._counts) <= 50
    assert throttle.begin(["user:locked"], now=now + timedelta(seconds=2)) is not None  # not pushed out
    assert throttle.begin(["user:locked"], now=now + timedelta(seconds=61)) is None  # its lock has passed
