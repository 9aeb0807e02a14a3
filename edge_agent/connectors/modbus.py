"""The Modbus TCP connector (`forewarn connect modbus`): configured registers polled at a fixed rate.

Each configured value (`registers`: table, address, data type, byte and word order, unit id, asset and
sensor, scale and offset) is read every `1 / poll_rate_hz` seconds with pymodbus's asyncio client. Values
next to each other in one table of one unit are read in one request (at most `max_registers_per_read`
registers). Modbus carries no time, so every value of one poll is stamped with the poll's wall-clock time;
polls follow an absolute schedule (no drift), and a poll that overruns skips the ticks it missed, which the
publisher then counts as a gap in each stream.

Faults are counted by reason in the heartbeat's `rejected` (values not obtained): `modbus_exception` (the
server answered with an exception code: an illegal address, a busy device), `timeout` (no answer within
`timeout_s`), `disconnected` (the connection dropped during the request). A lost connection is
re-established with a backoff doubling from `reconnect_min_s` to `reconnect_max_s`, each success after a
loss counted in `reconnects`; the missing polls show as one gap per stream when values flow again.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from edge_agent.connectors.health import ConnectorMetrics
from edge_agent.connectors.publishing import SamplePublisher
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import (
    MODBUS_WORDS,
    ModbusConnectorSettings,
    ModbusDataType,
    ModbusRegister,
)
from shared.rate_limited_log import RateLimitedLog
from shared.timebase import now_ns

__all__ = ["ModbusPoller", "ReadRequest", "decode_register_value", "plan_reads", "run"]

logger = logging.getLogger(__name__)

_FORMATS: dict[ModbusDataType, struct.Struct] = {
    "int16": struct.Struct(">h"),
    "uint16": struct.Struct(">H"),
    "int32": struct.Struct(">i"),
    "uint32": struct.Struct(">I"),
    "float32": struct.Struct(">f"),
    "float64": struct.Struct(">d"),
}
_STOP_CHECK_S = 0.1


def register_count(register: ModbusRegister) -> int:
    """How many 16-bit registers a configured value spans."""
    return MODBUS_WORDS[register.data_type]


def _device_order(data: bytes, register: ModbusRegister) -> bytes:
    """The value's bytes most significant first, from its registers' bytes as the device sent them."""
    if register.word_order == "little":
        data = b"".join(data[i : i + 2] for i in range(len(data) - 2, -1, -2))
    if register.byte_order == "little":
        swapped = bytearray(len(data))
        swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
        data = bytes(swapped)
    return data


def _decode(register: ModbusRegister, data: bytes, at: int) -> float:
    """The calibrated value of `register` whose registers start at byte `at` of `data` (wire order)."""
    layout = _FORMATS[register.data_type]
    if register.word_order == "big" and register.byte_order == "big":
        raw = layout.unpack_from(data, at)[0]
    else:
        raw = layout.unpack(_device_order(data[at : at + layout.size], register))[0]
    return float(raw) * register.scale + register.offset


def decode_register_value(register: ModbusRegister, words: Iterable[int]) -> float:
    """The calibrated value (`raw * scale + offset`) a configured value's registers encode.

    `word_order` says which register holds the most significant part, `byte_order` which byte of each
    register comes first on the wire (`little`: byte-swapped devices).

    >>> spec = ModbusRegister(asset_id="a", sensor="s", address=0, data_type="float32", word_order="little")
    >>> decode_register_value(spec, [0x0000, 0x4049])  # 3.140625 with the low word first
    3.140625
    """
    ordered = list(words)
    return _decode(register, struct.pack(f">{len(ordered)}H", *ordered), 0)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read of consecutive registers and the configured values in it."""

    unit_id: int
    table: str
    address: int
    count: int
    values: tuple[ModbusRegister, ...]

    def describe(self) -> str:
        """`holding 100..103 of unit 1`, for error messages."""
        return f"{self.table} {self.address}..{self.address + self.count - 1} of unit {self.unit_id}"


def plan_reads(registers: Iterable[ModbusRegister], *, max_count: int) -> list[ReadRequest]:
    """Group configured values into as few reads as possible: per unit and table, values whose registers
    touch or overlap share a read of at most `max_count` registers (holes are not read: an address a
    device does not have would fail the whole read)."""
    by_table: dict[tuple[int, str], list[ModbusRegister]] = {}
    for register in registers:
        by_table.setdefault((register.unit_id, register.table), []).append(register)
    requests: list[ReadRequest] = []
    for (unit_id, table), members in sorted(by_table.items()):
        members.sort(key=lambda r: (r.address, register_count(r)))
        group: list[ModbusRegister] = []
        start = end = 0
        for register in members:
            reg_end = register.address + register_count(register)
            if group and register.address <= end and max(end, reg_end) - start <= max_count:
                group.append(register)
                end = max(end, reg_end)
                continue
            if group:
                requests.append(ReadRequest(unit_id, table, start, end - start, tuple(group)))
            group, start, end = [register], register.address, reg_end
        if group:
            requests.append(ReadRequest(unit_id, table, start, end - start, tuple(group)))
    return requests


class ModbusPoller:
    """Polls the configured registers of one Modbus TCP server and hands the values to the publisher.

    Args:
        settings: server, rate, timeouts, backoff and registers.
        publisher: where values go (`add_value` on the poll rate's grid).
        metrics: the connector's counters.
    """

    def __init__(
        self, *, settings: ModbusConnectorSettings, publisher: SamplePublisher, metrics: ConnectorMetrics
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._metrics = metrics
        self._requests = plan_reads(settings.registers, max_count=settings.max_registers_per_read)
        self._warnings = RateLimitedLog(logger, interval_s=60.0)
        self._was_connected = False
        self.polls = 0
        self.poll_busy_s = 0.0  # time spent inside polls (reading, decoding, handing over)

    @property
    def requests(self) -> list[ReadRequest]:
        """The reads of one poll."""
        return list(self._requests)

    async def run(self, stop: threading.Event) -> None:
        """Connect, poll on schedule and reconnect with backoff until `stop` is set."""
        client = AsyncModbusTcpClient(
            self._settings.host,
            port=self._settings.port,
            timeout=self._settings.timeout_s,
            retries=0,
            reconnect_delay=0,  # reconnects are ours: counted, with our backoff
            reconnect_delay_max=0,
        )
        try:
            while not stop.is_set():
                if not await self._connect(client, stop):
                    return
                await self._poll_while_connected(client, stop)
        finally:
            client.close()
            self._metrics.source_connected = False

    async def _connect(self, client: AsyncModbusTcpClient, stop: threading.Event) -> bool:
        """Connect with backoff; False if stopped first."""
        delay = self._settings.reconnect_min_s
        while not stop.is_set():
            if await client.connect():
                self._metrics.source_connected = True
                if self._was_connected:
                    self._metrics.reconnects += 1
                self._was_connected = True
                return True
            address = f"{self._settings.host}:{self._settings.port}"
            self._metrics.error(f"cannot connect to Modbus server {address}")
            self._warnings.warn(
                "connect", "cannot connect to Modbus server %s; retrying in %.1f s", address, delay
            )
            if await _sleep_unless_stopped(delay, stop):
                return False
            delay = min(2 * delay, self._settings.reconnect_max_s)
        return False

    async def _poll_while_connected(self, client: AsyncModbusTcpClient, stop: threading.Event) -> None:
        period_s = 1.0 / self._settings.poll_rate_hz
        next_tick = time.monotonic()
        while not stop.is_set():
            await self.poll_once(client)
            if not client.connected:
                self._metrics.source_connected = False
                self._metrics.error(f"lost the connection to {self._settings.host}:{self._settings.port}")
                return
            next_tick += period_s
            now = time.monotonic()
            if next_tick < now:  # overran: skip the ticks missed (the publisher counts the gap)
                next_tick += period_s * int((now - next_tick) / period_s + 1)
            if await _sleep_unless_stopped(next_tick - now, stop):
                return

    async def poll_once(self, client: AsyncModbusTcpClient) -> None:
        """Read every configured value once, stamped with this poll's time."""
        time_ns = now_ns()
        started = time.perf_counter()
        self.polls += 1
        try:
            for request in self._requests:
                words = await self._read(client, request)
                if words is None:
                    if not client.connected:
                        return
                    continue
                self._deliver(request, words, time_ns)
        finally:
            self.poll_busy_s += time.perf_counter() - started

    async def _read(self, client: AsyncModbusTcpClient, request: ReadRequest) -> list[int] | None:
        reader = client.read_holding_registers if request.table == "holding" else client.read_input_registers
        n_values = len(request.values)
        try:
            response: ModbusPDU = await reader(
                request.address, count=request.count, device_id=request.unit_id
            )
        except ConnectionException as exc:
            self._fail(request, "disconnected", n_values, str(exc))
            return None
        except ModbusIOException as exc:  # no answer within the timeout
            self._fail(request, "timeout", n_values, str(exc))
            return None
        except ModbusException as exc:
            self._fail(request, "modbus_error", n_values, str(exc))
            return None
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            self._fail(
                request, "modbus_exception", n_values, f"exception code {code} ({_exception_name(code)})"
            )
            return None
        words = list(response.registers)
        if len(words) < request.count:
            self._fail(request, "short_response", n_values, f"{len(words)} of {request.count} registers")
            return None
        return words

    def _deliver(self, request: ReadRequest, words: list[int], time_ns: int) -> None:
        rate = self._settings.poll_rate_hz
        data = struct.pack(f">{request.count}H", *words[: request.count])
        values = [
            (r.asset_id, r.sensor, _decode(r, data, 2 * (r.address - request.address)))
            for r in request.values
        ]
        self._metrics.values_read += len(values)
        self._publisher.add_values(values, time_ns, rate)

    def _fail(self, request: ReadRequest, reason: str, n_values: int, detail: str) -> None:
        self._metrics.reject(reason, n_values)
        text = f"{reason} reading {request.describe()}: {detail}"
        self._metrics.error(text)
        self._warnings.warn(reason, "Modbus %s", text)


def _exception_name(code: int) -> str:
    try:
        return ExcCodes(code).name
    except ValueError:
        return "unknown"


async def _sleep_unless_stopped(seconds: float, stop: threading.Event) -> bool:
    """Sleep `seconds` in short slices; True if `stop` was set meanwhile."""
    deadline = time.monotonic() + max(0.0, seconds)
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(remaining, _STOP_CHECK_S))
    return True


def run(settings: ModbusConnectorSettings, stop: threading.Event) -> None:
    """Run the Modbus TCP connector until `stop` is set."""
    # pymodbus logs every failed request at ERROR with a packet dump; this connector counts failures and
    # logs them rate-limited itself.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    with ConnectorRuntime(settings) as runtime:
        poller = ModbusPoller(settings=settings, publisher=runtime.publisher, metrics=runtime.metrics)
        asyncio.run(poller.run(stop))
