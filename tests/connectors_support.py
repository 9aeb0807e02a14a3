"""Helpers of the connector tests: a subscriber that decodes the raw batches and heartbeats connectors
publish on the real broker, and settings pointing at a test broker."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.messages import ConnectorStatus, decode_connector_status
from shared.raw_batch import RawBatch, decode_raw_batch


class RawCollector:
    """Subscribes raw batches of some assets (and every connector status) and decodes what arrives."""

    def __init__(self, broker: MosquittoServer, asset_ids: list[str], client_id: str) -> None:
        self.batches: list[RawBatch] = []
        self.statuses: list[ConnectorStatus] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filters = [topics.raw(asset_id, "+") for asset_id in asset_ids]
        self._filters.append(topics.subscription(topics.TopicKind.CONNECTOR_STATUS))
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect_async(broker.host, broker.port)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, timeout_s=10)

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe([(topic_filter, 1) for topic_filter in self._filters])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            if topics.parse(message.topic).kind is topics.TopicKind.CONNECTOR_STATUS:
                status = decode_connector_status(bytes(message.payload))
                with self._lock:
                    self.statuses.append(status)
                return
            batch = decode_raw_batch(bytes(message.payload))
        except Exception as exc:  # noqa: BLE001 - a test collector records what it could not decode
            with self._lock:
                self.errors.append(f"{message.topic}: {exc}")
            return
        with self._lock:
            self.batches.append(batch)

    def of(self, asset_id: str, sensor: str) -> list[RawBatch]:
        """The batches received of one stream, in arrival order."""
        with self._lock:
            return [b for b in self.batches if (b.asset_id, b.sensor) == (asset_id, sensor)]

    def samples(self, asset_id: str, sensor: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Every sample received of one stream, in arrival order."""
        batches = self.of(asset_id, sensor)
        return np.concatenate([b.samples for b in batches]) if batches else np.empty(0, dtype=np.float32)

    def wait_samples(self, asset_id: str, sensor: str, n: int, timeout_s: float = 10.0) -> None:
        """Wait until at least `n` samples of the stream arrived."""
        wait_until(lambda: len(self.samples(asset_id, sensor)) >= n, timeout_s=timeout_s)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def broker_settings(broker: MosquittoServer) -> dict[str, Any]:
    """The `mqtt` section of a connector's settings for the test broker."""
    return {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
