"""`forewarn bench connectors`, OPC UA and Sparkplug B: `opcua_values_per_s` and `sparkplug_metrics_per_s`.

Both run the connector's own code against a real peer started here, publishing raw batches on the bench's
plant broker, beside a ceiling measured in the same run:

* `opcua_values_per_s`: a simulated asyncua server in its own process with 1,000 Double variables updated
  at 10 Hz (10,000 values/s offered); the connector subscribes to all of them (sampling 100 ms) and the
  figure is the values it took per second. Ceiling: what the server itself produced meanwhile (its updates
  times the nodes, counted in the server process: `opcua_server_offered_values_per_s`, with the server's
  CPU), which no client can exceed; `opcua_of_offered` is the share the connector took. On a loaded
  machine the server falls short of its 10,000 values/s, so the target is also judged from the
  connector's CPU per value: `opcua_cpu_cores` is the CPU its process used per wall second,
  `opcua_projected_cores_at_target` that cost at 10,000 values/s (the target, 1,000 nodes at 10 Hz on one
  core, holds below 1).
* `sparkplug_metrics_per_s`: a simulated edge node publishes its birth and then pre-encoded `DDATA`
  messages of 100 aliased metrics as fast as the broker takes them; the figure is mapped metrics handled
  per second from the first message sent to the last value handed to the publisher (decode, sequence
  check, alias lookup, calibration, batching). Ceilings: the protobuf runtime parsing the same payloads
  (`sparkplug_protobuf_parse_ceiling_metrics_per_s`, what no Python host can beat) and a bare paho
  subscriber receiving the same messages from the broker (`sparkplug_broker_ceiling_metrics_per_s`).
"""

from __future__ import annotations

import logging
import multiprocessing
import statistics
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.connectors.opcua import OpcUaConnector
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import OpcUaConnectorSettings, SparkplugConnectorSettings
from edge_agent.connectors.sparkplug import SparkplugConnector
from forewarn.bench.connectors import BenchContext
from forewarn.localservices import free_port, wait_until
from shared.config import MqttSettings, load_settings
from shared.sparkplug import DataType, PayloadMessage, decode_payload
from shared.timebase import now_ns
from simulators.opcua_server import SimulatedOpcUaServer, SimulatedVariable
from simulators.sparkplug_node import SimulatedEdgeNode, SimulatedMetric

__all__ = ["opcua", "sparkplug"]

OPCUA_NODES = 1000
OPCUA_RATE_HZ = 10.0
SPARKPLUG_METRICS_PER_MESSAGE = 100
_GROUP = "bench"
_EDGE_NODE = "node1"
_DEVICE = "dev1"


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


# --- OPC UA ------------------------------------------------------------------------------------------------


def _opcua_variables() -> list[SimulatedVariable]:
    return [
        SimulatedVariable(f"Bench.N{index}", frequency_hz=0.1 + index / 10_000)
        for index in range(OPCUA_NODES)
    ]


def _serve_opcua(port: int, started: Any, updates: Any, cpu_s: Any) -> None:
    """The simulated server, in its own process, until killed; shares its update count and CPU time."""
    logging.disable(logging.WARNING)  # asyncua warns about plain-text endpoints on every start
    server = SimulatedOpcUaServer(
        port=port, variables=_opcua_variables(), update_interval_s=1.0 / OPCUA_RATE_HZ
    )
    server.start()
    started.set()
    while True:
        time.sleep(0.1)
        updates.value = server.counters.updates
        cpu_s.value = time.process_time()


class _ServerProbe:
    """Reads the server process's update count and CPU time: what it offered during a run."""

    def __init__(self, updates: Any, cpu_s: Any) -> None:
        self._updates, self._cpu_s = updates, cpu_s
        self._start = (0, 0.0, 0.0)

    def begin(self) -> None:
        self._start = (self._updates.value, self._cpu_s.value, time.perf_counter())

    def end(self) -> tuple[float, float]:
        """(values offered per second, server CPU cores) since `begin`."""
        updates, cpu_s, start = self._start
        elapsed = time.perf_counter() - start
        offered = (self._updates.value - updates) * OPCUA_NODES / elapsed
        return offered, (self._cpu_s.value - cpu_s) / elapsed


def _opcua_settings(context: BenchContext, endpoint: str) -> OpcUaConnectorSettings:
    nodes = [
        {
            "node_id": f"ns=2;s={variable.name}",
            "asset_id": "bench-opcua",
            "sensor": f"n{index}",
            "sampling_interval_ms": 1000.0 / OPCUA_RATE_HZ,
        }
        for index, variable in enumerate(_opcua_variables())
    ]
    return load_settings(
        OpcUaConnectorSettings,
        environ={},
        overrides={
            "connector_id": "bench-opcua",
            "endpoint": endpoint,
            "mqtt": context.mqtt(),
            "nodes": nodes,
        },
    )


def _opcua_connector_run(
    settings: OpcUaConnectorSettings, duration_s: float, probe: _ServerProbe
) -> tuple[float, float, float, float]:
    """(values per second, CPU cores used) of the connector once its subscription delivers, and (values
    offered per second, CPU cores) of the server meanwhile."""
    stop = threading.Event()
    with ConnectorRuntime(settings) as runtime:
        connector = OpcUaConnector(settings=settings, runtime=runtime)
        thread = threading.Thread(target=connector.run, args=(stop,), name="bench-opcua")
        thread.start()
        try:
            metrics = runtime.metrics
            wait_until(lambda: metrics.values_read >= 2 * OPCUA_NODES, timeout_s=60)
            probe.begin()
            values, cpu, start = metrics.values_read, time.process_time(), time.perf_counter()
            time.sleep(duration_s)
            elapsed = time.perf_counter() - start
            rate, cores = (metrics.values_read - values) / elapsed, (time.process_time() - cpu) / elapsed
            return (rate, cores, *probe.end())
        finally:
            stop.set()
            thread.join(20)


def opcua(context: BenchContext) -> dict[str, Any]:
    """`opcua_values_per_s`: 1,000 subscribed nodes at 10 Hz from a simulated asyncua server process."""
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)  # its publish loop logs its own shutdown
    spawn = multiprocessing.get_context("spawn")
    port = free_port()
    started = spawn.Event()
    updates, cpu_s = spawn.Value("q", 0), spawn.Value("d", 0.0)
    probe = _ServerProbe(updates, cpu_s)
    server = spawn.Process(
        target=_serve_opcua, args=(port, started, updates, cpu_s), name="bench-opcua-server", daemon=True
    )
    server.start()
    duration_s = 3.0 if context.quick else 6.0
    try:
        if not started.wait(60):
            raise RuntimeError("the bench's OPC UA server did not start")
        settings = _opcua_settings(context, f"opc.tcp://127.0.0.1:{port}/")
        runs = [_opcua_connector_run(settings, duration_s, probe) for _ in range(context.runs)]
    finally:
        server.kill()
        server.join(10)
    rate, cores = _median([r[0] for r in runs]), _median([r[1] for r in runs])
    offered = _median([r[2] for r in runs])
    target = OPCUA_NODES * OPCUA_RATE_HZ
    return {
        "opcua_values_per_s": round(rate),
        "opcua_runs": [round(r[0]) for r in runs],
        "opcua_cpu_cores": round(cores, 3),
        "opcua_cpu_us_per_value": round(cores / rate * 1e6, 1) if rate else None,
        "opcua_projected_cores_at_target": round(cores / rate * OPCUA_NODES * OPCUA_RATE_HZ, 3)
        if rate
        else None,
        "opcua_target_values_per_s": round(target),
        "opcua_server_offered_values_per_s": round(offered),
        "opcua_server_cpu_cores": round(_median([r[3] for r in runs]), 3),
        "opcua_of_offered": round(rate / offered, 3) if offered else None,
        "opcua_nodes": OPCUA_NODES,
        "opcua_meets_target": rate >= 0.98 * target and cores < 1.0,
    }


# --- Sparkplug B -------------------------------------------------------------------------------------------


def _sparkplug_metrics() -> list[SimulatedMetric]:
    return [
        SimulatedMetric(f"Signal/{index}", DataType.DOUBLE, frequency_hz=0.1 + index / 1000)
        for index in range(SPARKPLUG_METRICS_PER_MESSAGE)
    ]


def _sparkplug_settings(context: BenchContext, n_messages: int) -> SparkplugConnectorSettings:
    mappings = [
        {
            "group_id": _GROUP,
            "edge_node_id": _EDGE_NODE,
            "device_id": _DEVICE,
            "metric": metric.name,
            "asset_id": "bench-sparkplug",
            "sensor": f"s{index}",
            "sample_rate_hz": 10.0,
        }
        for index, metric in enumerate(_sparkplug_metrics())
    ]
    return load_settings(
        SparkplugConnectorSettings,
        environ={},
        overrides={
            "connector_id": "bench-sparkplug",
            "mqtt": context.mqtt(),
            "sparkplug_mqtt": context.mqtt(),
            "queue_size": n_messages + 10,
            "metrics": mappings,
        },
    )


def _encoded_series(node: SimulatedEdgeNode, n_messages: int) -> list[tuple[str, bytes]]:
    birth_ms = node.last_birth_ms if node.last_birth_ms is not None else now_ns() // 1_000_000
    return [node.encode_data(_DEVICE, birth_ms + 100 * (index + 1)) for index in range(n_messages)]


def _sparkplug_connector_run(context: BenchContext, n_messages: int) -> float:
    settings = _sparkplug_settings(context, n_messages)
    stop = threading.Event()
    node = SimulatedEdgeNode(
        mqtt_settings=MqttSettings.model_validate(context.mqtt()),
        group_id=_GROUP,
        edge_node_id=_EDGE_NODE,
        devices={_DEVICE: _sparkplug_metrics()},
    )
    with ConnectorRuntime(settings) as runtime:
        connector = SparkplugConnector(settings=settings, runtime=runtime)
        thread = threading.Thread(target=connector.run, args=(stop,), name="bench-sparkplug")
        thread.start()
        try:
            wait_until(lambda: connector.is_subscribed, timeout_s=10)
            node.start()
            wait_until(lambda: connector.host.is_online(_GROUP, _EDGE_NODE, _DEVICE), timeout_s=10)
            messages = _encoded_series(node, n_messages)
            metrics = runtime.metrics
            expected = metrics.values_read + n_messages * SPARKPLUG_METRICS_PER_MESSAGE
            start = time.perf_counter()
            for topic, payload in messages:
                node.publish_raw(topic, payload)
            wait_until(lambda: metrics.values_read >= expected, timeout_s=120, interval_s=0.005)
            return n_messages * SPARKPLUG_METRICS_PER_MESSAGE / (time.perf_counter() - start)
        finally:
            node.stop()
            stop.set()
            thread.join(10)


def _parse_ceiling(payloads: list[bytes]) -> tuple[float, float]:
    """Metrics per second: the protobuf runtime parsing alone, and our typed decode."""
    start = time.perf_counter()
    for payload in payloads:
        PayloadMessage.FromString(payload)
    parse_s = time.perf_counter() - start
    start = time.perf_counter()
    for payload in payloads:
        decode_payload(payload)
    decode_s = time.perf_counter() - start
    metrics = len(payloads) * SPARKPLUG_METRICS_PER_MESSAGE
    return metrics / parse_s, metrics / decode_s


def _broker_ceiling(context: BenchContext, messages: list[tuple[str, bytes]]) -> float:
    """Metrics per second a bare paho subscriber receives of the same messages through the broker."""
    received = 0
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1

    topic = messages[0][0]
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_connect = lambda client, *_: client.subscribe(topic)
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.on_message = on_message
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    for client in (subscriber, publisher):
        client.connect(context.broker.host, context.broker.port)
        client.loop_start()
    try:
        wait_until(subscribed.is_set, timeout_s=10)
        start = time.perf_counter()
        for message_topic, payload in messages:
            publisher.publish(message_topic, payload, qos=0)
        wait_until(lambda: received >= len(messages), timeout_s=60, interval_s=0.005)
        return len(messages) * SPARKPLUG_METRICS_PER_MESSAGE / (time.perf_counter() - start)
    finally:
        for client in (subscriber, publisher):
            client.disconnect()
            client.loop_stop()


def sparkplug(context: BenchContext) -> dict[str, Any]:
    """`sparkplug_metrics_per_s`: aliased DDATA of 100 metrics through the broker into the connector."""
    n_messages = 500 if context.quick else 2000
    node = SimulatedEdgeNode(
        mqtt_settings=MqttSettings.model_validate(context.mqtt()),
        group_id=_GROUP,
        edge_node_id="reference",
        devices={_DEVICE: _sparkplug_metrics()},
    )
    node.last_birth_ms = now_ns() // 1_000_000
    messages = _encoded_series(node, n_messages)  # encoded only, for the ceilings: never connected
    runs, parse, decode, broker = [], [], [], []
    for _ in range(context.runs):
        runs.append(_sparkplug_connector_run(context, n_messages))
        parse_rate, decode_rate = _parse_ceiling([payload for _, payload in messages])
        parse.append(parse_rate)
        decode.append(decode_rate)
        broker.append(_broker_ceiling(context, messages))
    rate, parse_ceiling, broker_ceiling = _median(runs), _median(parse), _median(broker)
    return {
        "sparkplug_metrics_per_s": round(rate),
        "sparkplug_runs": [round(r) for r in runs],
        "sparkplug_metrics_per_message": SPARKPLUG_METRICS_PER_MESSAGE,
        "sparkplug_protobuf_parse_ceiling_metrics_per_s": round(parse_ceiling),
        "sparkplug_typed_decode_metrics_per_s": round(_median(decode)),
        "sparkplug_broker_ceiling_metrics_per_s": round(broker_ceiling),
        "sparkplug_of_broker_ceiling": round(rate / broker_ceiling, 3),
        "sparkplug_of_parse_ceiling": round(rate / parse_ceiling, 3),
    }
