"""The plant side: raw sample batches in (paho thread -> bounded queue), local alerts out.

paho's network thread runs `_on_message`, which copies the topic and payload into a bounded queue and
returns. Raw batches are QoS 0: when the queue is full the newest batch is dropped and counted, so a slow
scorer sheds load instead of growing memory. The client subscribes the raw topics of the configured assets
on every connect (`shared.topics.raw(asset, "+")`, so batches of unknown sensors reach the pipeline and are
counted there), with a persistent MQTT 5 session and paho's reconnect backoff.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from shared import topics
from shared.config import MqttSettings
from shared.mqtt import connect, make_client

__all__ = ["Intake", "IntakeMetrics", "Received"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """A message as handed over from paho's thread."""

    topic: str
    payload: bytes
    received_mono_ns: int


@dataclass
class IntakeMetrics:
    """Counters of the plant link (plain ints: written on paho's thread, read by the heartbeat)."""

    received: int = 0
    received_bytes: int = 0
    dropped_queue_full: int = 0
    dropped_at_shutdown: int = 0
    plant_alerts_published: int = 0
    plant_alerts_skipped_offline: int = 0
    connects: int = 0
    disconnects: int = 0


class Intake:
    """Owns the plant broker client: subscriptions, the intake queue, and local alert publishing.

    Args:
        settings: the plant broker.
        gateway_id: for the client id.
        asset_ids: whose raw topics to subscribe.
        maxsize: capacity of the intake queue, in messages.
        session_expiry_s: how long the broker keeps our session while we are away.
    """

    def __init__(
        self,
        *,
        settings: MqttSettings,
        gateway_id: str,
        asset_ids: Sequence[str],
        maxsize: int,
        session_expiry_s: int = 3600,
    ) -> None:
        self._settings = settings
        self._filters = [topics.raw(asset_id, "+") for asset_id in asset_ids]
        self._session_expiry_s = session_expiry_s
        self.queue: queue.Queue[Received] = queue.Queue(maxsize=maxsize)
        self.metrics = IntakeMetrics()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._paused = threading.Event()
        self.client = make_client(settings, client_id=f"forewarn-edge-{gateway_id}-plant")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        if not self._filters:
            logger.warning("no assets configured: the edge agent subscribes no raw topics")

    # --- paho's thread ------------------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        del userdata, flags, props
        if reason.is_failure:
            logger.warning("plant broker refused the connection: %s", reason)
            return
        self.metrics.connects += 1
        self._connected.set()
        if self._filters and not self._paused.is_set():
            client.subscribe([(topic_filter, 0) for topic_filter in self._filters])
        else:
            self._subscribed.set()
        logger.info("plant broker connected", extra={"filters": self._filters})

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: Any, props: Any
    ) -> None:
        del client, userdata, mid, props
        if any(reason.is_failure for reason in reasons):
            logger.error("plant broker refused a raw subscription: %s", [str(r) for r in reasons])
        self._subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        del client, userdata, flags, props
        self.metrics.disconnects += 1
        self._connected.clear()
        self._subscribed.clear()
        logger.info("plant broker disconnected: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        del client, userdata
        payload = bytes(message.payload)
        self.metrics.received += 1
        self.metrics.received_bytes += len(payload)
        try:  # runs on paho's thread: copy, enqueue, return
            self.queue.put_nowait(Received(message.topic, payload, time.monotonic_ns()))
        except queue.Full:
            self.metrics.dropped_queue_full += 1

    # --- lifecycle and alerts -----------------------------------------------------------------------

    @property
    def is_subscribed(self) -> bool:
        """Whether the current connection's subscriptions were acknowledged."""
        return self._subscribed.is_set()

    def start(self) -> None:
        """Connect asynchronously (paho retries with backoff) and start paho's network thread."""
        connect(self.client, self._settings, clean_start=False, session_expiry_s=self._session_expiry_s)
        self.client.loop_start()

    def pause(self) -> None:
        """Stop taking raw batches (unsubscribe) but stay connected, so alerts can still be published."""
        self._paused.set()
        if self._filters:
            self.client.unsubscribe(self._filters)

    def stop(self) -> None:
        """Disconnect cleanly and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def publish_alert(self, asset_id: str, payload: bytes) -> bool:
        """Publish an alert for local annunciators (QoS 1) at once; skipped, and counted, while offline.

        The alert also goes upstream through the disk queue, so skipping here loses nothing upstream, and
        paho's session never grows while the plant broker is away.
        """
        if not self._connected.is_set():
            self.metrics.plant_alerts_skipped_offline += 1
            return False
        info = self.client.publish(topics.plant_alert(asset_id), payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.metrics.plant_alerts_skipped_offline += 1
            return False
        self.metrics.plant_alerts_published += 1
        return True
