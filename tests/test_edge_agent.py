"""The edge agent, running in-process against real Mosquitto brokers, fed through the plant broker."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from cloud_service.modeling import build_anomaly_model
from edge_agent.agent import EdgeAgent
from edge_agent.intake import Received
from edge_agent.settings import AlertSettings, BaselineSettings, PipelineSettings, SnapshotSettings
from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.features import vibration_features
from shared.messages import Aggregate, Alert, Status, decode_uplink
from shared.raw_batch import RawBatch, encode_raw_batch
from simulators.engine import TruthRecord
from simulators.scenario import Scenario, load_scenario
from simulators.stream import iter_items
from tests.test_edge_agent_helpers import (
    VIB_RATE_HZ,
    RawPublisher,
    collecting,
    edge_settings,
    feed,
    scenario_assets,
    throwaway_broker,
    vibration_asset,
    vibration_batches,
)

NS_PER_H = 3600 * 10**9


@pytest.fixture
def running_agent() -> Iterator[Callable[[EdgeAgent], EdgeAgent]]:
    """Start agents and stop every one at the end of the test, however it ends."""
    agents: list[EdgeAgent] = []

    def start(agent: EdgeAgent) -> EdgeAgent:
        agent.start()
        agents.append(agent)
        wait_until(lambda: agent.intake.is_subscribed, timeout_s=10)
        return agent

    yield start
    for agent in agents:
        agent.stop()


def _smoke_pipeline() -> tuple[PipelineSettings, Scenario]:
    scenario = load_scenario("smoke")
    settings = PipelineSettings(assets=scenario_assets(scenario))
    return settings, scenario


@pytest.mark.slow
def test_smoke_scenario_degrading_asset_alerts_before_its_failure_and_healthy_ones_raise_none(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    running_agent: Callable[[EdgeAgent], EdgeAgent],
) -> None:
    """The simulator's smoke scenario through the plant broker: pump-001 wears to failure at 2.25 h and
    must be alerted before, on the plant broker (local annunciators) and upstream; the healthy motor and
    fan raise no alert, their injected sensor faults included (counted as sensor faults, not alerted)."""
    pipeline, scenario = _smoke_pipeline()
    gateway_id = unique_id("gw")
    settings = edge_settings(workdir, gateway_id=gateway_id, plant=broker, upstream=broker, pipeline=pipeline)
    truth: list[TruthRecord] = []
    with collecting(
        broker.host, broker.port, topics.subscription(topics.TopicKind.PLANT_ALERT), unique_id("p")
    ) as plant:
        agent = running_agent(EdgeAgent(settings))
        publisher = RawPublisher(broker, unique_id("pub"))
        items = (item for item in iter_items(scenario, on_truth=truth.append) if isinstance(item, RawBatch))
        fed = feed(publisher, items, agent.intake.queue.qsize)
        wait_until(
            lambda: agent.intake.metrics.received >= fed and agent.intake.queue.qsize() == 0, timeout_s=60
        )
        agent.stop()
        publisher.close()
        wait_until(lambda: len(plant.messages) >= agent.intake.metrics.plant_alerts_published, timeout_s=10)
    failure = next(r for r in truth if r.asset_id == "pump-001" and r.event == "failure")
    raised: dict[str, list[int]] = {}
    for _, payload in plant.messages:
        message = decode_uplink(payload)
        if isinstance(message, Alert) and message.state == "raised":
            raised.setdefault(message.asset_id, []).append(message.ts_ns)
    assert raised.get("pump-001"), "the degrading pump raised no alert"
    assert min(raised["pump-001"]) < failure.ts_ns
    assert "motor-001" not in raised, f"healthy motor-001 alerted at {raised.get('motor-001')}"
    assert "fan-001" not in raised, f"healthy fan-001 alerted at {raised.get('fan-001')}"
    assert agent.intake.metrics.dropped_queue_full == 0
    assert agent.pipeline.metrics.windows_scored > 1000
    # Every outbound message went upstream: queue empty, seq assigned to each.
    stats = agent.disk_queue.stats()
    assert stats.depth == 0
    assert stats.next_seq == agent.metrics.outbound_enqueued


def _bad_payloads(asset_id: str) -> list[tuple[str, bytes, str]]:
    """(topic, payload, reason) for every kind of bad input the agent must quarantine and count."""
    good = next(vibration_batches(asset_id, n_batches=1, first_seq=10_000))
    payload = encode_raw_batch(good)
    topic = topics.raw(asset_id, "vibration")
    nan = RawBatch(asset_id, "vibration", 10_001, good.end_ns, VIB_RATE_HZ, np.full(8192, np.nan, np.float32))
    wrong_rate = RawBatch(asset_id, "vibration", 10_002, nan.end_ns, 1000.0, good.samples)
    future = bytearray(payload)
    struct.pack_into("<q", future, 12, 2**62)
    version = bytearray(payload)
    version[4] = 9
    return [
        (topic, b"garbage that is not a raw batch at all.......", "magic"),
        (topic, b"FWRB", "payload"),
        (topic, payload[:-10], "payload"),
        (topic, bytes(version), "version"),
        (topic, bytes(future), "start_ns"),
        (
            topics.raw(asset_id, "current"),
            encode_raw_batch(RawBatch(asset_id, "current", 0, good.start_ns, 1.0, good.samples[:4])),
            "unknown_sensor",
        ),
        (
            topics.raw(asset_id, "vibration"),
            encode_raw_batch(
                RawBatch("other-asset", "vibration", 0, good.start_ns, VIB_RATE_HZ, good.samples)
            ),
            "topic",
        ),
        (topic, payload, "gap"),  # seq 10_000 after seq 19: kept, windows restart
        (topic, payload, "duplicate"),  # seq 10_000 again
        (topic, encode_raw_batch(nan), "nonfinite"),  # seq 10_001
        (topic, encode_raw_batch(wrong_rate), "sample_rate"),  # seq 10_002
        (topic, payload, "out_of_order"),  # seq 10_000 after 10_002
    ]


def test_bad_payloads_of_every_kind_are_quarantined_and_counted_while_scoring_goes_on(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    running_agent: Callable[[EdgeAgent], EdgeAgent],
) -> None:
    asset_id = unique_id("a")
    pipeline = PipelineSettings(
        assets=(vibration_asset(asset_id),),
        baseline=BaselineSettings(warmup_windows=20, learn_interval_s=0.0),
    )
    gateway_id = unique_id("gw")
    settings = edge_settings(workdir, gateway_id=gateway_id, plant=broker, upstream=broker, pipeline=pipeline)
    agent = running_agent(EdgeAgent(settings))
    publisher = RawPublisher(broker, unique_id("pub"))
    feed(publisher, vibration_batches(asset_id, n_batches=20), agent.intake.queue.qsize)
    bad = _bad_payloads(asset_id)
    for topic, payload, _ in bad:
        publisher.publish_payload(topic, payload)
    # Good data goes on after the bad (a gap after the duplicate's seq is counted, then windows restart).
    feed(publisher, vibration_batches(asset_id, n_batches=20, first_seq=20_000), agent.intake.queue.qsize)
    # Both good streams are scored (40 batches of 8 windows; the first window after a restart may wait).
    wait_until(lambda: agent.pipeline.metrics.windows_scored >= 40 * 8 - 16, timeout_s=20)
    expected: dict[str, int] = {}
    for _, _, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    wait_until(lambda: all(agent.quarantine.counts.get(r, 0) >= n for r, n in expected.items()), timeout_s=10)
    samples = {sample.reason for sample in agent.quarantine.samples()}
    assert set(expected) <= samples  # a sample of each kind is on disk, with its bytes
    garbage = next(s for s in agent.quarantine.samples() if s.reason == "magic")
    assert garbage.payload == bad[0][1]
    assert garbage.topic == topics.raw(asset_id, "vibration")
    # The heartbeat reports the counts.
    status = agent.heartbeat.status()
    for reason, count in expected.items():
        assert status.metrics[f"rejected.{reason}"] >= count
    publisher.close()


@pytest.mark.slow
def test_full_queue_drops_aggregates_before_alerts_and_counts_them(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    running_agent: Callable[[EdgeAgent], EdgeAgent],
) -> None:
    """The upstream broker is unreachable and the queue small: aggregates are dropped, oldest first, and
    counted; every alert is kept."""
    asset_id = unique_id("a")
    pipeline = PipelineSettings(
        assets=(vibration_asset(asset_id),),
        baseline=BaselineSettings(warmup_windows=50, learn_interval_s=0.0),
        alerts=AlertSettings(k=3, n=5, clear_after=5),
        snapshots=SnapshotSettings(enabled=False),
    )
    unreachable = MosquittoServer(workdir / "never-started")
    settings = edge_settings(
        workdir,
        gateway_id=unique_id("gw"),
        plant=broker,
        upstream=unreachable,
        pipeline=pipeline,
        queue={"max_bytes": 12_000},
        shutdown_ack_wait_s=0.0,
    )
    agent = running_agent(EdgeAgent(settings))
    publisher = RawPublisher(broker, unique_id("pub"))
    # 1 s per batch, aggregates every 10 s: healthy, then a defect on and off (alerts raised and cleared).
    defect = lambda i: 3.0 if (i // 60) % 2 == 1 else 0.0  # noqa: E731
    feed(publisher, vibration_batches(asset_id, n_batches=300, defect=defect), agent.intake.queue.qsize)
    wait_until(lambda: agent.pipeline.metrics.batches_in >= 300, timeout_s=30)
    wait_until(lambda: agent.intake.queue.qsize() == 0, timeout_s=10)
    agent.stop()
    publisher.close()
    stats = agent.disk_queue.stats()
    metrics = agent.pipeline.metrics
    assert metrics.alerts_raised >= 2
    assert stats.dropped["aggregate"] > 0
    assert stats.dropped["alert"] == 0
    assert stats.bytes <= 12_000
    # Every alert is still queued, in seq order.
    reopened = agent.disk_queue.__class__(
        path=settings.queue.dir / "outbox.sqlite", gateway_id=settings.gateway_id, max_bytes=12_000
    )
    rows = reopened.peek(after_seq=-1, limit=10_000)
    kinds = [decode_uplink(row.payload) for row in rows]
    alerts = [m for m in kinds if isinstance(m, Alert)]
    assert len(alerts) == metrics.alerts_raised + metrics.alerts_cleared
    assert [row.seq for row in rows] == sorted(row.seq for row in rows)
    reopened.close()
    # The heartbeat reports the drops.
    status = agent.heartbeat.last_status or agent.heartbeat.status()
    assert "queue.dropped.aggregate" in status.metrics


def _retained_status(broker: MosquittoServer, gateway_id: str, client_id: str) -> Status:
    with collecting(broker.host, broker.port, topics.status(gateway_id), client_id) as sub:
        wait_until(lambda: sub.messages, timeout_s=5)
        status = decode_uplink(sub.messages[-1][1])
    assert isinstance(status, Status)
    return status


@pytest.mark.slow
def test_upstream_outage_of_30_s_loses_nothing(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    running_agent: Callable[[EdgeAgent], EdgeAgent],
) -> None:
    """The upstream broker is stopped for 30 s while data keeps coming; aggregates queue up on disk and are
    all delivered after it returns. A persistent-session subscriber on the upstream broker checks seq."""
    asset_id = unique_id("a")
    gateway_id = unique_id("gw")
    pipeline = PipelineSettings(assets=(vibration_asset(asset_id),), aggregation={"period_s": 2.0})
    stop_feeding = threading.Event()
    with throwaway_broker(workdir / "upstream") as upstream:
        settings = edge_settings(
            workdir, gateway_id=gateway_id, plant=broker, upstream=upstream, pipeline=pipeline
        )
        with collecting(
            upstream.host, upstream.port, f"forewarn/v1/gw/{gateway_id}/+", unique_id("sub")
        ) as sub:
            agent = running_agent(EdgeAgent(settings))
            publisher = RawPublisher(broker, unique_id("pub"))

            def feeder() -> None:  # about 25 batches (25 s of data) per second, until told to stop
                for batch in vibration_batches(asset_id, n_batches=100_000, start_ns=1_790_000_000 * 10**9):
                    if stop_feeding.wait(0.04):
                        return
                    publisher.publish(batch)

            thread = threading.Thread(target=feeder, name="test-feeder")
            thread.start()
            try:
                wait_until(lambda: agent.forwarder.metrics.acked >= 20, timeout_s=20)
                assert _retained_status(upstream, gateway_id, unique_id("st")).state == "online"
                upstream.stop()
                wait_until(lambda: not agent.forwarder.is_connected, timeout_s=10)
                depth_at_cut = agent.disk_queue.stats().depth
                stop_feeding.wait(30.0)  # the outage: 30 s of data keeps arriving
                assert agent.disk_queue.stats().depth > depth_at_cut + 100  # stored, not sent
                upstream.start()
                wait_until(lambda: agent.forwarder.is_connected, timeout_s=15)
                wait_until(lambda: agent.disk_queue.stats().depth < 20, timeout_s=30)
            finally:
                stop_feeding.set()
                thread.join(10)
            agent.stop()
            publisher.close()
            next_seq = agent.disk_queue.stats().next_seq
            wait_until(lambda: set(range(next_seq)) <= set(sub.seqs()), timeout_s=20)
            fresh = sub.fresh_seqs()
    assert set(sub.seqs()) == set(range(next_seq))  # nothing lost
    assert next_seq > 150
    published_twice = len(fresh) - len(set(fresh))
    print(f"30 s outage: {next_seq} messages, {published_twice} published twice (in flight at the cut)")
    assert published_twice <= settings.queue.window  # at most the in-flight window at the cut


@pytest.mark.slow
def test_status_heartbeat_is_retained_and_replaced_by_offline_on_stop(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    running_agent: Callable[[EdgeAgent], EdgeAgent],
) -> None:
    asset_id = unique_id("a")
    gateway_id = unique_id("gw")
    pipeline = PipelineSettings(assets=(vibration_asset(asset_id),))
    settings = edge_settings(workdir, gateway_id=gateway_id, plant=broker, upstream=broker, pipeline=pipeline)
    agent = running_agent(EdgeAgent(settings))
    publisher = RawPublisher(broker, unique_id("pub"))
    feed(publisher, vibration_batches(asset_id, n_batches=30), agent.intake.queue.qsize)
    wait_until(lambda: agent.pipeline.metrics.batches_in >= 30, timeout_s=10)
    wait_until(lambda: agent.heartbeat.sent >= 3, timeout_s=10)
    status = _retained_status(broker, gateway_id, unique_id("st"))
    assert status.state == "online"
    assert status.model_versions == {asset_id: "baseline"}
    for key in (
        "samples_in",
        "windows",
        "queue.depth",
        "queue.bytes",
        "uplink.bytes_out",
        "intake.received_bytes",
        "upstream_bytes_per_raw_byte",
        "queue.dropped.aggregate",
        "rejected.total",
    ):
        assert key in status.metrics, key
    assert status.memory_bytes > 10_000_000
    assert status.cpu_percent >= 0.0
    msgspec.json.decode(msgspec.json.encode(status), type=Status)  # valid against its own contract
    agent.stop()
    publisher.close()
    assert _retained_status(broker, gateway_id, unique_id("st2")).state == "offline"


def _healthy_features(pipeline: PipelineSettings, asset_id: str) -> tuple[np.ndarray, tuple[str, ...], str]:
    asset = next(a for a in pipeline.assets if a.asset_id == asset_id)
    spec = pipeline.feature_spec(asset)
    samples = np.concatenate([b.samples for b in vibration_batches(asset_id, n_batches=40, seed=7)])
    windows = samples[: len(samples) // 1024 * 1024].reshape(-1, 1024)
    return vibration_features(windows, VIB_RATE_HZ, pipeline.n_bands), spec.feature_names, spec.spec_id


def test_hot_swap_under_load_drops_no_window(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    running_agent: Callable[[EdgeAgent], EdgeAgent],
) -> None:
    """A model is installed and activated while batches stream through the running agent: every window
    cut is scored exactly once, the aggregates switch from the baseline to the model, and none is lost."""
    asset_id = unique_id("a")
    pipeline = PipelineSettings(assets=(vibration_asset(asset_id),), aggregation={"period_s": 2.0})
    features, names, spec_id = _healthy_features(pipeline, asset_id)
    artifact = build_anomaly_model(features, names, feature_spec=spec_id, target=asset_id, version=1)
    gateway_id = unique_id("gw")
    settings = edge_settings(workdir, gateway_id=gateway_id, plant=broker, upstream=broker, pipeline=pipeline)
    own_topics = [topics.aggregate(gateway_id), topics.batch(gateway_id)]
    with collecting(broker.host, broker.port, own_topics, unique_id("sub")) as sub:
        agent = running_agent(EdgeAgent(settings))
        publisher = RawPublisher(broker, unique_id("pub"))
        batches = vibration_batches(asset_id, n_batches=400)
        feed(publisher, (next(batches) for _ in range(150)), agent.intake.queue.qsize)
        agent.models.install(artifact.manifest, artifact.onnx_int8)
        agent.models.activate(asset_id, 1)  # while the first batches are still being scored
        feed(publisher, batches, agent.intake.queue.qsize)
        wait_until(lambda: agent.pipeline.metrics.batches_in >= 400, timeout_s=30)
        agent.stop()
        publisher.close()
        wait_until(lambda: len(sub.uplinks()) >= agent.pipeline.metrics.aggregates, timeout_s=10)
    metrics = agent.pipeline.metrics
    assert agent.intake.metrics.dropped_queue_full == 0
    assert metrics.windows_cut == 400 * 8
    warmup = metrics.windows_unscored.pop("warmup", 0)  # the baseline's, before the swap
    assert metrics.windows_unscored == {}
    assert metrics.windows_scored + warmup == metrics.windows_cut  # none dropped, none unscored
    aggregates = [m for m in sub.uplinks() if isinstance(m, Aggregate)]
    assert sum(a.score.n_windows for a in aggregates) == metrics.windows_scored  # none scored twice
    kinds = [a.model_kind for a in sorted(aggregates, key=lambda a: a.period_start_ns)]
    assert kinds[0] == "baseline"
    assert kinds[-1] == "onnx"
    switch = kinds.index("onnx")
    assert set(kinds[switch:]) == {"onnx"}  # one switch, never back
    assert agent.model_versions() == {asset_id: f"{asset_id}:v1"}


def _backlogged_agent(
    workdir: Path, broker: MosquittoServer, gateway_id: str, *, n_batches: int, shutdown_drain_s: float
) -> EdgeAgent:
    """An agent whose intake already holds `n_batches` raw batches when it starts (a scorer backlog)."""
    asset_id = f"{gateway_id}-pump"
    pipeline = PipelineSettings(
        assets=(vibration_asset(asset_id),),
        baseline=BaselineSettings(warmup_windows=50, learn_interval_s=0.0),
        snapshots=SnapshotSettings(enabled=False),
    )
    settings = edge_settings(
        workdir,
        gateway_id=gateway_id,
        plant=broker,
        upstream=broker,
        pipeline=pipeline,
        shutdown_drain_s=shutdown_drain_s,
        shutdown_ack_wait_s=0.0,
    )
    agent = EdgeAgent(settings)
    for batch in vibration_batches(asset_id, n_batches=n_batches):
        topic = topics.raw(batch.asset_id, batch.sensor)
        agent.intake.queue.put(Received(topic=topic, payload=encode_raw_batch(batch), received_mono_ns=0))
    return agent


@pytest.mark.slow
@pytest.mark.parametrize("shutdown_drain_s", [60.0, 0.0])
def test_stop_scores_the_backlog_within_shutdown_drain_s_and_counts_the_rest(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str], shutdown_drain_s: float
) -> None:
    agent = _backlogged_agent(
        workdir, broker, unique_id("gw"), n_batches=400, shutdown_drain_s=shutdown_drain_s
    )
    agent.start()
    agent.stop()
    dropped = agent.intake.metrics.dropped_at_shutdown
    assert agent.pipeline.metrics.batches_in + dropped == 400
    if shutdown_drain_s:
        assert dropped == 0  # the whole backlog was scored
    else:
        assert dropped > 0  # 400 batches take far longer to score than a stop takes to begin
