"""What every `forewarn chaos` scenario shares: the running rig, the durations, and the `Fault` hooks.

A scenario is a `Fault`: it may change the simulated fleet (`scenario`) and a gateway's settings before
the rig starts (`prepare`), then causes its fault while the load runs (`cause`), and may add figures of
its own (`figures`). `PlantAlerts` records the alerts the gateways raise on the plant broker (their
local alert path), which keeps working whatever happens upstream. An `AlertingFault` is a fault on
`ALERTING_GATEWAY` while its pump raises alerts again and again, timed to span a raise, with those alerts
counted: what the `partition` and `disk-full` scenarios share.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from cloud_service.queries import latest_gateway_metrics
from edge_agent.agent import QUEUE_FILE
from forewarn.localservices import MosquittoServer, PostgresServer
from forewarn.processes import ForewarnProcess
from shared import topics
from shared.config import MqttSettings
from shared.messages import Alert, decode_uplink
from shared.mqtt import connect, make_client
from simulators import Scenario, parse_scenario

__all__ = [
    "ALERTING_ASSET",
    "ALERTING_GATEWAY",
    "LOAD_SPEED",
    "AlertingFault",
    "Durations",
    "Fault",
    "GatewayChanges",
    "PlantAlerts",
    "Rig",
    "ScenarioSkipped",
    "alerting_gateway_metrics",
]

ALERTING_GATEWAY = "gw-chaos-1"  # serves pump-001 (assets are dealt to the gateways in turn)
GatewayChanges = Mapping[str, Mapping[str, object]]  # gateway id -> settings section -> key -> value


class ScenarioSkipped(Exception):  # noqa: N818  # a reason to skip, not an error
    """The fault cannot be caused on this machine (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Durations:
    """How long faults last and how often they repeat (the issue's full form, or `--quick`)."""

    outage_s: float
    repeats: int
    kill_every_s: float
    kill_for_s: float
    settle_s: float
    partition_s: float
    disk_full_s: float

    @classmethod
    def for_run(cls, *, quick: bool) -> Durations:
        if quick:
            return cls(
                outage_s=5.0,
                repeats=2,
                kill_every_s=4.0,
                kill_for_s=12.0,
                settle_s=4.0,
                partition_s=15.0,
                disk_full_s=15.0,
            )
        return cls(
            outage_s=60.0,
            repeats=5,
            kill_every_s=10.0,
            kill_for_s=300.0,
            settle_s=15.0,
            partition_s=600.0,
            disk_full_s=120.0,
        )


@dataclasses.dataclass
class Rig:
    """The running system a scenario attacks."""

    plant: MosquittoServer
    upstream: MosquittoServer
    postgres: PostgresServer
    conninfo: str
    ingest: ForewarnProcess
    edges: dict[str, ForewarnProcess]
    state_dirs: dict[str, Path]

    def queue_file(self, gateway_id: str) -> Path:
        """The gateway's disk queue file, read beside its running agent."""
        return self.state_dirs[gateway_id] / "queue" / QUEUE_FILE


class Fault(abc.ABC):
    """One scenario's hooks: `cause` is each scenario's own; the other defaults change nothing."""

    def scenario(self, base: Scenario) -> Scenario:
        """The simulated fleet to run (default: `base`, the `smoke` fleet)."""
        return base

    def prepare(
        self, workdir: Path, upstream: MosquittoServer, stack: contextlib.ExitStack
    ) -> GatewayChanges:
        """Set up before the gateways start (what `stack` closes when the run ends); their setting changes.

        Raises:
            ScenarioSkipped: the fault cannot be caused here.
        """
        del workdir, upstream, stack
        return {}

    @abc.abstractmethod
    def cause(self, rig: Rig, durations: Durations) -> None:
        """Cause the fault, for real, and return when it is over."""

    def figures(self, rig: Rig) -> dict[str, Any]:
        """Figures of this scenario's own, added to the common ones."""
        del rig
        return {}


LOAD_SPEED = 10.0  # simulated seconds per wall second: one burst per asset per second
_WEAR_CYCLE_H, _WEAR_H, _FIRST_WEAR_H = 0.06, 0.025, 0.04
ALERT_CYCLE_S = _WEAR_CYCLE_H * 3600.0 / LOAD_SPEED  # wall seconds between two raises of the pump's alert
ALERTING_ASSET = "pump-001"


def _alerting_scenario(base: Scenario) -> Scenario:
    """`base` with pump-001 wearing out again and again, one cycle every `ALERT_CYCLE_S` of wall time
    (wear to failure, repair, then healthy long enough for its alert to clear), so a fault can be timed
    to span a raise (`PlantAlerts.first_raised`)."""
    data = base.spec.model_dump(mode="json")
    n_cycles = int((base.spec.time.duration_h - _FIRST_WEAR_H) / _WEAR_CYCLE_H)
    data["failures"] = [
        {
            "asset": ALERTING_ASSET,
            "mode": "outer_race",
            "onset_h": round(_FIRST_WEAR_H + i * _WEAR_CYCLE_H, 6),
            "time_to_failure_h": _WEAR_H,
            "progression": "linear",
        }
        for i in range(n_cycles)
    ]
    data["maintenance"] = {**data["maintenance"], "repair_h": 0.003}
    data["operation"] = {**data["operation"], "stop_probability": 0.0}
    return parse_scenario(data, source=f"{base.source}+alerting")


def _start_spanning_a_raise(alerts: PlantAlerts, fault_s: float) -> None:
    """Return when a fault of `fault_s` started now would span the pump's next alert: after its first
    raise, half the fault before the next one (a longer fault spans one anyway)."""
    first = alerts.first_raised(timeout_s=90.0)
    if first is None or fault_s >= 2 * ALERT_CYCLE_S:
        return
    time.sleep(max(0.0, first + ALERT_CYCLE_S - fault_s / 2 - time.monotonic()))


_ALERTING_SETTINGS: Mapping[str, object] = {
    "pipeline": {"baseline": {"warmup_windows": 10}, "alerts": {"clear_after": 3}},
}


class PlantAlerts:
    """Subscribes to the plant broker's local alerts and counts the raised ones by time (thread-safe).

    Args:
        plant: the plant broker.
    """

    def __init__(self, plant: MosquittoServer) -> None:
        self._lock = threading.Lock()
        self._raised: list[tuple[float, str]] = []  # (time.monotonic(), asset id)
        self._client = make_client(
            MqttSettings(host=plant.host, port=plant.port), client_id=f"forewarn-chaos-alerts-{os.getpid()}"
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        connect(
            self._client, MqttSettings(host=plant.host, port=plant.port), clean_start=True, session_expiry_s=0
        )
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: Any, reason: Any, props: Any) -> None:
        del userdata, flags, reason, props
        client.subscribe(topics.plant_alert("+"), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        del client, userdata
        try:
            alert = decode_uplink(bytes(message.payload))
        except Exception:  # noqa: BLE001  # not an alert: not ours to judge here
            return
        if isinstance(alert, Alert) and alert.state == "raised":
            with self._lock:
                self._raised.append((time.monotonic(), alert.asset_id))

    def first_raised(self, timeout_s: float) -> float | None:
        """When (`time.monotonic()`) the pump first raised an alert, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                pump = [t for t, asset in self._raised if asset == ALERTING_ASSET]
            if pump:
                return pump[0]
            time.sleep(0.2)
        return None

    def raised_between(self, start: float, end: float) -> int:
        """Alerts raised on the plant broker between two `time.monotonic()` readings."""
        with self._lock:
            return sum(start <= t <= end for t, _ in self._raised)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def alerting_gateway_metrics(conninfo: str) -> dict[str, float]:
    """The metrics of `ALERTING_GATEWAY`'s newest stored heartbeat; {} while the database is unreachable."""
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            return latest_gateway_metrics(conn, ALERTING_GATEWAY)
    except psycopg.OperationalError:
        return {}


class AlertingFault(Fault):
    """A fault on `ALERTING_GATEWAY` while its pump wears out again and again, started so that it spans
    one of the pump's alerts; it counts the alerts raised on the plant broker meanwhile.

    A subclass gives the fault's length (`fault_length_s`), the gateway's own setup (`prepare_gateway`)
    and the fault itself (`hold`); its figures read `fault_s` and `alerts_raised_during_fault`.
    """

    def __init__(self) -> None:
        self.fault_s = 0.0  # how long `hold` took, measured
        self.alerts_raised_during_fault = 0

    def scenario(self, base: Scenario) -> Scenario:
        return _alerting_scenario(base)

    def prepare(
        self, workdir: Path, upstream: MosquittoServer, stack: contextlib.ExitStack
    ) -> GatewayChanges:
        return {ALERTING_GATEWAY: {**_ALERTING_SETTINGS, **self.prepare_gateway(workdir, upstream, stack)}}

    def prepare_gateway(
        self, workdir: Path, upstream: MosquittoServer, stack: contextlib.ExitStack
    ) -> Mapping[str, object]:
        """As `Fault.prepare` (and may raise `ScenarioSkipped` as it does), but returns the alerting
        gateway's own setting changes alone, added to those that make its pump's alerts raise and clear."""
        del workdir, upstream, stack
        return {}

    @abc.abstractmethod
    def fault_length_s(self, durations: Durations) -> float:
        """How long `hold` keeps the fault."""

    @abc.abstractmethod
    def hold(self, rig: Rig, length_s: float) -> None:
        """Cause the fault, for real, keep it for `length_s`, end it, and return."""

    def cause(self, rig: Rig, durations: Durations) -> None:
        length_s = self.fault_length_s(durations)
        alerts = PlantAlerts(rig.plant)
        try:
            _start_spanning_a_raise(alerts, length_s)
            start = time.monotonic()
            self.hold(rig, length_s)
            end = time.monotonic()
            self.fault_s = round(end - start, 1)
            self.alerts_raised_during_fault = alerts.raised_between(start, end)
        finally:
            alerts.close()
