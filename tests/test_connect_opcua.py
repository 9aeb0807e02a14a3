"""The OPC UA connector against a real asyncua server (simulators.opcua_server) on a free port, publishing
through the real Mosquitto: values arrive with their asset, sensor, source time and calibration; bad quality
is counted and not used; user name and password, and a signed and encrypted channel, work; a server that
refuses subscriptions is polled; a server stopped for 20 s is reconnected and the gap reported."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from edge_agent.connectors.opcua import OpcUaConnector
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import OpcUaConnectorSettings
from forewarn.localservices import MosquittoServer, free_port, wait_until
from shared.config import load_settings
from shared.raw_batch import RawBatch
from simulators.opcua_server import SimulatedOpcUaServer, SimulatedVariable, variable_value
from tests.connectors_support import RawCollector, broker_settings, running_in_thread

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "connect-opcua.toml"
VIBRATION = SimulatedVariable("Pump7.Vibration", amplitude=2.0, frequency_hz=0.7, offset=0.5)
TEMPERATURE = SimulatedVariable("Pump7.BearingTemperature", amplitude=30.0, frequency_hz=0.05, offset=600.0)
FLAKY = SimulatedVariable("Pump7.Flow", amplitude=1.0, frequency_hz=0.2, bad_every=3)

pytestmark = pytest.mark.slow  # a server takes about three seconds to start


@pytest.fixture
def asset(unique_id: Callable[[str], str]) -> str:
    return unique_id("pump")


@pytest.fixture
def collector(broker: MosquittoServer, asset: str, unique_id: Callable[[str], str]) -> Iterator[RawCollector]:
    with RawCollector(broker, [asset], unique_id("collector")) as collector:
        yield collector


def _server(variables: list[SimulatedVariable], **options: Any) -> SimulatedOpcUaServer:
    return SimulatedOpcUaServer(port=free_port(), variables=variables, update_interval_s=0.1, **options)


def _settings(
    broker: MosquittoServer, server: SimulatedOpcUaServer, nodes: list[dict[str, Any]], **options: Any
) -> OpcUaConnectorSettings:
    return load_settings(
        OpcUaConnectorSettings,
        environ={},
        overrides={
            "connector_id": "opcua-test",
            "endpoint": server.endpoint,
            "mqtt": broker_settings(broker),
            "publishing": {"max_delay_s": 0.3},
            "health": {"interval_s": 0.5},
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "watchdog_interval_s": 0.5,
            "nodes": nodes,
            **options,
        },
    )


def _node(
    server: SimulatedOpcUaServer, variable: SimulatedVariable, asset: str, sensor: str, **extra: Any
) -> dict[str, Any]:
    return {"node_id": server.node_id(variable.name), "asset_id": asset, "sensor": sensor, **extra}


@contextlib.contextmanager
def _running(settings: OpcUaConnectorSettings) -> Iterator[tuple[OpcUaConnector, ConnectorRuntime]]:
    with ConnectorRuntime(settings) as runtime:
        connector = OpcUaConnector(settings=settings, runtime=runtime)
        with running_in_thread(connector.run, name="test-opcua"):
            yield connector, runtime


def _assert_values_follow_the_source(
    batches: list[RawBatch], variable: SimulatedVariable, *, scale: float = 1.0, offset: float = 0.0
) -> None:
    """Each batch's first sample is the variable's value at the batch's start time (its source timestamp),
    calibrated; the rest of each batch lie on the sine the variable follows."""
    assert batches
    for batch in batches:
        expected = variable_value(variable, batch.start_ns) * scale + offset
        assert batch.samples[0] == pytest.approx(expected, rel=1e-6, abs=1e-5)
        low = (variable.offset - variable.amplitude) * scale + offset
        high = (variable.offset + variable.amplitude) * scale + offset
        assert np.all((batch.samples >= min(low, high) - 1e-4) & (batch.samples <= max(low, high) + 1e-4))


def test_subscribed_values_arrive_with_asset_sensor_source_time_and_scale(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    with _server([VIBRATION, TEMPERATURE]) as server:
        nodes = [
            _node(server, VIBRATION, asset, "vibration_rms", sampling_interval_ms=100),
            _node(
                server, TEMPERATURE, asset, "temperature", scale=0.1, offset=-273.15, sampling_interval_ms=100
            ),
        ]
        started_ns = time.time_ns()
        with _running(_settings(broker, server, nodes)) as (connector, runtime):
            collector.wait_samples(asset, "vibration_rms", 20, timeout_s=20)
            collector.wait_samples(asset, "temperature", 20, timeout_s=20)
            assert connector.acquisition == "subscription"
            assert runtime.metrics.source_connected
    vibration = collector.of(asset, "vibration_rms")
    _assert_values_follow_the_source(vibration, VIBRATION)
    _assert_values_follow_the_source(
        collector.of(asset, "temperature"), TEMPERATURE, scale=0.1, offset=-273.15
    )
    assert all(batch.sample_rate_hz == 10.0 for batch in vibration)
    assert started_ns - 10**9 < vibration[0].start_ns < time.time_ns()
    assert [batch.seq for batch in vibration] == list(range(len(vibration)))
    assert not collector.errors


def test_a_value_whose_status_is_not_good_is_counted_as_bad_quality_and_not_published(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    with (
        _server([FLAKY]) as server,
        _running(_settings(broker, server, [_node(server, FLAKY, asset, "flow")])) as (_, runtime),
    ):
        wait_until(lambda: runtime.metrics.rejected.get("bad_quality", 0) >= 5, timeout_s=20)
        collector.wait_samples(asset, "flow", 10, timeout_s=20)
    rejected = runtime.metrics.rejected["bad_quality"]
    published = sum(len(batch.samples) for batch in collector.of(asset, "flow"))
    read = runtime.metrics.values_read
    assert read / 3 - 2 <= rejected <= read / 3 + 2  # one update in three
    assert published <= read - rejected
    # one update in three is bad: the good ones around it make a new batch after each hole
    assert runtime.metrics.gaps >= 1
    _assert_values_follow_the_source(collector.of(asset, "flow"), FLAKY)


def test_user_name_and_password_are_required_and_a_wrong_one_is_reported(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    with _server([VIBRATION], users={"forewarn": "s3cret"}) as server:
        nodes = [_node(server, VIBRATION, asset, "vibration_rms")]
        wrong = _settings(broker, server, nodes, username="forewarn", password="wrong")
        with _running(wrong) as (_, runtime):
            wait_until(lambda: "BadUserAccessDenied" in runtime.metrics.last_error, timeout_s=20)
            assert not runtime.metrics.source_connected
        right = _settings(broker, server, nodes, username="forewarn", password="s3cret")
        with _running(right):
            collector.wait_samples(asset, "vibration_rms", 10, timeout_s=20)
    _assert_values_follow_the_source(collector.of(asset, "vibration_rms"), VIBRATION)


def test_a_signed_and_encrypted_channel_with_a_generated_certificate_carries_the_values(
    broker: MosquittoServer, collector: RawCollector, asset: str, workdir: Path
) -> None:
    certificates = workdir / "client"
    with _server([VIBRATION], security="sign_and_encrypt", certificate_dir=workdir / "server") as server:
        security = {
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(certificates / "cert.der"),
            "private_key": str(certificates / "key.pem"),
        }
        settings = _settings(
            broker, server, [_node(server, VIBRATION, asset, "vibration_rms")], security=security
        )
        with _running(settings):
            collector.wait_samples(asset, "vibration_rms", 10, timeout_s=30)
    assert (certificates / "cert.der").stat().st_size > 0
    _assert_values_follow_the_source(collector.of(asset, "vibration_rms"), VIBRATION)


def test_a_server_that_refuses_subscriptions_is_polled(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    with _server([VIBRATION], allow_subscriptions=False) as server:
        settings = _settings(
            broker, server, [_node(server, VIBRATION, asset, "vibration_rms")], poll_rate_hz=10.0
        )
        with _running(settings) as (connector, _):
            collector.wait_samples(asset, "vibration_rms", 10, timeout_s=20)
            assert connector.acquisition == "polling"
    _assert_values_follow_the_source(collector.of(asset, "vibration_rms"), VIBRATION)


def test_a_server_stopped_for_20_s_is_reconnected_resubscribed_and_the_gap_reported(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    server = _server([VIBRATION])
    server.start()
    try:
        with _running(_settings(broker, server, [_node(server, VIBRATION, asset, "vibration_rms")])) as (
            connector,
            runtime,
        ):
            collector.wait_samples(asset, "vibration_rms", 10, timeout_s=20)
            server.stop()
            stopped_ns = time.time_ns()
            wait_until(lambda: not runtime.metrics.source_connected, timeout_s=10)
            time.sleep(20)  # the outage itself
            server.start()
            restarted_ns = time.time_ns()
            wait_until(lambda: runtime.metrics.reconnects == 1, timeout_s=20)
            wait_until(
                lambda: any(b.start_ns > restarted_ns for b in collector.of(asset, "vibration_rms")),
                timeout_s=20,
            )
            wait_until(lambda: collector.statuses and collector.statuses[-1].reconnects == 1, timeout_s=10)
    finally:
        server.stop()
    assert connector.outages_s
    assert connector.outages_s[0] >= 20.0
    assert runtime.metrics.gaps >= 1
    assert server.endpoint in runtime.metrics.last_error
    batches = collector.of(asset, "vibration_rms")
    before = [b for b in batches if b.end_ns <= stopped_ns]
    after = [b for b in batches if b.start_ns >= restarted_ns]
    assert before
    assert after
    assert after[0].start_ns - before[-1].end_ns >= 20 * 10**9  # the hole is there, not papered over
    assert after[0].seq > before[-1].seq
    _assert_values_follow_the_source(after, VIBRATION)


def test_the_example_config_loads_and_reads_a_server_with_its_node_ids(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    example = load_settings(OpcUaConnectorSettings, toml_path=EXAMPLE, environ={})
    assert [node.node_id for node in example.nodes] == [
        "ns=2;s=Pump7.Vibration",
        "ns=2;s=Pump7.BearingTemperature",
    ]
    with _server([VIBRATION, TEMPERATURE], users={"forewarn": "pw"}) as server:
        nodes = [node.model_copy(update={"asset_id": asset}) for node in example.nodes]
        settings = example.model_copy(
            update={
                "endpoint": server.endpoint,
                "nodes": tuple(nodes),
                "security": example.security.model_copy(update={"policy": "None", "mode": "None"}),
                "password": SecretStr("pw"),
                "mqtt": example.mqtt.model_copy(update={"port": broker.port}),
            }
        )
        with _running(settings):
            collector.wait_samples(asset, "vibration_rms", 10, timeout_s=20)
    _assert_values_follow_the_source(collector.of(asset, "vibration_rms"), VIBRATION)


def test_an_absolute_deadband_is_requested_and_the_server_reports_fewer_values(
    broker: MosquittoServer, collector: RawCollector, asset: str
) -> None:
    # 2 Hz sampled at 10 Hz: steps of up to 1.18; asyncua's server compares each sample with the one before
    # (not with the last one reported), so with a deadband of 0.5 it reports three or four steps in five
    fast = SimulatedVariable("Pump7.Shaft", amplitude=1.0, frequency_hz=2.0)
    with _server([fast]) as server:
        nodes = [
            _node(server, fast, asset, "shaft"),
            _node(server, fast, asset, "shaft_deadband", deadband="absolute", deadband_value=0.5),
        ]
        with _running(_settings(broker, server, nodes)) as (_, runtime):
            collector.wait_samples(asset, "shaft", 40, timeout_s=30)
    every = collector.samples(asset, "shaft")
    banded = collector.samples(asset, "shaft_deadband")
    assert 0.4 * len(every) <= len(banded) <= 0.9 * len(every)
    assert runtime.metrics.gaps >= 1  # each suppressed sample leaves a hole in the 10 Hz stream
    _assert_values_follow_the_source(collector.of(asset, "shaft_deadband"), fast)
