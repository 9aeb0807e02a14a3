"""A simulated Sparkplug B edge node: births, data and deaths of a node and its devices over real MQTT.

The node follows Sparkplug B 3.0: its MQTT last will is an `NDEATH` carrying the `bdSeq` of the session;
`birth()` publishes `NBIRTH` (sequence number 0, `bdSeq`, the `Node Control/Rebirth` metric) and then a
`DBIRTH` per device declaring every metric with its name, alias and data type and current value; each
later message of the node takes the next sequence number (0-255, wrapping). `publish_data()` sends one
`DDATA` per device with every metric, by alias only when `use_aliases`. A `Node Control/Rebirth` command
(`NCMD`) makes it publish its births again. `skip_sequence()` drops sequence numbers on purpose, as lost
messages would.

A metric's value at UTC time t (epoch ms) is `offset + amplitude * sin(2 pi frequency_hz t)`, rounded for
integer data types, so a reader can check every value against its timestamp.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from shared.config import MqttSettings
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

__all__ = ["SimulatedEdgeNode", "SimulatedMetric", "metric_value"]

logger = logging.getLogger(__name__)

_NS_PER_MS = 1_000_000
_INTEGER_TYPES = frozenset(
    {
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.UINT8,
        DataType.UINT16,
        DataType.UINT32,
        DataType.UINT64,
    }
)
_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class SimulatedMetric:
    """One metric of a simulated device."""

    name: str
    datatype: DataType = DataType.DOUBLE
    amplitude: float = 1.0
    frequency_hz: float = 0.5
    offset: float = 0.0


def metric_value(metric: SimulatedMetric, time_ms: int) -> MetricValue:
    """The value `metric` has at UTC epoch ms `time_ms`, in its data type."""
    value = metric.offset + metric.amplitude * math.sin(
        2.0 * math.pi * metric.frequency_hz * time_ms / 1000.0
    )
    if metric.datatype in _INTEGER_TYPES:
        return round(value)
    if metric.datatype is DataType.BOOLEAN:
        return value > metric.offset
    return value


class SimulatedEdgeNode:
    """A Sparkplug B edge node with devices, publishing through a real broker.

    Args:
        mqtt_settings: the broker.
        group_id: the Sparkplug group.
        edge_node_id: the node's id.
        devices: device id -> its metrics.
        use_aliases: data messages name metrics by alias only (as most nodes do).
        bd_seq: the birth/death sequence number of this session.
    """

    def __init__(
        self,
        *,
        mqtt_settings: MqttSettings,
        group_id: str,
        edge_node_id: str,
        devices: Mapping[str, Sequence[SimulatedMetric]],
        use_aliases: bool = True,
        bd_seq: int = 0,
    ) -> None:
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self.devices = {device: tuple(metrics) for device, metrics in devices.items()}
        self.use_aliases = use_aliases
        self.bd_seq = bd_seq
        self.rebirths_received = 0
        self.last_birth_ms: int | None = None
        self._mqtt_settings = mqtt_settings
        self._aliases: dict[tuple[str, str], int] = {}
        alias = 1  # alias 0 stays free for the node's own metrics
        for device, metrics in self.devices.items():
            for metric in metrics:
                alias += 1
                self._aliases[device, metric.name] = alias
        self._seq = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None

    # --- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (with the `NDEATH` as last will), listen for commands and publish the births.

        Raises:
            TimeoutError: the broker did not accept the connection in time.
        """
        death = self._topic(MessageType.NDEATH)
        will = LastWill(str(death), self._death_payload(), qos=1, retain=False)
        client = make_client(
            self._mqtt_settings, client_id=f"sim-sparkplug-{self.group_id}-{self.edge_node_id}", will=will
        )
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        connect(client, self._mqtt_settings, clean_start=True, session_expiry_s=0)
        client.loop_start()
        self._client = client
        if not self._connected.wait(_CONNECT_TIMEOUT_S):
            raise TimeoutError(
                f"broker {self._mqtt_settings.host}:{self._mqtt_settings.port} did not accept us"
            )
        last = self.birth()
        if last is not None:
            last.wait_for_publish(_CONNECT_TIMEOUT_S)  # the births are written when start() returns

    def stop(self) -> None:
        """Publish `NDEATH` and disconnect."""
        client = self._client
        if client is None:
            return
        client.publish(str(self._topic(MessageType.NDEATH)), self._death_payload(), qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        self._client = None
        self._connected.clear()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del userdata, flags, props
        if reason.is_failure:
            return
        client.subscribe(str(self._topic(MessageType.NCMD)), qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        del client, userdata
        payload = decode_payload(bytes(message.payload))
        if any(metric.name == REBIRTH_METRIC and metric.value is True for metric in payload.metrics):
            self.rebirths_received += 1
            self.birth()

    # --- messages -------------------------------------------------------------------------------------------

    def birth(self, time_ms: int | None = None) -> mqtt.MQTTMessageInfo | None:
        """Publish `NBIRTH` (sequence restarts at 0) and a `DBIRTH` per device; returns the last's info."""
        time_ms = _now_ms() if time_ms is None else time_ms
        with self._lock:
            self.last_birth_ms = time_ms
            self._seq = 0
            node_metrics = (
                Metric(name=BD_SEQ_METRIC, datatype=DataType.INT64, value=self.bd_seq, timestamp_ms=time_ms),
                Metric(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=False, timestamp_ms=time_ms),
            )
            info = self._publish_locked(MessageType.NBIRTH, None, node_metrics, time_ms)
            for device in self.devices:
                info = self._publish_locked(
                    MessageType.DBIRTH, device, self._metrics(device, time_ms, birth=True), time_ms
                )
        return info

    def publish_data(self, time_ms: int | None = None) -> dict[str, dict[str, MetricValue]]:
        """Publish one `DDATA` per device with every metric's value at `time_ms` (default now).

        Returns:
            device -> metric name -> the value sent.
        """
        time_ms = _now_ms() if time_ms is None else time_ms
        sent: dict[str, dict[str, MetricValue]] = {}
        with self._lock:
            for device in self.devices:
                metrics = self._metrics(device, time_ms, birth=False)
                self._publish_locked(MessageType.DDATA, device, metrics, time_ms)
                sent[device] = {metric.name: metric_value(metric, time_ms) for metric in self.devices[device]}
        return sent

    def encode_data(self, device: str, time_ms: int) -> tuple[str, bytes]:
        """Encode the next `DDATA` of `device` (taking its sequence number) without sending it: the bench
        publishes pre-encoded messages with `publish_raw` to measure the reader, not the encoder."""
        with self._lock:
            payload = Payload(
                timestamp_ms=time_ms,
                seq=self._next_seq(),
                metrics=self._metrics(device, time_ms, birth=False),
            )
        return str(self._topic(MessageType.DDATA, device)), encode_payload(payload)

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish a pre-encoded message (QoS 0)."""
        if self._client is not None:
            self._client.publish(topic, payload, qos=0)

    def device_death(self, device: str, time_ms: int | None = None) -> None:
        """Publish `DDEATH` of one device."""
        time_ms = _now_ms() if time_ms is None else time_ms
        with self._lock:
            self._publish_locked(MessageType.DDEATH, device, (), time_ms)

    def skip_sequence(self, count: int = 1) -> None:
        """Use up `count` sequence numbers without sending anything (messages lost on the way)."""
        with self._lock:
            for _ in range(count):
                self._next_seq()

    # --- helpers --------------------------------------------------------------------------------------------

    def _metrics(self, device: str, time_ms: int, *, birth: bool) -> tuple[Metric, ...]:
        named = birth or not self.use_aliases
        return tuple(
            Metric(
                name=metric.name if named else None,
                alias=self._aliases[device, metric.name] if (birth or self.use_aliases) else None,
                datatype=metric.datatype,
                value=metric_value(metric, time_ms),
                timestamp_ms=time_ms,
            )
            for metric in self.devices[device]
        )

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def _publish_locked(
        self, message_type: MessageType, device: str | None, metrics: tuple[Metric, ...], time_ms: int
    ) -> mqtt.MQTTMessageInfo | None:
        payload = Payload(timestamp_ms=time_ms, seq=self._next_seq(), metrics=metrics)
        if self._client is None:
            return None
        return self._client.publish(str(self._topic(message_type, device)), encode_payload(payload), qos=0)

    def _death_payload(self) -> bytes:
        bd_seq = Metric(name=BD_SEQ_METRIC, datatype=DataType.INT64, value=self.bd_seq)
        return encode_payload(Payload(timestamp_ms=_now_ms(), metrics=(bd_seq,)))

    def _topic(self, message_type: MessageType, device: str | None = None) -> SparkplugTopic:
        return SparkplugTopic(self.group_id, message_type, self.edge_node_id, device)


def _now_ms() -> int:
    return now_ns() // _NS_PER_MS
