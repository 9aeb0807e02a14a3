"""Helpers of the connector tests: a subscriber that decodes the raw batches and heartbeats connectors
publish on the real broker, the real edge agent with its pipeline recording what it receives, a connector
run on its own thread, and a real Modbus TCP server with known registers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.agent import EdgeAgent
from edge_agent.pipeline import Pipeline
from edge_agent.settings import PipelineSettings
from forewarn.localservices import MosquittoServer, free_port, wait_until
from shared import topics
from shared.messages import ConnectorStatus, decode_connector_status
from shared.raw_batch import RawBatch, decode_raw_batch
from tests.test_edge_agent_helpers import edge_settings


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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def broker_settings(broker: MosquittoServer) -> dict[str, Any]:
    """The `mqtt` section of a connector's settings for the test broker."""
    return {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}


class RecordingPipeline:
    """The edge agent's real pipeline, recording every batch the agent hands it."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline
        self.batches: list[RawBatch] = []
        self._lock = threading.Lock()

    def process(self, batch: RawBatch) -> list[Any]:
        """Record the batch, then score it."""
        with self._lock:
            self.batches.append(batch)
        return list(self._pipeline.process(batch))

    def poll(self) -> list[Any]:
        """As the pipeline's."""
        return list(self._pipeline.poll())

    def flush(self) -> list[Any]:
        """As the pipeline's."""
        return list(self._pipeline.flush())

    @property
    def metrics(self) -> Any:
        """The pipeline's counters."""
        return self._pipeline.metrics

    def of(self, asset_id: str, sensor: str) -> list[RawBatch]:
        """The batches of one stream the agent received, in order."""
        with self._lock:
            return [b for b in self.batches if (b.asset_id, b.sensor) == (asset_id, sensor)]

    def samples(self, asset_id: str, sensor: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Every sample of one stream the agent received."""
        batches = self.of(asset_id, sensor)
        return np.concatenate([b.samples for b in batches]) if batches else np.empty(0, dtype=np.float32)


@contextlib.contextmanager
def recording_edge_agent(
    broker: MosquittoServer, workdir: Path, *, gateway_id: str, pipeline: PipelineSettings
) -> Iterator[tuple[EdgeAgent, RecordingPipeline]]:
    """The real edge agent (plant and upstream on the test broker, no models), subscribed, its pipeline
    recording every batch it is handed; stopped at the end."""
    settings = edge_settings(workdir, gateway_id=gateway_id, plant=broker, upstream=broker, pipeline=pipeline)
    recorders: list[RecordingPipeline] = []

    def factory(on_reject: Any) -> RecordingPipeline:
        real = Pipeline(settings=pipeline, gateway_id=settings.gateway_id, models=None, on_reject=on_reject)
        recorders.append(RecordingPipeline(real))
        return recorders[0]

    agent = EdgeAgent(settings, pipeline_factory=factory)
    agent.start()
    try:
        wait_until(lambda: agent.intake.is_subscribed, timeout_s=10)
        yield agent, recorders[0]
    finally:
        agent.stop()


@contextlib.contextmanager
def running_in_thread(
    run: Callable[[threading.Event], object], *, name: str, join_s: float = 20.0
) -> Iterator[threading.Event]:
    """Run `run(stop)` (a connector's loop) on its own thread until the block ends; then set `stop`, join,
    and (unless the block raised) assert the thread ended."""
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), name=name)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(join_s)
    assert not thread.is_alive(), f"{name} did not stop within {join_s} s"


class ModbusTestServer:
    """A real pymodbus TCP server on a free port, on its own thread and event loop, with known registers.

    `holding` and `input` hold the 16-bit registers the server answers with (the test sets them); a read
    touching an address in `exceptions` is answered with that Modbus exception code. `stop()` closes the
    listener and every connection; `start()` listens again on the same port.
    """

    SIZE = 512

    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.holding = [0] * self.SIZE
        self.input = [0] * self.SIZE
        self.exceptions: dict[int, int] = {}
        self.reads = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-modbus-server", daemon=True)
        self._thread.start()
        self._server: Any = None

    async def _action(  # noqa: PLR0917 - pymodbus passes these six positionally
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        del set_values
        self.reads += 1
        for at in range(address, address + count):
            if at in self.exceptions:
                return ExcCodes(self.exceptions[at])
        source = self.holding if function_code == 3 else self.input
        for at in range(address, address + count):
            current_registers[at - start_address] = source[at]
        return None

    async def _start(self) -> None:
        table = [SimData(0, count=self.SIZE, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        device = SimDevice(id=1, simdata=(bits, bits, table, table), action=self._action)
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def start(self) -> None:
        """Listen (again) on the port."""
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        """Close the listener and every connection."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)

    def close(self) -> None:
        """Stop and end the thread."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
