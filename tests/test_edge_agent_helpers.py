"""Helpers shared by the edge agent and queue tests: a persistent-session subscriber, message factories."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.settings import AssetSettings, EdgeSettings, PipelineSettings, SensorSettings
from forewarn.localservices import MosquittoServer, running, wait_until
from shared import topics
from shared.aggregate_block import unpack_block
from shared.config import load_settings
from shared.features import SensorKind
from shared.messages import (
    Aggregate,
    AggregateBlock,
    Alert,
    AlertUpdate,
    DeploymentAck,
    FeatureStats,
    ScoreStats,
    Snapshot,
    Status,
    Uplink,
    decode_uplink,
    decode_uplink_batch,
)
from shared.raw_batch import RawBatch, encode_raw_batch
from shared.timebase import NS_PER_S, now_ns
from simulators.assets import FAST_SENSOR
from simulators.engine import fleet_units
from simulators.scenario import Scenario

# An uplink message, blocks unpacked.
Row = Aggregate | Alert | AlertUpdate | Snapshot | Status | DeploymentAck


class Collector:
    """A QoS 1 subscriber with a persistent session: it receives everything, across broker restarts."""

    def __init__(self, host: str, port: int, topic_filter: str | list[str], client_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.dup_flags: list[bool] = []
        self._lock = threading.Lock()
        self._filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = 65535
        self.client.connect_async(host, port, clean_start=False, properties=properties)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, timeout_s=10)

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe([(topic_filter, 1) for topic_filter in self._filters])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))
            self.dup_flags.append(bool(message.dup))

    def _flat(self) -> list[tuple[Row, bool]]:
        """Every received message decoded, batches flattened into their members, with the DUP flag."""
        with self._lock:
            received = list(zip(self.messages, self.dup_flags, strict=True))
        return [(message, dup) for (topic, payload), dup in received for message in flatten(topic, payload)]

    def uplinks(self) -> list[Row]:
        """Every received message decoded, batches flattened into their members (in seq order)."""
        return [message for message, _ in self._flat()]

    def batch_sizes(self) -> list[int]:
        """Per received MQTT message, how many queued messages it carried (1 for a lone message)."""
        with self._lock:
            received = list(self.messages)
        return [len(flatten(topic, payload)) for topic, payload in received]

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
        return [m.seq for m, dup in self._flat() if not dup and m.seq is not None]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def _rows(message: Uplink) -> list[Row]:
    if isinstance(message, AggregateBlock):
        return [*unpack_block(message)]
    return [message]


def flatten(topic: str, payload: bytes) -> list[Row]:
    """The uplink messages of one MQTT message: a batch's members in order (its aggregate blocks unpacked
    into their aggregates), or the message itself."""
    if topics.parse(topic).kind is topics.TopicKind.BATCH:
        return [row for member in decode_uplink_batch(payload).messages for row in _rows(member)]
    return _rows(decode_uplink(payload))


@contextmanager
def collecting(host: str, port: int, topic_filter: str | list[str], client_id: str) -> Iterator[Collector]:
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


def scenario_assets(scenario: Scenario) -> tuple[AssetSettings, ...]:
    """Pipeline asset settings matching a simulator scenario (vibration first, then its slow sensors)."""
    signals = scenario.spec.signals
    assets = []
    for unit in fleet_units(scenario):
        sensors = [
            SensorSettings(
                name=name,
                kind=SensorKind.VIBRATION if name == FAST_SENSOR else SensorKind.SLOW,
                sample_rate_hz=signals.vibration_rate_hz if name == FAST_SENSOR else signals.slow_rate_hz,
            )
            for name in unit.type.sensors
        ]
        assets.append(AssetSettings(asset_id=unit.asset_id, sensors=tuple(sensors)))
    return tuple(assets)


def edge_settings(
    workdir: Path,
    *,
    gateway_id: str,
    plant: MosquittoServer,
    upstream: MosquittoServer,
    pipeline: PipelineSettings,
    **changes: Any,
) -> EdgeSettings:
    """Edge settings for a test: its own directories, fast reconnects, short heartbeats."""
    mqtt_fast = {"reconnect_min_s": 0.5, "reconnect_max_s": 1.0, "keepalive_s": 5}
    overrides: dict[str, Any] = {
        "gateway_id": gateway_id,
        "heartbeat_interval_s": 0.5,
        "intake_queue_size": 20_000,
        "shutdown_ack_wait_s": 5.0,
        "plant_mqtt": {"host": plant.host, "port": plant.port, **mqtt_fast},
        "upstream_mqtt": {"host": upstream.host, "port": upstream.port, **mqtt_fast},
        "pipeline": pipeline,
        "models": {"store_dir": str(workdir / "models")},
        "queue": {"dir": str(workdir / "queue")},
        "quarantine": {"dir": str(workdir / "quarantine")},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(overrides.get(key), dict):
            overrides[key] = {**overrides[key], **value}
        else:
            overrides[key] = value
    return load_settings(EdgeSettings, environ={}, overrides=overrides)


class RawPublisher:
    """Publishes raw batches (QoS 0) to the plant broker, pacing itself on a consumer's backlog."""

    def __init__(self, broker: MosquittoServer, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.published = 0

    def publish(self, batch: RawBatch) -> None:
        """Publish one batch on its raw topic."""
        self.publish_payload(topics.raw(batch.asset_id, batch.sensor), encode_raw_batch(batch))

    def publish_payload(self, topic: str, payload: bytes) -> None:
        """Publish any bytes on a topic (for bad payloads)."""
        self.client.publish(topic, payload, qos=0)
        self.published += 1

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def feed(
    publisher: RawPublisher,
    batches: Iterable[RawBatch],
    backlog: Callable[[], int],
    *,
    max_backlog: int = 400,
) -> int:
    """Publish every batch, pausing while the consumer's backlog exceeds `max_backlog`; returns the count."""
    n = 0
    for batch in batches:
        publisher.publish(batch)
        n += 1
        if n % 50 == 0:
            wait_until(lambda: backlog() < max_backlog, timeout_s=60, interval_s=0.005)
    return n


VIB_RATE_HZ = 8192.0


def vibration_asset(asset_id: str) -> AssetSettings:
    """An asset with one vibration sensor at `VIB_RATE_HZ`."""
    sensor = SensorSettings(name="vibration", kind=SensorKind.VIBRATION, sample_rate_hz=VIB_RATE_HZ)
    return AssetSettings(asset_id=asset_id, sensors=(sensor,))


def vibration_batches(
    asset_id: str,
    *,
    n_batches: int,
    batch_samples: int = 8192,
    start_ns: int | None = None,
    first_seq: int = 0,
    seed: int = 0,
    defect: Callable[[int], float] = lambda i: 0.0,
) -> Iterator[RawBatch]:
    """A continuous vibration stream: a 30 Hz shaft tone, a harmonic and noise, plus a 1234 Hz bearing tone
    of amplitude `defect(batch_index)`. Batches follow each other without gaps."""
    rng = np.random.default_rng(seed)
    t0_ns = (now_ns() - 3600 * NS_PER_S) if start_ns is None else start_ns
    t0_ns -= t0_ns % (10 * NS_PER_S)
    batch_ns = round(batch_samples * NS_PER_S / VIB_RATE_HZ)
    for i in range(n_batches):
        t = (np.arange(batch_samples) + (first_seq + i) * batch_samples) / VIB_RATE_HZ
        signal = (
            np.sin(2 * np.pi * 30 * t)
            + 0.3 * np.sin(2 * np.pi * 60 * t)
            + rng.normal(0.0, 0.2, batch_samples)
            + defect(i) * np.sin(2 * np.pi * 1234 * t)
        )
        yield RawBatch(
            asset_id=asset_id,
            sensor="vibration",
            seq=first_seq + i,
            start_ns=t0_ns + (first_seq + i) * batch_ns,
            sample_rate_hz=VIB_RATE_HZ,
            samples=signal.astype(np.float32),
        )
