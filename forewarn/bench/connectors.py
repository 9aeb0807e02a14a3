"""`forewarn bench connectors`: how fast each plant connector turns its source into raw batches on a broker.

Every figure comes from the connector's own code against a real peer started here on free ports (a
throwaway Mosquitto as the plant broker), beside the ceiling of what it stands on, measured in the same
run: the ratio says how much of the ceiling the connector reaches. Each figure is the median of several
runs (one with `--quick`); the runs are listed too.

* `files_samples_per_s` (TDMS and WAV): one recording published with `speed = 0` (as fast as the broker
  takes it) by `FilesConnector.process`: read, calibrate, batch (4,096 samples), encode, publish, flush.
  Ceilings: the library reading the same file into float32 (`*_read_ceiling_samples_per_s`: npTDMS
  `TdmsFile.read`, scipy's memory-mapped WAV) and one paho client publishing the same batches pre-encoded
  to the same broker (`files_publish_ceiling_samples_per_s`); `files_*_of_ceiling` is the median over
  runs of the connector's rate over the lower ceiling measured in the same run. Target: 10 M samples/s.
* `modbus_registers_per_s`: a pymodbus server in its own process with 2,000 holding registers; the
  connector polls all of them (16 reads of 125) at 10 Hz, decoding each value and batching it on its
  stream's grid, and the figure is registers per second of the time its polls took (what one polling loop
  could do back to back). `modbus_delivered_registers_per_s` is what it delivered at that rate, with
  `modbus_gaps` (0: every poll on time). Ceiling: pymodbus's own client issuing the same reads back to back
  without decoding or publishing (`modbus_client_ceiling_registers_per_s`).

Each connector's measurement is a function in `MEASUREMENTS` taking the shared `BenchContext`; OPC UA
(`opcua_values_per_s`) and Sparkplug B (`sparkplug_metrics_per_s`) add theirs there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import logging
import multiprocessing
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import scipy.io.wavfile
from nptdms import ChannelObject, TdmsFile, TdmsWriter

from edge_agent.connectors.files import FilesConnector, ProgressRecord
from edge_agent.connectors.modbus import ModbusPoller
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import FilesConnectorSettings, ModbusConnectorSettings
from forewarn.localservices import MosquittoServer, free_port, running, temporary_directory, wait_until
from shared import topics
from shared.config import MqttSettings, load_settings
from shared.mqtt import connect, make_client
from shared.raw_batch import RawBatch, encode_raw_batch
from shared.timebase import NS_PER_S, now_ns

__all__ = ["MEASUREMENTS", "BenchContext", "run"]

FILES_TARGET_SAMPLES_PER_S = 10_000_000
_BATCH_SAMPLES = 4096
_CHANNELS = 4
_WAV_RATE = 51_200
_MODBUS_REGISTERS = 2000
_MODBUS_POLL_HZ = 10.0
_MAX_UNPUBLISHED = 64


@dataclass(frozen=True)
class BenchContext:
    """What every connector measurement shares: a scratch folder, the plant broker, the run length."""

    workdir: Path
    broker: MosquittoServer
    quick: bool

    @property
    def runs(self) -> int:
        """Timed runs per figure (the median is reported)."""
        return 1 if self.quick else 3

    def mqtt(self) -> dict[str, Any]:
        """The `mqtt` section of a connector's settings for the bench broker."""
        return {"host": self.broker.host, "port": self.broker.port}


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


# --- files -------------------------------------------------------------------------------------------------


def _write_recordings(folder: Path, frames: int) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    wav = folder / "bench.wav"
    scipy.io.wavfile.write(
        wav, _WAV_RATE, rng.integers(-20_000, 20_000, size=(frames, _CHANNELS), dtype=np.int16)
    )
    tdms = folder / "bench.tdms"
    segment = 1 << 18
    with TdmsWriter(tdms) as writer:
        for lo in range(0, frames, segment):
            n = min(segment, frames - lo)
            writer.write_segment(
                [
                    ChannelObject(
                        "daq",
                        f"ch{index}",
                        rng.standard_normal(n),
                        properties={
                            "wf_increment": 1.0 / _WAV_RATE,
                            "wf_start_time": np.datetime64(now_ns(), "ns"),
                        },
                    )
                    for index in range(_CHANNELS)
                ]
            )
    return {"wav": wav, "tdms": tdms}


def _files_settings(context: BenchContext, name: str) -> FilesConnectorSettings:
    folder = context.workdir / f"files-{name}"
    channels = [
        {"match": "*.wav", "channel": str(index), "asset_id": "bench-wav", "sensor": f"ch{index}"}
        for index in range(_CHANNELS)
    ] + [
        {"match": "*.tdms", "channel": f"daq/ch{index}", "asset_id": "bench-tdms", "sensor": f"ch{index}"}
        for index in range(_CHANNELS)
    ]
    return load_settings(
        FilesConnectorSettings,
        environ={},
        overrides={
            "connector_id": "bench-files",
            "watch_dir": str(folder / "inbox"),
            "done_dir": str(folder / "done"),
            "quarantine_dir": str(folder / "quarantine"),
            "state_file": str(folder / "progress.json"),
            "speed": 0.0,
            "mqtt": context.mqtt(),
            "publishing": {"max_batch_samples": _BATCH_SAMPLES},
            "channels": channels,
        },
    )


def _connector_rate(context: BenchContext, source: Path, run: int) -> float:
    settings = _files_settings(context, f"{source.suffix[1:]}-{run}")
    for folder in (settings.watch_dir, settings.done_dir, settings.quarantine_dir):
        folder.mkdir(parents=True, exist_ok=True)
    path = settings.watch_dir / source.name
    path.hardlink_to(source)
    with ConnectorRuntime(settings) as runtime:
        connector = FilesConnector(
            settings=settings, runtime=runtime, progress=ProgressRecord(settings.state_file)
        )
        start = time.perf_counter()
        outcome = connector.process(path, threading.Event())
        elapsed = time.perf_counter() - start
        if outcome != "done" or runtime.metrics.dropped:
            raise RuntimeError(f"bench recording {source.name}: {outcome}, dropped {runtime.metrics.dropped}")
        return runtime.metrics.values_published / elapsed


def _read_rate(source: Path) -> float:
    start = time.perf_counter()
    if source.suffix == ".wav":
        _, data = scipy.io.wavfile.read(source, mmap=True)
        n = sum(len(np.asarray(data[:, index], dtype=np.float32)) for index in range(data.shape[1]))
    else:
        n = sum(
            len(np.asarray(channel[:], dtype=np.float32))
            for group in TdmsFile.read(source).groups()
            for channel in group.channels()
        )
    return n / (time.perf_counter() - start)


def _publish_ceiling(context: BenchContext, n_batches: int) -> float:
    """One paho client publishing pre-encoded 4,096-sample batches to the broker (QoS 0), at most 64 not
    yet written at a time (as the connector's publisher), flushed."""
    samples = np.random.default_rng(1).standard_normal(_BATCH_SAMPLES).astype(np.float32)
    start_ns = now_ns()
    payloads = [
        encode_raw_batch(
            RawBatch("bench-ceiling", "ch0", seq, start_ns + seq * NS_PER_S, float(_WAV_RATE), samples)
        )
        for seq in range(n_batches)
    ]
    topic = topics.raw("bench-ceiling", "ch0")
    settings = MqttSettings.model_validate(context.mqtt())
    client = make_client(settings, client_id="forewarn-bench-publish-ceiling")
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    connect(client, settings, clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        wait_until(connected.is_set, timeout_s=10)
        start = time.perf_counter()
        pending: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        for payload in payloads:
            pending.append(client.publish(topic, payload, qos=0))
            if len(pending) > _MAX_UNPUBLISHED:
                pending.popleft().wait_for_publish(timeout=30)
        for info in pending:
            info.wait_for_publish(timeout=30)
        return n_batches * _BATCH_SAMPLES / (time.perf_counter() - start)
    finally:
        client.disconnect()
        client.loop_stop()


def files(context: BenchContext) -> dict[str, Any]:
    """`files_samples_per_s` for TDMS and WAV, with the read and publish ceilings.

    Each run measures the publish ceiling, the library's read and the connector back to back, so the
    ratio of a run compares figures taken under the same load; the ceilings reported are the best runs.
    """
    frames = 1 << 18 if context.quick else 1 << 21
    sources = _write_recordings(context.workdir, frames)
    n_batches = frames * _CHANNELS // _BATCH_SAMPLES
    figures: dict[str, Any] = {"files_channels": _CHANNELS, "files_samples_per_file": frames * _CHANNELS}
    rates: dict[str, float] = {}
    publish_best = 0.0
    for kind, source in sources.items():
        connector_runs, read_runs, ratios = [], [], []
        for run in range(context.runs):
            publish = _publish_ceiling(context, n_batches)
            read = _read_rate(source)
            connector = _connector_rate(context, source, run)
            publish_best = max(publish_best, publish)
            connector_runs.append(connector)
            read_runs.append(read)
            ratios.append(connector / min(read, publish))
        rates[kind] = _median(connector_runs)
        figures[f"files_{kind}_samples_per_s"] = round(rates[kind])
        figures[f"files_{kind}_runs"] = [round(r) for r in connector_runs]
        figures[f"files_{kind}_read_ceiling_samples_per_s"] = round(max(read_runs))
        figures[f"files_{kind}_of_ceiling"] = round(_median(ratios), 3)
    figures["files_publish_ceiling_samples_per_s"] = round(publish_best)
    figures["files_samples_per_s"] = {kind: round(rate) for kind, rate in rates.items()}
    figures["files_target_samples_per_s"] = FILES_TARGET_SAMPLES_PER_S
    figures["files_meets_target"] = min(rates.values()) >= FILES_TARGET_SAMPLES_PER_S
    return figures


# --- Modbus TCP --------------------------------------------------------------------------------------------


def _serve_modbus(port: int, n_registers: int) -> None:
    """A pymodbus TCP server with `n_registers` holding registers, until killed (a separate process)."""
    from pymodbus.server import ModbusTcpServer  # noqa: PLC0415 - imported in the server process
    from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: PLC0415

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def serve() -> None:
        registers = [SimData(0, values=list(range(n_registers)), datatype=DataType.REGISTERS)]
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        server = ModbusTcpServer(
            SimDevice(id=1, simdata=(bits, bits, registers, registers)), address=("127.0.0.1", port)
        )
        await server.serve_forever()

    asyncio.run(serve())


def _modbus_settings(context: BenchContext, port: int) -> ModbusConnectorSettings:
    registers = [
        {"address": address, "data_type": "uint16", "asset_id": "bench-modbus", "sensor": f"r{address}"}
        for address in range(_MODBUS_REGISTERS)
    ]
    return load_settings(
        ModbusConnectorSettings,
        environ={},
        overrides={
            "connector_id": "bench-modbus",
            "port": port,
            "poll_rate_hz": _MODBUS_POLL_HZ,
            "mqtt": context.mqtt(),
            "registers": registers,
        },
    )


@dataclass(frozen=True)
class _PollingRun:
    registers_per_busy_s: float
    registers_per_s: float
    gaps: int


def _connector_registers_per_s(settings: ModbusConnectorSettings, duration_s: float) -> _PollingRun:
    stop = threading.Event()
    with ConnectorRuntime(settings) as runtime:
        poller = ModbusPoller(settings=settings, publisher=runtime.publisher, metrics=runtime.metrics)
        thread = threading.Thread(target=lambda: asyncio.run(poller.run(stop)), name="bench-modbus-poller")
        thread.start()
        try:
            metrics = runtime.metrics
            wait_until(lambda: metrics.values_read >= 2 * _MODBUS_REGISTERS, timeout_s=30)
            values, busy_s, gaps = metrics.values_read, poller.poll_busy_s, metrics.gaps
            start = time.perf_counter()
            time.sleep(duration_s)
            elapsed = time.perf_counter() - start
            read = metrics.values_read - values
            return _PollingRun(read / (poller.poll_busy_s - busy_s), read / elapsed, metrics.gaps - gaps)
        finally:
            stop.set()
            thread.join(10)


async def _client_ceiling(port: int, duration_s: float) -> float:
    from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415 - only the bench needs it here

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        registers = 0
        start = time.perf_counter()
        while time.perf_counter() - start < duration_s:
            for address in range(0, _MODBUS_REGISTERS, 125):
                count = min(125, _MODBUS_REGISTERS - address)
                response = await client.read_holding_registers(address, count=count, device_id=1)
                registers += len(response.registers)
        return registers / (time.perf_counter() - start)
    finally:
        client.close()


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def modbus(context: BenchContext) -> dict[str, Any]:
    """`modbus_registers_per_s` against a pymodbus server process, with pymodbus's own client ceiling."""
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_modbus, args=(port, _MODBUS_REGISTERS), name="bench-modbus-server", daemon=True
    )
    server.start()
    duration_s = 1.0 if context.quick else 3.0
    try:
        wait_until(lambda: _accepts(port) or not server.is_alive(), timeout_s=30)
        settings = _modbus_settings(context, port)
        connector_runs, ceiling_runs = [], []
        for _ in range(context.runs):
            connector_runs.append(_connector_registers_per_s(settings, duration_s))
            ceiling_runs.append(asyncio.run(_client_ceiling(port, duration_s)))
    finally:
        server.kill()
        server.join(10)
    rate = _median([r.registers_per_busy_s for r in connector_runs])
    ceiling = _median(ceiling_runs)
    return {
        "modbus_registers_per_s": round(rate),
        "modbus_runs": [round(r.registers_per_busy_s) for r in connector_runs],
        "modbus_client_ceiling_registers_per_s": round(ceiling),
        "modbus_of_ceiling": round(rate / ceiling, 3),
        "modbus_registers_per_poll": _MODBUS_REGISTERS,
        "modbus_poll_rate_hz": _MODBUS_POLL_HZ,
        "modbus_delivered_registers_per_s": round(_median([r.registers_per_s for r in connector_runs])),
        "modbus_gaps": sum(r.gaps for r in connector_runs),
    }


# Each connector's measurement, "module:function" taking a `BenchContext`; a connector adds its line.
MEASUREMENTS: tuple[str, ...] = (
    "forewarn.bench.connectors:files",
    "forewarn.bench.connectors:modbus",
    "forewarn.bench.connectors_opcua_sparkplug:opcua",
    "forewarn.bench.connectors_opcua_sparkplug:sparkplug",
)


def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure every connector against its peer and ceiling (one process; the machine may be shared)."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    figures: dict[str, Any] = {}
    with (
        temporary_directory("forewarn-bench-connectors-") as workdir,
        running(MosquittoServer(workdir / "broker")) as broker,
    ):
        context = BenchContext(workdir=workdir, broker=broker, quick=quick)
        for reference in MEASUREMENTS:
            module_name, _, function_name = reference.partition(":")
            measure: Callable[[BenchContext], dict[str, Any]] = getattr(
                importlib.import_module(module_name), function_name
            )
            figures.update(measure(context))
    return figures
