"""The dashboard over HTTP: served by waitress against the real PostgreSQL fixture, seeded through the
cloud's write path. Logins, redirects, CSRF, role checks inside callbacks, and the database-down banner."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest
import requests

from cloud_service.queries import Series, SeriesPoint, open_alerts
from cloud_service.users import set_password
from dashboard.app import create_app
from dashboard.figures import score_figure
from dashboard.fleet import rul_text
from dashboard.security import read_secret_key
from forewarn.cli import build_parser
from forewarn.localservices import PostgresServer, free_port, wait_until
from shared.errors import ConfigError
from tests.dashboard_support import (
    ASSET_INPUTS,
    ASSET_OUTPUTS,
    DEGRADING,
    FLEET_INPUTS,
    FLEET_OUTPUTS,
    GATEWAY,
    HOSTILE_LINE,
    PASSWORD,
    dash_callback,
    dashboard_settings,
    login,
    seed_plant,
    serving,
)

pytestmark = pytest.mark.slow


def _acknowledge(session: requests.Session, url: str, alert_id: str, **kwargs: object) -> requests.Response:
    return dash_callback(
        session,
        url,
        outputs=[("ack-result", "children")],
        inputs=[("ack-button", "n_clicks", 1)],
        state=[("ack-alert", "value", f"{GATEWAY}/{alert_id}"), ("ack-comment", "value", "forged")],
        **kwargs,  # type: ignore[arg-type]  # headers only
    )


def _texts(node: object) -> list[str]:
    """Every string in a rendered Dash component tree (JSON)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [text for child in node for text in _texts(child)]
    if isinstance(node, dict):
        return _texts(node.get("props", {}).get("children")) if "props" in node else []
    return []


def test_unauthenticated_requests_are_redirected_or_refused(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        page = requests.get(f"{served.url}/asset/{DEGRADING}", allow_redirects=False, timeout=10)
        assert page.status_code == 302
        assert page.headers["Location"].endswith(f"/login?next=/asset/{DEGRADING}")
        assert requests.get(f"{served.url}/_dash-layout", timeout=10).status_code == 401
        anonymous = requests.Session()
        anonymous.get(f"{served.url}/login", timeout=10)
        token = anonymous.cookies.get("_csrf_token") or ""
        forged = dash_callback(
            anonymous, served.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS, headers={"X-CSRFToken": token}
        )
        assert forged.status_code == 401


@pytest.mark.slow
def test_login_needs_the_csrf_token_and_the_right_password(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        bare = requests.post(
            f"{served.url}/login",
            data={"username": "erin", "password": PASSWORD},
            timeout=10,
            allow_redirects=False,
        )
        assert bare.status_code == 403
        with pytest.raises(AssertionError):
            login(served.url, "erin", "wrong password")
        session = login(served.url, "erin")
        assert session.get(f"{served.url}/", timeout=10).status_code == 200
        layout = session.get(f"{served.url}/_dash-layout", timeout=10)
        assert layout.status_code == 200
        assert "erin (engineer)" in layout.text
        cookie = next(c for c in session.cookies if c.name == "forewarn_session")
        assert cookie.has_nonstandard_attr("HttpOnly")


def test_repeated_failed_logins_are_slowed(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    settings = dashboard_settings(db, tmp_path, login={"free_failures": 2, "base_delay_s": 60})
    with serving(settings) as served:
        session = requests.Session()
        token = session.get(f"{served.url}/login", timeout=10).text.split('value="', 1)[1].split('"', 1)[0]
        codes = [
            session.post(
                f"{served.url}/login",
                data={"csrf_token": token, "username": "vic", "password": password},
                timeout=10,
                allow_redirects=False,
            ).status_code
            for password in ("bad one", "bad two", PASSWORD)
        ]
        assert codes == [401, 401, 429]  # locked: even the right password waits


def test_a_callback_request_without_the_csrf_token_is_refused(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        session = login(served.url, "vic")
        for headers in ({}, {"X-CSRFToken": "not-the-token"}):
            refused = dash_callback(
                session, served.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS, headers=headers
            )
            assert refused.status_code == 403
        allowed = dash_callback(session, served.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS)
        assert allowed.status_code == 200
        table = allowed.json()["response"]["fleet-table"]["children"]
        texts = _texts(table)
        assert texts.index(DEGRADING) < min(texts.index(a) for a in ("fan-02", "motor-11"))
        assert HOSTILE_LINE in texts  # a plain string child: React renders it as text


@pytest.mark.slow
def test_a_viewers_forged_acknowledge_is_refused_by_the_server(db: str, tmp_path: Path) -> None:
    plant = seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        viewer = login(served.url, "vic")
        page = dash_callback(viewer, served.url, outputs=ASSET_OUTPUTS, inputs=ASSET_INPUTS)
        assert page.status_code == 200
        assert "ack-button" not in page.text  # hidden from viewers, and refused below all the same
        assert _acknowledge(viewer, served.url, plant.alert_id).status_code == 403
        with psycopg.connect(db) as conn:
            (alert,) = open_alerts(conn, asset_id=DEGRADING)
            assert (alert.state, alert.acknowledged_by) == ("open", None)
        engineer = login(served.url, "erin")
        assert (
            "ack-button"
            in dash_callback(engineer, served.url, outputs=ASSET_OUTPUTS, inputs=ASSET_INPUTS).text
        )
        done = _acknowledge(engineer, served.url, plant.alert_id)
        assert done.status_code == 200
        assert "Acknowledged" in json.dumps(done.json())
        with psycopg.connect(db) as conn:
            (alert,) = open_alerts(conn, asset_id=DEGRADING)
            assert (alert.state, alert.acknowledged_by, alert.comment) == ("acknowledged", "erin", "forged")


@pytest.mark.slow
def test_a_database_that_is_down_shows_a_banner(db: str, tmp_path: Path, postgres: PostgresServer) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        session = login(served.url, "vic")
        postgres.stop()
        try:
            response = dash_callback(session, served.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS)
        finally:
            postgres.start()
        assert response.status_code == 200
        banner = response.json()["response"]["fleet-table"]["children"]
        assert "database cannot be reached" in json.dumps(banner)
        again = dash_callback(session, served.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS)
        assert DEGRADING in json.dumps(again.json())


def test_the_secret_key_file_is_created_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret_key"
    key = read_secret_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret_key(path) == key
    path.write_text("short")
    with pytest.raises(ConfigError, match="secret_key_file"):
        read_secret_key(path)


def test_rul_is_beyond_the_horizon_when_no_degradation_is_seen() -> None:
    from cloud_service.forecasting.repository import ForecastRecord  # noqa: PLC0415 - local to this check
    from shared.timebase import ns_to_datetime  # noqa: PLC0415 - local to this check

    at = ns_to_datetime(0)
    assert rul_text(ForecastRecord("a", at, at, 400.0, 250.0, 600.0, 0.01, 72.0, False, 1)) == (
        "beyond the horizon (> 72 h)"
    )
    assert rul_text(ForecastRecord("a", at, at, 30.0, 18.0, 45.0, 0.8, 72.0, False, 1)) == "30 h (18–45 h)"
    assert rul_text(None) == "no forecast yet"


def test_dashboard_command_is_registered() -> None:
    args = build_parser().parse_args(["dashboard", "--config", "dash.toml", "--port", "9000"])
    assert (args.command, args.port) == ("dashboard", 9000)


@pytest.mark.slow
def test_sessions_expire_and_a_new_password_ends_them(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    settings = dashboard_settings(
        db, tmp_path, session={"secret_key_file": str(tmp_path / "k"), "lifetime_s": 600}
    )
    app = create_app(settings)
    try:
        client = app.server.test_client()

        def log_in() -> None:
            client.get("/login")
            with client.session_transaction() as session:
                token = session["csrf_token"]
            form = {"csrf_token": token, "username": "vic", "password": PASSWORD}
            assert client.post("/login", data=form).status_code == 302
            assert client.get("/").status_code == 200

        log_in()
        with client.session_transaction() as session:
            session["login_at"] -= 601
        assert client.get("/").status_code == 302  # expired on the server, whatever the cookie says
        log_in()
        with psycopg.connect(db) as conn:
            assert set_password(conn, "vic", "a new password")
            conn.commit()
        assert client.get("/").status_code == 302
    finally:
        app.close()


@pytest.mark.slow
def test_forewarn_dashboard_serves_until_sigterm(db: str, tmp_path: Path) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db)
    port = free_port()
    env = {
        **os.environ,
        "FOREWARN_DASHBOARD_DB__HOST": str(info["host"]),
        "FOREWARN_DASHBOARD_DB__PORT": str(info["port"]),
        "FOREWARN_DASHBOARD_DB__DBNAME": str(info["dbname"]),
        "FOREWARN_DASHBOARD_DB__USER": str(info["user"]),
        "FOREWARN_DASHBOARD_SESSION__SECRET_KEY_FILE": str(tmp_path / "secret_key"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "forewarn.cli", "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def login_page() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(login_page, timeout_s=60)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


@pytest.mark.slow
def test_a_database_without_the_schema_says_to_migrate(
    postgres: PostgresServer, db: str, tmp_path: Path
) -> None:
    seed_plant(db)
    bare = postgres.create_database("t_dashboard_bare")
    try:
        with serving(dashboard_settings(db, tmp_path)) as served:
            session = login(served.url, "vic")
        # Same key file, so the session is valid on a dashboard over an unmigrated database (cookies are
        # not per port); the user cannot be checked there, and the page says what to do.
        with serving(dashboard_settings(bare, tmp_path)) as other:
            response = dash_callback(session, other.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS)
    finally:
        postgres.drop_database("t_dashboard_bare")
    assert response.status_code == 200
    assert "forewarn cloud migrate" in response.text


def test_buckets_with_no_scored_window_are_gaps_in_the_score_chart_not_zeros() -> None:
    start = datetime(2026, 7, 1, tzinfo=UTC)
    points = [
        SeriesPoint(start + timedelta(hours=i), 6, mean, mean * 1.5, windows, 0)
        for i, (mean, windows) in enumerate([(0.4, 60), (0.0, 0), (0.5, 60)])  # the machine stopped an hour
    ]
    series = Series("p1", start, start + timedelta(hours=3), timedelta(hours=1), "raw", points)
    figure = score_figure(series, threshold=1.0, alerts=[], revision="p1")
    score_max, score_mean = figure.data[0], figure.data[1]
    assert list(score_mean.y) == [0.4, None, 0.5]
    assert list(score_max.y) == [0.4 * 1.5, None, 0.5 * 1.5]
    assert "gaps: no window scored" in figure.layout.title.text
    scored = Series("p1", start, start + timedelta(hours=3), timedelta(hours=1), "raw", [points[0]])
    assert "gaps" not in score_figure(scored, threshold=1.0, alerts=[], revision="p1").layout.title.text
