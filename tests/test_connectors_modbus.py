"""The Modbus TCP connector against a real pymodbus server and the real broker, into the real edge agent."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.connectors.modbus import ModbusPoller, decode_register_value, plan_reads
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import ModbusConnectorSettings, ModbusRegister
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings
from forewarn.localservices import MosquittoServer, wait_until
from shared.config import load_settings
from shared.features import SensorKind
from shared.timebase import NS_PER_S, now_ns
from tests.connectors_support import (
    ModbusTestServer,
    RawCollector,
    RecordingPipeline,
    broker_settings,
    recording_edge_agent,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "connect-modbus.toml"
ASSET = "pump-31"
SENSORS = ("pressure", "current", "temperature", "flow")
POLL_HZ = 10.0
OUTAGE_S = 20.0


def _words(fmt: str, value: float, *, word_order: str = "big", byte_order: str = "big") -> list[int]:
    """How a device lays a value out in registers: big-endian bytes, then the device's quirks."""
    data = struct.pack(">" + fmt, value)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words[::-1] if word_order == "little" else words


def _load(server: ModbusTestServer, broker: MosquittoServer, **changes: Any) -> ModbusConnectorSettings:
    overrides = {
        "host": server.host,
        "port": server.port,
        "poll_rate_hz": POLL_HZ,
        "timeout_s": 0.3,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        "mqtt": broker_settings(broker),
        "health": {"interval_s": 0.3},
        **changes,
    }
    return load_settings(ModbusConnectorSettings, toml_path=EXAMPLE, environ={}, overrides=overrides)


def _set_plant_values(server: ModbusTestServer, pressure_counts: int) -> None:
    """The example's registers: pressure (0.01 bar), current (A), temperature (m°C), flow (m³/h)."""
    server.holding[100:101] = _words("h", pressure_counts)
    server.holding[101:103] = _words("f", 42.5)
    server.input[10:12] = _words("I", 123_456, word_order="little")
    server.input[20:24] = _words("d", 360.0, byte_order="little")


@pytest.fixture
def modbus_server() -> Iterator[ModbusTestServer]:
    server = ModbusTestServer()
    _set_plant_values(server, -1234)
    server.start()
    yield server
    server.close()


class _Running:
    """A connector (runtime + poller) on its own thread, stopped at the end of the test."""

    def __init__(self, settings: ModbusConnectorSettings) -> None:
        self.runtime = ConnectorRuntime(settings).__enter__()
        self.poller = ModbusPoller(
            settings=settings, publisher=self.runtime.publisher, metrics=self.runtime.metrics
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.poller.run(self.stop)), name="test-modbus"
        )
        self.thread.start()

    @property
    def metrics(self) -> Any:
        return self.runtime.metrics

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.runtime.__exit__(None, None, None)


@pytest.fixture
def running() -> Iterator[Callable[[ModbusConnectorSettings], _Running]]:
    started: list[_Running] = []

    def start(settings: ModbusConnectorSettings) -> _Running:
        started.append(_Running(settings))
        return started[-1]

    yield start
    for connector in started:
        connector.close()


@pytest.mark.parametrize(
    ("data_type", "fmt", "raw", "word_order", "byte_order"),
    [
        ("int16", "h", -1234, "big", "big"),
        ("uint16", "H", 65000, "big", "little"),
        ("int32", "i", -7_654_321, "little", "big"),
        ("uint32", "I", 4_000_000_000, "big", "big"),
        ("float32", "f", -0.15625, "little", "little"),
        ("float64", "d", 123456.789, "big", "little"),
    ],
)
def test_every_data_type_byte_and_word_order_decodes_to_its_scaled_value(
    data_type: str, fmt: str, raw: float, word_order: str, byte_order: str
) -> None:
    register = ModbusRegister.model_validate(
        {
            "asset_id": "a",
            "sensor": "s",
            "address": 0,
            "data_type": data_type,
            "word_order": word_order,
            "byte_order": byte_order,
            "scale": 0.5,
            "offset": 3.0,
        }
    )
    words = _words(fmt, raw, word_order=word_order, byte_order=byte_order)
    assert decode_register_value(register, words) == pytest.approx(raw * 0.5 + 3.0, rel=1e-12)


def test_values_next_to_each_other_share_a_read_and_holes_split_them() -> None:
    def register(address: int, data_type: str = "uint16", table: str = "holding") -> ModbusRegister:
        return ModbusRegister.model_validate(
            {
                "asset_id": "a",
                "sensor": f"s{address}",
                "address": address,
                "data_type": data_type,
                "table": table,
            }
        )

    registers = [
        register(100),
        register(101, "float32"),
        register(103),
        register(110),
        register(100, table="input"),
    ]
    reads = [(r.table, r.address, r.count, len(r.values)) for r in plan_reads(registers, max_count=125)]
    assert reads == [("holding", 100, 4, 3), ("holding", 110, 1, 1), ("input", 100, 1, 1)]
    capped = [(r.address, r.count) for r in plan_reads(registers[:3], max_count=3)]
    assert capped == [(100, 3), (103, 1)]
    with pytest.raises(ValueError, match="runs past register 65535"):
        register(65534, "float64")


@pytest.fixture
def recording_agent(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> Iterator[tuple[EdgeAgent, RecordingPipeline]]:
    sensors = tuple(
        SensorSettings(name=name, kind=SensorKind.SLOW, sample_rate_hz=POLL_HZ) for name in SENSORS
    )
    pipeline = PipelineSettings(assets=(AssetSettings(asset_id=ASSET, sensors=sensors),))
    gateway_id = unique_id("gw")
    with recording_edge_agent(broker, workdir / "edge", gateway_id=gateway_id, pipeline=pipeline) as agent:
        yield agent


@pytest.mark.slow
def test_registers_arrive_in_the_edge_agent_scaled_at_the_poll_rate_with_their_poll_time_as_they_change(
    broker: MosquittoServer,
    modbus_server: ModbusTestServer,
    recording_agent: tuple[EdgeAgent, RecordingPipeline],
    running: Callable[[ModbusConnectorSettings], _Running],
) -> None:
    agent, received = recording_agent
    started_ns = now_ns()
    connector = running(_load(modbus_server, broker, publishing={"max_delay_s": 0.3}))
    wait_until(lambda: all(len(received.samples(ASSET, s)) >= 10 for s in SENSORS), timeout_s=20)
    _set_plant_values(modbus_server, 500)  # the pressure rises: -12.34 bar -> 5 bar
    wait_until(lambda: 5.0 in received.samples(ASSET, "pressure").tolist(), timeout_s=10)
    connector.close()
    stopped_ns = now_ns()

    pressure = received.samples(ASSET, "pressure")
    assert set(np.round(pressure.astype(np.float64), 4).tolist()) == {-12.34, 5.0}
    assert pressure[-1] == pytest.approx(5.0)
    changed = int(np.argmax(np.isclose(pressure, 5.0)))
    assert np.allclose(pressure[:changed], -12.34)
    assert np.allclose(pressure[changed:], 5.0)
    np.testing.assert_allclose(received.samples(ASSET, "current"), 42.5)
    np.testing.assert_allclose(received.samples(ASSET, "temperature"), 123.456, rtol=1e-6)
    np.testing.assert_allclose(received.samples(ASSET, "flow"), 100.0, rtol=1e-6)
    for sensor in SENSORS:
        batches = received.of(ASSET, sensor)
        assert {b.sample_rate_hz for b in batches} == {POLL_HZ}
        assert started_ns <= batches[0].start_ns
        assert batches[-1].end_ns <= stopped_ns + NS_PER_S
        assert [b.seq for b in batches] == list(range(len(batches)))
        assert max(len(b.samples) for b in batches) > 1  # consecutive polls share a batch
    # The agent saw regular streams: a gap only where the connector counted one (a late poll).
    rejected = agent.pipeline.metrics.rejected
    assert set(rejected) <= {"gap"}
    assert rejected.get("gap", 0) == connector.metrics.gaps


def test_a_modbus_exception_is_counted_by_reason_and_the_other_reads_keep_flowing(
    broker: MosquittoServer,
    modbus_server: ModbusTestServer,
    unique_id: Callable[[str], str],
    running: Callable[[ModbusConnectorSettings], _Running],
) -> None:
    collector = RawCollector(broker, [ASSET], unique_id("c"))
    try:
        modbus_server.exceptions[101] = 2  # ILLEGAL DATA ADDRESS: the pressure+current read fails
        connector = running(_load(modbus_server, broker, publishing={"max_delay_s": 0.2}))
        collector.wait_samples(ASSET, "flow", 3)
        metrics = connector.metrics
        wait_until(lambda: metrics.rejected.get("modbus_exception", 0) >= 6)
        assert set(metrics.rejected) == {"modbus_exception"}
        assert metrics.last_error == (
            "modbus_exception reading holding 100..102 of unit 1: exception code 2 (ILLEGAL_ADDRESS)"
        )
        assert collector.of(ASSET, "pressure") == []
        assert len(collector.samples(ASSET, "temperature")) >= 3
        assert metrics.source_connected
        assert metrics.reconnects == 0

        del modbus_server.exceptions[101]  # the device answers again
        collector.wait_samples(ASSET, "pressure", 2)
        np.testing.assert_allclose(collector.samples(ASSET, "pressure"), -12.34)
    finally:
        collector.close()


@pytest.mark.slow
def test_a_server_stopped_for_20_s_is_reconnected_and_the_gap_is_reported(
    broker: MosquittoServer,
    modbus_server: ModbusTestServer,
    unique_id: Callable[[str], str],
    running: Callable[[ModbusConnectorSettings], _Running],
) -> None:
    collector = RawCollector(broker, [ASSET], unique_id("c"))
    try:
        connector = running(_load(modbus_server, broker, publishing={"max_delay_s": 0.2}))
        collector.wait_samples(ASSET, "flow", 5)
        modbus_server.stop()
        stopped_ns = now_ns()
        wait_until(lambda: not connector.metrics.source_connected, timeout_s=5)
        time.sleep(OUTAGE_S)  # the outage itself
        modbus_server.start()
        restarted_ns = now_ns()
        wait_until(lambda: connector.metrics.reconnects == 1, timeout_s=10)
        wait_until(lambda: any(b.start_ns >= restarted_ns for b in collector.of(ASSET, "flow")), timeout_s=10)
        wait_until(
            lambda: any(s.gaps >= len(SENSORS) and s.reconnects == 1 for s in collector.statuses), timeout_s=5
        )
    finally:
        collector.close()
    metrics = connector.metrics
    assert metrics.gaps == len(SENSORS)  # one per stream
    assert set(metrics.rejected) <= {"timeout", "disconnected"}
    for sensor in SENSORS:
        batches = collector.of(ASSET, sensor)
        before = [b for b in batches if b.start_ns < stopped_ns]
        after = [b for b in batches if b.start_ns >= restarted_ns]
        assert before
        assert after
        assert after[0].start_ns - before[-1].end_ns >= (OUTAGE_S - 1) * NS_PER_S
        assert [b.seq for b in batches] == list(range(len(batches)))


@pytest.mark.slow
def test_forewarn_connect_modbus_runs_until_sigterm_and_leaves_an_offline_status(
    broker: MosquittoServer, modbus_server: ModbusTestServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    connector_id = unique_id("mb")
    config = workdir / "connect-modbus.toml"
    config.write_text(
        EXAMPLE.read_text()
        .replace('connector_id = "modbus-line3"', f'connector_id = "{connector_id}"')
        .replace('host = "192.168.10.21"', f'host = "{modbus_server.host}"')
        .replace("port = 502", f"port = {modbus_server.port}")
        .replace("port = 1883", f"port = {broker.port}")
    )
    collector = RawCollector(broker, [ASSET], unique_id("c"))
    environ = {**os.environ, "FOREWARN_CONNECT_MODBUS_HEALTH__INTERVAL_S": "0.3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "forewarn.cli", "connect", "modbus", "--config", str(config)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        collector.wait_samples(ASSET, "current", 5, timeout_s=30)
        wait_until(
            lambda: any(s.connector_id == connector_id and s.values_read > 0 for s in collector.statuses)
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        wait_until(lambda: collector.statuses[-1].state == "offline")
        assert collector.statuses[-1].connector_id == connector_id
    finally:
        if process.poll() is None:
            process.kill()
        collector.close()
