"""Publishing to the plant broker: a paced, back-pressured stream of messages over one MQTT client.

`Publisher` owns one paho client (MQTT 5, clean session): `publish` hands a message to paho and, once more
than `max_unpublished` messages are waiting to be written, waits for the oldest one, so memory stays
bounded however slow the broker. `publish_stream` paces a stream by its simulated timestamps (`speed`
simulated seconds per wall second; 0 publishes as fast as possible), can be stopped through an event, and
returns the counters.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from shared.config import MqttSettings
from shared.errors import ForewarnError
from shared.mqtt import connect, make_client
from shared.timebase import NS_PER_S
from simulators.stream import Message

__all__ = ["BrokerUnavailableError", "PublishStats", "Publisher", "publish_stream"]

logger = logging.getLogger(__name__)


class BrokerUnavailableError(ForewarnError):
    """The broker could not be reached, or the connection was lost for good."""

    def __init__(self, host: str, port: int, detail: str) -> None:
        super().__init__(f"MQTT broker {host}:{port}: {detail}")
        self.host = host
        self.port = port
        self.detail = detail


@dataclass(slots=True)
class PublishStats:
    """Counters of one publishing run."""

    messages: int = 0
    samples: int = 0
    bytes: int = 0
    events: int = 0
    not_connected: int = 0
    lost_on_disconnect: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    last_ts_ns: int = 0

    @property
    def samples_per_s(self) -> float:
        """Samples published per wall second."""
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Pending:
    info: mqtt.MQTTMessageInfo
    qos: int
    epoch: int


class Publisher:
    """One MQTT client publishing with bounded in-memory backlog. Use as a context manager."""

    def __init__(
        self,
        *,
        settings: MqttSettings,
        client_id: str,
        max_unpublished: int = 4096,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._max_unpublished = max_unpublished
        self._connect_timeout_s = connect_timeout_s
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._closing = False
        self._epoch = 0  # connections lost so far
        self.lost_on_disconnect = 0

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del client, userdata, flags, props
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        del client, userdata, flags, props
        self._connected.clear()
        self._epoch += 1
        if not self._closing:
            logger.warning("disconnected from the MQTT broker: %s", reason)

    def __enter__(self) -> Self:
        client = make_client(self._settings, client_id=self._client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        connect(client, self._settings, clean_start=True, session_expiry_s=0)
        client.loop_start()
        self._client = client
        if not self._connected.wait(self._connect_timeout_s):
            self.__exit__(None, None, None)
            raise BrokerUnavailableError(
                self._settings.host,
                self._settings.port,
                f"not reachable within {self._connect_timeout_s:g} s",
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        if client is None:
            return
        if exc_type is None:
            self.flush()
        self._closing = True
        client.disconnect()
        client.loop_stop()
        self._client = None

    @property
    def is_connected(self) -> bool:
        """Whether the client is connected right now."""
        return self._connected.is_set()

    def publish(self, message: Message) -> bool:
        """Hand one message to the client; False if it was dropped (QoS 0 while disconnected).

        A QoS 1 message published while disconnected stays queued in the client and goes out after the
        reconnect. Waits (bounded) while more than `max_unpublished` messages are not yet written.

        Raises:
            BrokerUnavailableError: a message could not be written within `connect_timeout_s`.
        """
        client = self._client
        if client is None:
            raise RuntimeError("Publisher used outside its `with` block")
        info = client.publish(message.topic, message.payload, qos=message.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return message.qos > 0
        self._pending.append(_Pending(info, message.qos, self._epoch))
        while len(self._pending) > self._max_unpublished:
            self._wait_oldest()
        return True

    def _wait_oldest(self) -> None:
        pending = self._pending.popleft()
        deadline = time.monotonic() + self._connect_timeout_s
        while not _is_published(pending.info):
            if pending.epoch != self._epoch or pending.info.rc not in _STILL_GOING:  # its connection is gone
                if pending.qos == 0:
                    self.lost_on_disconnect += 1  # paho drops unsent QoS 0 messages with the connection
                return  # QoS 1: paho sends it again after the reconnect
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    self._settings.host, self._settings.port, "messages not sent within the timeout"
                )
            pending.info.wait_for_publish(timeout=0.05)

    def flush(self) -> None:
        """Wait until everything handed over has been written (bounded by the connect timeout each)."""
        while self._pending:
            self._wait_oldest()


_STILL_GOING = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN)


def _is_published(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether paho wrote the message; False also when paho failed it (the connection was lost), which
    `is_published` reports by raising."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def publish_stream(
    messages: Iterable[Message],
    publisher: Publisher,
    *,
    speed: float = 0.0,
    stop: threading.Event | None = None,
    progress: Callable[[PublishStats], None] | None = None,
    progress_interval_s: float = 2.0,
) -> PublishStats:
    """Publish `messages`, paced by their timestamps at `speed` (0: as fast as possible).

    Returns:
        The counters, also when stopped early through `stop`.
    """
    stats = PublishStats()
    stop = stop or threading.Event()
    start = time.monotonic()
    next_progress = start + progress_interval_s
    origin_ns: int | None = None
    for message in messages:
        if origin_ns is None:
            origin_ns = message.ts_ns
        if speed > 0:
            due = start + (message.ts_ns - origin_ns) / NS_PER_S / speed
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
        if stop.is_set():
            break
        if publisher.publish(message):
            stats.messages += 1
            stats.samples += message.n_samples
            stats.bytes += len(message.payload)
            stats.events += 1 if message.qos == 1 else 0
        else:
            stats.not_connected += 1
        if message.fault:
            stats.faults[message.fault] = stats.faults.get(message.fault, 0) + 1
        stats.last_ts_ns = max(stats.last_ts_ns, message.ts_ns)
        now = time.monotonic()
        if progress is not None and now >= next_progress:
            stats.elapsed_s = now - start
            progress(stats)
            next_progress = now + progress_interval_s
    publisher.flush()
    stats.elapsed_s = time.monotonic() - start
    stats.lost_on_disconnect = publisher.lost_on_disconnect
    return stats
