"""The store-and-forward queue: every upstream message is committed here, with its sequence number, first.

It holds the pipeline's aggregates, alerts and snapshots (`Outbound`) and the deployment receiver's
acknowledgements (`DeploymentAck`): one per-gateway `seq` space for all of them, each on its own topic.

SQLite in WAL mode (stdlib `sqlite3`). Each message gets the next per-gateway `seq` when it is enqueued;
the counter is stored in the same transaction as the rows, so a `seq` is never reused, even after a crash
or restart. Rows leave the queue only when the forwarder saw the broker's PUBACK (`delete`), or when the
queue is full and room must be made (`_make_room`): then the oldest aggregates go first, then snapshots,
then alerts, and deployment acknowledgements last; every drop is counted by kind, in the same transaction
(`meta` keys `dropped.<kind>`), so the counts are totals over the queue file's life, kept across restarts.
Rows already published and waiting for their PUBACK are never dropped: the MQTT session re-sends them
after a reconnect anyway.

Durability (the `synchronous` setting):

* ``FULL`` (default): every commit fsyncs the WAL. A committed message survives `kill -9`, an OS crash and
  a power loss. Costs one fsync per commit; the agent commits a whole batch of messages at once.
* ``NORMAL``: with WAL, a committed transaction is in the OS page cache before `commit()` returns, so it
  survives `kill -9` of the agent, but a power loss or kernel crash may roll back the last commits
  (the database stays consistent). Then `seq` values that were already sent and acknowledged could be
  assigned again to new messages, and the cloud, which de-duplicates by `(gateway_id, seq)`, would discard
  them. Choose it only on storage where fsync is very expensive and power is protected.

Deletes need no such care: a delete lost in a crash only means the message is sent again (a duplicate the
cloud absorbs), so deletes always commit with ``NORMAL`` (no fsync of their own); the next ``FULL``
commit makes them durable too.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar

import msgspec

from shared import topics
from shared.errors import StorageError
from shared.messages import Aggregate, Alert, AlertUpdate, DeploymentAck, Snapshot, encode

__all__ = [
    "KINDS",
    "DiskQueue",
    "Enqueueable",
    "Outbound",
    "QueueStats",
    "QueuedMessage",
    "kind_of",
    "read_bytes",
    "read_counters",
    "read_dropped",
]

logger = logging.getLogger(__name__)

Outbound = Aggregate | Alert | AlertUpdate | Snapshot
Enqueueable = Outbound | DeploymentAck  # everything the queue stores: the pipeline's output and acks
_M = TypeVar("_M", bound=Enqueueable)
Kind = Literal["aggregate", "snapshot", "alert", "deploy_ack"]

# Drop order when the queue is full: lowest priority first. The priority is stored with each row, so
# a new kind is only ever appended.
KINDS: Final[tuple[Kind, ...]] = ("aggregate", "snapshot", "alert", "deploy_ack")
_PRIORITY: Final[dict[str, int]] = {kind: i for i, kind in enumerate(KINDS)}
_ROW_OVERHEAD_BYTES: Final = 64  # per-row bookkeeping counted against `max_bytes` besides the payload
_DROP_WARNING_INTERVAL_S: Final = 60.0
_SQL_CHUNK: Final = 500  # bound on the number of `?` parameters in one statement
# The WAL is checkpointed every this many pages and cut back to this size after: left to SQLite's
# defaults (1000 pages, never truncated) it grew to the whole of a 2 MiB filesystem on its own.
_WAL_AUTOCHECKPOINT_PAGES: Final = 256
_WAL_SIZE_LIMIT_BYTES: Final = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A consistent view of the queue's gauges and counters."""

    depth: int
    bytes: int
    next_seq: int
    enqueued: int
    deleted: int
    dropped: dict[str, int]


def kind_of(message: Enqueueable) -> Kind:
    """The message's kind, as counted in `queue.dropped.<kind>` (`KINDS`)."""
    if isinstance(message, Aggregate):
        return "aggregate"
    if isinstance(message, Snapshot):
        return "snapshot"
    if isinstance(message, DeploymentAck):
        return "deploy_ack"
    return "alert"


def _topic_of(kind: Kind, gateway_id: str) -> str:
    if kind == "aggregate":
        return topics.aggregate(gateway_id)
    if kind == "snapshot":
        return topics.snapshot(gateway_id)
    if kind == "deploy_ack":
        return topics.deploy_ack(gateway_id)
    return topics.alert(gateway_id)


def read_counters(path: Path) -> tuple[int, int]:
    """(sequence numbers assigned, messages still queued) of a queue file, read-only; safe beside the
    agent that writes it (WAL readers do not block it). A queue never opened reads as (0, 0).

    Raises:
        StorageError: the file is not a readable queue.
    """
    if not path.exists():
        return 0, 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
            (depth,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"disk queue {path}", str(exc)) from exc
    return (int(row[0]) if row else 0), int(depth)


def _read_only(path: Path, query: str) -> list[tuple[object, ...]]:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            return list(db.execute(query).fetchall())
    except sqlite3.Error as exc:
        raise StorageError(f"disk queue {path}", str(exc)) from exc


def read_dropped(path: Path) -> dict[str, int]:
    """Messages the queue file ever dropped to make room, per kind, read-only beside the running agent
    (a queue never opened, or one that never dropped, reads as zeros).

    Raises:
        StorageError: the file is not a readable queue.
    """
    dropped: dict[str, int] = dict.fromkeys(KINDS, 0)
    if path.exists():
        for key, value in _read_only(path, "SELECT key, value FROM meta WHERE key LIKE 'dropped.%'"):
            dropped[str(key).removeprefix("dropped.")] = int(str(value))
    return dropped


def read_bytes(path: Path) -> int:
    """Bytes the queue file holds now, as counted against `max_bytes`, read-only beside the running agent.

    Raises:
        StorageError: the file is not a readable queue.
    """
    if not path.exists():
        return 0
    ((total,),) = _read_only(path, "SELECT COALESCE(SUM(size), 0) FROM outbox")
    return int(str(total))


class DiskQueue:
    """A durable, byte-bounded FIFO of upstream messages with per-gateway sequence numbers.

    Thread-safe: the queue writer and the deployment worker enqueue while the forwarder reads and deletes;
    this class owns the one lock.

    Args:
        path: the SQLite database file (its directory is created).
        gateway_id: whose topics the messages go to.
        max_bytes: bound on the queued payload bytes (plus a small per-row overhead).
        synchronous: SQLite's `synchronous` pragma, ``FULL`` or ``NORMAL`` (see the module docstring).

    Raises:
        StorageError: the database cannot be opened or is not a queue.
    """

    def __init__(
        self,
        *,
        path: Path,
        gateway_id: str,
        max_bytes: int,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self._gateway_id = topics.check_ident("gateway_id", gateway_id)
        self._max_bytes = max_bytes
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._dropped: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._enqueued = 0
        self._last_drop_warning_s = -_DROP_WARNING_INTERVAL_S
        self._deleted = 0
        self._published_through = -1  # rows up to this seq are in the uplink's MQTT session: never dropped
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT_BYTES}")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
            self._next_seq: int = int(row[0]) if row else 0
            depth, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
            for key, value in self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped.%'"):
                self._dropped[str(key).removeprefix("dropped.")] = int(value)
        except sqlite3.Error as exc:
            raise StorageError(f"disk queue {path}", str(exc)) from exc
        self._depth: int = int(depth)
        self._bytes: int = int(total)
        logger.info("disk queue opened", extra={"path": str(path), "depth": self._depth})

    def close(self) -> None:
        """Close the database (pending commits are already durable)."""
        with self._lock:
            self._db.close()

    def put_many(self, messages: Sequence[_M]) -> list[_M]:
        """Assign each message the next `seq` and commit them all in one transaction.

        Args:
            messages: aggregates, alerts, snapshots or deployment acknowledgements (their `seq` is replaced).

        Returns:
            The messages as stored, with their `seq`.

        Raises:
            StorageError: the commit failed (nothing of this call is stored then).
        """
        if not messages:
            return []
        with self._lock:
            stored: list[_M] = []
            rows = []
            seq = self._next_seq
            for message in messages:
                kind = kind_of(message)
                with_seq = msgspec.structs.replace(message, seq=seq)
                payload = encode(with_seq)
                rows.append((seq, _PRIORITY[kind], _topic_of(kind, self._gateway_id), payload))
                stored.append(with_seq)
                seq += 1
            added = sum(len(row[3]) + _ROW_OVERHEAD_BYTES for row in rows)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO outbox (seq, priority, topic, payload, size) VALUES (?, ?, ?, ?, ?)",
                    [(*row, len(row[3]) + _ROW_OVERHEAD_BYTES) for row in rows],
                )
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (seq,),
                )
                # The new rows compete for room like the old ones: by priority, then oldest first.
                freed, dropped = self._make_room(self._bytes + added - self._max_bytes)
                self._db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                    [(f"dropped.{kind}", count) for kind, count in dropped.items()],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError("disk queue", f"enqueue failed: {exc}") from exc
            self._next_seq = seq
            self._depth += len(rows) - sum(dropped.values())
            self._bytes += added - freed
            self._enqueued += len(rows)
            for dropped_kind, count in dropped.items():
                self._dropped[dropped_kind] += count
            if dropped:
                self._warn_drops()
        return stored

    def _rollback(self) -> None:
        if not self._db.in_transaction:  # SQLite already rolled back (e.g. SQLITE_FULL at COMMIT)
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("disk queue rollback failed")

    def mark_published(self, through_seq: int) -> None:
        """Rows up to `through_seq` were published: paho re-sends them after a reconnect whatever the queue
        does, so `_make_room` no longer drops them (it would count a drop that then arrives)."""
        with self._lock:
            self._published_through = max(self._published_through, through_seq)

    def _make_room(self, excess: int) -> tuple[int, dict[str, int]]:
        """Inside a transaction, delete the lowest-priority, oldest rows until `excess` bytes are freed
        (never a published row waiting for its acknowledgement).

        Returns:
            Bytes freed, and rows deleted per kind (only kinds with deletions).
        """
        freed = 0
        dropped: dict[str, int] = {}
        for kind in KINDS:
            if freed >= excess:
                break
            cursor = self._db.execute(
                "SELECT seq, size FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq",
                (_PRIORITY[kind], self._published_through),
            )
            victims = []
            for seq, size in cursor:
                if freed >= excess:
                    break
                victims.append((seq,))
                freed += int(size)
            cursor.close()
            if victims:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", victims)
                dropped[kind] = len(victims)
        return freed, dropped

    def _warn_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_warning_s >= _DROP_WARNING_INTERVAL_S:
            self._last_drop_warning_s = now
            logger.warning("disk queue full: oldest messages dropped so far: %s", self._dropped)

    def peek(self, *, after_seq: int, limit: int) -> list[QueuedMessage]:
        """Up to `limit` queued messages with `seq > after_seq`, in `seq` order."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StorageError("disk queue", f"read failed: {exc}") from exc
        return [QueuedMessage(int(seq), str(topic), bytes(payload)) for seq, topic, payload in rows]

    def delete(self, seqs: Iterable[int]) -> int:
        """Remove acknowledged messages (one transaction); returns how many rows were still there."""
        keys = sorted(set(seqs))
        if not keys:
            return 0
        found: list[tuple[int]] = []
        with self._lock:
            try:
                self._db.execute("PRAGMA synchronous=NORMAL")  # a lost delete is only a re-send
                self._db.execute("BEGIN IMMEDIATE")
                for start in range(0, len(keys), _SQL_CHUNK):
                    chunk = keys[start : start + _SQL_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    statement = f"DELETE FROM outbox WHERE seq IN ({marks}) RETURNING size"  # only '?' marks
                    found += self._db.execute(statement, chunk).fetchall()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError("disk queue", f"delete failed: {exc}") from exc
            finally:
                self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._depth -= len(found)
            self._bytes -= sum(int(size) for (size,) in found)
            self._deleted += len(found)
        return len(found)

    def stats(self) -> QueueStats:
        """Depth, bytes, the next `seq`, the counters since this process opened the queue, and the drops
        over the queue file's life."""
        with self._lock:
            return QueueStats(
                depth=self._depth,
                bytes=self._bytes,
                next_seq=self._next_seq,
                enqueued=self._enqueued,
                deleted=self._deleted,
                dropped=dict(self._dropped),
            )
