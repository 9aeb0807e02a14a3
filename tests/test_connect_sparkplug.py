"""The Sparkplug B connector against a simulated edge node (simulators.sparkplug_node) encoding real protobuf
payloads, through the real Mosquitto: births, aliased data and deaths are followed and the mapped values
arrive with their asset, sensor, time and scale; a sequence gap is counted and asks for a rebirth; data
before a birth is not used; bad payloads are counted; alerts go back to SCADA as Sparkplug metrics."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import SparkplugConnectorSettings
from edge_agent.connectors.sparkplug import SparkplugConnector
from edge_agent.connectors.sparkplug_alerts import asset_metric_name
from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.config import MqttSettings, load_settings
from shared.messages import Alert, encode
from shared.sparkplug import (
    BD_SEQ_METRIC,
    DataType,
    MessageType,
    Metric,
    Payload,
    SparkplugTopic,
    decode_payload,
    encode_payload,
    parse_topic,
    state_topic,
)
from shared.timebase import now_ns
from simulators.sparkplug_node import SimulatedEdgeNode, SimulatedMetric, metric_value
from tests.connectors_support import RawCollector, broker_settings, running_in_thread

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "connect-sparkplug.toml"
RMS = SimulatedMetric("Vibration/RMS", DataType.FLOAT, amplitude=2.0, frequency_hz=0.3, offset=3.0)
TEMPERATURE = SimulatedMetric(
    "Bearing/Temperature", DataType.INT16, amplitude=50.0, frequency_hz=0.1, offset=-20.0
)
PERIOD_MS = 100

pytestmark = pytest.mark.slow  # broker round trips and waits for rebirths


@pytest.fixture
def asset(unique_id: Callable[[str], str]) -> str:
    return unique_id("pump")


@pytest.fixture
def group(unique_id: Callable[[str], str]) -> str:
    return unique_id("plant")


@pytest.fixture
def collector(broker: MosquittoServer, asset: str, unique_id: Callable[[str], str]) -> Iterator[RawCollector]:
    with RawCollector(broker, [asset], unique_id("collector")) as collector:
        yield collector


def _mappings(group: str, asset: str) -> list[dict[str, Any]]:
    common = {"group_id": group, "edge_node_id": "line3", "device_id": "pump7", "asset_id": asset}
    return [
        {**common, "metric": RMS.name, "sensor": "vibration_rms", "sample_rate_hz": 10.0},
        {**common, "metric": TEMPERATURE.name, "sensor": "temperature", "scale": 0.1, "sample_rate_hz": 10.0},
    ]


def _settings(
    broker: MosquittoServer, metrics: list[dict[str, Any]], **options: Any
) -> SparkplugConnectorSettings:
    return load_settings(
        SparkplugConnectorSettings,
        environ={},
        overrides={
            "connector_id": "sparkplug-test",
            "mqtt": broker_settings(broker),
            "sparkplug_mqtt": broker_settings(broker),
            "publishing": {"max_delay_s": 0.3},
            "health": {"interval_s": 0.5},
            "rebirth_interval_s": 0.5,
            "metrics": metrics,
            **options,
        },
    )


def _node(broker: MosquittoServer, group: str, **options: Any) -> SimulatedEdgeNode:
    return SimulatedEdgeNode(
        mqtt_settings=MqttSettings.model_validate(broker_settings(broker)),
        group_id=group,
        edge_node_id="line3",
        devices={"pump7": [RMS, TEMPERATURE]},
        **options,
    )


@contextlib.contextmanager
def _running(settings: SparkplugConnectorSettings) -> Iterator[tuple[SparkplugConnector, ConnectorRuntime]]:
    with ConnectorRuntime(settings) as runtime:
        connector = SparkplugConnector(settings=settings, runtime=runtime)
        with running_in_thread(connector.run, name="test-sparkplug", join_s=10):
            wait_until(lambda: connector.is_subscribed, timeout_s=10)
            yield connector, runtime


def _publish_series(node: SimulatedEdgeNode, start_ms: int | None, count: int) -> list[int]:
    """Publish `count` DDATA on the 10 Hz grid after `start_ms` (default: the last birth)."""
    start_ms = node.last_birth_ms if start_ms is None else start_ms
    assert start_ms is not None
    times = [start_ms + PERIOD_MS * (i + 1) for i in range(count)]
    for time_ms in times:
        node.publish_data(time_ms)
    return times


def _assert_on_the_metric(
    collector: RawCollector, asset: str, sensor: str, metric: SimulatedMetric, scale: float
) -> int:
    """Each sample is the metric's value at its time on the 10 Hz grid, calibrated; returns the count."""
    batches = collector.of(asset, sensor)
    assert batches
    for batch in batches:
        assert batch.sample_rate_hz == 10.0
        for k, sample in enumerate(batch.samples.tolist()):
            time_ms = (batch.start_ns // 1_000_000) + k * PERIOD_MS
            expected = float(metric_value(metric, time_ms)) * scale  # type: ignore[arg-type]
            assert sample == pytest.approx(expected, rel=1e-6)
    return sum(len(batch.samples) for batch in batches)


def test_births_and_aliased_data_arrive_with_asset_sensor_time_and_scale(
    broker: MosquittoServer, collector: RawCollector, asset: str, group: str
) -> None:
    node = _node(broker, group)
    with _running(_settings(broker, _mappings(group, asset))) as (
        connector,
        runtime,
    ):
        node.start()
        wait_until(lambda: connector.host.is_online(group, "line3", "pump7"), timeout_s=10)
        times = _publish_series(node, None, 20)
        collector.wait_samples(asset, "vibration_rms", 21, timeout_s=10)
        collector.wait_samples(asset, "temperature", 21, timeout_s=10)
        node.stop()
        wait_until(lambda: not connector.host.is_online(group, "line3"), timeout_s=10)
    assert _assert_on_the_metric(collector, asset, "vibration_rms", RMS, 1.0) == 21
    assert _assert_on_the_metric(collector, asset, "temperature", TEMPERATURE, 0.1) == 21
    last = collector.of(asset, "vibration_rms")[-1]
    assert last.end_ns == (times[-1] + PERIOD_MS) * 1_000_000
    stats = connector.host.stats
    assert (stats.births, stats.device_births, stats.deaths, stats.sequence_gaps) == (1, 1, 1, 0)
    assert runtime.metrics.values_read == 42
    assert runtime.metrics.rejected == {}
    assert runtime.metrics.gaps == 0


def test_a_sequence_gap_is_counted_and_asks_the_node_for_a_rebirth(
    broker: MosquittoServer, collector: RawCollector, asset: str, group: str
) -> None:
    node = _node(broker, group)
    with _running(_settings(broker, _mappings(group, asset))) as (connector, runtime):
        node.start()
        wait_until(lambda: connector.host.is_online(group, "line3", "pump7"), timeout_s=10)
        start_ms = node.last_birth_ms
        assert start_ms is not None
        _publish_series(node, start_ms, 5)
        node.skip_sequence(3)  # three messages lost on the way
        _publish_series(node, start_ms + 5 * PERIOD_MS, 5)
        wait_until(lambda: node.rebirths_received == 1, timeout_s=10)
        wait_until(lambda: connector.host.stats.births == 2, timeout_s=10)
        _publish_series(node, start_ms + 60_000, 3)  # after the rebirth the sequence is whole again
        collector.wait_samples(asset, "vibration_rms", 1 + 10 + 3, timeout_s=10)
    stats = connector.host.stats
    assert stats.sequence_gaps == 1
    assert stats.rebirths_requested == 1
    # the sequence gap, and the gap in time before the last series in each of the two streams
    assert runtime.metrics.gaps == 3
    # the values around the gap were good: used, not thrown away; only the rebirth's values, stamped
    # before the data already published, are out of order
    assert runtime.metrics.rejected == {"out_of_order": 2}
    assert _assert_on_the_metric(collector, asset, "vibration_rms", RMS, 1.0) == 14


def test_data_before_the_birth_is_not_used_and_asks_for_a_rebirth(
    broker: MosquittoServer, collector: RawCollector, asset: str, group: str
) -> None:
    node = _node(broker, group)
    node.start()  # born before the connector listens: its births are lost to it
    try:
        with _running(_settings(broker, _mappings(group, asset))) as (connector, runtime):
            start_ms = now_ns() // 1_000_000 + 1000
            node.publish_data(start_ms)
            wait_until(lambda: node.rebirths_received == 1, timeout_s=10)
            wait_until(lambda: connector.host.is_online(group, "line3", "pump7"), timeout_s=10)
            _publish_series(node, start_ms + 1000, 5)
            collector.wait_samples(asset, "vibration_rms", 1 + 5, timeout_s=10)
    finally:
        node.stop()
    # both metrics of the first DDATA; under load the broker may hand the connector the first DBIRTH
    # (after the NBIRTH it missed): a device birth of a node not born is not used either
    assert set(runtime.metrics.rejected) == {"before_birth"}
    assert runtime.metrics.rejected["before_birth"] in {2, 4}
    assert connector.host.stats.rebirths_requested == 1
    _assert_on_the_metric(collector, asset, "vibration_rms", RMS, 1.0)


def test_deaths_end_devices_and_nodes_and_a_stale_death_is_ignored(
    broker: MosquittoServer, collector: RawCollector, asset: str, group: str
) -> None:
    node = _node(broker, group, bd_seq=7)
    with _running(_settings(broker, _mappings(group, asset), rebirth_interval_s=60.0)) as (
        connector,
        runtime,
    ):
        node.start()
        host = connector.host
        wait_until(lambda: host.is_online(group, "line3", "pump7"), timeout_s=10)
        stale = encode_payload(
            Payload(metrics=(Metric(name=BD_SEQ_METRIC, datatype=DataType.INT64, value=6),))
        )
        node.publish_raw(str(SparkplugTopic(group, MessageType.NDEATH, "line3")), stale)
        wait_until(lambda: host.stats.stale_deaths == 1, timeout_s=10)
        assert host.is_online(group, "line3", "pump7")
        node.device_death("pump7")
        wait_until(lambda: not host.is_online(group, "line3", "pump7"), timeout_s=10)
        node.publish_data(now_ns() // 1_000_000 + 1000)  # a dead device's data is not used
        wait_until(lambda: runtime.metrics.rejected.get("before_birth", 0) == 2, timeout_s=10)
        node.stop()
        wait_until(lambda: not host.is_online(group, "line3"), timeout_s=10)
        assert (host.stats.device_deaths, host.stats.deaths) == (1, 1)
    assert collector.of(asset, "vibration_rms")[-1].samples.size >= 1  # the birth's values


def test_a_malformed_payload_and_a_bad_topic_are_counted_and_the_connector_goes_on(
    broker: MosquittoServer, collector: RawCollector, asset: str, group: str
) -> None:
    node = _node(broker, group)
    with _running(_settings(broker, _mappings(group, asset))) as (connector, runtime):
        node.start()
        wait_until(lambda: connector.host.is_online(group, "line3", "pump7"), timeout_s=10)
        node.publish_raw(str(SparkplugTopic(group, MessageType.DDATA, "line3", "pump7")), b"\x12\x05\x0a")
        node.publish_raw(f"spBv1.0/{group}/XDATA/line3", b"")
        wait_until(lambda: runtime.metrics.rejected.get("bad_payload", 0) == 1, timeout_s=10)
        _publish_series(node, None, 3)
        collector.wait_samples(asset, "vibration_rms", 4, timeout_s=10)
    assert runtime.metrics.rejected == {"bad_payload": 1, "bad_topic": 1}
    assert "payload" in runtime.metrics.last_error


class _ScadaSubscriber:
    """A SCADA-side subscriber decoding the Sparkplug B messages of one group, and the STATE topics."""

    def __init__(self, broker: MosquittoServer, group: str, host_id: str) -> None:
        self.messages: list[tuple[str, Payload]] = []
        self.states: list[bytes] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda client, *_: client.subscribe(
            [(f"spBv1.0/{group}/#", 0), ("spBv1.0/STATE/+", 1)]
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(subscribed.is_set, timeout_s=10)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith("spBv1.0/STATE/"):
            self.states.append(bytes(message.payload))
        else:
            self.messages.append((message.topic, decode_payload(bytes(message.payload))))

    def of_type(self, message_type: MessageType) -> list[Payload]:
        return [
            payload
            for topic, payload in list(self.messages)
            if parse_topic(topic).message_type is message_type
        ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _alert(asset: str, state: str, severity: str, score: float) -> Alert:
    return Alert(
        gateway_id="gw-1",
        asset_id=asset,
        seq=1,
        alert_id=f"{asset}:1",
        state=state,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        ts_ns=now_ns(),
        score=score,
        threshold=4.0,
        model_version="v3",
        model_kind="baseline",
        message="bearing outer race",
    )


def test_alerts_and_asset_health_go_back_to_scada_as_sparkplug_metrics(
    broker: MosquittoServer, asset: str, group: str, unique_id: Callable[[str], str]
) -> None:
    back_group = unique_id("forewarn")
    host_id = unique_id("host")
    scada = _ScadaSubscriber(broker, back_group, host_id)
    settings = _settings(
        broker,
        _mappings(group, asset),
        host_id=host_id,
        publish_back={"enabled": True, "group_id": back_group, "edge_node_id": "forewarn"},
    )
    plant = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    plant.connect(broker.host, broker.port)
    plant.loop_start()
    try:
        with _running(settings) as (connector, _):
            wait_until(lambda: scada.of_type(MessageType.NBIRTH), timeout_s=10)
            birth = scada.of_type(MessageType.NBIRTH)[0]
            aliases = {metric.name: metric.alias for metric in birth.metrics}
            health = asset_metric_name(asset, "Health")
            active = asset_metric_name(asset, "Alert Active")
            assert {metric.name: metric.value for metric in birth.metrics}[health] == "ok"
            wait_until(lambda: connector.alert_node is not None and connector.alert_node.stats.births == 1)
            time_ns = now_ns()
            plant.publish(topics.plant_alert(asset), encode(_alert(asset, "raised", "critical", 7.5)), qos=1)
            wait_until(lambda: scada.of_type(MessageType.NDATA), timeout_s=10)
            data = scada.of_type(MessageType.NDATA)[0]
            by_alias = {metric.alias: metric for metric in data.metrics}
            assert all(metric.name is None for metric in data.metrics)  # by alias only, as after any birth
            assert by_alias[aliases[active]].value is True
            assert by_alias[aliases[health]].value == "critical"
            assert by_alias[aliases[asset_metric_name(asset, "Anomaly Score")]].value == 7.5
            assert data.seq == 1  # the birth was 0
            assert data.timestamp_ms is not None
            assert data.timestamp_ms >= time_ns // 1_000_000 - 1000
            plant.publish(topics.plant_alert(asset), encode(_alert(asset, "cleared", "critical", 1.0)), qos=1)
            wait_until(lambda: len(scada.of_type(MessageType.NDATA)) == 2, timeout_s=10)
            cleared = {metric.alias: metric.value for metric in scada.of_type(MessageType.NDATA)[1].metrics}
            assert cleared[aliases[health]] == "ok"
            assert cleared[aliases[active]] is False
        wait_until(lambda: scada.of_type(MessageType.NDEATH), timeout_s=10)
        wait_until(lambda: len(scada.states) >= 2, timeout_s=10)
        assert b'"online":true' in scada.states[0]
        assert b'"online":false' in scada.states[-1]
    finally:
        plant.disconnect()
        plant.loop_stop()
        scada.close()
        # the STATE message is retained: clear it so no later subscriber sees this test's host
        cleaner = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        cleaner.connect(broker.host, broker.port)
        cleaner.publish(state_topic(settings.host_id), b"", qos=1, retain=True).wait_for_publish(5)
        cleaner.disconnect()


def test_the_example_config_loads_and_maps_an_edge_node_with_its_metric_names(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    example = load_settings(SparkplugConnectorSettings, toml_path=EXAMPLE, environ={})
    assert [m.metric for m in example.metrics] == [RMS.name, TEMPERATURE.name]
    mappings = tuple(m.model_copy(update={"asset_id": asset}) for m in example.metrics)
    broker_update = {"host": broker.host, "port": broker.port, "username": ""}
    settings = example.model_copy(
        update={
            "metrics": mappings,
            "host_id": "",
            "publish_back": example.publish_back.model_copy(update={"enabled": False}),
            "sparkplug_mqtt": example.sparkplug_mqtt.model_copy(update=broker_update),
            "mqtt": example.mqtt.model_copy(update=broker_update),
        }
    )
    node = SimulatedEdgeNode(
        mqtt_settings=MqttSettings.model_validate(broker_settings(broker)),
        group_id=mappings[0].group_id,
        edge_node_id=mappings[0].edge_node_id,
        devices={mappings[0].device_id: [RMS, TEMPERATURE]},
    )
    with _running(settings) as (connector, _):
        node.start()
        try:
            wait_until(lambda: connector.host.is_online("Plant1", "Line3", "Pump7"), timeout_s=10)
            _publish_series(node, now_ns() // 1_000_000 + 1000, 5)
            collector.wait_samples(asset, "temperature", 6, timeout_s=10)
        finally:
            node.stop()
    _assert_on_the_metric(collector, asset, "temperature", TEMPERATURE, 0.1)


def test_forewarn_connect_sparkplug_runs_until_sigterm_and_leaves_an_offline_status(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    connector_id, asset = unique_id("sp"), unique_id("pump")
    config = workdir / "connect-sparkplug.toml"
    config.write_text(
        EXAMPLE.read_text()
        .replace('connector_id = "sparkplug-scada"', f'connector_id = "{connector_id}"')
        .replace('host_id = "forewarn"', 'host_id = ""')
        .replace('host = "scada-broker.plant.local"', f'host = "{broker.host}"')
        .replace('username = "forewarn"', 'username = ""')
        .replace("port = 1883", f"port = {broker.port}")
        .replace('asset_id = "pump-7"', f'asset_id = "{asset}"')
    )
    collector = RawCollector(broker, [asset], unique_id("c"))
    node = SimulatedEdgeNode(
        mqtt_settings=MqttSettings.model_validate(broker_settings(broker)),
        group_id="Plant1",
        edge_node_id="Line3",
        devices={"Pump7": [RMS, TEMPERATURE]},
    )
    environ = {**os.environ, "FOREWARN_CONNECT_SPARKPLUG_HEALTH__INTERVAL_S": "0.3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "forewarn.cli", "connect", "sparkplug", "--config", str(config)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: any(s.connector_id == connector_id and s.source_connected for s in collector.statuses),
            timeout_s=30,
        )
        node.start()
        # should the births beat the connector's subscription, its first DDATA asks for a rebirth: the
        # series after that birth is used
        for _ in range(3):
            _publish_series(node, None, 5)
            with contextlib.suppress(TimeoutError):
                collector.wait_samples(asset, "vibration_rms", 5, timeout_s=5)
                break
        collector.wait_samples(asset, "vibration_rms", 5, timeout_s=5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        wait_until(lambda: collector.statuses[-1].state == "offline")
        assert collector.statuses[-1].connector_id == connector_id
    finally:
        node.stop()
        if process.poll() is None:
            process.kill()
        collector.close()
