"""What an operator's screen would see on the broker during the demo: plant alerts and gateway status."""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

from shared import topics
from shared.config import MqttSettings
from shared.errors import ContractError
from shared.messages import Alert, Status, decode_uplink
from shared.mqtt import connect, make_client

__all__ = ["AlertSeen", "BrokerWatcher"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class AlertSeen:
    """An alert as the plant broker delivered it, with when it arrived."""

    alert: Alert
    received_s: float


class BrokerWatcher:
    """Subscribes to the plant alerts and the gateways' status; `online` is set once all are online."""

    def __init__(self, mqtt_settings: MqttSettings, gateway_ids: Sequence[str]) -> None:
        self.alerts: queue.Queue[AlertSeen] = queue.Queue()
        self.online = threading.Event()
        self._waiting = {topics.status(g) for g in gateway_ids}
        self._status_topics = set(self._waiting)
        self._lock = threading.Lock()
        self._client = make_client(mqtt_settings, client_id=f"forewarn-demo-watcher-{os.getpid()}")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        connect(self._client, mqtt_settings, clean_start=True, session_expiry_s=0)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe([(topics.plant_alert("+"), 1), *((t, 1) for t in sorted(self._status_topics))])

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode_uplink(bytes(msg.payload))
        except ContractError:
            logger.warning("demo watcher: undecodable message on %s", msg.topic)
            return
        if isinstance(message, Alert):
            self.alerts.put(AlertSeen(message, time.monotonic()))
        elif isinstance(message, Status) and message.state == "online":
            with self._lock:
                self._waiting.discard(msg.topic)
                if not self._waiting:
                    self.online.set()

    def drain(self) -> list[AlertSeen]:
        """The alerts received since the last call."""
        seen: list[AlertSeen] = []
        while not self.alerts.empty():
            seen.append(self.alerts.get_nowait())
        return seen

    def close(self) -> None:
        """Disconnect."""
        self._client.loop_stop()
        self._client.disconnect()
