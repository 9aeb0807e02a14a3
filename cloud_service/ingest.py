"""Intake: from paho's network thread to a bounded queue, and from raw bytes to validated messages.

A gateway sends either one message per MQTT message (on its kind's topic) or an `UplinkBatch` of many
(`topics.batch`): both are decoded here, once, into the same typed messages; a batch is validated whole
(`decode_uplink_batch`, one msgspec call) and dead-lettered whole if any member breaks the contract.

paho's callbacks only copy and enqueue. The worker's writer thread decodes, writes and acknowledges.
QoS 1 messages are acknowledged by the writer (paho `manual_ack`) only after their batch is committed; the
broker never has more unacknowledged messages in flight to us than MQTT 5 Receive Maximum, which the
settings keep at or below the queue size, so the queue cannot overflow for QoS 1.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from cloud_service.deadletter import DeadLetter, from_contract_error
from shared import topics
from shared.errors import ContractError
from shared.messages import (
    Aggregate,
    AggregateBlock,
    Alert,
    AlertUpdate,
    DeploymentAck,
    MaintenanceEvent,
    Snapshot,
    Status,
    Uplink,
    decode_event,
    decode_uplink,
    decode_uplink_batch,
)
from shared.topics import TopicKind

__all__ = [
    "SUBSCRIBED_KINDS",
    "Accepted",
    "IngestMetrics",
    "Intake",
    "Received",
    "decode_received",
    "is_batch_topic",
    "subscriptions",
]

logger = logging.getLogger(__name__)

Accepted = Uplink | MaintenanceEvent
SUBSCRIBED_KINDS = (
    TopicKind.AGGREGATE,
    TopicKind.ALERT,
    TopicKind.SNAPSHOT,
    TopicKind.STATUS,
    TopicKind.DEPLOY_ACK,
    TopicKind.EVENT,
    TopicKind.BATCH,
)
_EXPECTED_TYPE: dict[TopicKind, tuple[type[Any], ...]] = {
    TopicKind.AGGREGATE: (Aggregate, AggregateBlock),
    TopicKind.ALERT: (Alert, AlertUpdate),
    TopicKind.SNAPSHOT: (Snapshot,),
    TopicKind.STATUS: (Status,),
    TopicKind.DEPLOY_ACK: (DeploymentAck,),
    TopicKind.EVENT: (MaintenanceEvent,),
}


# Topics repeat (a handful per gateway): parse each once. Invalid topics raise and are not cached.
_parse_topic = functools.lru_cache(maxsize=16_384)(topics.parse)


def subscriptions(group: str | None) -> list[str]:
    """The filters an ingest worker subscribes to: shared ones of `group`, or plain ones for None."""
    if group is None:
        return [topics.subscription(kind) for kind in SUBSCRIBED_KINDS]
    return [topics.shared_subscription(group, topics.subscription(kind)) for kind in SUBSCRIBED_KINDS]


@dataclass(frozen=True, slots=True)
class Received:
    """One MQTT message as paho handed it over, with the connection it arrived on."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


@dataclass(slots=True)
class IngestMetrics:
    """Counters of one ingest worker (plain integers: each is written by one thread)."""

    received: int = 0  # MQTT messages
    decoded: int = 0  # MQTT messages that passed their contract (a batch counts once)
    batch_messages: int = 0  # of those, uplink batches
    rows_decoded: int = 0  # rows carried: one per single message, every row of a batch (a block: its rows)
    dead_lettered: Counter[str] = field(default_factory=Counter)  # MQTT messages, by field
    rows_inserted: int = 0
    duplicates: int = 0
    conflict_fallbacks: int = 0
    batches: int = 0
    acked: int = 0
    acks_skipped_reconnected: int = 0
    dropped_queue_full: int = 0
    queue_full_waits: int = 0
    db_errors: int = 0
    db_available: bool = True
    connected: bool = False
    queue_depth: int = 0

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly copy."""
        return {
            "received": self.received,
            "decoded": self.decoded,
            "batch_messages": self.batch_messages,
            "rows_decoded": self.rows_decoded,
            "dead_lettered": dict(self.dead_lettered),
            "rows_inserted": self.rows_inserted,
            "duplicates": self.duplicates,
            "conflict_fallbacks": self.conflict_fallbacks,
            "batches": self.batches,
            "acked": self.acked,
            "acks_skipped_reconnected": self.acks_skipped_reconnected,
            "dropped_queue_full": self.dropped_queue_full,
            "queue_full_waits": self.queue_full_waits,
            "db_errors": self.db_errors,
            "db_available": self.db_available,
            "connected": self.connected,
            "queue_depth": self.queue_depth,
        }


def _check_topic(kind: TopicKind, parsed: topics.ParsedTopic, message: Accepted) -> None:
    if not isinstance(message, _EXPECTED_TYPE[kind]):
        raise ContractError("kind", type(message).__name__, f"a {kind.value} message on a {kind.value} topic")
    if isinstance(message, MaintenanceEvent):
        if message.asset_id != parsed.asset_id:
            raise ContractError("asset_id", message.asset_id, f"the topic's asset {parsed.asset_id!r}")
    elif message.gateway_id != parsed.gateway_id:
        raise ContractError("gateway_id", message.gateway_id, f"the topic's gateway {parsed.gateway_id!r}")


def is_batch_topic(topic: str) -> bool:
    """Whether `topic` is a gateway's uplink-batch topic (False for any topic outside the tree)."""
    try:
        return _parse_topic(topic).kind is TopicKind.BATCH
    except ContractError:
        return False


def decode_received(topic: str, payload: bytes) -> Sequence[Accepted] | DeadLetter:
    """Validate one MQTT message against its topic's contract.

    Returns:
        The typed messages it carries (one, or every member of an uplink batch in order), or its dead
        letter (a batch with any bad member is dead-lettered whole, its field naming the member).
    """
    try:
        parsed = _parse_topic(topic)
        if parsed.kind is TopicKind.BATCH:
            batch = decode_uplink_batch(payload)
            if batch.gateway_id != parsed.gateway_id:
                raise ContractError(
                    "gateway_id", batch.gateway_id, f"the topic's gateway {parsed.gateway_id!r}"
                )
            return batch.messages
        if parsed.kind not in _EXPECTED_TYPE:
            raise ContractError("topic", topic, "a topic the cloud ingests")
        message: Accepted
        message = decode_event(payload) if parsed.kind is TopicKind.EVENT else decode_uplink(payload)
        _check_topic(parsed.kind, parsed, message)
    except ContractError as exc:
        return from_contract_error(topic, payload, exc)
    return (message,)


class Intake:
    """Hands messages from paho's network thread to the writer through a bounded queue."""

    def __init__(self, *, maxsize: int, group: str | None, metrics: IngestMetrics) -> None:
        self.queue: queue.Queue[Received] = queue.Queue(maxsize=maxsize)
        self.generation = 0
        self._group = group
        self._metrics = metrics
        self.connected = threading.Event()
        self.closing = False
        self.last_connect_monotonic = 0.0

    def attach(self, client: mqtt.Client) -> None:
        """Install this intake's callbacks on `client`."""
        client.on_message = self.on_message
        client.on_connect = self.on_connect
        client.on_disconnect = self.on_disconnect
        client.on_subscribe = self.on_subscribe

    def on_connect(
        self, client: mqtt.Client, userdata: object, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        """Subscribe (again) on every successful connection; runs on paho's thread."""
        del userdata, flags, properties
        if reason_code.is_failure:
            logger.warning("MQTT connection refused: %s", reason_code)
            return
        self.generation += 1
        self.last_connect_monotonic = time.monotonic()
        client.subscribe([(topic_filter, 1) for topic_filter in subscriptions(self._group)])
        logger.info(
            "connected to MQTT broker; subscribing as group %s", self._group or "(plain subscriptions)"
        )

    def on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        """The broker confirmed the subscriptions: from now on nothing published is missed."""
        del client, userdata, mid, properties
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            logger.error("MQTT subscriptions refused: %s", refused)
            return
        self._metrics.connected = True
        self.connected.set()

    def on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        """Note the loss; paho reconnects by itself."""
        del client, userdata, flags, properties
        self._metrics.connected = False
        self.connected.clear()
        if self.closing:
            logger.info("disconnected from MQTT broker")
        else:
            logger.warning("disconnected from MQTT broker (%s); reconnecting", reason_code)

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        """Copy and enqueue; runs on paho's thread."""
        del client, userdata
        self._metrics.received += 1
        payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
        item = Received(msg.topic, payload, msg.mid, msg.qos, self.generation)
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            if msg.qos == 0:  # at most once: drop the newest and count it
                self._metrics.dropped_queue_full += 1
                return
            # Receive Maximum bounds QoS 1 below the queue size, but a broker resuming a session may resend
            # more; never drop what we must acknowledge: hold paho's thread until the writer makes room.
            self._metrics.queue_full_waits += 1
            self.queue.put(item)
