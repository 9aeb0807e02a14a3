"""`forewarn bench ingest`: the cloud write path against its ceilings, on throwaway Mosquitto and PostgreSQL.

Figures (a row is one asset's aggregate for one period, 24 features x mean/min/max):

- `raw_copy_rows_per_s`: binary COPY of pre-built rows from memory into an unindexed, unpartitioned copy of
  the aggregates table: the database's ceiling.
- `write_path_rows_per_s`: the service's own idempotent write path (`BatchWriter`: staging COPY, conflict
  handling, registration, commit) fed decoded messages from memory.
- `ingest_rows_per_s`: MQTT publish (QoS 1, publishers in their own processes) to committed rows, through
  `workers` ingest processes in one shared subscription: decoding, validation, idempotency, acks.
- `ingest_backlog_rows_per_s`: the same workers draining a backlog the broker held for their sessions
  (publishers not running): the service's own rate, as when gateways are on other machines.
- `e2e_latency_p99_ms`: publish to commit, at a paced rate below saturation (`latency_rate_msgs_per_s`).
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.migrate import migrate
from cloud_service.service import worker_process_main
from cloud_service.settings import CloudSettings
from cloud_service.writer import (
    AGGREGATE_COPY_COLUMNS,
    AGGREGATE_COPY_TYPES,
    BatchWriter,
    aggregate_rows,
    register_array_dumper,
)
from forewarn.localservices import MosquittoServer, PostgresServer, running, temporary_directory, wait_until
from shared import topics
from shared.config import load_settings
from shared.features import DEFAULT_SPEC
from shared.messages import Aggregate, FeatureStats, ScoreStats, encode
from shared.timebase import now_ns

__all__ = ["run"]

_PERIOD_NS = 10_000_000_000
_ASSETS_PER_GATEWAY = 20


def _aggregate(gateway_id: str, seq: int, start_ns: int, end_ns: int | None = None) -> Aggregate:
    base = float(seq % 101)
    return Aggregate(
        gateway_id=gateway_id,
        asset_id=f"{gateway_id}-a{seq % _ASSETS_PER_GATEWAY}",
        seq=seq,
        period_start_ns=start_ns,
        period_end_ns=end_ns if end_ns is not None else start_ns + _PERIOD_NS,
        feature_spec=DEFAULT_SPEC.spec_id,
        features={
            n: FeatureStats(base + i, base + i - 1, base + i + 1)
            for i, n in enumerate(DEFAULT_SPEC.feature_names)
        },
        score=ScoreStats(mean=0.4, max=0.9, threshold=1.0, n_windows=10, n_above_threshold=0),
        model_version="1",
        model_kind="onnx",
    )


def _messages(gateway_id: str, n: int) -> list[Aggregate]:
    start = now_ns() - n * _PERIOD_NS
    return [_aggregate(gateway_id, seq, start + seq * _PERIOD_NS) for seq in range(n)]


def _raw_copy_rate(conninfo: str, messages: list[Aggregate], *, repeats: int) -> float:
    """Binary COPY of the write path's own rows, pre-built, into an unindexed copy of the aggregates table."""
    rows = aggregate_rows(messages, [1] * len(messages), received_us=0)
    best = 0.0
    with psycopg.connect(conninfo) as conn:
        register_array_dumper(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS raw_copy (LIKE aggregates)")  # no indexes, not partitioned
        conn.commit()
        for _ in range(repeats):
            conn.execute("TRUNCATE raw_copy")
            conn.commit()
            start = time.perf_counter()
            statement = f"COPY raw_copy ({AGGREGATE_COPY_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.set_types(AGGREGATE_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            best = max(best, len(rows) / (time.perf_counter() - start))
        conn.execute("DROP TABLE raw_copy")
        conn.commit()
    return best


def _write_path_rate(conninfo: str, n: int, *, batch: int, repeats: int) -> float:
    best = 0.0
    with psycopg.connect(conninfo) as conn:
        writer = BatchWriter(conn)
        for attempt in range(repeats):
            messages = _messages(f"bench-wp{attempt}", n)
            writer.write(messages[:1])  # partitions, feature set, registration: once per gateway
            start = time.perf_counter()
            for i in range(1, n, batch):
                writer.write(messages[i : i + batch])
            best = max(best, (n - 1) / (time.perf_counter() - start))
    return best


def _publish(port: int, gateway_id: str, n: int, rate_per_s: float) -> None:
    """Publish `n` aggregates at QoS 1 (paced at `rate_per_s`, or as fast as possible if 0)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{gateway_id}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    topic = topics.aggregate(gateway_id)
    first = now_ns() - n * _PERIOD_NS
    paced = rate_per_s > 0
    payloads = [] if paced else [encode(m) for m in _messages(gateway_id, n)]
    start = time.monotonic()
    for seq in range(n):
        if paced:
            while time.monotonic() - start < seq / rate_per_s:
                client.loop(0.0005)
            payload = encode(_aggregate(gateway_id, seq, first + seq * _PERIOD_NS, end_ns=now_ns()))
        else:
            payload = payloads[seq]
        client.publish(topic, payload, qos=1)
        client.loop(0)  # read PUBACKs as they come (the fastest QoS 1 publishing measured here)
    while acked[0] < n:  # every PUBACK back: the broker has them all
        client.loop(0.01)
    client.disconnect()


def _count(conn: psycopg.Connection[Any], prefix: str) -> int:
    row = conn.execute("SELECT count(*) FROM aggregates WHERE gateway_id LIKE %s", (prefix + "%",)).fetchone()
    return int(row[0]) if row else 0


def _settings(pg: PostgresServer, mq: MosquittoServer, workers: int) -> CloudSettings:
    return load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": {"port": mq.port, "receive_maximum": 2048},
            "db": {"port": pg.port, "dbname": "bench"},
            "ingest": {"workers": workers, "group": "bench", "client_id_prefix": "bench", "queue_size": 4096},
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


def _publish_all(mq: MosquittoServer, prefix: str, n: int, publishers: int) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    senders = [
        context.Process(target=_publish, args=(mq.port, f"{prefix}{i}", n // publishers, 0.0), daemon=True)
        for i in range(publishers)
    ]
    for sender in senders:
        sender.start()
    return senders


def _ingest_rate(conn: psycopg.Connection[Any], mq: MosquittoServer, n: int, *, publishers: int) -> float:
    """Live: publishers and workers at once, from the first publish to the last commit."""
    start = time.perf_counter()
    senders = _publish_all(mq, "bench-in", n, publishers)
    total = n // publishers * publishers
    wait_until(lambda: _count(conn, "bench-in") >= total, timeout_s=600, interval_s=0.1)
    rate = total / (time.perf_counter() - start)
    for sender in senders:
        sender.join(30)
    return rate


def _backlog_rate(
    conn: psycopg.Connection[Any], mq: MosquittoServer, settings: CloudSettings, n: int, *, publishers: int
) -> float:
    """Backlog: the broker holds `n` messages for the (stopped) workers' sessions; time the drain.

    Measured from the first to the last committed row, so process start-up is not counted; publishers
    are not running, as gateways would not be on this machine.
    """
    for sender in _publish_all(mq, "bench-bl", n, publishers):
        sender.join(600)
    total = n // publishers * publishers
    workers = _start_workers(settings)
    wait_until(lambda: _count(conn, "bench-bl") > 0, timeout_s=120, interval_s=0.01)
    first_rows, start = _count(conn, "bench-bl"), time.perf_counter()
    wait_until(lambda: _count(conn, "bench-bl") >= total, timeout_s=600, interval_s=0.05)
    rate = (total - first_rows) / (time.perf_counter() - start)
    _stop_workers(workers)
    return rate


def _workers_up(conn: psycopg.Connection[Any], n: int) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM ingest_workers WHERE (metrics->>'connected')::boolean"
    ).fetchone()
    return bool(row and row[0] >= n)


def _latency_p99_ms(pg: PostgresServer, mq: MosquittoServer, n: int, rate: float) -> float:
    context = multiprocessing.get_context("spawn")
    sender = context.Process(target=_publish, args=(mq.port, "bench-lat", n, rate), daemon=True)
    sender.start()
    with psycopg.connect(pg.conninfo("bench"), autocommit=True) as conn:
        wait_until(lambda: _count(conn, "bench-lat") >= n, timeout_s=120, interval_s=0.1)
        row = conn.execute(
            "SELECT percentile_cont(0.99) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM received_at - period_end)) "
            "FROM aggregates WHERE gateway_id = 'bench-lat'"
        ).fetchone()
    sender.join(30)
    return float(row[0]) * 1000.0 if row and row[0] is not None else float("nan")


def run(*, quick: bool = False) -> dict[str, object]:
    """Measure raw COPY, the write path and end-to-end ingest on throwaway local services."""
    n_copy = 20_000 if quick else 100_000
    n_write = 10_000 if quick else 50_000
    n_ingest = 10_000 if quick else 60_000
    repeats = 1 if quick else 3
    n_workers = 2
    with (
        temporary_directory("forewarn-bench-pg-") as pg_dir,
        temporary_directory("forewarn-bench-mq-") as mq_dir,
        running(PostgresServer(pg_dir)) as pg,
        running(MosquittoServer(Path(mq_dir))) as mq,
    ):
        pg.create_database("bench")
        migrate(pg.conninfo("bench"))
        raw = _raw_copy_rate(pg.conninfo("bench"), _messages("bench-raw", n_copy), repeats=repeats)
        write_path = _write_path_rate(pg.conninfo("bench"), n_write, batch=1000, repeats=repeats)
        settings = _settings(pg, mq, n_workers)
        workers = _start_workers(settings)
        conn = psycopg.connect(pg.conninfo("bench"), autocommit=True)
        wait_until(lambda: _workers_up(conn, n_workers), timeout_s=60, interval_s=0.2)
        ingest = _ingest_rate(conn, mq, n_ingest, publishers=2)
        latency_rate = max(200.0, round(ingest * 0.5, -2))
        latency = _latency_p99_ms(pg, mq, min(int(latency_rate * 5), 20_000), latency_rate)
        _stop_workers(workers)
        backlog = _backlog_rate(conn, mq, settings, n_ingest, publishers=2)
        conn.close()
    return {
        "rows": {"raw_copy": n_copy, "write_path": n_write, "ingest": n_ingest, "backlog": n_ingest},
        "features_per_row": len(DEFAULT_SPEC.feature_names),
        "raw_copy_rows_per_s": round(raw),
        "write_path_rows_per_s": round(write_path),
        "ingest_rows_per_s": round(ingest),
        "ingest_backlog_rows_per_s": round(backlog),
        "write_path_to_raw_copy_ratio": round(write_path / raw, 3),
        "ingest_to_write_path_ratio": round(ingest / write_path, 3),
        "ingest_backlog_to_write_path_ratio": round(backlog / write_path, 3),
        "workers": n_workers,
        "publishers": 2,
        "e2e_latency_p99_ms": round(latency, 1),
        "latency_rate_msgs_per_s": latency_rate,
        "note": "broker, database, publishers and workers share this machine's cores",
        "when": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "period_s": timedelta(seconds=_PERIOD_NS / 1e9).total_seconds(),
    }
