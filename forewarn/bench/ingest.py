"""`forewarn bench ingest`: the cloud write path against its ceilings, on throwaway Mosquitto and PostgreSQL.

Figures (a row is one asset's aggregate for one period, 25 features x mean/min/max). Publishers send what
a gateway sends: each publisher process is a gateway whose `rows_per_message` queued aggregates go out as
one uplink batch (`topics.batch`, built by the edge forwarder's own `batch_payload`: the aggregates packed
into one columnar `AggregateBlock`); `rows_per_message=1` is one MQTT message per row, as before batching.

- `raw_copy_rows_per_s`: binary COPY of the write path's own COPY stream, pre-built in memory, into an
  unindexed, unpartitioned copy of the aggregates table: the database's ceiling.
- `write_path_rows_per_s`: the service's own idempotent write path (`BatchWriter`: staging COPY, conflict
  handling, registration, commit) fed decoded messages from memory.
- `ingest_rows_per_s`: MQTT publish (QoS 1, publishers in their own processes) to committed rows, through
  `workers` ingest processes in one shared subscription: decoding, validation, idempotency, acks.
- `ingest_backlog_rows_per_s`: the same workers draining a backlog the broker held for their sessions
  (publishers not running): the service's own rate, as when gateways are on other machines.
- `e2e_latency_p99_ms`: a member's period end (set when its batch is built and published) to its commit, at
  a paced rate below saturation (`latency_rate_rows_per_s`).
- `decode_us_per_row`: `decode_uplink_batch` alone, per member, on this machine (the contract's own cost).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.copy_encoding import AGGREGATE_BULK_COLUMNS, aggregate_copy_data
from cloud_service.ingest import decode_received
from cloud_service.migrate import migrate
from cloud_service.service import worker_process_main
from cloud_service.settings import CloudSettings
from cloud_service.writer import BatchWriter
from edge_agent.disk_queue import QueuedMessage
from edge_agent.forwarder import batch_payload
from forewarn.localservices import MosquittoServer, PostgresServer, running, temporary_directory, wait_until
from shared import topics
from shared.aggregate_block import pack_aggregates
from shared.config import load_settings
from shared.features import DEFAULT_SPEC
from shared.messages import Aggregate, FeatureStats, ScoreStats, encode
from shared.timebase import now_ns

__all__ = ["run"]

_PERIOD_NS = 10_000_000_000
_ASSETS_PER_GATEWAY = 20
_ROWS_PER_MESSAGE = 256
_FEATURES = len(DEFAULT_SPEC.feature_names)


def _aggregate(
    gateway_id: str, seq: int, start_ns: int, end_ns: int | None = None, *, assets: int = _ASSETS_PER_GATEWAY
) -> Aggregate:
    # Measurement-like values (noise around a level per feature), so that compression sees what it would
    # see on a plant, not a repeating pattern.
    noise = np.random.default_rng(seq).normal(size=(_FEATURES, 3))
    level = 1.0 + np.arange(_FEATURES, dtype=np.float64)
    mean = level * (1.0 + 0.05 * noise[:, 0])
    low = mean - level * np.abs(0.1 * noise[:, 1])
    high = mean + level * np.abs(0.1 * noise[:, 2])
    score = float(abs(noise[0, 0])) * 0.3
    return Aggregate(
        gateway_id=gateway_id,
        asset_id=f"{gateway_id}-a{seq % assets}",
        seq=seq,
        period_start_ns=start_ns,
        period_end_ns=end_ns if end_ns is not None else start_ns + _PERIOD_NS,
        feature_spec=DEFAULT_SPEC.spec_id,
        features={
            name: FeatureStats(*stats)
            for name, stats in zip(
                DEFAULT_SPEC.feature_names, np.stack([mean, low, high], axis=1).tolist(), strict=True
            )
        },
        score=ScoreStats(mean=score, max=2 * score, threshold=1.0, n_windows=10, n_above_threshold=0),
        model_version="1",
        model_kind="onnx",
    )


def _messages(gateway_id: str, n: int, *, assets: int = _ASSETS_PER_GATEWAY) -> list[Aggregate]:
    """`n` rows of one gateway: `assets` assets per period, period after period (seq order)."""
    start = now_ns() - (n // assets + 1) * _PERIOD_NS
    return [
        _aggregate(gateway_id, seq, start + seq // assets * _PERIOD_NS, assets=assets) for seq in range(n)
    ]


def _payloads(gateway_id: str, rows: list[bytes], rows_per_message: int) -> list[tuple[str, bytes]]:
    """(topic, payload) of encoded rows as a gateway's forwarder sends them: uplink batches, or one row per
    message."""
    topic = topics.aggregate(gateway_id)
    if rows_per_message == 1:
        return [(topic, row) for row in rows]
    queued = [QueuedMessage(seq, topic, row) for seq, row in enumerate(rows)]
    return [
        (topics.batch(gateway_id), batch_payload(gateway_id, queued[i : i + rows_per_message]))
        for i in range(0, len(rows), rows_per_message)
    ]


def _decode_us_per_row(rows_per_message: int) -> float:
    payloads = _payloads("bench-dec", [encode(m) for m in _messages("bench-dec", 4096)], rows_per_message)
    start = time.perf_counter()
    for topic, payload in payloads:
        decode_received(topic, payload)
    return (time.perf_counter() - start) / 4096 * 1e6


def _raw_copy_rate(conninfo: str, messages: list[Aggregate], *, repeats: int) -> float:
    """Binary COPY of the write path's own COPY stream, pre-built, into an unindexed copy of the aggregates
    table: the database's ceiling (no client work is timed)."""
    blocks = pack_aggregates(messages)
    data = aggregate_copy_data(blocks, [1] * len(blocks), received_us=0)
    best = 0.0
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_copy (LIKE aggregates)")  # no indexes, not partitioned
        conn.commit()
        for _ in range(repeats):
            conn.execute("TRUNCATE raw_copy")
            conn.commit()
            start = time.perf_counter()
            statement = f"COPY raw_copy ({AGGREGATE_BULK_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.write(data)
            conn.commit()
            best = max(best, len(messages) / (time.perf_counter() - start))
        conn.execute("DROP TABLE raw_copy")
        conn.commit()
    return best


def _write_path_rate(conninfo: str, n: int, *, batch: int, repeats: int) -> float:
    """Decoded messages as a worker holds them (blocks of `_ROWS_PER_MESSAGE` rows), `batch` rows a write."""
    best = 0.0
    per_write = max(1, batch // _ROWS_PER_MESSAGE)
    with psycopg.connect(conninfo) as conn:
        writer = BatchWriter(conn)
        for attempt in range(repeats):
            messages = _messages(f"bench-wp{attempt}", n + 1)
            writer.write(messages[:1])  # partitions, feature set, registration: once per gateway
            blocks = pack_aggregates(messages[1:], max_rows=_ROWS_PER_MESSAGE)
            start = time.perf_counter()
            for i in range(0, len(blocks), per_write):
                writer.write(blocks[i : i + per_write])
            best = max(best, n / (time.perf_counter() - start))
    return best


def _publish(  # noqa: PLR0917 - a process target takes its arguments by position
    port: int, gateway_id: str, n: int, rate_per_s: float, rows_per_message: int, ready: Any = None
) -> None:
    """Publish `n` rows at QoS 1, `rows_per_message` per MQTT message (paced at `rate_per_s` rows per
    second, each row's period ending when its message is built; or pre-built, as fast as possible, if 0).
    With a `ready` barrier, wait on it once the payloads are built (a gateway's rows are already encoded)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{gateway_id}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000 if rows_per_message == 1 else 64)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    paced = rate_per_s > 0
    assets = rows_per_message if rows_per_message > 1 else _ASSETS_PER_GATEWAY
    first = now_ns() - (n // assets + 1) * _PERIOD_NS
    prebuilt = (
        []
        if paced
        else _payloads(
            gateway_id, [encode(m) for m in _messages(gateway_id, n, assets=assets)], rows_per_message
        )
    )
    if ready is not None:
        ready.wait()
    start = time.monotonic()
    sent = 0
    for seq in range(0, n, rows_per_message):
        if paced:
            while time.monotonic() - start < seq / rate_per_s:
                client.loop(0.0005)
            end_ns = now_ns()
            rows = [
                encode(
                    _aggregate(gateway_id, s, first + s // assets * _PERIOD_NS, end_ns=end_ns, assets=assets)
                )
                for s in range(seq, min(seq + rows_per_message, n))
            ]
            topic, payload = _payloads(gateway_id, rows, rows_per_message)[0]
        else:
            topic, payload = prebuilt[seq // rows_per_message]
        client.publish(topic, payload, qos=1)
        sent += 1
        client.loop(0)  # read PUBACKs as they come (the fastest QoS 1 publishing measured here)
    while acked[0] < sent:  # every PUBACK back: the broker has them all
        client.loop(0.01)
    client.disconnect()


def _count(conn: psycopg.Connection[Any], prefix: str) -> int:
    """Rows stored for the publishers of `prefix` (a full count: call it rarely, it scans)."""
    row = conn.execute("SELECT count(*) FROM aggregates WHERE gateway_id LIKE %s", (prefix + "%",)).fetchone()
    return int(row[0]) if row else 0


def _wait_stored(conn: psycopg.Connection[Any], prefix: str, publishers: int, per_publisher: int) -> None:
    """Wait until every row of `prefix`'s publishers is stored, polling cheaply: an index lookup of each
    publisher's last row first (the polling must not load the database it measures), then a full count."""
    gateways = [f"{prefix}{i}" for i in range(publishers)]

    def last_rows_in() -> bool:
        row = conn.execute(
            "SELECT count(*) FROM aggregates WHERE gateway_id = ANY(%s) AND seq = %s",
            (gateways, per_publisher - 1),
        ).fetchone()
        return bool(row and row[0] == publishers)

    wait_until(last_rows_in, timeout_s=600, interval_s=0.02)
    wait_until(lambda: _count(conn, prefix) >= publishers * per_publisher, timeout_s=600, interval_s=0.02)


def _any_stored(conn: psycopg.Connection[Any], prefix: str, publishers: int) -> bool:
    gateways = [f"{prefix}{i}" for i in range(publishers)]
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM aggregates WHERE gateway_id = ANY(%s))", (gateways,))
    found = row.fetchone()
    return bool(found and found[0])


def _settings(pg: PostgresServer, mq: MosquittoServer, workers: int, rows_per_message: int) -> CloudSettings:
    # Receive Maximum bounds the messages (not rows) a worker holds: with batches, a few dozen are plenty.
    receive_maximum = 2048 if rows_per_message == 1 else max(16, 8192 // rows_per_message)
    return load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": {"port": mq.port, "receive_maximum": receive_maximum},
            "db": {"port": pg.port, "dbname": "bench"},
            "ingest": {
                "workers": workers,
                "group": "bench",
                "client_id_prefix": "bench",
                "queue_size": max(receive_maximum, 64),
                "batch_max_rows": 2048,
            },
        },
    )


def _start_workers(settings: CloudSettings) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=worker_process_main, args=(settings, f"bench-{i}", 30), daemon=True)
        for i in range(settings.ingest.workers)
    ]
    for process in workers:
        process.start()
    return workers


def _stop_workers(workers: list[Any]) -> None:
    for process in workers:
        process.terminate()  # SIGTERM: finish the batch in hand, disconnect; the sessions stay
    for process in workers:
        process.join(30)


def _publish_all(
    mq: MosquittoServer, prefix: str, n: int, publishers: int, rows_per_message: int
) -> list[Any]:
    """Start the publishers; returns once every one has built its payloads and starts publishing."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(publishers + 1)
    senders = [
        context.Process(
            target=_publish,
            args=(mq.port, f"{prefix}{i}", n // publishers, 0.0, rows_per_message, ready),
            daemon=True,
        )
        for i in range(publishers)
    ]
    for sender in senders:
        sender.start()
    ready.wait(timeout=300)
    return senders


def _ingest_rate(
    conn: psycopg.Connection[Any], mq: MosquittoServer, n: int, *, publishers: int, rows_per_message: int
) -> float:
    """Live: publishers and workers at once, from the first publish to the last commit."""
    senders = _publish_all(mq, "bench-in", n, publishers, rows_per_message)
    start = time.perf_counter()
    total = n // publishers * publishers
    _wait_stored(conn, "bench-in", publishers, n // publishers)
    rate = total / (time.perf_counter() - start)
    for sender in senders:
        sender.join(30)
    return rate


def _backlog_rate(
    conn: psycopg.Connection[Any],
    mq: MosquittoServer,
    settings: CloudSettings,
    n: int,
    *,
    publishers: int,
    rows_per_message: int,
) -> float:
    """Backlog: the broker holds `n` messages for the (stopped) workers' sessions; time the drain.

    Measured from the first to the last committed row, so process start-up is not counted; publishers
    are not running, as gateways would not be on this machine.
    """
    for sender in _publish_all(mq, "bench-bl", n, publishers, rows_per_message):
        sender.join(600)
    total = n // publishers * publishers
    workers = _start_workers(settings)
    wait_until(lambda: _any_stored(conn, "bench-bl", publishers), timeout_s=120, interval_s=0.01)
    start = time.perf_counter()
    first_rows = _count(conn, "bench-bl")
    _wait_stored(conn, "bench-bl", publishers, n // publishers)
    rate = (total - first_rows) / (time.perf_counter() - start)
    _stop_workers(workers)
    return rate


def _workers_up(conn: psycopg.Connection[Any], n: int) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM ingest_workers WHERE (metrics->>'connected')::boolean"
    ).fetchone()
    return bool(row and row[0] >= n)


def _latency_p99_ms(
    pg: PostgresServer, mq: MosquittoServer, n: int, rate: float, rows_per_message: int
) -> float:
    context = multiprocessing.get_context("spawn")
    sender = context.Process(
        target=_publish, args=(mq.port, "bench-lat0", n, rate, rows_per_message), daemon=True
    )
    sender.start()
    with psycopg.connect(pg.conninfo("bench"), autocommit=True) as conn:
        _wait_stored(conn, "bench-lat", 1, n)
        row = conn.execute(
            "SELECT percentile_cont(0.99) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM received_at - period_end)) "
            "FROM aggregates WHERE gateway_id = 'bench-lat0'"
        ).fetchone()
    sender.join(30)
    return float(row[0]) * 1000.0 if row and row[0] is not None else float("nan")


def run(*, quick: bool = False, rows_per_message: int = _ROWS_PER_MESSAGE) -> dict[str, object]:
    """Measure raw COPY, the write path and end-to-end ingest on throwaway local services.

    Args:
        quick: fewer rows and one repeat (for tests).
        rows_per_message: rows per MQTT message the publishers send (1: no batching).
    """
    n_copy = 20_000 if quick else 100_000
    n_write = 10_000 if quick else 50_000
    n_ingest = 20_000 if quick else 200_000
    repeats = 1 if quick else 3
    n_workers = 2
    publishers = 2
    if rows_per_message == 1:
        n_ingest = 10_000 if quick else 60_000
    decode_us = _decode_us_per_row(rows_per_message)
    with (
        temporary_directory("forewarn-bench-pg-") as pg_dir,
        temporary_directory("forewarn-bench-mq-") as mq_dir,
        running(PostgresServer(pg_dir)) as pg,
        running(MosquittoServer(Path(mq_dir))) as mq,
    ):
        pg.create_database("bench")
        migrate(pg.conninfo("bench"))
        raw = _raw_copy_rate(pg.conninfo("bench"), _messages("bench-raw", n_copy), repeats=repeats)
        write_path = _write_path_rate(pg.conninfo("bench"), n_write, batch=2048, repeats=repeats)
        settings = _settings(pg, mq, n_workers, rows_per_message)
        workers = _start_workers(settings)
        conn = psycopg.connect(pg.conninfo("bench"), autocommit=True)
        wait_until(lambda: _workers_up(conn, n_workers), timeout_s=60)
        ingest = _ingest_rate(conn, mq, n_ingest, publishers=publishers, rows_per_message=rows_per_message)
        latency_rate = max(200.0, round(ingest * 0.5, -2))
        n_latency = min(int(latency_rate * 5), 100_000) // rows_per_message * rows_per_message
        latency = _latency_p99_ms(pg, mq, n_latency, latency_rate, rows_per_message)
        _stop_workers(workers)
        backlog = _backlog_rate(
            conn, mq, settings, n_ingest, publishers=publishers, rows_per_message=rows_per_message
        )
        conn.close()
    return {
        "rows": {"raw_copy": n_copy, "write_path": n_write, "ingest": n_ingest, "backlog": n_ingest},
        "features_per_row": len(DEFAULT_SPEC.feature_names),
        "rows_per_message": rows_per_message,
        "raw_copy_rows_per_s": round(raw),
        "write_path_rows_per_s": round(write_path),
        "ingest_rows_per_s": round(ingest),
        "ingest_messages_per_s": round(ingest / rows_per_message),
        "ingest_backlog_rows_per_s": round(backlog),
        "write_path_to_raw_copy_ratio": round(write_path / raw, 3),
        "ingest_to_write_path_ratio": round(ingest / write_path, 3),
        "ingest_backlog_to_write_path_ratio": round(backlog / write_path, 3),
        "decode_us_per_row": round(decode_us, 1),
        "workers": n_workers,
        "publishers": publishers,
        "e2e_latency_p99_ms": round(latency, 1),
        "latency_rate_rows_per_s": latency_rate,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "note": "broker, database, publishers and workers share this machine's cores",
        "when": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "period_s": timedelta(seconds=_PERIOD_NS / 1e9).total_seconds(),
    }
