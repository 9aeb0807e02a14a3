"""Helpers shared by the edge agent and queue tests: a persistent-session subscriber, message factories."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from forewarn.localservices import MosquittoServer, running, wait_until
from shared.messages import (
    Aggregate,
    Alert,
    FeatureStats,
    ScoreStats,
    Snapshot,
    Uplink,
    decode_uplink,
)
from shared.timebase import now_ns


class Collector:
    """A QoS 1 subscriber with a persistent session: it receives everything, across broker restarts."""

    def __init__(self, host: str, port: int, topic_filter: str, client_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.dup_flags: list[bool] = []
        self._lock = threading.Lock()
        self._filter = topic_filter
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = 65535
        self.client.connect_async(host, port, clean_start=False, properties=properties)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, timeout_s=10)

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(self._filter, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))
            self.dup_flags.append(bool(message.dup))

    def uplinks(self) -> list[Uplink]:
        """Every received message decoded."""
        with self._lock:
            received = list(self.messages)
        return [decode_uplink(payload) for _, payload in received]

    def seqs(self) -> list[int]:
        """The `seq` of every received message that has one, in arrival order."""
        return [message.seq for message in self.uplinks() if message.seq is not None]

    def fresh_seqs(self) -> list[int]:
        """Seqs of deliveries without the broker's own re-delivery flag (DUP), in arrival order.

        After a restart, Mosquitto 2.0 restores a subscriber's queued and in-flight messages from its
        persistence file and sends them with DUP set, sometimes even ones we had acknowledged: a
        broker-to-subscriber effect that says nothing about the publisher. A duplicate *publish* (the
        publisher sending a message twice) reaches us as a new delivery, without DUP: it shows here.
        """
        with self._lock:
            flags = list(self.dup_flags)
        uplinks = self.uplinks()
        return [m.seq for m, dup in zip(uplinks, flags, strict=False) if not dup and m.seq is not None]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def collecting(host: str, port: int, topic_filter: str, client_id: str) -> Iterator[Collector]:
    """A `Collector` for the duration of a block."""
    collector = Collector(host, port, topic_filter, client_id)
    try:
        yield collector
    finally:
        collector.close()


@contextmanager
def throwaway_broker(workdir: Path) -> Iterator[MosquittoServer]:
    """A second Mosquitto (as the upstream broker) that a test may stop and start."""
    with running(MosquittoServer(workdir)) as server:
        yield server


def aggregate(gateway_id: str, asset_id: str = "a1", n: int = 0) -> Aggregate:
    """A small valid aggregate (seq=0, as the pipeline makes them)."""
    start = now_ns() - 10_000_000_000 + n
    return Aggregate(
        gateway_id=gateway_id,
        asset_id=asset_id,
        seq=0,
        period_start_ns=start,
        period_end_ns=start + 10_000_000_000,
        feature_spec="test:1",
        features={"vibration.rms": FeatureStats(1.0, 0.5, 1.5)},
        score=ScoreStats(mean=0.1, max=0.2, threshold=6.0, n_windows=10, n_above_threshold=0),
        model_version="baseline",
        model_kind="baseline",
    )


def alert(gateway_id: str, asset_id: str = "a1", n: int = 0) -> Alert:
    """A valid raised alert (seq=0)."""
    return Alert(
        gateway_id=gateway_id,
        asset_id=asset_id,
        seq=0,
        alert_id=f"{asset_id}:{n}",
        state="raised",
        severity="warning",
        ts_ns=now_ns(),
        score=9.0,
        threshold=6.0,
        model_version="baseline",
        model_kind="baseline",
    )


def snapshot(gateway_id: str, asset_id: str = "a1", n: int = 0) -> Snapshot:
    """A valid snapshot of 64 samples (seq=0)."""
    return Snapshot(
        gateway_id=gateway_id,
        asset_id=asset_id,
        sensor="vibration",
        seq=0,
        alert_id=f"{asset_id}:{n}",
        start_ns=now_ns(),
        sample_rate_hz=25_600.0,
        samples=[0.0] * 64,
    )
