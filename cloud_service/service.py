"""The ingest service: N worker processes, each an MQTT client in a shared subscription with a writer.

A worker takes messages from its intake queue in batches (by rows or time), validates them (an uplink
batch message carries many rows), writes the batch in one transaction and only then acknowledges its MQTT
messages to the broker: a batch message is acknowledged only after every one of its members is committed.
While the database is down it keeps its batch, acknowledges nothing (the broker keeps the rest in the
persistent session), retries with backoff, and says so in the log. paho reconnects to the broker by
itself; acknowledgements of messages received on an earlier connection are skipped, since the broker
redelivers those.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from cloud_service.database import Pool, open_pool
from cloud_service.deadletter import DeadLetter
from cloud_service.ingest import Accepted, IngestMetrics, Intake, Received, decode_received, is_batch_topic
from cloud_service.migrate import migrate
from cloud_service.settings import CloudSettings
from cloud_service.upkeep import UpkeepLoop, apply_storage_policies
from cloud_service.writer import BatchWriter, WriteResult, is_outage
from shared.messages import encode, uplink_rows
from shared.mqtt import connect, make_client

__all__ = [
    "POOL_NAME",
    "IngestWorker",
    "prepare_database",
    "run_service",
    "worker_client_id",
    "worker_process_main",
]

logger = logging.getLogger(__name__)

POOL_NAME = "forewarn-cloud"  # the cloud process's shared pool; its connections' application_name
_OUTAGE_LOG_EVERY_S = 30.0
_JOIN_TIMEOUT_S = 15.0


def worker_client_id(settings: CloudSettings, index: int) -> str:
    """The stable MQTT client id of worker `index` on this machine (its persistent session's name)."""
    prefix = settings.ingest.client_id_prefix or f"forewarn-cloud-{socket.gethostname()}"
    return f"{prefix}-{index}"


def prepare_database(settings: CloudSettings) -> None:
    """Apply migrations and (TimescaleDB) storage policies; safe to run from several processes at once."""
    conninfo = settings.db.conninfo()
    report = migrate(conninfo, allow_timescale=settings.storage.timescaledb == "auto")
    if report.applied:
        logger.info("database migrated (%s): %s", report.backend.value, ", ".join(report.applied))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        apply_storage_policies(conn, settings.storage)


@dataclass(frozen=True, slots=True)
class _Decoded:
    received: Received
    messages: Sequence[Accepted] | DeadLetter  # one, or a batch's members; or the whole message's dead letter

    @property
    def rows(self) -> int:
        return 1 if isinstance(self.messages, DeadLetter) else sum(map(uplink_rows, self.messages))


def _members(decoded: Sequence[_Decoded]) -> Iterator[Accepted]:
    for item in decoded:
        if not isinstance(item.messages, DeadLetter):
            yield from item.messages


def _dead(decoded: Sequence[_Decoded]) -> list[DeadLetter]:
    return [item.messages for item in decoded if isinstance(item.messages, DeadLetter)]


class IngestWorker:
    """One MQTT client in the shared subscription, one database connection, one writer thread.

    Args:
        settings: the cloud settings.
        client_id: this worker's stable MQTT client id.
    """

    def __init__(self, settings: CloudSettings, *, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self.metrics = IngestMetrics()
        self._intake = Intake(
            maxsize=settings.ingest.queue_size,
            group=settings.ingest.group if settings.ingest.shared_subscription else None,
            metrics=self.metrics,
        )
        self._stop = threading.Event()
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._writer: BatchWriter | None = None
        self._started_at = time.time()
        self._last_metrics = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker and start the writer thread."""
        client = make_client(self.settings.mqtt, client_id=self.client_id, manual_ack=True)
        self._intake.attach(client)
        connect(client, self.settings.mqtt, clean_start=False)
        client.loop_start()
        self._client = client
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until the worker is connected and the broker confirmed its subscriptions."""
        return self._intake.connected.wait(timeout_s)

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect; unacknowledged messages stay with the broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
        if self._client is not None:
            self._intake.closing = True
            self._client.disconnect()
            self._client.loop_stop()
        self._close_db()

    # -- the writer thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._collect()
                if batch:
                    self._process(batch)
                self._maybe_record_metrics()
            except Exception:  # the top of a worker loop must survive: log, count, go on
                logger.exception("ingest worker error; continuing")
                self.metrics.db_errors += 1
                self._stop.wait(self.settings.ingest.db_retry_min_s)

    def _collect(self) -> list[_Decoded]:
        """Take messages (decoding each as it comes) until `batch_max_rows` rows, the time limit, or every
        message the broker may have in flight to us is in hand (nothing more can arrive before an ack)."""
        max_rows = self.settings.ingest.batch_max_rows
        max_messages = self.settings.mqtt.receive_maximum
        try:
            first = self._intake.queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [self._decode(first)]
        rows = batch[0].rows
        deadline = time.monotonic() + self.settings.ingest.batch_max_s
        while rows < max_rows and len(batch) < max_messages:
            try:
                received = self._intake.queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    received = self._intake.queue.get(timeout=remaining)
                except queue.Empty:
                    break
            batch.append(self._decode(received))
            rows += batch[-1].rows
        self.metrics.queue_depth = self._intake.queue.qsize()
        return batch

    def _decode(self, received: Received) -> _Decoded:
        decoded = _Decoded(received, decode_received(received.topic, received.payload))
        if not isinstance(decoded.messages, DeadLetter):
            self.metrics.decoded += 1
            self.metrics.rows_decoded += decoded.rows
            if is_batch_topic(received.topic):
                self.metrics.batch_messages += 1
        return decoded

    def _process(self, batch: list[_Decoded]) -> None:
        if not self._write_with_retry(batch):
            return  # stopping with the database down: nothing acknowledged, the broker redelivers
        for letter in _dead(batch):
            self.metrics.dead_lettered[letter.label] += 1
        self._ack([item.received for item in batch])

    def _write_with_retry(self, decoded: Sequence[_Decoded]) -> bool:
        failures = 0
        outage_since = 0.0
        last_log = 0.0
        while not self._stop.is_set():
            try:
                result = self._write(decoded)
            except psycopg.errors.TransactionRollback as exc:  # deadlock or serialization failure: retry
                if self._conn is not None and self._conn.broken:
                    self._close_db()
                logger.info("batch rolled back by the database (%s); retrying", type(exc).__name__)
                self.metrics.db_errors += 1
                self._stop.wait(0.05)
                continue
            except psycopg.Error as exc:
                if not is_outage(exc):
                    raise
                failures += 1
                self.metrics.db_errors += 1
                self.metrics.db_available = False
                self._close_db()
                delay = min(
                    self.settings.ingest.db_retry_max_s,
                    self.settings.ingest.db_retry_min_s * 2 ** (failures - 1),
                )
                now = time.monotonic()
                if failures == 1:
                    outage_since = now
                if now - last_log >= _OUTAGE_LOG_EVERY_S:
                    last_log = now
                    logger.warning(
                        "database unavailable (%s); holding %d messages unacknowledged, retrying in %.1f s",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                        len(decoded),
                        delay,
                    )
                self._stop.wait(delay)
                continue
            if failures:
                logger.warning(
                    "database available again after %.1f s; ingest resumed", time.monotonic() - outage_since
                )
            self.metrics.db_available = True
            self.metrics.batches += 1
            self.metrics.rows_inserted += result.rows_inserted
            self.metrics.duplicates += result.duplicates
            self.metrics.conflict_fallbacks += result.conflict_fallbacks
            return True
        return False

    def _write(self, decoded: Sequence[_Decoded]) -> WriteResult:
        writer = self._ensure_writer()
        try:
            return writer.write(list(_members(decoded)), _dead(decoded))
        except psycopg.Error as exc:
            if is_outage(exc) or (self._conn is not None and self._conn.broken):
                raise
            logger.warning("batch of %d failed to store (%s); storing message by message", len(decoded), exc)
            return self._write_one_by_one(writer, decoded)
        except Exception:  # a boundary: a bug must not stall the worker with unacknowledged messages
            logger.exception("batch of %d failed to store; storing message by message", len(decoded))
            return self._write_one_by_one(writer, decoded)

    def _write_one_by_one(self, writer: BatchWriter, decoded: Sequence[_Decoded]) -> WriteResult:
        """Each MQTT message in a transaction of its own; a batch that still fails, member by member."""
        total = WriteResult()
        for item in decoded:
            if isinstance(item.messages, DeadLetter):
                _add(total, writer.write([], [item.messages]))
                continue
            try:
                _add(total, writer.write(item.messages))
            except Exception as exc:  # a boundary: whatever one message breaks, keep it as a dead letter
                if isinstance(exc, psycopg.Error) and is_outage(exc):
                    raise
                if len(item.messages) == 1:
                    _add(total, self._store_failed(writer, item.received.topic, item.received.payload, exc))
                    continue
                for member in item.messages:
                    try:
                        _add(total, writer.write([member]))
                    except Exception as member_exc:  # a boundary, as above, for one member of a batch
                        if isinstance(member_exc, psycopg.Error) and is_outage(member_exc):
                            raise
                        _add(
                            total, self._store_failed(writer, item.received.topic, encode(member), member_exc)
                        )
        return total

    def _store_failed(self, writer: BatchWriter, topic: str, payload: bytes, exc: Exception) -> WriteResult:
        """Dead-letter a message the database refused (for a batch member: the member's own JSON)."""
        letter = DeadLetter(topic, payload, f"storage: {exc}"[:2000], "storage")
        self.metrics.dead_lettered[letter.label] += 1
        return writer.write([], [letter])

    def _ack(self, batch: Sequence[Received]) -> None:
        client = self._client
        if client is None:
            return
        generation = self._intake.generation
        for received in batch:
            if received.qos == 0:
                continue
            if received.generation != generation:
                self.metrics.acks_skipped_reconnected += 1
                continue
            client.ack(received.mid, received.qos)
            self.metrics.acked += 1

    # -- database connection ----------------------------------------------------------------------

    def _ensure_writer(self) -> BatchWriter:
        if self._writer is None or self._conn is None or self._conn.closed:
            self._close_db()
            self._conn = psycopg.connect(self.settings.db.conninfo())
            self._writer = BatchWriter(
                self._conn,
                max_clock_skew_s=self.settings.ingest.max_clock_skew_s,
                rollup_lookback=timedelta(hours=self.settings.storage.rollup_lookback_h),
            )
        return self._writer

    def _close_db(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                logger.debug("closing a broken database connection failed", exc_info=True)
        self._conn = None
        self._writer = None

    def _maybe_record_metrics(self) -> None:
        now = time.monotonic()
        if now - self._last_metrics < self.settings.ingest.metrics_interval_s:
            return
        self._last_metrics = now
        self.metrics.queue_depth = self._intake.queue.qsize()
        try:
            self._ensure_writer()
            conn = self._conn
            if conn is None:  # pragma: no cover - _ensure_writer connected or raised
                return
            with conn.transaction():
                conn.execute(
                    "INSERT INTO ingest_workers (worker_id, started_at, updated_at, metrics) "
                    "VALUES (%s, to_timestamp(%s), now(), %s::jsonb) ON CONFLICT (worker_id) DO UPDATE SET "
                    "started_at = EXCLUDED.started_at, updated_at = now(), metrics = EXCLUDED.metrics",
                    (self.client_id, self._started_at, json.dumps(self.metrics.as_dict())),
                )
        except psycopg.Error as exc:
            logger.debug("could not record worker metrics: %s", exc)
            if is_outage(exc):
                self._close_db()


def _add(total: WriteResult, result: WriteResult) -> None:
    total.duplicates += result.duplicates
    total.dead_lettered += result.dead_lettered
    total.conflict_fallbacks += result.conflict_fallbacks
    for table, count in result.inserted.items():
        total.inserted[table] = total.inserted.get(table, 0) + count


def worker_process_main(settings: CloudSettings, client_id: str, log_level: int) -> None:
    """Entry point of a worker process: run one worker until SIGTERM or the parent's death."""
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    worker = IngestWorker(settings, client_id=client_id)
    worker.start()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            logger.warning("parent process gone; worker %s stopping", client_id)
            break
    worker.stop()


def run_service(
    settings: CloudSettings, stop: threading.Event, *, upkeep_loop: bool = True, pool: Pool | None = None
) -> None:
    """Migrate, then run the workers (and, with `upkeep_loop`, the storage upkeep timer) until `stop` is set.

    Without `upkeep_loop` the caller schedules the upkeep itself (the lifecycle scheduler's `rollups` job).

    With one worker, it runs in this process; with more, each runs in its own process (the GIL would
    otherwise cap them at one core), and a worker that dies is started again with the same client id, so
    its persistent session and unacknowledged messages are picked up where they were left. Each worker
    keeps a dedicated database connection (it holds it for COPY); the upkeep timer takes its connection
    from the process's pool.

    Args:
        settings: the cloud settings.
        stop: set it to stop the service.
        upkeep_loop: run the storage upkeep timer.
        pool: the process's connection pool (the caller closes it); None opens one for the upkeep timer
            from `settings.db` and closes it when the service stops.
    """
    prepare_database(settings)
    with contextlib.ExitStack() as resources:
        if upkeep_loop:
            if pool is None:
                pool = resources.enter_context(open_pool(settings.db, name=POOL_NAME))
            upkeep = UpkeepLoop(pool=pool, storage=settings.storage)
            upkeep.start()
            resources.callback(upkeep.stop)
        if settings.ingest.workers == 1:
            worker = IngestWorker(settings, client_id=worker_client_id(settings, 0))
            worker.start()
            logger.info("ingest running with 1 worker")
            stop.wait()
            worker.stop()
        else:
            _run_processes(settings, stop)


def _run_processes(settings: CloudSettings, stop: threading.Event) -> None:
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    ids = [worker_client_id(settings, index) for index in range(settings.ingest.workers)]
    processes: dict[str, Any] = {}

    def launch(client_id: str) -> None:
        process = context.Process(
            target=worker_process_main,
            args=(settings, client_id, level),
            name=f"ingest-{client_id}",
            daemon=False,
        )
        process.start()
        processes[client_id] = process

    for client_id in ids:
        launch(client_id)
    logger.info("ingest running with %d worker processes", len(ids))
    while not stop.wait(1.0):
        for client_id, process in list(processes.items()):
            if not process.is_alive():
                logger.warning("worker %s exited (code %s); starting it again", client_id, process.exitcode)
                launch(client_id)
    for process in processes.values():
        process.terminate()
    for process in processes.values():
        process.join(_JOIN_TIMEOUT_S)
        if process.is_alive():
            process.kill()
