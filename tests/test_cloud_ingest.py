"""Cloud ingest end to end over a real Mosquitto and PostgreSQL: every kind lands, exactly once, whatever
fails (replays, a second worker, a 20 s database outage, `kill -9`), and bad input is dead-lettered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.conninfo import conninfo_to_dict

from cloud_service.service import IngestWorker
from cloud_service.settings import CloudSettings
from forewarn.bench.messages import PERIOD_NS, aggregate, one_of_each
from forewarn.localservices import MosquittoServer, PostgresServer, wait_until
from shared import topics
from shared.aggregate_block import pack_aggregates
from shared.config import load_settings
from shared.messages import Aggregate, MaintenanceEvent, Status, Uplink, UplinkBatch, encode
from shared.timebase import now_ns
from tests.test_cloud_storage import counts

REPO = Path(__file__).resolve().parent.parent


def cloud_settings(broker: MosquittoServer, conninfo: str, group: str, **ingest: object) -> CloudSettings:
    """Settings for a test worker: the fixtures' broker and database, a group of its own, quick batches."""
    params = conninfo_to_dict(conninfo)
    return load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": {"host": broker.host, "port": broker.port, "receive_maximum": 256},
            "db": {"host": params["host"], "port": int(str(params["port"])), "dbname": params["dbname"]},
            "ingest": {
                "group": group,
                "client_id_prefix": group,
                "batch_max_rows": 200,
                "batch_max_s": 0.05,
                "queue_size": 512,
                "db_retry_min_s": 0.2,
                "db_retry_max_s": 1.0,
                "metrics_interval_s": 0.5,
                **ingest,
            },
        },
    )


class Publisher:
    """A QoS 1 publisher that waits until the broker has every message."""

    def __init__(self, broker: MosquittoServer, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, items: list[tuple[str, bytes]], *, pace_s: float = 0.0) -> None:
        infos = []
        for topic, payload in items:
            infos.append(self.client.publish(topic, payload, qos=1))
            if pace_s:
                time.sleep(pace_s)  # pacing a load generator, not synchronisation
        for info in infos:
            info.wait_for_publish(timeout=60)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: MosquittoServer, unique_id: Callable[[str], str]) -> Iterator[Publisher]:
    pub = Publisher(broker, unique_id("pub"))
    yield pub
    pub.close()


def uplink(messages: list[Any]) -> list[tuple[str, bytes]]:
    """(topic, payload) of each message, on the topic its kind belongs to."""
    builders = {
        "Aggregate": topics.aggregate,
        "Alert": topics.alert,
        "Snapshot": topics.snapshot,
        "Status": topics.status,
        "DeploymentAck": topics.deploy_ack,
    }
    out = []
    for message in messages:
        if isinstance(message, MaintenanceEvent):
            out.append((topics.event(message.asset_id), encode(message)))
        else:
            out.append((builders[type(message).__name__](message.gateway_id), encode(message)))
    return out


def aggregates(gateway_id: str, n: int, *, assets: int = 5) -> list[tuple[str, bytes]]:
    """`n` aggregates of one gateway, spread over a few assets."""
    start = now_ns() - n * PERIOD_NS
    return uplink(
        [
            aggregate(gateway_id, f"{gateway_id}-a{seq % assets}", seq, start + seq * PERIOD_NS)
            for seq in range(n)
        ]
    )


def batched(gateway_id: str, members: list[Any], *, size: int) -> list[tuple[str, bytes]]:
    """`members` (uplink messages of one gateway, in seq order) as uplink batches of up to `size`."""
    return [
        (topics.batch(gateway_id), encode(UplinkBatch(gateway_id=gateway_id, messages=members[i : i + size])))
        for i in range(0, len(members), size)
    ]


def aggregate_members(gateway_id: str, n: int, *, assets: int = 5, first: int = 0) -> list[Uplink]:
    """Aggregates `first`..`n-1` of one gateway, spread over a few assets."""
    start = now_ns() - n * PERIOD_NS
    return [
        aggregate(gateway_id, f"{gateway_id}-a{seq % assets}", seq, start + seq * PERIOD_NS)
        for seq in range(first, n)
    ]


def row_count(conninfo: str, gateway_id: str) -> int:
    """Aggregates of a gateway in the database (0 while the database is down)."""
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM aggregates WHERE gateway_id = %s", (gateway_id,)
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return 0


def exactly_once(conninfo: str, gateway_id: str, n: int) -> None:
    """Every seq 0..n-1 of the gateway is stored once."""
    with psycopg.connect(conninfo) as conn:
        seqs = [
            row[0]
            for row in conn.execute(
                "SELECT seq FROM aggregates WHERE gateway_id = %s ORDER BY seq", (gateway_id,)
            )
        ]
    assert seqs == list(range(n))


def clear_retained(broker: MosquittoServer, topic_filter: str = "forewarn/v1/#") -> int:
    """Delete the retained messages under `topic_filter` (gateways' statuses left by earlier tests on the
    session broker would reach a new worker and add to its counters). Returns how many were cleared.

    The broker sends a subscription's retained messages before it handles anything the same client
    publishes after subscribing, so a sentinel published then arrives after the last retained message.
    """
    sentinel = f"{topic_filter.removesuffix('#').rstrip('/')}/clear-sentinel/{uuid.uuid4().hex[:8]}"
    found: list[str] = []
    subscribed = threading.Event()
    sentinel_seen = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == sentinel:
            sentinel_seen.set()
        elif msg.retain:
            found.append(msg.topic)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"clear-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe(topic_filter, qos=1)
        assert subscribed.wait(5), "no SUBACK from the broker"
        client.publish(sentinel, b"", qos=1).wait_for_publish(5)
        assert sentinel_seen.wait(5), "the sentinel did not come back"
        for topic in found:
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(found)


@pytest.fixture
def worker_factory(
    broker: MosquittoServer, db: str, unique_id: Callable[[str], str]
) -> Iterator[Callable[..., IngestWorker]]:
    clear_retained(broker)
    group = unique_id("g")
    started: list[IngestWorker] = []

    def start(index: int = 0, **ingest: object) -> IngestWorker:
        settings = cloud_settings(broker, db, group, **ingest)
        worker = IngestWorker(settings, client_id=f"{group}-{index}")
        worker.start()
        assert worker.wait_connected(10)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.mark.slow
def test_every_kind_lands_in_its_table_and_a_replay_adds_nothing(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    items = uplink(one_of_each("gw-e2e", "pump-e2e"))
    publisher.publish(items)
    wait_until(lambda: worker.metrics.acked == len(items), timeout_s=15)
    publisher.publish(items)  # the same messages again: a redelivery
    wait_until(lambda: worker.metrics.acked == 2 * len(items), timeout_s=15)
    assert counts(db) == {
        "aggregates": 1,
        "alert_messages": 1,
        "alerts": 1,
        "snapshots": 1,
        "heartbeats": 2,
        "deployment_acks": 1,
        "maintenance_events": 1,
        "assets": 1,
        "gateways": 1,
    }
    assert worker.metrics.rows_inserted == 7
    assert worker.metrics.duplicates == 7
    assert worker.metrics.dead_lettered == {}


def test_malformed_and_wrong_version_messages_are_dead_lettered_with_reason(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    good = aggregate("gw-bad", "pump-bad", 1, now_ns())
    wrong_version = encode(good).replace(b'"aggregate/1"', b'"aggregate/9"')
    negative_seq = encode(good).replace(b'"seq":1', b'"seq":-3')
    future = encode(aggregate("gw-bad", "pump-bad", 2, now_ns() + 10 * 24 * 3600 * 10**9))
    status_on_aggregate_topic = encode(Status(gateway_id="gw-bad", ts_ns=now_ns(), state="online"))
    cases = [
        (topics.aggregate("gw-bad"), b"\x00garbage", "payload"),
        (topics.aggregate("gw-bad"), wrong_version, "kind"),
        (topics.aggregate("gw-bad"), negative_seq, "seq"),
        (topics.aggregate("gw-bad"), future, "period_start_ns"),
        (topics.aggregate("gw-other"), encode(good), "gateway_id"),
        (topics.aggregate("gw-bad"), status_on_aggregate_topic, "kind"),
        (topics.event("pump-bad"), b'{"kind":"event/1","asset_id":"pump-bad"}', "ts_ns"),
    ]
    publisher.publish([(topic, payload) for topic, payload, _ in cases] + uplink([good]))
    wait_until(lambda: worker.metrics.acked == len(cases) + 1, timeout_s=15)
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT topic, payload, reason, field FROM dead_letters ORDER BY dead_letter_id"
        ).fetchall()
    assert [(topic, payload) for topic, payload, _, _ in rows] == [(t, p) for t, p, _ in cases]
    for (_, _, reason, field), (_, _, expected) in zip(rows, cases, strict=True):
        assert expected in field
        assert expected in reason
    assert sum(worker.metrics.dead_lettered.values()) == len(cases)
    assert worker.metrics.dead_lettered["kind"] == 2
    assert row_count(db, "gw-bad") == 1  # the good one still landed


@pytest.mark.slow
def test_two_workers_in_a_shared_subscription_split_the_load_and_lose_nothing(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    first, second = worker_factory(0), worker_factory(1)
    n = 3000
    publisher.publish(aggregates("gw-split", n))
    wait_until(lambda: row_count(db, "gw-split") >= n, timeout_s=60)
    wait_until(lambda: first.metrics.acked + second.metrics.acked == n, timeout_s=15)
    exactly_once(db, "gw-split", n)
    assert first.metrics.rows_inserted > n // 10
    assert second.metrics.rows_inserted > n // 10
    assert first.metrics.rows_inserted + second.metrics.rows_inserted == n


@pytest.mark.slow
def test_database_stopped_for_20_s_under_load_then_every_message_once(
    postgres: PostgresServer, db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    n = 4000
    items = aggregates("gw-dbdown", n)
    sender = threading.Thread(target=publisher.publish, args=(items,), kwargs={"pace_s": 0.0015})
    sender.start()
    wait_until(lambda: row_count(db, "gw-dbdown") > 300, timeout_s=30)
    postgres.stop()
    try:
        stopped_at = time.monotonic()
        wait_until(lambda: not worker.metrics.db_available, timeout_s=10)
        acked_during_outage = worker.metrics.acked
        wait_until(lambda: time.monotonic() - stopped_at >= 20, timeout_s=30, interval_s=0.5)
        assert worker.metrics.acked == acked_during_outage  # nothing acknowledged while down
    finally:
        postgres.start()
    sender.join(60)
    wait_until(lambda: row_count(db, "gw-dbdown") >= n, timeout_s=60)
    exactly_once(db, "gw-dbdown", n)
    assert worker.metrics.db_available
    assert worker.metrics.db_errors >= 1


def _run_cloud(settings: CloudSettings, workdir: Path, *, workers: int = 1) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "FOREWARN_CLOUD_MQTT__HOST": settings.mqtt.host,
            "FOREWARN_CLOUD_MQTT__PORT": str(settings.mqtt.port),
            "FOREWARN_CLOUD_MQTT__RECEIVE_MAXIMUM": str(settings.mqtt.receive_maximum),
            "FOREWARN_CLOUD_DB__HOST": settings.db.host,
            "FOREWARN_CLOUD_DB__PORT": str(settings.db.port),
            "FOREWARN_CLOUD_DB__DBNAME": settings.db.dbname,
            "FOREWARN_CLOUD_INGEST__GROUP": settings.ingest.group,
            "FOREWARN_CLOUD_INGEST__CLIENT_ID_PREFIX": settings.ingest.client_id_prefix,
            "FOREWARN_CLOUD_INGEST__QUEUE_SIZE": str(settings.ingest.queue_size),
            "FOREWARN_CLOUD_INGEST__BATCH_MAX_ROWS": str(settings.ingest.batch_max_rows),
            "FOREWARN_CLOUD_INGEST__METRICS_INTERVAL_S": "0.5",
            "PYTHONPATH": str(REPO),
        }
    )
    log = (workdir / "cloud.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "forewarn.cloud_cmd", "run", "--workers", str(workers), "--log-level", "INFO"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_worker_killed_with_sigkill_under_load_then_restarted_stores_every_message_once(
    broker: MosquittoServer, db: str, publisher: Publisher, unique_id: Callable[[str], str], workdir: Path
) -> None:
    settings = cloud_settings(broker, db, unique_id("g"))
    process = _run_cloud(settings, workdir)
    try:
        wait_until(lambda: _worker_recorded(db), timeout_s=30)
        n = 4000
        sender = threading.Thread(
            target=publisher.publish, args=(aggregates("gw-kill", n),), kwargs={"pace_s": 0.001}
        )
        sender.start()
        wait_until(lambda: row_count(db, "gw-kill") > 500, timeout_s=30)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        killed_at = row_count(db, "gw-kill")
        assert killed_at < n
        process = _run_cloud(settings, workdir)
        sender.join(60)
        wait_until(lambda: row_count(db, "gw-kill") >= n, timeout_s=60)
        exactly_once(db, "gw-kill", n)
    finally:
        process.terminate()
        process.wait(15)
    assert "Traceback" not in (workdir / "cloud.log").read_text()


def _worker_recorded(conninfo: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM ingest_workers WHERE (metrics->>'connected')::boolean"
        ).fetchone()
        return bool(row and row[0])


@pytest.mark.slow
def test_bench_ingest_quick_reports_every_figure() -> None:
    from forewarn.bench.ingest import run  # noqa: PLC0415 - imported where it is exercised

    figures = run(quick=True)
    for key in (
        "raw_copy_rows_per_s",
        "write_path_rows_per_s",
        "ingest_rows_per_s",
        "ingest_to_write_path_ratio",
        "e2e_latency_p99_ms",
    ):
        value = figures[key]
        assert isinstance(value, int | float), key
        assert value > 0, key
    assert figures["workers"] == 2


@pytest.mark.slow
def test_broker_restart_reconnects_and_resumes_without_loss(
    broker: MosquittoServer,
    db: str,
    worker_factory: Callable[..., IngestWorker],
    unique_id: Callable[[str], str],
) -> None:
    worker = worker_factory()
    items = aggregates("gw-brk", 1000)
    first = Publisher(broker, unique_id("pub1"))
    first.publish(items[:500])
    first.close()
    wait_until(lambda: row_count(db, "gw-brk") == 500, timeout_s=30)
    broker.stop()
    wait_until(lambda: not worker.metrics.connected, timeout_s=10)
    broker.start()
    wait_until(lambda: worker.metrics.connected, timeout_s=30)
    second = Publisher(broker, unique_id("pub2"))
    second.publish(items[500:])
    second.close()
    wait_until(lambda: row_count(db, "gw-brk") >= 1000, timeout_s=30)
    exactly_once(db, "gw-brk", 1000)


@pytest.mark.slow
def test_a_message_the_database_rejects_is_dead_lettered_and_the_rest_of_its_batch_stored(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory(batch_max_s=1.0)
    ts = now_ns() - 3600 * 10**9
    good = [aggregate("gw-nul", "pump-nul", seq, ts + seq * PERIOD_NS) for seq in range(20)]
    # Valid JSON and a valid contract, but PostgreSQL text cannot hold a NUL character.
    nul = encode(aggregate("gw-nul", "pump-nul", 99, ts)).replace(
        b'"model_version":"3"', b'"model_version":"3\\u0000"'
    )
    publisher.publish([*uplink(good[:10]), (topics.aggregate("gw-nul"), nul), *uplink(good[10:])])
    wait_until(lambda: worker.metrics.acked == 21, timeout_s=15)
    exactly_once(db, "gw-nul", 20)
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT field, reason, payload FROM dead_letters").fetchone()
    assert row is not None
    assert row[0] == "storage"
    assert row[1].startswith("storage: ")
    assert row[2] == nul
    assert worker.metrics.dead_lettered["storage"] == 1


def _worker_children(pid: int) -> list[int]:
    children = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            children.append(int(child))
    return children


@pytest.mark.slow
def test_cloud_restarts_a_worker_process_that_died_and_nothing_is_lost(
    broker: MosquittoServer, db: str, publisher: Publisher, unique_id: Callable[[str], str], workdir: Path
) -> None:
    settings = cloud_settings(broker, db, unique_id("g"))
    process = _run_cloud(settings, workdir, workers=2)
    try:
        # Liveness waits, generous: a worker process starting under a loaded CI machine can take many
        # seconds to import; how fast it restarts is not what this test is about.
        children = wait_until(
            lambda: len(_worker_children(process.pid)) == 2 and _worker_children(process.pid), timeout_s=60
        )
        wait_until(lambda: _worker_recorded(db), timeout_s=60)
        os.kill(children[0], signal.SIGKILL)
        wait_until(lambda: "starting it again" in (workdir / "cloud.log").read_text(), timeout_s=60)
        replacement = wait_until(lambda: set(_worker_children(process.pid)) - set(children), timeout_s=60)
        assert len(replacement) == 1
        n = 2000
        publisher.publish(aggregates("gw-sup", n))
        wait_until(lambda: row_count(db, "gw-sup") >= n, timeout_s=60)
        exactly_once(db, "gw-sup", n)
    finally:
        process.terminate()
        process.wait(30)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_uplink_batches_land_every_kind_once_and_a_replayed_batch_adds_nothing(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    kinds = one_of_each("gw-batch", "pump-batch", seq0=1000)[1:-1]  # alert, snapshot, 2 statuses, deploy ack
    items = batched("gw-batch", aggregate_members("gw-batch", 600), size=200) + batched(
        "gw-batch", kinds, size=10
    )
    publisher.publish(items)
    wait_until(lambda: worker.metrics.acked == len(items), timeout_s=30)
    exactly_once(db, "gw-batch", 600)
    publisher.publish(items)  # the same batches again: a redelivery
    wait_until(lambda: worker.metrics.acked == 2 * len(items), timeout_s=30)
    exactly_once(db, "gw-batch", 600)
    stored = counts(db)
    assert (stored["alert_messages"], stored["snapshots"], stored["deployment_acks"]) == (1, 1, 1)
    assert stored["heartbeats"] == 2
    rows = 600 + len(kinds)
    assert worker.metrics.rows_inserted == rows
    assert worker.metrics.duplicates == rows
    assert worker.metrics.batch_messages == worker.metrics.decoded == 2 * len(items)  # messages...
    assert worker.metrics.rows_decoded == 2 * rows  # ...and rows, counted apart
    assert worker.metrics.dead_lettered == {}


def test_a_batch_mixing_new_and_stored_members_stores_each_once(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    members = aggregate_members("gw-mix", 300)
    singles = uplink(members[100:150])  # some members were already stored one by one
    publisher.publish(singles)
    wait_until(lambda: row_count(db, "gw-mix") == 50, timeout_s=15)
    items = batched("gw-mix", members, size=300)
    publisher.publish(items)
    wait_until(lambda: worker.metrics.acked == len(singles) + len(items), timeout_s=15)
    exactly_once(db, "gw-mix", 300)
    assert worker.metrics.duplicates == 50
    assert worker.metrics.conflict_fallbacks >= 1


def test_a_bad_batch_is_dead_lettered_whole_with_its_field_and_the_rest_lands(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    members = aggregate_members("gw-badb", 30)
    good_first, bad, good_last = batched("gw-badb", members, size=10)
    bad_payload = bad[1].replace(b'"seq":12', b'"seq":-3')
    other_gateway = batched("gw-other", aggregate_members("gw-other", 3), size=3)[0][1]
    cases = [
        (bad[0], bad_payload, "messages[2].seq"),
        (topics.batch("gw-badb"), other_gateway, "gateway_id"),
        (topics.batch("gw-badb"), b'{"kind":"batch/1","gateway_id":"gw-badb","messages":[]}', "messages"),
        (topics.batch("gw-badb"), bad[1][:-7], "payload"),
    ]
    publisher.publish([good_first, *[(t, p) for t, p, _ in cases], good_last])
    wait_until(lambda: worker.metrics.acked == len(cases) + 2, timeout_s=15)
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT topic, payload, reason, field FROM dead_letters ORDER BY dead_letter_id"
        ).fetchall()
    assert [(topic, payload, field) for topic, payload, _, field in rows] == cases  # whole, nothing lost
    assert all(field in reason for _, _, reason, field in rows)
    assert worker.metrics.dead_lettered == {"seq": 1, "gateway_id": 1, "messages": 1, "payload": 1}
    with psycopg.connect(db) as conn:
        seqs = [
            r[0] for r in conn.execute("SELECT seq FROM aggregates WHERE gateway_id = 'gw-badb' ORDER BY 1")
        ]
    assert seqs == [*range(10), *range(20, 30)]  # the good batches landed; the bad one is not split


@pytest.mark.slow
def test_database_stopped_under_a_load_of_batches_then_every_row_once(
    postgres: PostgresServer, db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    n = 20_000
    items = batched("gw-bdown", aggregate_members("gw-bdown", n), size=100)
    sender = threading.Thread(target=publisher.publish, args=(items,), kwargs={"pace_s": 0.02})
    sender.start()
    wait_until(lambda: row_count(db, "gw-bdown") > 1000, timeout_s=30)
    postgres.stop()
    try:
        wait_until(lambda: not worker.metrics.db_available, timeout_s=10)
        acked_during_outage = worker.metrics.acked
        stopped_at = time.monotonic()
        wait_until(lambda: time.monotonic() - stopped_at >= 5, timeout_s=10, interval_s=0.5)
        assert worker.metrics.acked == acked_during_outage  # nothing acknowledged while down
    finally:
        postgres.start()
    sender.join(60)
    wait_until(lambda: row_count(db, "gw-bdown") >= n, timeout_s=60)
    exactly_once(db, "gw-bdown", n)
    assert worker.metrics.acked == len(items)
    assert worker.metrics.db_errors >= 1


def blocked(gateway_id: str, members: list[Aggregate], *, size: int) -> list[tuple[str, bytes]]:
    """`members` as uplink batches of `size` rows, each one aggregate block (as a forwarder sends them)."""
    return [
        (topics.batch(gateway_id), encode(UplinkBatch(gateway_id=gateway_id, messages=[block])))
        for block in pack_aggregates(members, max_rows=size)
    ]


def test_aggregate_blocks_land_every_row_once_with_its_values_and_a_replay_adds_nothing(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    members = [m for m in aggregate_members("gw-blk", 700) if isinstance(m, Aggregate)]
    publisher.publish(uplink(members[650:]))  # the last rows were already stored one by one
    wait_until(lambda: row_count(db, "gw-blk") == 50, timeout_s=15)
    items = blocked("gw-blk", members, size=256)
    publisher.publish(items)
    wait_until(lambda: worker.metrics.acked == 50 + len(items), timeout_s=30)
    exactly_once(db, "gw-blk", 700)
    publisher.publish(items)  # a redelivery of every block
    wait_until(lambda: worker.metrics.acked == 50 + 2 * len(items), timeout_s=30)
    exactly_once(db, "gw-blk", 700)
    assert worker.metrics.rows_decoded == 50 + 2 * 700
    assert worker.metrics.rows_inserted == 700
    assert worker.metrics.duplicates == 50 + 700
    assert worker.metrics.dead_lettered == {}
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT asset_id, feature_mean, feature_min, feature_max, score_max, n_above, model_version "
            "FROM aggregates WHERE gateway_id = 'gw-blk' AND seq = 123"
        ).fetchone()
    source = members[123]
    assert stored == (
        source.asset_id,
        [s.mean for s in source.features.values()],
        [s.min for s in source.features.values()],
        [s.max for s in source.features.values()],
        source.score.max,
        source.score.n_above_threshold,
        source.model_version,
    )


def test_a_block_of_aggregates_without_features_lands(
    db: str, publisher: Publisher, worker_factory: Callable[..., IngestWorker]
) -> None:
    worker = worker_factory()
    members = [
        msgspec.structs.replace(m, features={})
        for m in aggregate_members("gw-nofeat", 3)
        if isinstance(m, Aggregate)
    ]
    publisher.publish(blocked("gw-nofeat", members, size=256))
    wait_until(lambda: worker.metrics.acked == 1, timeout_s=15)
    exactly_once(db, "gw-nofeat", 3)
    assert worker.metrics.dead_lettered == {}


def test_clear_retained_removes_every_retained_message_it_finds(broker: MosquittoServer) -> None:
    prefix = f"forewarn/v1/clear-test-{uuid.uuid4().hex[:6]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"retain-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for n in range(5):
            client.publish(f"{prefix}/status/gw{n}", b"online", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    assert clear_retained(broker, f"{prefix}/#") == 5
    assert clear_retained(broker, f"{prefix}/#") == 0
