"""The store-and-forward queue and the forwarder, against real Mosquitto brokers."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from cloud_service.deadletter import DeadLetter
from cloud_service.ingest import decode_received
from edge_agent.disk_queue import (
    DiskQueue,
    Enqueueable,
    Outbound,
    QueuedMessage,
    read_bytes,
    read_counters,
    read_dropped,
)
from edge_agent.forwarder import Forwarder, batch_payload
from edge_agent.quarantine import Quarantine
from edge_agent.write_hold import WriteHold
from forewarn.chaos_disk import mount_small_filesystem
from forewarn.chaos_fault import ScenarioSkipped
from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.config import MqttSettings
from shared.errors import ContractError, StorageError
from shared.messages import (
    Aggregate,
    AggregateBlock,
    Alert,
    DeploymentAck,
    Snapshot,
    decode_uplink,
    decode_uplink_batch,
    encode,
)
from shared.timebase import now_ns
from tests.test_edge_agent_helpers import aggregate, alert, collecting, flatten, snapshot, throwaway_broker


def _queue(path: Path, max_bytes: int = 10_000_000, gateway_id: str = "gw1") -> DiskQueue:
    return DiskQueue(path=path / "q.sqlite", gateway_id=gateway_id, max_bytes=max_bytes)


def test_seq_is_assigned_at_enqueue_and_never_reused_after_restart(workdir: Path) -> None:
    queue = _queue(workdir)
    stored = queue.put_many([aggregate("gw1", n=i) for i in range(5)])
    assert [message.seq for message in stored] == [0, 1, 2, 3, 4]
    queue.delete([0, 1, 2, 3, 4])
    queue.close()
    reopened = _queue(workdir)
    assert reopened.stats().depth == 0
    assert [message.seq for message in reopened.put_many([alert("gw1")])] == [5]
    rows = reopened.peek(after_seq=-1, limit=10)
    assert [row.seq for row in rows] == [5]
    assert rows[0].topic == topics.alert("gw1")
    assert decode_uplink(rows[0].payload).seq == 5  # the seq is inside the payload too
    reopened.close()


def test_peek_is_in_seq_order_and_delete_updates_gauges(workdir: Path) -> None:
    queue = _queue(workdir)
    messages: list[Outbound] = [*(aggregate("gw1", n=i) for i in range(3)), alert("gw1"), snapshot("gw1")]
    queue.put_many(messages)
    assert [row.seq for row in queue.peek(after_seq=1, limit=10)] == [2, 3, 4]
    before = queue.stats()
    assert queue.delete([0, 3, 99]) == 2  # 99 is gone already: nothing happens
    after = queue.stats()
    assert after.depth == before.depth - 2
    assert 0 < after.bytes < before.bytes
    assert [row.topic for row in queue.peek(after_seq=-1, limit=10)] == [
        topics.aggregate("gw1"),
        topics.aggregate("gw1"),
        topics.snapshot("gw1"),
    ]
    queue.close()


def test_full_queue_drops_oldest_aggregates_then_snapshots_and_alerts_last(workdir: Path) -> None:
    queue = _queue(workdir, max_bytes=20_000)
    queue.put_many([alert("gw1", n=i) for i in range(5)])
    queue.put_many([snapshot("gw1", n=i) for i in range(3)])
    queue.put_many([aggregate("gw1", n=i) for i in range(10)])
    assert queue.stats().dropped == {"aggregate": 0, "snapshot": 0, "alert": 0, "deploy_ack": 0}
    for i in range(40):  # far more aggregates than fit
        queue.put_many([aggregate("gw1", n=100 + i)])
    stats = queue.stats()
    assert stats.bytes <= 20_000
    assert stats.dropped["aggregate"] > 0
    assert stats.dropped["alert"] == 0
    kinds = [type(decode_uplink(row.payload)) for row in queue.peek(after_seq=-1, limit=1000)]
    assert kinds.count(Alert) == 5  # alerts survive
    assert Aggregate in kinds  # the newest aggregates survive; the oldest went first
    oldest_aggregate = min(
        row.seq for row in queue.peek(after_seq=-1, limit=1000) if row.topic == topics.aggregate("gw1")
    )
    assert oldest_aggregate > 8
    # Only alerts left to drop: the oldest alerts go, and are counted.
    big = [snapshot("gw1", n=i) for i in range(60)]
    queue.put_many(big)
    stats = queue.stats()
    assert stats.dropped["snapshot"] > 0
    assert stats.bytes <= 20_000
    queue.close()


def _deploy_ack(gateway_id: str) -> DeploymentAck:
    return DeploymentAck(
        gateway_id=gateway_id, seq=0, target="t1", version=1, ok=True, reason="activated", ts_ns=now_ns()
    )


def test_deployment_acks_share_the_seq_go_on_their_topic_and_are_dropped_last(workdir: Path) -> None:
    queue = _queue(workdir, max_bytes=20_000)
    messages: list[Enqueueable] = [alert("gw1"), _deploy_ack("gw1")]
    stored = queue.put_many(messages)
    assert [message.seq for message in stored] == [0, 1]
    assert isinstance(stored[1], DeploymentAck)
    rows = queue.peek(after_seq=-1, limit=10)
    assert rows[1].topic == topics.deploy_ack("gw1")
    # what the cloud ingests: the ack alone on its topic, and inside an uplink batch with other rows
    assert decode_received(rows[1].topic, rows[1].payload) == (stored[1],)
    batched = decode_received(topics.batch("gw1"), batch_payload("gw1", rows))
    assert not isinstance(batched, DeadLetter)
    assert list(batched) == stored
    for i in range(200):  # far more alerts than fit: alerts go, the ack stays
        queue.put_many([alert("gw1", n=1 + i)])
    stats = queue.stats()
    assert stats.dropped["alert"] > 0
    assert stats.dropped["deploy_ack"] == 0
    assert topics.deploy_ack("gw1") in [row.topic for row in queue.peek(after_seq=-1, limit=1000)]
    queue.close()


def test_queue_survives_reopen_with_rows_and_counts(workdir: Path) -> None:
    queue = _queue(workdir)
    queue.put_many([aggregate("gw1", n=i) for i in range(3)])
    queue.close()
    reopened = _queue(workdir)
    stats = reopened.stats()
    assert (stats.depth, stats.next_seq) == (3, 3)
    assert stats.bytes > 0
    reopened.close()


def _forwarder(
    broker: MosquittoServer,
    queue: DiskQueue,
    gateway_id: str,
    window: int = 1000,
    *,
    batch_max_messages: int = 256,
    batch_max_bytes: int = 256 * 1024,
) -> Forwarder:
    settings = MqttSettings(host=broker.host, port=broker.port, reconnect_min_s=0.5, reconnect_max_s=1.0)
    return Forwarder(
        settings=settings,
        gateway_id=gateway_id,
        disk_queue=queue,
        window=window,
        batch_max_messages=batch_max_messages,
        batch_max_bytes=batch_max_bytes,
    )


def test_forwarder_publishes_in_order_and_deletes_only_acknowledged(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    gateway_id = unique_id("gw")
    queue = _queue(workdir, gateway_id=gateway_id)
    queue.put_many([aggregate(gateway_id, n=i) for i in range(300)] + [alert(gateway_id)])
    forwarder = _forwarder(broker, queue, gateway_id, window=7)
    with collecting(broker.host, broker.port, f"forewarn/v1/gw/{gateway_id}/+", unique_id("sub")) as sub:
        max_unacked = 0

        def drained() -> bool:
            nonlocal max_unacked
            max_unacked = max(max_unacked, forwarder.unacked)
            return queue.stats().depth == 0

        forwarder.start()
        wait_until(drained, timeout_s=20)
        wait_until(lambda: len(sub.seqs()) >= 301, timeout_s=10)
        forwarder.stop()
    assert sub.seqs() == list(range(301))
    assert max_unacked <= 7
    assert forwarder.metrics.acked == 301
    queue.close()


@pytest.mark.slow
def test_forwarder_outage_mid_stream_loses_nothing_and_duplicates_only_the_inflight_window(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    """The upstream broker goes away with messages in flight and comes back; a persistent subscriber
    sees every seq. QoS 1 is at-least-once: a message the broker took but whose PUBACK was cut off by the
    stop is sent again after the reconnect, so only the in-flight window may appear twice (the cloud
    de-duplicates by (gateway_id, seq))."""
    gateway_id = unique_id("gw")
    queue = _queue(workdir, gateway_id=gateway_id)
    with throwaway_broker(workdir / "upstream") as upstream:
        sub_id = unique_id("sub")
        with collecting(upstream.host, upstream.port, f"forewarn/v1/gw/{gateway_id}/+", sub_id) as sub:
            forwarder = _forwarder(upstream, queue, gateway_id, window=50)
            forwarder.start()
            wait_until(lambda: forwarder.is_connected, timeout_s=10)
            queue.put_many([aggregate(gateway_id, n=i) for i in range(2000)])
            forwarder.notify()
            wait_until(lambda: forwarder.metrics.acked > 100, timeout_s=10)
            upstream.stop()  # mid-stream, with publishes in flight
            acked_at_cut = forwarder.metrics.acked
            queue.put_many([alert(gateway_id, n=i) for i in range(20)])
            wait_until(lambda: not forwarder.is_connected, timeout_s=10)
            upstream.start()
            wait_until(lambda: queue.stats().depth == 0, timeout_s=30)
            wait_until(lambda: len(sub.seqs()) >= 2020, timeout_s=20)
            forwarder.stop()
        assert set(sub.seqs()) == set(range(2020))  # nothing lost
        seqs = sub.fresh_seqs()
    duplicates = sorted(seq for seq in set(seqs) if seqs.count(seq) > 1)
    assert len(seqs) - len(set(seqs)) <= 50
    assert all(seq < acked_at_cut + 50 for seq in duplicates)  # only what was in flight at the cut
    queue.close()


@pytest.mark.slow
def test_forwarder_outage_while_idle_then_backlog_arrives_exactly_once(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    """Messages queued while the upstream broker is away are sent once each, in order, when it is back."""
    gateway_id = unique_id("gw")
    queue = _queue(workdir, gateway_id=gateway_id)
    with throwaway_broker(workdir / "upstream") as upstream:
        with collecting(
            upstream.host, upstream.port, f"forewarn/v1/gw/{gateway_id}/+", unique_id("sub")
        ) as sub:
            forwarder = _forwarder(upstream, queue, gateway_id, window=50)
            forwarder.start()
            queue.put_many([aggregate(gateway_id, n=i) for i in range(10)])
            forwarder.notify()
            wait_until(lambda: queue.stats().depth == 0, timeout_s=10)
            upstream.stop()
            wait_until(lambda: not forwarder.is_connected, timeout_s=10)
            for i in range(30):
                period: list[Outbound] = [aggregate(gateway_id, n=i), alert(gateway_id, n=i)]
                queue.put_many(period)
                forwarder.notify()
            assert forwarder.metrics.published == 10  # nothing is sent while offline
            upstream.start()
            wait_until(lambda: queue.stats().depth == 0, timeout_s=30)
            wait_until(lambda: len(sub.seqs()) >= 70, timeout_s=20)
            forwarder.stop()
        assert set(sub.seqs()) == set(range(70))  # nothing lost
        fresh = sub.fresh_seqs()
        assert len(fresh) == len(set(fresh))  # nothing published twice
        assert fresh[-60:] == list(range(10, 70))  # the backlog in order
    queue.close()


def test_quarantine_counts_every_reject_and_keeps_a_bounded_sample(workdir: Path) -> None:
    quarantine = Quarantine(directory=workdir / "q", max_files=5, max_bytes=10_000, max_per_reason_per_min=3)
    for i in range(10):
        quarantine.reject(topic="t/a", reason="magic", detail=f"bad {i}", payload=b"x" * 100)
    for _ in range(4):
        quarantine.reject(topic="t/b", reason="bad reason/with slash", detail="d", payload=b"y")
    assert quarantine.counts == {"magic": 10, "bad_reason_with_slash": 4}
    samples = quarantine.samples()
    assert len(samples) == 5  # 3 per reason per minute written, at most 5 kept
    assert {sample.reason for sample in samples} == {"magic", "bad_reason_with_slash"}
    assert samples[-1].payload == b"y"
    assert samples[-1].topic == "t/b"


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_both_durability_modes_open_in_wal(workdir: Path, synchronous: Literal["FULL", "NORMAL"]) -> None:
    queue = DiskQueue(path=workdir / "q.sqlite", gateway_id="gw1", max_bytes=100_000, synchronous=synchronous)
    queue.put_many([aggregate("gw1")])
    queue.close()
    assert (workdir / "q.sqlite").exists()
    with sqlite3.connect(workdir / "q.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_one_large_commit_sheds_its_own_aggregates_before_older_alerts(workdir: Path) -> None:
    """Room is made by priority across old and new rows: a burst of aggregates larger than the free space
    never pushes out an alert while an aggregate (even one of the burst) is left to drop."""
    queue = _queue(workdir, max_bytes=12_000)
    queue.put_many([alert("gw1", n=i) for i in range(4)])
    queue.put_many([aggregate("gw1", n=i) for i in range(40)])  # one transaction, far more than fits
    stats = queue.stats()
    assert stats.dropped["alert"] == 0
    assert stats.dropped["aggregate"] > 0
    assert stats.bytes <= 12_000
    rows = queue.peek(after_seq=-1, limit=100)
    assert [row.seq for row in rows if row.topic == topics.alert("gw1")] == [0, 1, 2, 3]
    kept = [row.seq for row in rows if row.topic == topics.aggregate("gw1")]
    assert kept == list(range(44 - len(kept), 44))  # the newest aggregates of the burst survive
    queue.close()


def test_a_backlog_goes_out_in_bounded_batches_and_a_lone_alert_alone(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    """600 queued rows leave in few batch messages (each within its count and byte bounds, members in seq
    order, built from the stored bytes); later, a single alert is sent at once, alone, on the alert topic."""
    gateway_id = unique_id("gw")
    queue = _queue(workdir, gateway_id=gateway_id)
    stored = queue.put_many([aggregate(gateway_id, n=i) for i in range(600)])
    row_bytes = len(queue.peek(after_seq=-1, limit=1)[0].payload)
    forwarder = _forwarder(
        broker, queue, gateway_id, window=500, batch_max_messages=100, batch_max_bytes=40_000
    )
    with collecting(broker.host, broker.port, f"forewarn/v1/gw/{gateway_id}/+", unique_id("sub")) as sub:
        forwarder.start()
        wait_until(lambda: queue.stats().depth == 0, timeout_s=20)
        wait_until(lambda: len(sub.seqs()) >= 600, timeout_s=10)
        assert sub.uplinks() == stored  # every member as stored, in seq order, once
        sizes = sub.batch_sizes()
        assert all(1 < size <= min(100, 40_000 // row_bytes) for size in sizes)
        assert len(sizes) <= 600 // min(100, 40_000 // (row_bytes + 1)) + 2
        assert all(topics.parse(topic).kind is topics.TopicKind.BATCH for topic, _ in sub.messages)
        assert all(len(payload) <= 40_000 for _, payload in sub.messages)
        assert forwarder.metrics.batches == len(sizes)
        assert forwarder.metrics.published == forwarder.metrics.batched == forwarder.metrics.acked == 600
        lone = queue.put_many([alert(gateway_id)])
        forwarder.notify()
        wait_until(lambda: len(sub.messages) == len(sizes) + 1, timeout_s=5)
        assert sub.messages[-1][0] == topics.alert(gateway_id)
        assert decode_uplink(sub.messages[-1][1]) == lone[0]
        wait_until(lambda: queue.stats().depth == 0, timeout_s=5)
        forwarder.stop()
    queue.close()


def test_batch_payload_packs_aggregate_runs_into_blocks_and_keeps_the_rest_as_stored(workdir: Path) -> None:
    queue = _queue(workdir, gateway_id="gw1")
    messages: list[Outbound] = [
        aggregate("gw1", "a1", n=0),
        aggregate("gw1", "a2", n=0),
        alert("gw1"),
        aggregate("gw1", "a1", n=1),
        snapshot("gw1"),
    ]
    stored = queue.put_many(messages)
    rows = queue.peek(after_seq=-1, limit=10)
    batch = decode_uplink_batch(batch_payload("gw1", rows))
    assert [type(m) for m in batch.messages] == [AggregateBlock, Alert, AggregateBlock, Snapshot]
    assert [len(m) for m in batch.messages if isinstance(m, AggregateBlock)] == [2, 1]
    assert flatten(topics.batch("gw1"), batch_payload("gw1", rows)) == stored  # features exact in float32
    assert batch.messages[1] == stored[2]
    assert batch.messages[3] == stored[4]
    plain = batch_payload("gw1", rows, compression_level=0)
    assert decode_uplink_batch(plain) == batch
    assert len(batch_payload("gw1", rows)) < len(plain) < sum(len(row.payload) for row in rows)
    queue.close()


def test_batch_payload_sends_an_undecodable_stored_aggregate_as_it_is(workdir: Path) -> None:
    topic = topics.aggregate("gw1")
    good = encode(msgspec.structs.replace(aggregate("gw1"), seq=1))
    rows = [QueuedMessage(0, topic, b'{"kind":"aggregate/1"'), QueuedMessage(1, topic, good)]
    payload = batch_payload("gw1", rows, compression_level=0)
    assert payload.startswith(b'{"kind":"batch/1","gateway_id":"gw1","messages":[{"kind":"aggregate/1",{')
    with pytest.raises(ContractError):  # the cloud dead-letters the whole batch and keeps its bytes
        decode_uplink_batch(payload)


def test_counters_read_beside_the_open_queue_match_its_stats(workdir: Path) -> None:
    path = workdir / "outbox.sqlite"
    assert read_counters(path) == (0, 0)
    queue = DiskQueue(path=path, gateway_id="gw1", max_bytes=10_000_000)
    queue.put_many([aggregate("gw1", n=i) for i in range(5)])
    queue.delete(row.seq for row in queue.peek(after_seq=-1, limit=2))
    stats = queue.stats()
    assert read_counters(path) == (stats.next_seq, stats.depth) == (5, 3)
    queue.close()


def test_drop_counts_survive_a_restart_and_are_read_beside_the_open_queue(workdir: Path) -> None:
    path = workdir / "outbox.sqlite"
    assert read_dropped(path) == {"aggregate": 0, "snapshot": 0, "alert": 0, "deploy_ack": 0}
    queue = DiskQueue(path=path, gateway_id="gw1", max_bytes=10_000)
    queue.put_many([aggregate("gw1", n=i) for i in range(40)])
    dropped = queue.stats().dropped
    assert dropped["aggregate"] > 0
    assert read_dropped(path) == dropped
    assert 0 < read_bytes(path) == queue.stats().bytes <= 10_000
    queue.close()
    reopened = DiskQueue(path=path, gateway_id="gw1", max_bytes=10_000)
    reopened.put_many([aggregate("gw1", n=40)])  # one more drop on top of the earlier ones
    assert (
        reopened.stats().dropped["aggregate"] == dropped["aggregate"] + 1 == read_dropped(path)["aggregate"]
    )
    reopened.close()


@contextlib.contextmanager
def _tiny_filesystem(directory: Path) -> Iterator[Path]:
    """A real 8 MiB filesystem (tmpfs, or a loop-mounted ext4 image) on `directory`, or the test skips."""
    try:
        with mount_small_filesystem(directory) as mounted:
            yield mounted
    except ScenarioSkipped as skipped:
        pytest.skip(str(skipped))


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as file, contextlib.suppress(OSError):
        while True:
            file.write(bytes(4096))
    return filler


def _put_until_refused(queue: DiskQueue) -> str:
    """Enqueue until the disk refuses (the WAL's spare room goes first); the error's text."""
    for i in range(10_000):
        try:
            queue.put_many([aggregate("gw1", n=100 + i) for _ in range(20)])
        except StorageError as exc:
            return str(exc)
    return "never refused"


def test_a_full_filesystem_fails_the_commit_cleanly_and_the_queue_goes_on_once_there_is_room(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _tiny_filesystem(workdir / "fs") as fs:
        queue = DiskQueue(path=fs / "q.sqlite", gateway_id="gw1", max_bytes=10_000_000, synchronous="NORMAL")
        queue.put_many([aggregate("gw1", n=i) for i in range(5)])
        filler = _fill(fs)
        assert "database or disk is full" in _put_until_refused(queue)
        assert "rollback failed" not in caplog.text  # SQLite had rolled back already: no spurious error
        before = queue.stats()
        assert read_counters(fs / "q.sqlite") == (before.next_seq, before.depth)  # nothing half-written
        filler.unlink()
        stored = queue.put_many([alert("gw1")])
        assert stored[0].seq == before.next_seq  # no seq skipped or reused across the failure
        queue.close()


def test_the_write_ahead_log_stays_bounded_under_churn(workdir: Path) -> None:
    queue = DiskQueue(path=workdir / "q.sqlite", gateway_id="gw1", max_bytes=10_000_000, synchronous="NORMAL")
    for i in range(600):  # SQLite's defaults let the WAL grow past 2 MiB here
        stored = queue.put_many([aggregate("gw1", n=3 * i + j) for j in range(3)])
        queue.delete([m.seq for m in stored])
    assert (workdir / "q.sqlite-wal").stat().st_size <= 1.2 * (1 << 20)
    queue.close()


def test_a_published_row_is_never_dropped_to_make_room(workdir: Path) -> None:
    """paho re-sends a published row after a reconnect: dropping it would count a drop that arrives."""
    queue = _queue(workdir, max_bytes=20_000)
    first = queue.put_many([aggregate("gw1", n=i) for i in range(5)])
    queue.mark_published(first[-1].seq)
    for i in range(200):
        queue.put_many([aggregate("gw1", n=100 + i)])
    kept = {row.seq for row in queue.peek(after_seq=-1, limit=1000)}
    assert {m.seq for m in first} <= kept
    assert queue.stats().dropped["aggregate"] > 0  # the unpublished ones went
    queue.close()


def test_the_write_hold_sheds_the_oldest_aggregates_first_keeps_alerts_and_counts() -> None:
    hold = WriteHold(max_messages=4)
    old, new = aggregate("gw1", n=1), aggregate("gw1", n=2)
    raised = alert("gw1")
    assert hold.keep([old, raised, new]) == 0
    assert hold.keep([snapshot("gw1"), aggregate("gw1", n=3)]) == 1
    assert hold.dropped["aggregate"] == 1
    kept = hold.take()
    assert old not in kept
    assert kept[:2] == [raised, new]  # order kept
    assert len(hold) == 0
    alerts = [alert("gw1", n=i) for i in range(6)]
    assert hold.keep(alerts) == 2  # only alerts left: the oldest two go, counted
    assert hold.dropped == {"aggregate": 1, "snapshot": 0, "alert": 2, "deploy_ack": 0}
    assert hold.take() == alerts[2:]
