"""OPC UA and Sparkplug B values into the real edge agent: a simulated server or edge node, the connector,
the real Mosquitto and the agent's intake and pipeline; the agent receives each stream at its rate with
its values, and sees a gap only where the connector counted one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.connectors.opcua import OpcUaConnector
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import OpcUaConnectorSettings, SparkplugConnectorSettings
from edge_agent.connectors.sparkplug import SparkplugConnector
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings
from forewarn.localservices import MosquittoServer, free_port, wait_until
from shared.config import MqttSettings, load_settings
from shared.features import SensorKind
from shared.sparkplug import DataType
from simulators.opcua_server import SimulatedOpcUaServer, SimulatedVariable, variable_value
from simulators.sparkplug_node import SimulatedEdgeNode, SimulatedMetric, metric_value
from tests.connectors_support import (
    RecordingPipeline,
    broker_settings,
    recording_edge_agent,
    running_in_thread,
)

pytestmark = pytest.mark.slow
RATE_HZ = 10.0


@pytest.fixture
def asset(unique_id: Callable[[str], str]) -> str:
    return unique_id("pump")


@pytest.fixture
def agent(
    broker: MosquittoServer, workdir: Path, asset: str, unique_id: Callable[[str], str]
) -> Iterator[tuple[EdgeAgent, RecordingPipeline]]:
    sensor = SensorSettings(name="vibration_rms", kind=SensorKind.SLOW, sample_rate_hz=RATE_HZ)
    pipeline = PipelineSettings(assets=(AssetSettings(asset_id=asset, sensors=(sensor,)),))
    gateway_id = unique_id("gw")
    with recording_edge_agent(broker, workdir / "edge", gateway_id=gateway_id, pipeline=pipeline) as agent:
        yield agent


def test_opcua_values_arrive_in_the_edge_agent_with_their_source_time_and_scale(
    broker: MosquittoServer, agent: tuple[EdgeAgent, RecordingPipeline], asset: str
) -> None:
    edge, received = agent
    variable = SimulatedVariable("Pump7.Vibration", amplitude=2.0, frequency_hz=0.7, offset=3.0)
    with SimulatedOpcUaServer(port=free_port(), variables=[variable]) as server:
        node = {"node_id": server.node_id(variable.name), "asset_id": asset, "sensor": "vibration_rms"}
        settings = load_settings(
            OpcUaConnectorSettings,
            environ={},
            overrides={
                "endpoint": server.endpoint,
                "mqtt": broker_settings(broker),
                "publishing": {"max_delay_s": 0.3},
                "nodes": [{**node, "scale": 0.5}],
            },
        )
        with (
            ConnectorRuntime(settings) as runtime,
            running_in_thread(OpcUaConnector(settings=settings, runtime=runtime).run, name="test-opcua"),
        ):
            wait_until(lambda: len(received.samples(asset, "vibration_rms")) >= 20, timeout_s=30)
    batches = received.of(asset, "vibration_rms")
    assert {batch.sample_rate_hz for batch in batches} == {RATE_HZ}
    for batch in batches:
        assert batch.samples[0] == pytest.approx(variable_value(variable, batch.start_ns) * 0.5, rel=1e-6)
    assert set(edge.pipeline.metrics.rejected) <= {"gap"}
    assert edge.pipeline.metrics.rejected.get("gap", 0) <= runtime.metrics.gaps


def test_sparkplug_metrics_arrive_in_the_edge_agent_on_their_grid(
    broker: MosquittoServer,
    agent: tuple[EdgeAgent, RecordingPipeline],
    asset: str,
    unique_id: Callable[[str], str],
) -> None:
    edge, received = agent
    group = unique_id("plant")
    metric = SimulatedMetric("Vibration/RMS", DataType.DOUBLE, amplitude=1.5, frequency_hz=0.4, offset=2.0)
    mapping = {
        "group_id": group,
        "edge_node_id": "line3",
        "device_id": "pump7",
        "metric": metric.name,
        "asset_id": asset,
        "sensor": "vibration_rms",
        "sample_rate_hz": RATE_HZ,
    }
    settings = load_settings(
        SparkplugConnectorSettings,
        environ={},
        overrides={
            "mqtt": broker_settings(broker),
            "sparkplug_mqtt": broker_settings(broker),
            "publishing": {"max_delay_s": 0.3},
            "metrics": [mapping],
        },
    )
    node = SimulatedEdgeNode(
        mqtt_settings=MqttSettings.model_validate(broker_settings(broker)),
        group_id=group,
        edge_node_id="line3",
        devices={"pump7": [metric]},
    )
    with ConnectorRuntime(settings) as runtime:
        connector = SparkplugConnector(settings=settings, runtime=runtime)
        with running_in_thread(connector.run, name="test-sparkplug", join_s=10):
            wait_until(lambda: connector.is_subscribed, timeout_s=10)
            node.start()
            try:
                birth_ms = node.last_birth_ms
                assert birth_ms is not None
                for index in range(1, 30):
                    node.publish_data(birth_ms + index * 100)
                wait_until(lambda: len(received.samples(asset, "vibration_rms")) >= 30, timeout_s=20)
            finally:
                node.stop()
    samples = received.samples(asset, "vibration_rms").tolist()
    expected = [float(metric_value(metric, birth_ms + index * 100)) for index in range(30)]  # type: ignore[arg-type]
    assert samples == pytest.approx(expected, rel=1e-6)
    assert received.of(asset, "vibration_rms")[0].start_ns == birth_ms * 1_000_000
    assert edge.pipeline.metrics.rejected == {}
