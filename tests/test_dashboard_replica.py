"""The dashboard on a streaming replica: pages read from the hot standby (`read_db`), while logins,
acknowledgements and the alerts page's refresh write to the primary (`db`)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cloud_service.migrate import migrate
from forewarn.localservices import PostgresServer, running, temporary_directory, wait_until
from tests.dashboard_support import (
    ASSET_INPUTS,
    ASSET_OUTPUTS,
    DEGRADING,
    FLEET_INPUTS,
    FLEET_OUTPUTS,
    GATEWAY,
    dash_callback,
    dashboard_settings,
    login,
    seed_plant,
    serving,
)

_ALERTS_OUTPUTS = [
    ("alerts-sections", "children"),
    ("alerts-target", "options"),
    ("alerts-site", "options"),
    ("alerts-health", "children"),
    ("alerts-rate", "figure"),
]
_ALERTS_INPUTS = [
    ("refresh", "n_intervals", 1),
    ("alerts-changed", "data", None),
    ("alerts-states", "value", ["active_unacknowledged"]),
    ("alerts-site", "value", None),
]


def _application_names(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_activity WHERE datname = 'plant'")
        return {str(name) for (name,) in rows.fetchall()}


def _acknowledged(conninfo: str, alert_id: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT acknowledged_at IS NOT NULL FROM alerts WHERE gateway_id = %s AND alert_id = %s",
            (GATEWAY, alert_id),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.slow
def test_pages_read_the_replica_and_writes_go_to_the_primary(tmp_path: Path) -> None:
    with (
        temporary_directory("forewarn-replica-") as workdir,
        running(PostgresServer(workdir / "primary", timescaledb=False)) as primary,
    ):
        conninfo = primary.create_database("plant")
        migrate(conninfo, allow_timescale=False)
        plant = seed_plant(conninfo)
        with running(PostgresServer(workdir / "standby", standby_of=primary)) as standby:
            replica = standby.conninfo("plant")
            with psycopg.connect(replica) as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            settings = dashboard_settings(conninfo, tmp_path)
            read_db = settings.db.model_copy(update={"port": standby.port})
            with serving(settings.model_copy(update={"read_db": read_db})) as served:
                engineer = login(served.url, "erin")  # records the login: a write, on the primary
                fleet = dash_callback(engineer, served.url, outputs=FLEET_OUTPUTS, inputs=FLEET_INPUTS)
                assert fleet.status_code == 200
                assert DEGRADING in fleet.text
                assert "dashboard-read" in _application_names(replica)
                assert "dashboard-read" not in _application_names(conninfo)
                asset = dash_callback(engineer, served.url, outputs=ASSET_OUTPUTS, inputs=ASSET_INPUTS)
                assert asset.status_code == 200
                assert plant.alert_id in asset.text
                alerts = dash_callback(engineer, served.url, outputs=_ALERTS_OUTPUTS, inputs=_ALERTS_INPUTS)
                assert alerts.status_code == 200  # its refresh sweeps ended shelves: on the primary
                assert plant.alert_id in alerts.text
                done = dash_callback(
                    engineer,
                    served.url,
                    outputs=[("ack-result", "children")],
                    inputs=[("ack-button", "n_clicks", 1)],
                    state=[
                        ("ack-alert", "value", f"{GATEWAY}/{plant.alert_id}"),
                        ("ack-comment", "value", ""),
                    ],
                )
                assert f"Acknowledged {plant.alert_id}" in done.text
            wait_until(lambda: _acknowledged(replica, plant.alert_id), timeout_s=10)  # replicated
