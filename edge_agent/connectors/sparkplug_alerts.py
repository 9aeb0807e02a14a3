"""Forewarn's alerts and asset health, published back to SCADA as metrics of a Sparkplug B edge node.

With `publish_back.enabled`, the Sparkplug B connector runs an edge node of its own
(`publish_back.group_id`/`publish_back.edge_node_id`) on the Sparkplug broker. Its `NBIRTH` declares, for
each asset (`publish_back.asset_ids`, or every mapped asset), these metrics with their aliases:

    Assets/{asset}/Alert Active     Boolean   an alert is raised
    Assets/{asset}/Alert Severity   String    info, warning, critical ("" when none was raised)
    Assets/{asset}/Anomaly Score    Double    the score of the last alert raised or cleared
    Assets/{asset}/Alert Threshold  Double    the threshold it was compared with
    Assets/{asset}/Alert Message    String    the alert's message
    Assets/{asset}/Health           String    ok, or the severity of the raised alert

It reads the edge agent's alerts from the plant broker (`forewarn/v1/plant/alert/+`, `shared.messages.Alert`)
and publishes each as an `NDATA` of the changed metrics, by alias. The node follows Sparkplug B 3.0: an
`NDEATH` with its `bdSeq` is its last will, sequence numbers run 0-255 from the birth, and a
`Node Control/Rebirth` command makes it publish its birth (with the current values) again. The latest alert
of an asset sets its metrics, whatever its `alert_id`.

Both MQTT clients only enqueue on paho's threads; a named thread (`sparkplug-alerts`) does the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.connectors.settings import SparkplugConnectorSettings
from shared import topics
from shared.errors import ContractError
from shared.messages import Alert, decode_uplink
from shared.mqtt import LastWill, connect, make_client
from shared.sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    MessageType,
    Metric,
    MetricValue,
    Payload,
    SparkplugTopic,
    decode_payload,
    encode_payload,
)
from shared.timebase import now_ns

__all__ = ["ASSET_METRICS", "AlertNode", "AlertNodeStats", "asset_metric_name"]

logger = logging.getLogger(__name__)

ASSET_METRICS: tuple[tuple[str, DataType], ...] = (
    ("Alert Active", DataType.BOOLEAN),
    ("Alert Severity", DataType.STRING),
    ("Anomaly Score", DataType.DOUBLE),
    ("Alert Threshold", DataType.DOUBLE),
    ("Alert Message", DataType.STRING),
    ("Health", DataType.STRING),
)
_INITIAL: dict[str, MetricValue] = {
    "Alert Active": False,
    "Alert Severity": "",
    "Anomaly Score": 0.0,
    "Alert Threshold": 0.0,
    "Alert Message": "",
    "Health": "ok",
}
_NS_PER_MS = 1_000_000
_QUEUE_SIZE = 1024
_QUEUE_WAIT_S = 0.1
_FIRST_ALIAS = 10  # aliases below stay free for the node's own metrics


def asset_metric_name(asset_id: str, metric: str) -> str:
    """The Sparkplug metric name of one of an asset's published metrics (`Assets/pump-7/Health`)."""
    return f"Assets/{asset_id}/{metric}"


@dataclass
class AlertNodeStats:
    """Counters of Forewarn's edge node."""

    births: int = 0
    alerts_received: int = 0
    alerts_published: int = 0
    alerts_rejected: int = 0
    alerts_unknown_asset: int = 0
    dropped_queue_full: int = 0


@dataclass(frozen=True, slots=True)
class _Item:
    kind: Literal["birth", "alert", "command"]
    payload: bytes = b""


class AlertNode:
    """Forewarn's own Sparkplug B edge node. `start()` and `stop()` it.

    Args:
        settings: the Sparkplug connector's settings (`publish_back`, both brokers, the mapped assets).
    """

    def __init__(self, settings: SparkplugConnectorSettings) -> None:
        back = settings.publish_back
        assets = back.asset_ids or tuple(sorted({mapping.asset_id for mapping in settings.metrics}))
        self.group_id = back.group_id
        self.edge_node_id = back.edge_node_id
        self.stats = AlertNodeStats()
        self._datatypes: dict[str, DataType] = {}
        self._aliases: dict[str, int] = {}
        self._values: dict[str, MetricValue] = {}
        for index, (asset, (metric, datatype)) in enumerate(
            (asset, spec) for asset in assets for spec in ASSET_METRICS
        ):
            name = asset_metric_name(asset, metric)
            self._datatypes[name] = datatype
            self._aliases[name] = _FIRST_ALIAS + index
            self._values[name] = _INITIAL[metric]
        self._assets = frozenset(assets)
        self._bd_seq = (now_ns() // 10**9) % 256  # differs from the previous run's, so its late will is stale
        self._seq = 0
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        death_topic = str(self._topic(MessageType.NDEATH))
        self._node_client = make_client(
            settings.sparkplug_mqtt,
            client_id=f"forewarn-sparkplug-node-{settings.connector_id}",
            will=LastWill(death_topic, self._death(), qos=1, retain=False),
        )
        self._node_client.on_connect = self._on_node_connect
        self._node_client.on_message = self._on_command
        self._node_mqtt = settings.sparkplug_mqtt
        self._plant_client = make_client(
            settings.mqtt, client_id=f"forewarn-sparkplug-alerts-{settings.connector_id}"
        )
        self._plant_client.on_connect = self._on_plant_connect
        self._plant_client.on_message = self._on_alert
        self._plant_mqtt = settings.mqtt

    @property
    def values(self) -> dict[str, MetricValue]:
        """The current value of every published metric (a copy)."""
        return dict(self._values)

    def start(self) -> None:
        """Connect both clients (asynchronously, retrying) and start the worker."""
        self._worker = threading.Thread(target=self._run, name="sparkplug-alerts", daemon=True)
        self._worker.start()
        connect(self._node_client, self._node_mqtt, clean_start=True, session_expiry_s=0)
        self._node_client.loop_start()
        connect(self._plant_client, self._plant_mqtt, clean_start=True, session_expiry_s=0)
        self._plant_client.loop_start()

    def stop(self) -> None:
        """Publish `NDEATH`, disconnect and stop the worker."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(5.0)
        if self._node_client.is_connected():
            info = self._node_client.publish(str(self._topic(MessageType.NDEATH)), self._death(), qos=1)
            info.wait_for_publish(2.0)
        for client in (self._node_client, self._plant_client):
            client.disconnect()
            client.loop_stop()

    # --- paho's threads: enqueue only -----------------------------------------------------------------------

    def _enqueue(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped_queue_full += 1

    def _on_node_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del userdata, flags, props
        if not reason.is_failure:
            client.subscribe(str(self._topic(MessageType.NCMD)), qos=1)
            self._enqueue(_Item("birth"))

    def _on_plant_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del userdata, flags, props
        if not reason.is_failure:
            client.subscribe(topics.subscription(topics.TopicKind.PLANT_ALERT), qos=1)

    def _on_command(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        del client, userdata
        self._enqueue(_Item("command", bytes(message.payload)))

    def _on_alert(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        del client, userdata
        self._enqueue(_Item("alert", bytes(message.payload)))

    # --- the worker -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=_QUEUE_WAIT_S)
            except queue.Empty:
                continue
            try:
                self._handle(item)
            except Exception:  # the worker must survive any message: logged with its traceback
                logger.exception("Forewarn's Sparkplug edge node failed on a %s", item.kind)

    def _handle(self, item: _Item) -> None:
        if item.kind == "birth":
            self._birth()
        elif item.kind == "command":
            self._command(item.payload)
        else:
            self._alert(item.payload)

    def _command(self, data: bytes) -> None:
        try:
            payload = decode_payload(data)
        except ContractError:
            logger.warning("unreadable command to Forewarn's Sparkplug edge node")
            return
        if any(metric.name == REBIRTH_METRIC and metric.value is True for metric in payload.metrics):
            self._birth()

    def _alert(self, data: bytes) -> None:
        self.stats.alerts_received += 1
        try:
            alert = decode_uplink(data)
        except ContractError as exc:
            self.stats.alerts_rejected += 1
            logger.warning("unreadable plant alert: %s", exc)
            return
        if not isinstance(alert, Alert):
            self.stats.alerts_rejected += 1
            return
        if alert.asset_id not in self._assets:
            self.stats.alerts_unknown_asset += 1
            return
        changes = _alert_values(alert)
        names = [asset_metric_name(alert.asset_id, metric) for metric in changes]
        for name, value in zip(names, changes.values(), strict=True):
            self._values[name] = value
        time_ms = alert.ts_ns // _NS_PER_MS
        metrics = tuple(self._metric(name, time_ms, birth=False) for name in names)
        self._publish(MessageType.NDATA, metrics, time_ms)
        self.stats.alerts_published += 1

    def _birth(self) -> None:
        time_ms = now_ns() // _NS_PER_MS
        self._seq = 0
        node_metrics = (
            Metric(name=BD_SEQ_METRIC, datatype=DataType.INT64, value=self._bd_seq, timestamp_ms=time_ms),
            Metric(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=False, timestamp_ms=time_ms),
        )
        metrics = node_metrics + tuple(self._metric(name, time_ms, birth=True) for name in self._values)
        self._publish(MessageType.NBIRTH, metrics, time_ms)
        self.stats.births += 1

    def _metric(self, name: str, time_ms: int, *, birth: bool) -> Metric:
        return Metric(
            name=name if birth else None,
            alias=self._aliases[name],
            datatype=self._datatypes[name],
            value=self._values[name],
            timestamp_ms=time_ms,
        )

    def _publish(self, message_type: MessageType, metrics: tuple[Metric, ...], time_ms: int) -> None:
        payload = Payload(timestamp_ms=time_ms, seq=self._seq, metrics=metrics)
        self._seq = (self._seq + 1) % 256
        self._node_client.publish(str(self._topic(message_type)), encode_payload(payload), qos=0)

    def _death(self) -> bytes:
        bd_seq = Metric(name=BD_SEQ_METRIC, datatype=DataType.INT64, value=self._bd_seq)
        return encode_payload(Payload(timestamp_ms=now_ns() // _NS_PER_MS, metrics=(bd_seq,)))

    def _topic(self, message_type: MessageType) -> SparkplugTopic:
        return SparkplugTopic(self.group_id, message_type, self.edge_node_id)


def _alert_values(alert: Alert) -> dict[str, MetricValue]:
    is_raised = alert.state == "raised"
    return {
        "Alert Active": is_raised,
        "Alert Severity": alert.severity if is_raised else "",
        "Anomaly Score": alert.score,
        "Alert Threshold": alert.threshold,
        "Alert Message": alert.message,
        "Health": alert.severity if is_raised else "ok",
    }
