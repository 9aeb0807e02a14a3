"""`forewarn demo`: the whole data path on one machine, from simulated sensors to the cloud database.

1. A broker and a database: the configured ones, or throwaway local Mosquitto and PostgreSQL started in
   the demo's directory on free ports (and removed at the end).
2. The cloud service (`forewarn cloud`) and an edge agent (`forewarn edge`) as child processes, configured
   from TOML files the demo writes for the scenario's assets.
3. The simulator publishes the scenario (default `smoke`: a pump whose bearing wears to failure) as raw
   sensor batches on the plant topics, time-compressed.
4. The edge agent windows, scores and alerts; alerts arrive on the plant alert topics within milliseconds;
   aggregates and alerts flow through its disk queue to the cloud, which stores them.
5. The demo stops the agent (which flushes and drains its queue), waits for the cloud to store everything,
   and prints the fleet status, each alert, and the warning lead time before each failure of the ground
   truth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
from pydantic import SecretStr

from cloud_service.queries import StoredCounts, fleet_status, stored_counts
from cloud_service.service import prepare_database
from cloud_service.settings import CloudSettings
from edge_agent.settings import EdgeSettings
from forewarn.localservices import MosquittoServer, PostgresServer, temporary_directory
from forewarn.settings import DemoSettings
from shared import topics
from shared.config import ComponentSettings, DatabaseSettings, MqttSettings, load_settings, render_settings
from shared.errors import ConfigError, ContractError, ForewarnError
from shared.messages import Alert, Status, decode_uplink
from shared.mqtt import connect, make_client
from shared.timebase import NS_PER_S
from simulators import (
    Publisher,
    Scenario,
    TruthRecord,
    fleet_units,
    iter_messages,
    load_scenario,
    publish_stream,
)

__all__ = ["DemoReport", "register", "run_demo"]

logger = logging.getLogger(__name__)

_DEMO_DB = "forewarn_demo"


@dataclasses.dataclass
class AlertSeen:
    """An alert as the plant broker delivered it, with when it arrived."""

    alert: Alert
    received_s: float


@dataclasses.dataclass
class DemoReport:
    """What the demo saw."""

    assets: int = 0
    raw_messages: int = 0
    raw_samples: int = 0
    plant_alerts: list[AlertSeen] = dataclasses.field(default_factory=list)
    aggregates_stored: int = 0
    alerts_stored: int = 0
    dead_letters: int = 0
    truth: list[TruthRecord] = dataclasses.field(default_factory=list)
    lead_times_h: dict[str, float | None] = dataclasses.field(default_factory=dict)


def _broker(stack: contextlib.ExitStack, settings: DemoSettings, workdir: Path) -> MqttSettings:
    if settings.broker_url:
        parts = urlsplit(settings.broker_url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ConfigError("demo.broker_url", settings.broker_url, "must look like mqtt://host:port")
        return MqttSettings(host=parts.hostname, port=parts.port or 1883)
    server = MosquittoServer(workdir / "mosquitto")
    server.start()
    stack.callback(server.stop, kill=True)
    print(f"demo: started a local Mosquitto on port {server.port}", file=sys.stderr)
    return MqttSettings(host=server.host, port=server.port)


def _database(stack: contextlib.ExitStack, settings: DemoSettings) -> DatabaseSettings:
    conninfo = settings.database.get_secret_value()
    if conninfo:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
        return DatabaseSettings(
            host=str(params.get("host", "127.0.0.1")),
            port=int(str(params.get("port") or 5432)),
            dbname=str(params.get("dbname", "forewarn")),
            user=str(params.get("user", "postgres")),
            password=SecretStr(str(params.get("password", ""))),
        )
    pg_dir = stack.enter_context(temporary_directory("forewarn-demo-pg-"))
    server = PostgresServer(pg_dir)
    stack.callback(server.stop, mode="fast")  # before start: an interrupt during start still stops it
    server.start()
    server.create_database(_DEMO_DB)
    print(f"demo: started a local PostgreSQL on port {server.port}", file=sys.stderr)
    return DatabaseSettings(host=server.host, port=server.port, dbname=_DEMO_DB, user=server.user)


def _mqtt_values(mqtt_settings: MqttSettings) -> dict[str, object]:
    return {"host": mqtt_settings.host, "port": mqtt_settings.port}


def _db_values(db: DatabaseSettings) -> dict[str, object]:
    return {"host": db.host, "port": db.port, "dbname": db.dbname, "user": db.user}


def secret_environment(db: DatabaseSettings) -> dict[str, str]:
    """The database password for the cloud service as its `FOREWARN_CLOUD_*` variable (never in a file)."""
    password = db.password.get_secret_value()
    return {"FOREWARN_CLOUD_DB__PASSWORD": password} if password else {}


def _write_settings(path: Path, settings: ComponentSettings) -> Path:
    path.write_text(
        "# Written by `forewarn demo`; secrets come from the environment, not this file.\n"
        + render_settings(settings)
    )
    return path


def write_cloud_config(path: Path, *, mqtt_settings: MqttSettings, db: DatabaseSettings) -> Path:
    """A cloud service configuration for the demo: one ingest worker on the demo's broker and database."""
    settings = load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": _mqtt_values(mqtt_settings),
            "db": _db_values(db),
            "ingest": {"workers": 1, "group": "demo"},
        },
    )
    return _write_settings(path, settings)


def write_gateway_config(
    path: Path, *, scenario: Scenario, gateway_id: str, mqtt_settings: MqttSettings, workdir: Path
) -> Path:
    """An edge agent configuration serving every asset of `scenario`, with its state under `workdir`."""
    rates = {"vibration": scenario.spec.signals.vibration_rate_hz}
    assets = [
        {
            "asset_id": unit.asset_id,
            "sensors": [
                {
                    "name": sensor,
                    "kind": "vibration" if sensor == "vibration" else "slow",
                    "sample_rate_hz": rates.get(sensor, scenario.spec.signals.slow_rate_hz),
                }
                for sensor in unit.type.sensors
            ],
        }
        for unit in fleet_units(scenario)
    ]
    settings = load_settings(
        EdgeSettings,
        environ={},
        overrides={
            "gateway_id": gateway_id,
            "heartbeat_interval_s": 2.0,
            "plant_mqtt": _mqtt_values(mqtt_settings),
            "upstream_mqtt": _mqtt_values(mqtt_settings),
            "queue": {"dir": workdir / "edge" / "queue"},
            "quarantine": {"dir": workdir / "edge" / "quarantine"},
            "models": {"store_dir": workdir / "edge" / "models"},
            "pipeline": {"assets": assets},
        },
    )
    return _write_settings(path, settings)


@contextlib.contextmanager
def _child(
    name: str, arguments: list[str], log_path: Path, *, secrets: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `forewarn ARGUMENTS` as a child process logging to `log_path`; stop it (SIGTERM) at the end.

    `secrets` are added to the child's environment (settings variables such as a password).
    """
    log = log_path.open("ab")
    command = [sys.executable, "-m", "forewarn.cli", "--log-level", "INFO", *arguments]
    environment = {**os.environ, **(secrets or {})}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        yield process
    finally:
        stop_child(process, name)
        log.close()


def stop_child(process: subprocess.Popen[bytes], name: str, timeout_s: float = 30.0) -> None:
    """SIGTERM a child and wait for it; SIGKILL it if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %.0f s: killing it", name, timeout_s)
        process.kill()
        process.wait(timeout=10)


class _Watcher:
    """Subscribes to the plant alerts and the gateway status, as an operator's screen would."""

    def __init__(self, mqtt_settings: MqttSettings, gateway_id: str) -> None:
        self.alerts: queue.Queue[AlertSeen] = queue.Queue()
        self.online = threading.Event()
        self._status_topic = topics.status(gateway_id)
        self._client = make_client(mqtt_settings, client_id=f"forewarn-demo-watcher-{os.getpid()}")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        connect(self._client, mqtt_settings, clean_start=True, session_expiry_s=0)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe([(topics.plant_alert("+"), 1), (self._status_topic, 1)])

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode_uplink(bytes(msg.payload))
        except ContractError:
            logger.warning("demo watcher: undecodable message on %s", msg.topic)
            return
        if isinstance(message, Alert):
            self.alerts.put(AlertSeen(message, time.monotonic()))
        elif isinstance(message, Status) and message.state == "online":
            self.online.set()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _counts(conninfo: str) -> StoredCounts:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return stored_counts(conn)


def _drain(conninfo: str, timeout_s: float) -> None:
    """Wait until the stored row counts stop changing for a few seconds."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int] = (-1, -1)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        stored = _counts(conninfo)
        counts = (stored.aggregates, stored.alerts)
        if counts != last:
            last, stable_since = counts, time.monotonic()
        elif time.monotonic() - stable_since >= 3.0:
            return
        time.sleep(0.5)


def _lead_times(report: DemoReport) -> dict[str, float | None]:
    """Per failure of the ground truth: hours between the first alert raised on that asset and the failure."""
    leads: dict[str, float | None] = {}
    raised = [seen.alert for seen in report.plant_alerts if seen.alert.state == "raised"]
    for record in report.truth:
        if record.event != "failure":
            continue
        before = [a.ts_ns for a in raised if a.asset_id == record.asset_id and a.ts_ns <= record.ts_ns]
        key = f"{record.asset_id}@{record.ts_ns}"
        leads[key] = (record.ts_ns - min(before)) / NS_PER_S / 3600 if before else None
    return leads


def _print_report(report: DemoReport, conninfo: str, out: TextIO) -> None:
    print("\n== Fleet status (cloud database)", file=out)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for asset in fleet_status(conn):
            score = "-" if asset.last_score_max is None else f"{asset.last_score_max:.2f}"
            threshold = "-" if asset.threshold is None else f"{asset.threshold:.2f}"
            print(
                f"  {asset.asset_id:12s} gateway {asset.gateway_id or '-':10s} last score max {score:>8s}"
                f" (threshold {threshold})  open alerts {asset.open_alerts}",
                file=out,
            )
    print(f"\n== Alerts seen on the plant broker: {len(report.plant_alerts)}", file=out)
    for seen in report.plant_alerts:
        alert = seen.alert
        top = ", ".join(c.feature for c in alert.top_features[:3])
        print(
            f"  {alert.asset_id:12s} {alert.state:8s} {alert.severity:8s} score {alert.score:8.2f}"
            f" ({alert.model_kind} {alert.model_version}) top: {top}",
            file=out,
        )
    print("\n== Ground truth: failures and the warning lead time", file=out)
    failures = [r for r in report.truth if r.event == "failure"]
    if not failures:
        print("  no failure in this scenario", file=out)
    for record in failures:
        lead = report.lead_times_h.get(f"{record.asset_id}@{record.ts_ns}")
        told = "no alert before it" if lead is None else f"first alert {lead:.2f} simulated hours before"
        print(f"  {record.asset_id:12s} failed ({record.mode}): {told}", file=out)
    print(
        f"\n== Stored in the cloud: {report.aggregates_stored} aggregates, {report.alerts_stored} alerts,"
        f" {report.dead_letters} dead letters; {report.raw_samples:,} raw samples simulated",
        file=out,
    )


def run_demo(settings: DemoSettings, *, out: TextIO = sys.stdout) -> DemoReport:
    """Run the demo end to end and return what it saw (also printed to `out`)."""
    scenario = load_scenario(settings.scenario)
    scenario.check_not_future()
    speed = settings.speed or scenario.spec.time.speed
    report = DemoReport(assets=len(scenario.asset_ids))
    with contextlib.ExitStack() as stack:
        if settings.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forewarn-demo-")))
        else:
            workdir = settings.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        mqtt_settings = _broker(stack, settings, workdir)
        db = _database(stack, settings)
        cloud_toml = write_cloud_config(workdir / "cloud.toml", mqtt_settings=mqtt_settings, db=db)
        gateway_toml = write_gateway_config(
            workdir / "gateway.toml",
            scenario=scenario,
            gateway_id=settings.gateway_id,
            mqtt_settings=mqtt_settings,
            workdir=workdir,
        )
        secrets = secret_environment(db)
        prepare_database(load_settings(CloudSettings, toml_path=cloud_toml, environ=secrets))
        print(f"demo: configs and logs in {workdir}", file=sys.stderr)
        watcher = _Watcher(mqtt_settings, settings.gateway_id)
        stack.callback(watcher.close)
        stack.enter_context(
            _child("cloud", ["cloud", "--config", str(cloud_toml)], workdir / "cloud.log", secrets=secrets)
        )
        edge = stack.enter_context(
            _child("edge", ["edge", "--config", str(gateway_toml)], workdir / "edge.log")
        )
        if not watcher.online.wait(60):
            raise ForewarnError(f"the edge agent did not come online within 60 s: see {workdir / 'edge.log'}")
        print(
            f"demo: simulating {scenario.name} ({len(scenario.asset_ids)} assets) at {speed:g}x",
            file=sys.stderr,
        )
        with Publisher(settings=mqtt_settings, client_id=f"forewarn-demo-sim-{os.getpid()}") as publisher:
            stats = publish_stream(
                iter_messages(scenario, on_truth=report.truth.append),
                publisher,
                speed=speed,
                progress=lambda s: print(
                    f"demo: {s.messages:,} batches, {s.samples:,} samples, {watcher.alerts.qsize()} alerts",
                    file=sys.stderr,
                ),
            )
        report.raw_messages, report.raw_samples = stats.messages, stats.samples
        stop_child(edge, "edge")  # flushes its pipeline and drains its queue upstream
        conninfo = db.conninfo()
        _drain(conninfo, settings.drain_timeout_s)
        while not watcher.alerts.empty():
            report.plant_alerts.append(watcher.alerts.get_nowait())
        stored = _counts(conninfo)
        report.aggregates_stored = stored.aggregates
        report.alerts_stored = stored.alerts
        report.dead_letters = stored.dead_letters
        report.lead_times_h = _lead_times(report)
        _print_report(report, conninfo, out)
    return report


def _demo(args: Any) -> int:
    overrides: dict[str, Any] = {}
    for key in ("scenario", "speed", "broker_url", "workdir"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    settings = load_settings(DemoSettings, toml_path=args.config, overrides=overrides)
    # SIGTERM (what `timeout` and systemd send) unwinds like Ctrl-C, so every child and local service stops.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_demo(settings)
    return 0


def register(subparsers: Any) -> None:
    """Add `demo` to the command line."""
    parser = subparsers.add_parser(
        "demo", help="Run the whole data path locally: simulator, edge agent, cloud ingest, database."
    )
    parser.add_argument("--config", type=Path, default=None, help="The demo's TOML file.")
    parser.add_argument("--scenario", default=None, help="Scenario name or file (default: smoke).")
    parser.add_argument(
        "--speed", type=float, default=None, help="Time compression (default: the scenario's)."
    )
    parser.add_argument(
        "--broker-url", dest="broker_url", default=None, help="Use this broker (mqtt://host:port)."
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Keep configs, queues and logs here.")
    parser.set_defaults(handler=_demo)
