"""Values in, raw batches out: the publishing half every connector shares.

`SamplePublisher` owns the plant broker client and a named worker thread (`connector-publisher`) that
encodes raw batches (`shared.raw_batch`, binary) and publishes them on `shared.topics.raw(asset, sensor)`
at QoS 0. Connectors hand it values through two entry points, both cheap and non-blocking by default, so
they may be called from paho's network thread (Sparkplug B) or an event loop (OPC UA, Modbus):

* `add_block` for regularly sampled blocks (recorded files, waveforms): split into batches of at most
  `publishing.max_batch_samples`;
* `add_value` (`add_values`: several streams sampled at one instant, under one lock) for polled or
  subscribed single values on a nominal grid: consecutive values within `gap_tolerance` periods of their
  expected time extend the open batch of their stream; a value later than that closes the batch and is
  counted as a gap; one earlier is rejected (`out_of_order`); an open batch is sent when full or
  `max_delay_s` after its first value.

Each (asset, sensor) stream has its own `seq`, rising by one per batch. Memory is bounded: at most
`max_buffered_samples` samples wait (beyond it new values are dropped and counted as `buffer_full`, unless
the caller of `add_block` chose to wait for room), and at most `max_unpublished_messages` batches sit in
the MQTT client. While the broker is away the worker holds what it has (it does not hand QoS 0 batches
to a client that would discard them); a batch lost with a dropped connection is counted as
`broker_offline`.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.connectors.health import ConnectorMetrics
from edge_agent.connectors.settings import PublishingSettings
from shared import topics
from shared.config import MqttSettings
from shared.mqtt import LastWill, connect, make_client
from shared.raw_batch import MAX_SAMPLE_RATE_HZ, RawBatch, encode_raw_batch
from shared.timebase import NS_PER_S

__all__ = ["SamplePublisher", "StreamKey"]

logger = logging.getLogger(__name__)

StreamKey = tuple[str, str]  # (asset_id, sensor)
_IDLE_WAIT_S = 0.1
_WRITE_WAIT_S = 0.05
_CLOSE_SLACK_S = 0.01  # batches due this close together are closed in one pass of the worker


@dataclass(slots=True)
class _Block:
    """Samples ready to be encoded as one raw batch (their `seq` is fixed when queued)."""

    key: StreamKey
    seq: int
    start_ns: int
    sample_rate_hz: float
    samples: npt.NDArray[np.float32]


@dataclass(slots=True)
class _OpenBatch:
    """The batch a stream of single values is filling."""

    start_ns: int
    sample_rate_hz: float
    period_ns: float
    opened_mono: float
    values: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Stream:
    seq: int = 0
    next_ns: float | None = None  # the expected time of the stream's next single value
    open: _OpenBatch | None = None


@dataclass(frozen=True, slots=True)
class _Pending:
    info: mqtt.MQTTMessageInfo
    samples: int
    epoch: int


class SamplePublisher:
    """Batches connector values and publishes them as raw batches. Use as a context manager.

    Args:
        mqtt_settings: the plant broker.
        settings: batching, buffering and flow control.
        client_id: MQTT client id (when `mqtt_settings.client_id` is empty).
        metrics: the connector's counters (`values_published`, `batches_published`, `dropped`, ...).
        will: the last will (the connector's offline status), if any.
        initial_seqs: the next `seq` per stream (a connector resuming after a restart).
    """

    def __init__(
        self,
        *,
        mqtt_settings: MqttSettings,
        settings: PublishingSettings,
        client_id: str,
        metrics: ConnectorMetrics,
        will: LastWill | None = None,
        initial_seqs: Mapping[StreamKey, int] | None = None,
    ) -> None:
        self._mqtt_settings = mqtt_settings
        self._settings = settings
        self._client_id = client_id
        self._metrics = metrics
        self._will = will
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._streams: dict[StreamKey, _Stream] = {
            key: _Stream(seq=seq) for key, seq in (initial_seqs or {}).items()
        }
        self._ready: collections.deque[_Block] = collections.deque()
        # Open batches of single values by stream, in the order they were opened (their deadlines' order).
        self._opened: collections.OrderedDict[StreamKey, float] = collections.OrderedDict()
        self._buffered = 0  # samples in `_ready` and in open batches
        self._in_hand = 0  # blocks taken by the worker and not yet handed to the client
        self._pending: collections.deque[_Pending] = collections.deque()
        self._connected = threading.Event()
        self._epoch = 0
        self._stop = threading.Event()
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        client = make_client(self._mqtt_settings, client_id=self._client_id, will=self._will)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        connect(client, self._mqtt_settings, clean_start=True, session_expiry_s=0)
        client.loop_start()
        self._client = client
        self._worker = threading.Thread(target=self._run, name="connector-publisher", daemon=True)
        self._worker.start()
        if not self._connected.wait(self._settings.connect_timeout_s):
            logger.warning(
                "plant broker %s:%d not reachable yet; values are held until it is",
                self._mqtt_settings.host,
                self._mqtt_settings.port,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(final_payload=None)

    def close(self, *, final_payload: tuple[str, bytes] | None = None, timeout_s: float = 5.0) -> None:
        """Flush what is buffered (bounded by `timeout_s`), optionally publish a last retained message
        (the offline status), disconnect and stop the worker."""
        client = self._client
        if client is None:
            return
        self.flush(timeout_s=timeout_s)
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._worker is not None:
            self._worker.join(timeout_s)
        if final_payload is not None and self.is_connected:
            info = client.publish(final_payload[0], final_payload[1], qos=1, retain=True)
            info.wait_for_publish(timeout=timeout_s)
        client.disconnect()
        client.loop_stop()
        self._client = None

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del client, userdata, flags, props
        if not reason.is_failure:
            self._connected.set()
            with self._changed:
                self._changed.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del client, userdata, flags, props
        self._connected.clear()
        self._epoch += 1
        if not self._stop.is_set():
            logger.warning("disconnected from the plant broker: %s", reason)

    @property
    def is_connected(self) -> bool:
        """Whether the plant broker link is up right now."""
        return self._connected.is_set()

    @property
    def buffered_samples(self) -> int:
        """Samples waiting to be published."""
        return self._buffered

    def next_seqs(self) -> dict[StreamKey, int]:
        """The `seq` the next batch of each stream will get (for a durable progress record)."""
        with self._lock:
            return {key: stream.seq for key, stream in self._streams.items()}

    def publish_retained(self, topic: str, payload: bytes) -> bool:
        """Publish a small retained QoS 1 message (the heartbeat) on the same client; thread-safe."""
        client = self._client
        if client is None or not self.is_connected:
            return False
        return client.publish(topic, payload, qos=1, retain=True).rc == mqtt.MQTT_ERR_SUCCESS

    # --- entry points -------------------------------------------------------------------------------------

    def add_block(
        self,
        asset_id: str,
        sensor: str,
        start_ns: int,
        sample_rate_hz: float,
        values: npt.ArrayLike,
        *,
        wait_s: float = 0.0,
    ) -> bool:
        """Queue a block of regularly sampled values (first sample at `start_ns`).

        Args:
            asset_id: the asset the values are published under.
            sensor: the sensor name.
            start_ns: UTC epoch ns of the first value.
            sample_rate_hz: the block's sample rate.
            values: the samples (converted to float32).
            wait_s: how long to wait for room in the buffer; 0 drops the block at once when full (the
                only choice on paho's thread or an event loop). A caller that must lose nothing (the
                files connector) waits.

        Returns:
            Whether the block was queued (False: rejected or dropped, and counted).
        """
        samples = np.asarray(values, dtype=np.float32).ravel()
        n = len(samples)
        if n == 0:
            return True
        if not _valid_rate(sample_rate_hz):
            self._metrics.reject("bad_rate", n)
            return False
        if not np.isfinite(samples).all():
            self._metrics.reject("non_finite", n)
            return False
        if not self.wait_for_room(n, wait_s):
            self._metrics.drop("buffer_full", n)
            return False
        topics.check_ident("asset_id", asset_id)
        topics.check_ident("sensor", sensor)
        key = (asset_id, sensor)
        per_batch = self._settings.max_batch_samples
        period_ns = NS_PER_S / sample_rate_hz
        with self._changed:
            stream = self._streams.setdefault(key, _Stream())
            self._close_open(key, stream)
            for lo in range(0, n, per_batch):
                chunk = samples[lo : lo + per_batch]
                chunk_start = start_ns + round(lo * period_ns)
                self._ready.append(_Block(key, stream.seq, chunk_start, sample_rate_hz, chunk))
                stream.seq += 1
            self._buffered += n
            stream.next_ns = start_ns + n * period_ns
            self._changed.notify_all()
        return True

    def add_value(
        self, asset_id: str, sensor: str, time_ns: int, value: float, nominal_rate_hz: float
    ) -> bool:
        """Queue one polled or subscribed value taken at `time_ns`, from a stream sampled at
        `nominal_rate_hz`; never blocks.

        Returns:
            Whether the value was queued (False: rejected or dropped, and counted).
        """
        return self.add_values(((asset_id, sensor, value),), time_ns, nominal_rate_hz) == 1

    def add_values(
        self, values: Iterable[tuple[str, str, float]], time_ns: int, nominal_rate_hz: float
    ) -> int:
        """Queue several streams' values taken at the same `time_ns` (one poll, one notification), each
        `(asset_id, sensor, value)`, under one lock; never blocks.

        Returns:
            How many were queued (the others were rejected or dropped, and counted).
        """
        if not _valid_rate(nominal_rate_hz):
            items = list(values)
            self._metrics.reject("bad_rate", len(items))
            return 0
        queued = 0
        with self._changed:
            for asset_id, sensor, value in values:
                queued += self._add_value_locked((asset_id, sensor), time_ns, value, nominal_rate_hz)
        return queued

    def _add_value_locked(self, key: StreamKey, time_ns: int, value: float, rate_hz: float) -> bool:
        if not math.isfinite(value):
            self._metrics.reject("non_finite")
            return False
        if self._buffered >= self._settings.max_buffered_samples:
            self._metrics.drop("buffer_full")
            return False
        stream = self._streams.get(key)
        if stream is None:
            topics.check_ident("asset_id", key[0])
            topics.check_ident("sensor", key[1])
            stream = self._streams[key] = _Stream()
        open_batch = self._place(key, stream, time_ns, rate_hz)
        if open_batch is None:
            self._metrics.reject("out_of_order")
            return False
        open_batch.values.append(float(value))
        self._buffered += 1
        stream.next_ns = open_batch.start_ns + len(open_batch.values) * open_batch.period_ns
        if len(open_batch.values) >= self._settings.max_batch_samples:
            self._close_open(key, stream)
            self._changed.notify_all()
        return True

    def _place(self, key: StreamKey, stream: _Stream, time_ns: int, rate_hz: float) -> _OpenBatch | None:
        """The open batch of `stream` that a value at `time_ns` extends (opened if need be; a value too
        late closes the old one as a gap), or None if the value is too early for the stream's grid.

        Called with the lock held.
        """
        period_ns = NS_PER_S / rate_hz
        tolerance_ns = self._settings.gap_tolerance * period_ns
        open_batch = stream.open
        if open_batch is not None and open_batch.sample_rate_hz != rate_hz:
            self._close_open(key, stream)
            stream.next_ns = None
        if stream.next_ns is not None:
            offset_ns = time_ns - stream.next_ns
            if offset_ns < -tolerance_ns:
                return None
            if offset_ns > tolerance_ns:
                self._metrics.gaps += 1
                self._close_open(key, stream)
        if stream.open is None:
            stream.open = _OpenBatch(
                start_ns=time_ns, sample_rate_hz=rate_hz, period_ns=period_ns, opened_mono=time.monotonic()
            )
            self._opened[key] = stream.open.opened_mono
        return stream.open

    def _close_open(self, key: StreamKey, stream: _Stream) -> None:
        """Move the stream's open batch, if any, to the ready queue (lock held)."""
        open_batch = stream.open
        if open_batch is None:
            return
        stream.open = None
        self._opened.pop(key, None)
        if open_batch.values:
            samples = np.asarray(open_batch.values, dtype=np.float32)
            self._ready.append(
                _Block(key, stream.seq, open_batch.start_ns, open_batch.sample_rate_hz, samples)
            )
            stream.seq += 1

    def wait_for_room(self, n: int, wait_s: float) -> bool:
        """Wait up to `wait_s` until `n` more samples fit in the buffer (always, when it is empty).

        A producer that must lose nothing calls this (in a loop that checks its stop flag) before
        `add_block`, instead of letting `add_block` drop.
        """
        limit = self._settings.max_buffered_samples
        with self._changed:
            if self._buffered == 0 or self._buffered + n <= limit:
                return True
            if wait_s <= 0:
                return False
            deadline = time.monotonic() + wait_s
            while self._buffered > 0 and self._buffered + n > limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._changed.wait(remaining)
            return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Close every open batch and wait until everything queued has been written to the broker's socket.

        Returns:
            True if all was written within `timeout_s` (False: the broker is away or slow).
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            for key, stream in self._streams.items():
                self._close_open(key, stream)
            self._changed.notify_all()
            while self._ready or self._in_hand or self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, _IDLE_WAIT_S))
        return True

    # --- the worker ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the worker must survive anything a batch does; logged and counted
                logger.exception("raw batch publishing failed")
                self._metrics.error("publishing failed (see the log)")
                time.sleep(_IDLE_WAIT_S)

    def _step(self) -> None:
        """Publish what is ready (at most the client's allowance), or wait for something to do."""
        self._reap_pending()
        with self._changed:
            self._close_expired()
            room = self._settings.max_unpublished_messages - len(self._pending)
            oldest = self._pending[0].info if self._pending else None
            if room > 0 and (not self._ready or not self.is_connected):
                self._changed.wait(min(self._idle_wait_s(), _WRITE_WAIT_S) if oldest else self._idle_wait_s())
                return
        if room <= 0 and oldest is not None:
            _wait_written(oldest, _WRITE_WAIT_S)  # outside the lock: paho's thread marks it written
            return
        with self._changed:
            blocks = [self._ready.popleft() for _ in range(min(room, len(self._ready)))]
            self._in_hand = len(blocks)
        try:
            for block in blocks:
                self._publish(block)
        finally:
            with self._changed:
                self._in_hand = 0
                self._buffered -= sum(len(block.samples) for block in blocks)
                self._changed.notify_all()

    def _idle_wait_s(self) -> float:
        """How long the worker may sleep: until the oldest open batch is due, at most `_IDLE_WAIT_S`."""
        if not self._opened:
            return _IDLE_WAIT_S
        oldest = next(iter(self._opened.values()))
        return min(_IDLE_WAIT_S, max(0.0, oldest + self._settings.max_delay_s - time.monotonic()))

    def _close_expired(self) -> None:
        """Close the open batches due now or within the slack, oldest first (`_opened` is in opening
        order, so this touches only the batches it closes)."""
        max_delay_s = self._settings.max_delay_s
        due_before = time.monotonic() + min(_CLOSE_SLACK_S, max_delay_s / 10) - max_delay_s
        while self._opened:
            key, opened_mono = next(iter(self._opened.items()))
            if opened_mono > due_before:
                return
            self._close_open(key, self._streams[key])

    def _publish(self, block: _Block) -> None:
        client = self._client
        if client is None:
            return
        asset_id, sensor = block.key
        payload = encode_raw_batch(
            RawBatch(
                asset_id=asset_id,
                sensor=sensor,
                seq=block.seq,
                start_ns=block.start_ns,
                sample_rate_hz=block.sample_rate_hz,
                samples=block.samples,
            )
        )
        info = client.publish(topics.raw(asset_id, sensor), payload, qos=0)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._metrics.drop("broker_offline", len(block.samples))
            return
        with self._lock:
            self._pending.append(_Pending(info, len(block.samples), self._epoch))

    def _reap_pending(self) -> None:
        """Count the batches the client has written; those lost with a connection as `broker_offline`."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                pending = self._pending[0]
                if not _is_written(pending.info):
                    if pending.epoch == self._epoch and pending.info.rc in _STILL_GOING:
                        return
                    self._metrics.drop("broker_offline", pending.samples)
                else:
                    self._metrics.values_published += pending.samples
                    self._metrics.batches_published += 1
                self._pending.popleft()
                self._changed.notify_all()


_STILL_GOING = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN)


def _valid_rate(rate_hz: float) -> bool:
    return math.isfinite(rate_hz) and 0.0 < rate_hz <= MAX_SAMPLE_RATE_HZ


def _wait_written(info: mqtt.MQTTMessageInfo, timeout_s: float) -> None:
    """Wait up to `timeout_s` for paho to write a message (a failed one returns at once)."""
    try:
        info.wait_for_publish(timeout=timeout_s)
    except (RuntimeError, ValueError):
        return


def _is_written(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether paho wrote the message (False also when it failed it, which `is_published` raises for)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False
