"""The uplink: publishes the disk queue to the upstream broker, QoS 1, in `seq` order, deleting on PUBACK.

One thread (`edge-forwarder`) owns the loop. When two or more queued rows are ready, it packs consecutive
rows (at most `batch_max_messages` rows and `batch_max_bytes` stored bytes) into one
`shared.messages.UplinkBatch` on `topics.batch(gateway)`: each run of aggregates becomes an
`AggregateBlock` (columnar: a third of the bytes, and cheap for the cloud to decode), every other row goes
in as stored, and the batch is compressed with zlib (`compression_level`, 0 for plain JSON); a single ready
row goes alone on its own kind's topic, so an idle gateway's alert is never held back. It keeps at
most `window` *rows* unacknowledged; each MQTT publish carries at least one row, so paho's 16-bit message
ids (at most `window` <= 32,768 in use, plus the status) can never run out. It maps each paho `mid` to the
`seq`s it carries and deletes those rows only after the broker's PUBACK for that message arrived. PUBACKs
arrive on paho's network thread, which only hands the `mid` over (`on_publish` puts it on a queue); the
SQLite delete runs on the forwarder's own thread.

After a disconnect, paho itself re-sends the unacknowledged publishes of its session (with the DUP flag) when
it reconnects, in their original order; the forwarder only stops adding new ones while disconnected. After
a restart, the forwarder starts again from the oldest row in the queue: a row whose PUBACK arrived just
before a crash, but whose delete was not yet committed, is sent twice; the cloud de-duplicates by
`(gateway_id, seq)`. Nothing acknowledged is ever lost, because nothing is deleted before its PUBACK.

The same client carries the gateway's retained status (`publish_status`) and its last will; they are
never batched: a retained message must stay alone on its own topic.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.disk_queue import DiskQueue, QueuedMessage
from shared import topics
from shared.aggregate_block import pack_aggregates
from shared.config import MqttSettings
from shared.errors import ContractError, StorageError
from shared.messages import MAX_BATCH_MESSAGES as _CONTRACT_MAX_BATCH_MESSAGES
from shared.messages import MAX_MESSAGE_BYTES, Aggregate, deflate_batch, encode
from shared.mqtt import LastWill, connect, make_client
from shared.rate_limited_log import RateLimitedLog

__all__ = [
    "DEFAULT_COMPRESSION_LEVEL",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_WINDOW",
    "Forwarder",
    "ForwarderMetrics",
    "batch_payload",
]

logger = logging.getLogger(__name__)

MAX_WINDOW = 32_768  # half of paho's 16-bit id space, leaving room for status publishes
MAX_BATCH_MESSAGES = _CONTRACT_MAX_BATCH_MESSAGES
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES  # what `decode_uplink_batch` accepts
DEFAULT_COMPRESSION_LEVEL = 6
_IDLE_WAIT_S = 0.25
_BATCH_CLOSE = b"]}"

# Topics repeat (a handful per gateway): parse each once.
_parse_topic = functools.lru_cache(maxsize=1024)(topics.parse)
_AGGREGATE = msgspec.json.Decoder(Aggregate)


def _gateway_of_topic(topic: str) -> str:
    return _parse_topic(topic).gateway_id


def _is_aggregate_topic(topic: str) -> bool:
    try:
        return _parse_topic(topic).kind is topics.TopicKind.AGGREGATE
    except ContractError:
        return False


def _batch_open(gateway_id: str) -> bytes:
    # `gateway_id` is an identifier (checked by `topics`): nothing in it needs JSON escaping.
    return b'{"kind":"batch/1","gateway_id":"' + gateway_id.encode() + b'","messages":['


def _members(rows: Sequence[QueuedMessage]) -> list[bytes]:
    """The batch members of `rows`: runs of aggregates packed into blocks, every other row as stored."""
    members: list[bytes] = []
    run: list[Aggregate] = []
    for row in rows:
        if _is_aggregate_topic(row.topic):
            try:
                run.append(_AGGREGATE.decode(row.payload))
                continue
            except msgspec.DecodeError:  # cannot happen for rows we stored; if it does, send it as it is
                logger.warning("queued aggregate seq=%d does not decode; sent as stored", row.seq)
        members += [encode(block) for block in pack_aggregates(run)]
        run = []
        members.append(row.payload)
    members += [encode(block) for block in pack_aggregates(run)]
    return members


def batch_payload(
    gateway_id: str, rows: Sequence[QueuedMessage], *, compression_level: int = DEFAULT_COMPRESSION_LEVEL
) -> bytes:
    """An `UplinkBatch` of queued rows (see `_members`), built around the stored JSON of other kinds, and
    compressed with zlib at `compression_level` (1-9; 0: plain JSON)."""
    payload = b"".join(
        (_batch_open(topics.check_ident("gateway_id", gateway_id)), b",".join(_members(rows)), _BATCH_CLOSE)
    )
    return deflate_batch(payload, level=compression_level) if compression_level else payload


@dataclass
class ForwarderMetrics:
    """Counters of the uplink (written by the forwarder and paho's thread, read by the heartbeat)."""

    published: int = 0  # queued rows published (alone or in a batch)
    batches: int = 0  # batch messages published
    batched: int = 0  # rows published inside batches
    acked: int = 0  # rows acknowledged (and deleted)
    refused: int = 0  # rows whose message the broker refused
    bytes_out: int = 0
    status_published: int = 0
    status_skipped_offline: int = 0
    connects: int = 0
    disconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Ack:
    mid: int
    is_failure: bool
    reason: str


class Forwarder:
    """Moves messages from the disk queue to the upstream broker and deletes them once acknowledged.

    Args:
        settings: the upstream broker.
        gateway_id: the gateway, for the status topic and the client id.
        disk_queue: where the messages wait.
        window: most queued rows published but not yet acknowledged (<= `MAX_WINDOW`).
        batch_max_messages: most rows packed into one batch message (1 turns batching off).
        batch_max_bytes: most bytes of one batch message's payload (before compression); a larger row goes
            alone.
        compression_level: zlib level of batch payloads (1-9; 0: plain JSON).
        will: the status payload the broker publishes (retained) if we vanish.
        session_expiry_s: how long the broker keeps our session while we are away.
    """

    def __init__(
        self,
        *,
        settings: MqttSettings,
        gateway_id: str,
        disk_queue: DiskQueue,
        window: int = 1000,
        batch_max_messages: int = 256,
        batch_max_bytes: int = 256 * 1024,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        will: bytes | None = None,
        session_expiry_s: int = 7 * 24 * 3600,
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window={window}: expected 1 to {MAX_WINDOW}")
        if not 1 <= batch_max_messages <= MAX_BATCH_MESSAGES:
            raise ValueError(f"batch_max_messages={batch_max_messages}: expected 1 to {MAX_BATCH_MESSAGES}")
        if not 1024 <= batch_max_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"batch_max_bytes={batch_max_bytes}: expected 1024 to {MAX_BATCH_BYTES}")
        if not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level={compression_level}: expected 0 to 9")
        self._settings = settings
        self._queue = disk_queue
        self._window = window
        self._batch_max_messages = min(batch_max_messages, window)
        self._batch_max_bytes = batch_max_bytes
        self._compression_level = compression_level
        self._session_expiry_s = session_expiry_s
        self._status_topic = topics.status(gateway_id)
        self.metrics = ForwarderMetrics()
        self._inflight: dict[int, tuple[int, ...]] = {}  # paho mid -> seqs it carries; forwarder thread only
        self._inflight_rows = 0
        self._last_sent_seq = -1
        self._acked_not_deleted: list[int] = []  # acknowledged rows whose delete failed: retried
        self._warnings = RateLimitedLog(logger)
        self._acks: queue.SimpleQueue[_Ack] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        last_will = LastWill(self._status_topic, will, qos=1, retain=True) if will is not None else None
        self.client = make_client(settings, client_id=f"forewarn-edge-{gateway_id}-up", will=last_will)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.on_connected: list[Any] = []  # callables run (on paho's thread) after each connect

    # --- paho's thread: hand over and return -------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        del client, userdata, props
        if reason.is_failure:
            logger.warning("upstream broker refused the connection: %s", reason)
            return
        self.metrics.connects += 1
        self._connected.set()
        self._wake.set()
        logger.info("upstream connected", extra={"session_present": flags.session_present})
        for callback in self.on_connected:
            callback()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        del client, userdata, flags, props
        self.metrics.disconnects += 1
        self._connected.clear()
        logger.info("upstream disconnected: %s", reason)

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        del client, userdata, props
        self._acks.put(_Ack(mid, reason.is_failure, str(reason)))
        self._wake.set()

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Whether the upstream session is up."""
        return self._connected.is_set()

    @property
    def unacked(self) -> int:
        """Queued rows published and not yet acknowledged."""
        return self._inflight_rows

    @property
    def acked_not_deleted(self) -> int:
        """Acknowledged rows whose delete from the disk queue failed and waits for a retry."""
        return len(self._acked_not_deleted)

    @property
    def unacked_messages(self) -> int:
        """MQTT messages (batches and single rows) published and not yet acknowledged."""
        return len(self._inflight)

    def start(self) -> None:
        """Connect (asynchronously, with backoff) and start the `edge-forwarder` thread."""
        connect(self.client, self._settings, clean_start=False, session_expiry_s=self._session_expiry_s)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="edge-forwarder", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Tell the forwarder that new messages were enqueued."""
        self._wake.set()

    def drain(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` until everything queued is acknowledged; True if it was."""
        deadline = time.monotonic() + timeout_s
        pause = threading.Event()  # never set: a bounded pause between checks
        while time.monotonic() < deadline:
            if self._queue.stats().depth == 0 and not self._inflight and not self._acked_not_deleted:
                return True
            self._wake.set()
            pause.wait(0.05)
        return False

    def stop(self, *, offline_status: bytes | None = None, timeout_s: float = 5.0) -> None:
        """Stop the thread, publish the offline status if given, and disconnect cleanly."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("edge-forwarder did not stop within %.1f s", timeout_s)
        if offline_status is not None and self.is_connected:
            info = self.client.publish(self._status_topic, offline_status, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=min(timeout_s, 2.0))
            except (ValueError, RuntimeError) as exc:
                logger.warning("offline status not published: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()

    # --- status ------------------------------------------------------------------------------------

    def publish_status(self, payload: bytes) -> bool:
        """Publish the retained status (QoS 1) if connected; a heartbeat is never queued while offline."""
        if not self.is_connected:
            self.metrics.status_skipped_offline += 1
            return False
        try:
            info = self.client.publish(self._status_topic, payload, qos=1, retain=True)
        except ValueError as exc:  # ERR_QUEUE_SIZE: paho's id space is full
            self._count_error("status_publish")
            logger.warning("status not published: %s", exc)
            return False
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.metrics.status_skipped_offline += 1
            return False
        self.metrics.status_published += 1
        self.metrics.bytes_out += len(payload) + len(self._status_topic)
        return True

    # --- the forwarder thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_IDLE_WAIT_S)
            self._wake.clear()
            try:
                self._handle_acks()
                if self._connected.is_set():
                    self._fill_window()
            except StorageError as exc:
                self._count_error("storage")
                self._warnings.warn("storage", "disk queue error in the forwarder (%s); retrying", exc)
                self._stop.wait(1.0)
            except Exception:  # the loop must survive anything; logged with the traceback and counted
                self._count_error("unexpected")
                logger.exception("unexpected error in the forwarder; retrying")
                self._stop.wait(1.0)
        self._handle_acks()

    def _handle_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                ack = self._acks.get_nowait()
            except queue.Empty:
                break
            seqs = self._inflight.pop(ack.mid, None)
            if seqs is None:
                continue  # a status publish
            self._inflight_rows -= len(seqs)
            if ack.is_failure:
                self.metrics.refused += len(seqs)
                logger.warning(
                    "upstream broker refused seq=%d..%d: %s; dropping them", seqs[0], seqs[-1], ack.reason
                )
            done.extend(seqs)
            self.metrics.acked += len(seqs)
        self._acked_not_deleted.extend(done)
        if not self._acked_not_deleted:
            return
        try:
            self._queue.delete(self._acked_not_deleted)
        except StorageError as exc:
            # Disk full: the rows stay listed and the next pass deletes them, so an acknowledged row never
            # lingers in the queue until a restart; publishing goes on meanwhile.
            self._count_error("delete")
            self._warnings.warn("delete", "acknowledged rows not deleted yet (%s); retrying", exc)
            return
        self._acked_not_deleted = []

    def _fill_window(self) -> None:
        room = self._window - self._inflight_rows
        if room <= 0:
            return
        rows = self._queue.peek(after_seq=self._last_sent_seq, limit=room + 1)
        has_more = len(rows) > room  # rows beyond the window wait for acknowledgements
        for group, is_full in self._groups(rows[:room]):
            if not is_full and has_more and self._inflight:
                return  # a backlog: wait for room to send a full batch rather than a small one
            if not self._publish(group):
                return

    def _groups(self, rows: Sequence[QueuedMessage]) -> list[tuple[list[QueuedMessage], bool]]:
        """Consecutive rows of one gateway cut into batches by count and bytes; whether each is full."""
        groups: list[tuple[list[QueuedMessage], bool]] = []
        current: list[QueuedMessage] = []
        size = 0
        gateway = ""
        for row in rows:
            row_gateway = _gateway_of_topic(row.topic)
            added = len(row.payload) + 1  # the comma
            if current and (
                row_gateway != gateway
                or len(current) >= self._batch_max_messages
                or size + added > self._batch_max_bytes
            ):
                groups.append((current, True))
                current, size = [], 0
            if not current:
                gateway = row_gateway
                size = len(_batch_open(gateway)) + len(_BATCH_CLOSE) - 1
            current.append(row)
            size += added
        if current:
            groups.append((current, len(current) >= self._batch_max_messages))
        return groups

    def _publish(self, group: Sequence[QueuedMessage]) -> bool:
        """Publish one row alone or several as a batch; False when paho has no free message id."""
        if len(group) == 1:
            topic, payload = group[0].topic, group[0].payload
        else:
            gateway = _gateway_of_topic(group[0].topic)
            topic = topics.batch(gateway)
            payload = batch_payload(gateway, group, compression_level=self._compression_level)
        info = self.client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # no free paho id: try again after acks
            self._count_error("publish_id_space")
            return False
        # MQTT_ERR_NO_CONN (the link just dropped) still keeps the message in paho's session:
        # it is sent when the connection is back.
        self._inflight[info.mid] = tuple(row.seq for row in group)
        self._inflight_rows += len(group)
        self._last_sent_seq = group[-1].seq
        self._queue.mark_published(self._last_sent_seq)
        self.metrics.published += len(group)
        if len(group) > 1:
            self.metrics.batches += 1
            self.metrics.batched += len(group)
        self.metrics.bytes_out += len(payload) + len(topic)
        return True

    def _count_error(self, kind: str) -> None:
        self.metrics.errors[kind] = self.metrics.errors.get(kind, 0) + 1
