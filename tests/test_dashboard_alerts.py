"""The alerts page over HTTP (waitress, real PostgreSQL, seeded through the write path): roles enforced
inside the action callback, the states listed, hostile strings sent as text, and durations parsed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from cloud_service.queries import AlarmState, Transition, alert_history, list_alerts
from dashboard.alerts_page import parse_duration, rate_figure
from dashboard.timezones import to_display
from forewarn.localservices import PostgresServer, wait_until
from tests.dashboard_support import (
    DEGRADING,
    GATEWAY,
    callback_headers,
    dash_callback,
    dashboard_settings,
    login,
    seed_plant,
    serving,
)

ACTIONS = [
    "alerts-acknowledge",
    "alerts-shelve",
    "alerts-unshelve",
    "alerts-out-of-service",
    "alerts-return-to-service",
]
ACT_OUTPUTS = [("alerts-action-result", "children"), ("alerts-changed", "data")]
LIST_OUTPUTS = [
    ("alerts-sections", "children"),
    ("alerts-target", "options"),
    ("alerts-site", "options"),
    ("alerts-health", "children"),
    ("alerts-rate", "figure"),
]
LIST_INPUTS = [
    ("refresh", "n_intervals", 1),
    ("alerts-changed", "data", 0),
    ("alerts-states", "value", [s.value for s in AlarmState if s is not AlarmState.NORMAL]),
    ("alerts-site", "value", None),
]


def _act(session: requests.Session, url: str, action: str, alert_id: str) -> requests.Response:
    """The request the page's action callback makes when `action`'s button is pressed (inputs in the
    callback's order, the pressed one named as changed), with the session's CSRF header."""
    inputs = [(name, "n_clicks", 1 if name == action else None) for name in ACTIONS]
    state = [
        ("alerts-target", "value", f"{GATEWAY}/{alert_id}"),
        ("alerts-comment", "value", "forged <script>alert(1)</script>"),
        ("alerts-shelve-reason", "value", "forged"),
        ("alerts-shelve-duration", "value", "2 h"),
        ("alerts-oos-asset", "value", DEGRADING),
        ("alerts-oos-reason", "value", "forged"),
        ("alerts-changed", "data", 0),
    ]
    payload: dict[str, Any] = {
        "output": "..alerts-action-result.children...alerts-changed.data..",
        "outputs": [{"id": i, "property": p} for i, p in ACT_OUTPUTS],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [f"{action}.n_clicks"],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
    }
    return session.post(
        f"{url}/_dash-update-component", json=payload, headers=callback_headers(session), timeout=30
    )


def _route(session: requests.Session, url: str) -> requests.Response:
    return dash_callback(
        session, url, outputs=[("page", "children")], inputs=[("url", "pathname", "/alerts")]
    )


@pytest.mark.slow
def test_a_viewers_forged_acknowledge_and_shelve_are_refused_by_the_server(db: str, tmp_path: Path) -> None:
    plant = seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        viewer = login(served.url, "vic")
        page = _route(viewer, served.url)
        assert page.status_code == 200
        assert "alerts-acknowledge" not in page.text  # hidden from viewers, refused below all the same
        for action in ACTIONS:
            assert _act(viewer, served.url, action, plant.alert_id).status_code == 403, action
        with psycopg.connect(db) as conn:
            (alert,) = list_alerts(conn)
            assert (alert.state, alert.acknowledged_by) == (AlarmState.ACTIVE_UNACKNOWLEDGED, None)
            history = alert_history(conn, gateway_id=GATEWAY, alert_id=plant.alert_id)
            assert [e.transition for e in history] == [Transition.RAISED]

        engineer = login(served.url, "erin")
        assert "alerts-acknowledge" in _route(engineer, served.url).text
        done = _act(engineer, served.url, "alerts-shelve", plant.alert_id)
        assert done.status_code == 200
        assert "Shelved" in json.dumps(done.json())
        done = _act(engineer, served.url, "alerts-acknowledge", plant.alert_id)
        assert "Acknowledged" in json.dumps(done.json())
        with psycopg.connect(db) as conn:
            (alert,) = list_alerts(conn)
            assert (alert.state, alert.acknowledged_by, alert.shelved_by) == (
                AlarmState.SHELVED,
                "erin",
                "erin",
            )
            history = alert_history(conn, gateway_id=GATEWAY, alert_id=plant.alert_id)
            assert [(e.transition, e.actor) for e in history][1:] == [
                (Transition.SHELVED, "erin"),
                (Transition.ACKNOWLEDGED, "erin"),
            ]


def _texts(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [text for child in node for text in _texts(child)]
    if isinstance(node, dict):
        return _texts(node.get("props", {}).get("children")) if "props" in node else []
    return []


@pytest.mark.slow
def test_the_alerts_list_shows_each_state_and_sends_hostile_strings_as_text(db: str, tmp_path: Path) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        viewer = login(served.url, "vic")
        response = dash_callback(viewer, served.url, outputs=LIST_OUTPUTS, inputs=LIST_INPUTS)
        assert response.status_code == 200
        body = response.json()["response"]
        texts = _texts(body["alerts-sections"]["children"])
        assert "vibration rising <b>bold?</b>" in texts  # a plain string child: React renders it as text
        assert {"active, unacknowledged", "returned, unacknowledged", "shelved", "out of service"} <= set(
            texts
        )
        assert [o["value"] for o in body["alerts-target"]["options"]] == [f"{GATEWAY}/{DEGRADING}-a1"]
        health = _texts(body["alerts-health"]["children"])
        assert "plant-1" in health


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45 s", timedelta(seconds=45)),
        ("30 min", timedelta(minutes=30)),
        ("30", timedelta(minutes=30)),
        ("2 h", timedelta(hours=2)),
        ("1.5 hours", timedelta(minutes=90)),
        (" 10 M ", timedelta(minutes=10)),
    ],
)
def test_shelve_durations_are_read_with_their_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "-5 min", "5 days", "1e3 s"])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a number and a unit"):
        parse_duration(text)


@pytest.mark.slow
def test_a_database_that_is_down_shows_a_banner_on_the_alerts_page(
    db: str, tmp_path: Path, postgres: PostgresServer
) -> None:
    seed_plant(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        engineer = login(served.url, "erin")
        postgres.stop()
        try:
            listed = dash_callback(engineer, served.url, outputs=LIST_OUTPUTS, inputs=LIST_INPUTS)
            acted = _act(engineer, served.url, "alerts-acknowledge", f"{DEGRADING}-a1")
        finally:
            postgres.start()
        assert listed.status_code == 200
        assert "database cannot be reached" in json.dumps(listed.json()["response"]["alerts-sections"])
        assert acted.status_code == 200
        assert "database cannot be reached" in json.dumps(acted.json())
        wait_until(  # the pool reconnects on its own: the next refreshes show the alerts again
            lambda: (
                DEGRADING
                in dash_callback(engineer, served.url, outputs=LIST_OUTPUTS, inputs=LIST_INPUTS).text
            ),
            timeout_s=30,
            interval_s=0.5,
        )


def test_a_lone_hour_of_raises_is_drawn_an_hour_wide_within_the_whole_window() -> None:
    end = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    hour = end - timedelta(days=2, hours=5)
    figure = rate_figure({"": [(hour, 1)]}, window=(end - timedelta(days=7), end))
    (bar,) = figure.data
    assert (list(bar.width), bar.offset, list(bar.y)) == ([3_600_000], 0, [1])  # not Plotly's lone 1 ms
    assert figure.layout.xaxis.range == (to_display(end - timedelta(days=7)), to_display(end))
