"""The Sparkplug B connector (`forewarn connect sparkplug`): Sparkplug B edge nodes' metrics into raw batches.

Forewarn acts as a Sparkplug B host application on the SCADA's broker (`sparkplug_mqtt`). It subscribes to
every message of the edge nodes its `[[metrics]]` mappings name and follows each node's state:

* `NBIRTH` starts a node's session: its sequence number, its `bdSeq`, and the aliases of its metrics;
  `DBIRTH` adds a device and the aliases of its metrics. Births carry values: they are used too.
* `NDATA`/`DDATA` values are resolved by name or alias, checked (numeric, not null), timed (the metric's
  timestamp, else the payload's, else ours), calibrated and handed to `SamplePublisher.add_value`.
* Every message of a node after its `NBIRTH` carries the next sequence number (0-255, wrapping). A message
  whose number is not the expected one means messages were lost: it is counted as a gap
  (`ConnectorMetrics.gaps`, `SparkplugStats.sequence_gaps`), and the node is asked for a rebirth with an
  `NCMD` setting `Node Control/Rebirth` (at most once per `rebirth_interval_s` per node). Data from a node
  or device whose birth we have not seen is not used (`before_birth`) and also asks for a rebirth.
* `DDEATH` ends a device, `NDEATH` the node and its devices, unless its `bdSeq` is not the one of the
  node's current birth (a late last will of an older session: ignored and counted).

paho's network thread only copies each message onto a bounded queue (full: dropped and counted as
`queue_full`); the connector's own loop decodes and handles them. With `host_id` set, the connector also
publishes the Sparkplug 3.0 `STATE` of its host application (retained; offline as its last will).
`publish_back` adds Forewarn's own edge node (`edge_agent.connectors.sparkplug_alerts`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.connectors.health import ConnectorMetrics
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import SparkplugConnectorSettings, SparkplugMetricMap
from edge_agent.connectors.sparkplug_alerts import AlertNode
from shared.errors import ContractError
from shared.mqtt import LastWill, connect, make_client
from shared.sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    MessageType,
    Metric,
    Payload,
    SparkplugTopic,
    decode_payload,
    encode_payload,
    node_filter,
    parse_topic,
    state_topic,
)
from shared.timebase import now_ns

__all__ = ["SparkplugConnector", "SparkplugHost", "SparkplugStats", "run"]

logger = logging.getLogger(__name__)

_SEQ_MODULUS = 256
_NS_PER_MS = 1_000_000
_QUEUE_WAIT_S = 0.1
_IGNORED_TYPES = frozenset({MessageType.NCMD, MessageType.DCMD})

NodeKey = tuple[str, str]  # (group id, edge node id)
MetricKey = tuple[str, str, str | None, str]  # (group id, edge node id, device id or None, metric name)


@dataclass
class SparkplugStats:
    """Counters of the Sparkplug B host side (the values themselves are in `ConnectorMetrics`)."""

    messages: int = 0
    births: int = 0
    device_births: int = 0
    deaths: int = 0
    device_deaths: int = 0
    stale_deaths: int = 0
    sequence_gaps: int = 0
    rebirths_requested: int = 0
    metrics_decoded: int = 0


@dataclass
class _Node:
    """What the host knows of one edge node's current session."""

    is_online: bool = False
    bd_seq: int | None = None
    next_seq: int | None = None
    aliases: dict[int, tuple[str | None, str]] = field(default_factory=dict)  # alias -> (device, name)
    online_devices: set[str] = field(default_factory=set)
    last_rebirth_mono: float = float("-inf")


class SparkplugHost:
    """Follows the births, data and deaths of edge nodes and turns mapped metrics into values.

    Args:
        mappings: which metrics go where.
        metrics: the connector's counters.
        add_value: hands one value on: `(asset_id, sensor, time_ns, value, nominal_rate_hz)`.
        request_rebirth: asks an edge node `(group_id, edge_node_id)` for a rebirth.
        rebirth_interval_s: least time between two rebirth requests to one node.
    """

    def __init__(
        self,
        *,
        mappings: tuple[SparkplugMetricMap, ...],
        metrics: ConnectorMetrics,
        add_value: Callable[[str, str, int, float, float], object],
        request_rebirth: Callable[[str, str], None],
        rebirth_interval_s: float,
    ) -> None:
        self._targets: dict[MetricKey, SparkplugMetricMap] = {
            (m.group_id, m.edge_node_id, m.device_id or None, m.metric): m for m in mappings
        }
        self._metrics = metrics
        self._add_value = add_value
        self._request_rebirth = request_rebirth
        self._rebirth_interval_s = rebirth_interval_s
        self._nodes: dict[NodeKey, _Node] = {}
        self.stats = SparkplugStats()

    def node_keys(self) -> set[NodeKey]:
        """The edge nodes the mappings name (the subscriptions)."""
        return {(group, node) for group, node, _, _ in self._targets}

    def is_online(self, group_id: str, edge_node_id: str, device_id: str | None = None) -> bool:
        """Whether a node (or one of its devices) is between its birth and its death."""
        node = self._nodes.get((group_id, edge_node_id))
        if node is None or not node.is_online:
            return False
        return device_id is None or device_id in node.online_devices

    def handle(self, topic: str, data: bytes, received_ns: int) -> None:
        """Handle one message; bad ones are counted (`bad_topic`, `bad_payload`) and skipped."""
        self.stats.messages += 1
        try:
            parsed = parse_topic(topic)
        except ContractError:
            self._metrics.reject("bad_topic")
            return
        if parsed.message_type in _IGNORED_TYPES:
            return
        try:
            payload = decode_payload(data)
        except ContractError as exc:
            self._metrics.reject("bad_payload")
            self._metrics.error(f"{topic}: {exc}")
            return
        self.stats.metrics_decoded += len(payload.metrics)
        node = self._nodes.setdefault((parsed.group_id, parsed.edge_node_id), _Node())
        if parsed.message_type is MessageType.NDEATH:
            self._node_death(parsed, node, payload)
        elif parsed.message_type is MessageType.NBIRTH:
            self._node_birth(parsed, node, payload, received_ns)
        else:
            self._node_message(parsed, node, payload, received_ns)

    # --- the node's session ---------------------------------------------------------------------------------

    def _node_birth(self, topic: SparkplugTopic, node: _Node, payload: Payload, received_ns: int) -> None:
        self.stats.births += 1
        node.is_online = True
        node.online_devices.clear()
        node.aliases = {}
        node.bd_seq = _bd_seq(payload)
        node.next_seq = None if payload.seq is None else (payload.seq + 1) % _SEQ_MODULUS
        self._learn_aliases(node, None, payload)
        self._take_values(topic, node, None, payload, received_ns)

    def _node_death(self, topic: SparkplugTopic, node: _Node, payload: Payload) -> None:
        bd_seq = _bd_seq(payload)
        if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
            self.stats.stale_deaths += 1  # the will of an older session, published after the new birth
            return
        self.stats.deaths += 1
        node.is_online = False
        node.online_devices.clear()
        node.next_seq = None
        logger.info("Sparkplug edge node %s/%s is offline", topic.group_id, topic.edge_node_id)

    def _node_message(self, topic: SparkplugTopic, node: _Node, payload: Payload, received_ns: int) -> None:
        if not node.is_online:
            self._metrics.reject("before_birth", len(payload.metrics))
            self._rebirth(topic, node)
            return
        self._check_seq(topic, node, payload)
        device = topic.device_id
        message_type = topic.message_type
        if message_type is MessageType.DBIRTH and device is not None:
            self.stats.device_births += 1
            node.online_devices.add(device)
            self._learn_aliases(node, device, payload)
        elif message_type is MessageType.DDEATH and device is not None:
            self.stats.device_deaths += 1
            node.online_devices.discard(device)
            return
        elif device is not None and device not in node.online_devices:
            self._metrics.reject("before_birth", len(payload.metrics))
            self._rebirth(topic, node)
            return
        self._take_values(topic, node, device, payload, received_ns)

    def _check_seq(self, topic: SparkplugTopic, node: _Node, payload: Payload) -> None:
        seq = payload.seq
        if seq is None:
            return
        if node.next_seq is not None and seq != node.next_seq:
            self.stats.sequence_gaps += 1
            self._metrics.gaps += 1
            logger.warning(
                "Sparkplug edge node %s/%s: sequence number %d, expected %d: messages lost",
                topic.group_id,
                topic.edge_node_id,
                seq,
                node.next_seq,
            )
            self._rebirth(topic, node)
        node.next_seq = (seq + 1) % _SEQ_MODULUS

    def _rebirth(self, topic: SparkplugTopic, node: _Node) -> None:
        now = time.monotonic()
        if now - node.last_rebirth_mono < self._rebirth_interval_s:
            return
        node.last_rebirth_mono = now
        self.stats.rebirths_requested += 1
        self._request_rebirth(topic.group_id, topic.edge_node_id)

    @staticmethod
    def _learn_aliases(node: _Node, device: str | None, payload: Payload) -> None:
        for metric in payload.metrics:
            if metric.alias is not None and metric.name is not None:
                node.aliases[metric.alias] = (device, metric.name)

    # --- values ---------------------------------------------------------------------------------------------

    def _take_values(
        self, topic: SparkplugTopic, node: _Node, device: str | None, payload: Payload, received_ns: int
    ) -> None:
        group, edge_node = topic.group_id, topic.edge_node_id
        default_ns = payload.timestamp_ms * _NS_PER_MS if payload.timestamp_ms is not None else received_ns
        for metric in payload.metrics:
            name = metric.name
            if name is None:
                resolved = node.aliases.get(metric.alias) if metric.alias is not None else None
                if resolved is None or resolved[0] != device:
                    self._metrics.reject("unknown_alias")
                    self._rebirth(topic, node)
                    continue
                name = resolved[1]
            target = self._targets.get((group, edge_node, device, name))
            if target is not None:
                self._take(target, metric, default_ns)

    def _take(self, target: SparkplugMetricMap, metric: Metric, default_ns: int) -> None:
        self._metrics.values_read += 1
        value = metric.value
        if value is None:
            self._metrics.reject("null")
            return
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, int | float):
            self._metrics.reject("not_numeric")
            return
        time_ns = metric.timestamp_ms * _NS_PER_MS if metric.timestamp_ms is not None else default_ns
        self._add_value(
            target.asset_id,
            target.sensor,
            time_ns,
            value * target.scale + target.offset,
            target.sample_rate_hz,
        )


def _bd_seq(payload: Payload) -> int | None:
    for metric in payload.metrics:
        if metric.name == BD_SEQ_METRIC and isinstance(metric.value, int):
            return metric.value
    return None


def _rebirth_payload(time_ms: int) -> bytes:
    """The `NCMD` payload asking an edge node to publish its births again."""
    metric = Metric(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=True, timestamp_ms=time_ms)
    return encode_payload(Payload(timestamp_ms=time_ms, metrics=(metric,)))


class _State(msgspec.Struct, frozen=True):
    """The Sparkplug 3.0 `STATE` message of a host application."""

    online: bool
    timestamp: int


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    received_ns: int


class SparkplugConnector:
    """Subscribes to the mapped edge nodes on the Sparkplug broker and hands their values to the publisher.

    Args:
        settings: the connector's settings.
        runtime: its publisher and counters.
    """

    def __init__(self, *, settings: SparkplugConnectorSettings, runtime: ConnectorRuntime) -> None:
        self._settings = settings
        self._metrics = runtime.metrics
        self.host = SparkplugHost(
            mappings=settings.metrics,
            metrics=runtime.metrics,
            add_value=runtime.publisher.add_value,
            request_rebirth=self._request_rebirth,
            rebirth_interval_s=settings.rebirth_interval_s,
        )
        self._queue: queue.Queue[_Received] = queue.Queue(maxsize=settings.queue_size)
        self._subscribed = threading.Event()
        self._was_connected = False
        self._closing = False
        self._state_ms = now_ns() // _NS_PER_MS
        self._client = self._make_client()
        self.alert_node = AlertNode(settings) if settings.publish_back.enabled else None

    @property
    def is_subscribed(self) -> bool:
        """Whether the broker has confirmed the subscriptions (since the last connect)."""
        return self._subscribed.is_set()

    def _make_client(self) -> mqtt.Client:
        settings = self._settings
        will = None
        if settings.host_id:
            will = LastWill(state_topic(settings.host_id), self._state(online=False), qos=1, retain=True)
        client = make_client(
            settings.sparkplug_mqtt, client_id=f"forewarn-sparkplug-host-{settings.connector_id}", will=will
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _state(self, *, online: bool) -> bytes:
        return msgspec.json.encode(_State(online=online, timestamp=self._state_ms))

    # --- paho's thread: copy and enqueue, nothing more ----------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del userdata, flags, props
        if reason.is_failure:
            self._metrics.error(f"Sparkplug broker refused us: {reason}")
            return
        self._metrics.source_connected = True
        if self._was_connected:
            self._metrics.reconnects += 1
        self._was_connected = True
        filters = sorted(node_filter(group, node) for group, node in self.host.node_keys())
        if filters:
            client.subscribe([(topic_filter, 1) for topic_filter in filters])
        else:
            self._subscribed.set()
        if self._settings.host_id:
            client.publish(state_topic(self._settings.host_id), self._state(online=True), qos=1, retain=True)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: object, props: object
    ) -> None:
        del client, userdata, mid, reasons, props
        self._subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del client, userdata, flags, props
        self._subscribed.clear()
        if self._metrics.source_connected and not self._closing:
            self._metrics.error(f"Sparkplug broker connection lost: {reason}")
        self._metrics.source_connected = False

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        del client, userdata
        try:
            self._queue.put_nowait(_Received(message.topic, bytes(message.payload), now_ns()))
        except queue.Full:
            self._metrics.drop("queue_full")

    # --- the connector's loop -------------------------------------------------------------------------------

    def _request_rebirth(self, group_id: str, edge_node_id: str) -> None:
        topic = SparkplugTopic(group_id, MessageType.NCMD, edge_node_id)
        logger.info("asking Sparkplug edge node %s/%s for a rebirth", group_id, edge_node_id)
        self._client.publish(str(topic), _rebirth_payload(now_ns() // _NS_PER_MS), qos=0)

    def run(self, stop: threading.Event) -> None:
        """Handle messages until `stop` is set."""
        connect(self._client, self._settings.sparkplug_mqtt, clean_start=True, session_expiry_s=0)
        self._client.loop_start()
        if self.alert_node is not None:
            self.alert_node.start()
        try:
            while not stop.is_set():
                try:
                    received = self._queue.get(timeout=_QUEUE_WAIT_S)
                except queue.Empty:
                    continue
                self._handle(received)
        finally:
            self._closing = True
            if self.alert_node is not None:
                self.alert_node.stop()
            if self._settings.host_id and self._client.is_connected():
                info = self._client.publish(
                    state_topic(self._settings.host_id), self._state(online=False), qos=1, retain=True
                )
                info.wait_for_publish(2.0)
            self._client.disconnect()
            self._client.loop_stop()

    def _handle(self, received: _Received) -> None:
        try:
            self.host.handle(received.topic, received.payload, received.received_ns)
        except Exception:  # a message must never stop the connector: logged with its traceback, counted
            logger.exception("Sparkplug message on %s could not be handled", received.topic)
            self._metrics.reject("handling_failed")


def run(settings: SparkplugConnectorSettings, stop: threading.Event) -> None:
    """Run the Sparkplug B connector until `stop` is set."""
    with ConnectorRuntime(settings) as runtime:
        SparkplugConnector(settings=settings, runtime=runtime).run(stop)
