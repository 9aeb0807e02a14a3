"""`sim run`, `sim replay` and `bench sim` against a real Mosquitto broker."""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from forewarn.bench.sim import run as bench_sim
from forewarn.cli import main
from forewarn.localservices import MosquittoServer, free_port, wait_until
from shared import topics
from shared.config import MqttSettings
from shared.errors import ContractError
from shared.messages import decode_event
from shared.raw_batch import decode_raw_batch
from simulators import (
    BrokerUnavailableError,
    Publisher,
    PublishStats,
    export_scenario,
    iter_items,
    iter_messages,
    load_scenario,
    publish_stream,
)
from simulators.stream import Message


@contextmanager
def subscriber(broker: MosquittoServer, *filters: str) -> Iterator[queue.Queue[tuple[str, bytes]]]:
    """A connected subscriber whose messages land, in arrival order, on the yielded queue."""
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = queue.Queue[int]()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received.put((msg.topic, bytes(msg.payload)))

    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.put(1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic_filter in filters:
            client.subscribe(topic_filter, qos=1)
            subscribed.get(timeout=5)
        yield received
    finally:
        client.disconnect()
        client.loop_stop()


def _drain(
    received: queue.Queue[tuple[str, bytes]], expected: int, timeout_s: float
) -> list[tuple[str, bytes]]:
    messages: list[tuple[str, bytes]] = []

    def enough() -> bool:
        while True:
            try:
                messages.append(received.get_nowait())
            except queue.Empty:
                return len(messages) >= expected

    wait_until(enough, timeout_s=timeout_s)
    return messages


@pytest.mark.slow
def test_subscriber_receives_the_smoke_scenario_complete_and_in_order(
    broker: MosquittoServer, workdir: Path
) -> None:
    scenario = load_scenario("smoke")
    items = list(iter_items(scenario))
    n_batches = sum(1 for item in items if not hasattr(item, "event"))
    n_events = len(items) - n_batches
    truth = workdir / "truth.csv"
    with subscriber(
        broker, topics.subscription(topics.TopicKind.RAW), topics.subscription(topics.TopicKind.EVENT)
    ) as received:
        code = main(
            [
                "sim",
                "run",
                "--scenario",
                "smoke",
                "--broker",
                broker.url,
                "--speed",
                "0",
                "--quiet",
                "--truth",
                str(truth),
            ]
        )
        assert code == 0
        messages = _drain(received, n_batches + n_events, timeout_s=60)
    assert len(messages) == n_batches + n_events
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    events = []
    samples = 0
    for topic, payload in messages:
        parsed = topics.parse(topic)
        if parsed.kind is topics.TopicKind.EVENT:
            events.append(decode_event(payload))
            continue
        batch = decode_raw_batch(payload, allow_nonfinite=True)
        assert (batch.asset_id, batch.sensor) == (parsed.asset_id, parsed.sensor)
        seqs[(batch.asset_id, batch.sensor)].append(batch.seq)
        samples += len(batch.samples)
    for key, values in seqs.items():
        assert values == list(range(len(values))), key  # complete and in order per sensor
    assert samples == sum(len(item.samples) for item in items if not hasattr(item, "event"))
    assert [(e.asset_id, e.event, e.mode) for e in events] == [
        ("pump-001", "failure", "outer_race"),
        ("pump-001", "maintenance", "outer_race"),
    ]
    assert "onset,outer_race" in truth.read_text()


@pytest.mark.slow
def test_run_paces_by_speed_and_can_start_now(broker: MosquittoServer) -> None:
    with subscriber(broker, topics.raw("pump-001", "temperature")) as received:
        started = time.monotonic()
        code = main(
            [
                "sim", "run", "--scenario", "smoke", "--broker", broker.url, "--speed", "1800",
                "--start", "now", "--quiet", "--seed", "5",
            ]
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert code == 0
        assert 5.0 < elapsed < 30.0  # 3 simulated hours at 1800x: 6 s
        messages = _drain(received, 1080, timeout_s=60)
    first = decode_raw_batch(messages[0][1])  # "now": passes the default future-time check
    last = decode_raw_batch(messages[-1][1])
    assert (last.start_ns - first.start_ns) / 1e9 == pytest.approx(3 * 3600 - 10, abs=1)


def test_replay_publishes_a_recording_as_raw_batches(broker: MosquittoServer, workdir: Path) -> None:
    scenario = load_scenario("smoke").with_changes(n_steps=90)
    export_scenario(scenario, workdir / "export")
    with subscriber(broker, topics.raw("pump-001", "+")) as received:
        assert (
            main(
                [
                    "sim",
                    "replay",
                    str(workdir / "export" / "raw_vibration.csv"),
                    "--broker",
                    broker.url,
                    "--quiet",
                ]
            )
            == 0
        )
        assert (
            main(
                ["sim", "replay", str(workdir / "export" / "raw_slow.csv"), "--broker", broker.url, "--quiet"]
            )
            == 0
        )
        messages = _drain(received, 3 + 3 * 4, timeout_s=20)
    batches = [decode_raw_batch(payload) for _topic, payload in messages]
    vibration = [b for b in batches if b.sensor == "vibration"]
    assert [b.seq for b in vibration] == [0, 1, 2]
    assert all(b.sample_rate_hz == pytest.approx(10_000.0) and len(b.samples) == 4096 for b in vibration)
    assert {b.sensor for b in batches} == {"vibration", "temperature", "current", "pressure", "flow"}


def test_transport_faults_reach_the_subscriber(broker: MosquittoServer, workdir: Path) -> None:
    path = workdir / "faulty.toml"
    path.write_text(
        'name = "faulty"\nseed = 9\n[time]\nduration_h = 0.5\nstep_s = 10.0\n'
        '[[assets]]\ntype = "electric_motor"\nid_prefix = "faulty"\n'
        '[[transport_faults]]\nkind = "malformed"\nsensor = "vibration"\nduration_h = 0.5\n'
        "probability = 0.2\n"
        '[[transport_faults]]\nkind = "duplicate"\nsensor = "current"\nduration_h = 0.5\n'
        "probability = 0.2\n"
    )
    with subscriber(broker, topics.raw("faulty-001", "+")) as received:
        assert (
            main(["sim", "run", "--scenario", str(path), "--broker", broker.url, "--speed", "0", "--quiet"])
            == 0
        )
        messages = _drain(received, len(list(iter_messages(load_scenario(path)))), timeout_s=20)
    rejected: list[tuple[str, str]] = []
    current: list[int] = []
    for topic, payload in messages:
        try:
            batch = decode_raw_batch(payload)
        except ContractError as exc:
            rejected.append((topic.rsplit("/", 1)[1], exc.field))
            continue
        if batch.sensor == "current":
            current.append(batch.seq)
    assert set(rejected) == {("vibration", "payload")}
    assert 10 < len(rejected) < 80
    assert len(current) > len(set(current)) == 180  # duplicates arrive, nothing is missing


@pytest.mark.slow
def test_unreachable_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    settings = MqttSettings.model_validate({"host": "127.0.0.1", "port": free_port()})
    publisher = Publisher(settings=settings, client_id="t-unreachable", connect_timeout_s=0.5)
    with pytest.raises(BrokerUnavailableError, match="not reachable"), publisher:
        publisher.publish(Message("x", b"", 0, 0))
    assert main(["sim", "run", "--scenario", "smoke", "--broker", "http://nowhere"]) == 2
    assert "mqtt://" in capsys.readouterr().err
    assert main(["sim", "run", "--scenario", "smoke", "--speed", "-2", "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert "--speed" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_sim_reports_publish_and_export_rates() -> None:
    figures = bench_sim(quick=True)
    assert figures["publish_samples_per_s"] > 0
    assert figures["export_samples_per_s"] > 0
    assert figures["publish_samples"] == figures["export_samples"]


@pytest.mark.slow
def test_run_survives_a_broker_restart(broker: MosquittoServer) -> None:
    scenario = load_scenario("smoke")
    settings = MqttSettings.model_validate({"host": broker.host, "port": broker.port, "reconnect_max_s": 1.0})
    outcome: dict[str, object] = {}
    with Publisher(settings=settings, client_id="t-restart", connect_timeout_s=10.0) as publisher:

        def publish() -> None:
            try:
                outcome["stats"] = publish_stream(iter_messages(scenario), publisher, speed=1800.0)
            except Exception as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

        worker = threading.Thread(target=publish, name="sim-publish")
        worker.start()
        broker.stop()
        wait_until(lambda: not publisher.is_connected, timeout_s=10)
        broker.start()
        wait_until(lambda: publisher.is_connected, timeout_s=15)
        worker.join(timeout=60)
        assert not worker.is_alive()
    assert "error" not in outcome, outcome
    stats = outcome["stats"]
    assert isinstance(stats, PublishStats)
    assert stats.messages > 0
    assert stats.not_connected + stats.lost_on_disconnect > 0  # raw batches dropped while down, counted
