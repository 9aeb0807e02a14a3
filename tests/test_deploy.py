"""What docs/deploy.md tells an administrator to install holds: examples load, units verify, the broker
bridge loses nothing across an outage, and a backup restores."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from cloud_service.queries import fleet_status, stored_counts
from cloud_service.settings import CloudSettings
from cloud_service.writer import BatchWriter
from dashboard.settings import DashboardSettings
from edge_agent.settings import EdgeSettings
from forewarn.bench.messages import PERIOD_NS, aggregate, one_of_each
from forewarn.localservices import PG_BIN_DIRS, MosquittoServer, PostgresServer, wait_until
from shared.config import ComponentSettings, MqttSettings, load_settings
from shared.mqtt import connect, make_client
from shared.timebase import NS_PER_S, now_ns

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("name", "settings_class"),
    [("cloud.toml", CloudSettings), ("dashboard.toml", DashboardSettings), ("gateway.toml", EdgeSettings)],
)
def test_example_configuration_files_load(name: str, settings_class: type[ComponentSettings]) -> None:
    settings: ComponentSettings = load_settings(settings_class, toml_path=EXAMPLES / name, environ={})
    assert settings.model_dump()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", sorted(p.name for p in (EXAMPLES / "systemd").glob("*.service")))
def test_systemd_units_verify_without_a_warning(unit: str, tmp_path: Path) -> None:
    text = (EXAMPLES / "systemd" / unit).read_text()
    forewarn = Path(sys.executable).with_name("forewarn")
    (tmp_path / unit).write_text(text.replace("/opt/forewarn/venv/bin/forewarn", str(forewarn)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout + result.stderr == "", "systemd ignored a line of the unit"


def _bridge_config(central: MosquittoServer) -> str:
    """The example bridge, pointed at `central` over plaintext (TLS is tested in test_security_tls)."""
    lines = []
    for line in (EXAMPLES / "mosquitto-bridge.conf").read_text().splitlines():
        if line.startswith(("bridge_cafile", "bridge_certfile", "bridge_keyfile", "persistence ")):
            continue
        lines.append(f"address 127.0.0.1:{central.port}" if line.startswith("address ") else line)
    return "\n".join(lines) + "\n"


class _Collector:
    """A persistent-session subscriber on the central broker that keeps every payload it receives."""

    def __init__(self, broker: MosquittoServer, topic: str) -> None:
        self.payloads: set[bytes] = set()
        self._lock = threading.Lock()
        settings = MqttSettings(host=broker.host, port=broker.port)
        self.client = make_client(settings, client_id="forewarn-bridge-test-collector")
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        connect(self.client, settings, clean_start=False, session_expiry_s=3600)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.add(bytes(msg.payload))

    def count(self) -> int:
        with self._lock:
            return len(self.payloads)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _publish(broker: MosquittoServer, topic: str, payloads: list[bytes]) -> None:
    settings = MqttSettings(host=broker.host, port=broker.port)
    client = make_client(settings, client_id="forewarn-bridge-test-gateway")
    connect(client, settings, clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        wait_until(client.is_connected, timeout_s=10)
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.slow
def test_a_bridged_plant_broker_loses_nothing_while_the_central_broker_is_down(tmp_path: Path) -> None:
    central = MosquittoServer(tmp_path / "central")
    central.start()
    plant = MosquittoServer(tmp_path / "plant", extra_config=_bridge_config(central))
    plant.start()
    topic = "forewarn/v1/gw/gw-bridge/aggregate"
    collector = _Collector(central, "forewarn/v1/gw/#")
    try:
        before = [f"before-{i}".encode() for i in range(200)]
        _publish(plant, topic, before)
        wait_until(lambda: collector.count() >= 200, timeout_s=30)  # the bridge carries uplink to the centre
        central.stop()  # SIGTERM: the central broker saves the collector's session
        during = [f"during-{i}".encode() for i in range(300)]
        _publish(plant, topic, during)  # queued on the plant broker for the bridge
        central.start()
        wait_until(lambda: collector.count() >= 500, timeout_s=60)  # times out if the outage lost any
        assert collector.payloads == set(before) | set(during)
    finally:
        collector.close()
        plant.stop()
        central.stop()


@pytest.mark.slow
def test_a_database_backup_restores_to_the_same_rows(
    postgres: PostgresServer, db: str, tmp_path: Path
) -> None:
    start = now_ns() - 3600 * NS_PER_S
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write(
            [
                *(aggregate("gw-bk", "pump-bk", seq, start + seq * PERIOD_NS) for seq in range(100)),
                *one_of_each("gw-bk-2", "fan-bk"),
            ]
        )
        before = (stored_counts(conn), [(a.asset_id, a.last_score_max) for a in fleet_status(conn)])
    dump = tmp_path / "forewarn.dump"
    binaries = PG_BIN_DIRS[0]
    params = psycopg.conninfo.conninfo_to_dict(db)
    common = ["-h", str(params["host"]), "-p", str(params["port"]), "-U", str(params["user"])]
    subprocess.run(
        [str(binaries / "pg_dump"), *common, "-Fc", "-f", str(dump), str(params["dbname"])], check=True
    )
    restored = postgres.create_database(f"{params['dbname']}_restored")
    try:
        subprocess.run(
            [
                str(binaries / "pg_restore"),
                *common,
                "--no-owner",
                "-d",
                f"{params['dbname']}_restored",
                str(dump),
            ],
            check=True,
        )
        with psycopg.connect(restored) as conn:
            after = (stored_counts(conn), [(a.asset_id, a.last_score_max) for a in fleet_status(conn)])
    finally:
        postgres.drop_database(f"{params['dbname']}_restored")
    assert after == before
