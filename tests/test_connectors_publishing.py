"""The connector framework against the real broker: values become raw batches with the right stream,
sequence, time and grouping; gaps, drops and rejections are counted; the heartbeat is retained."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.connectors.health import ConnectorMetrics
from edge_agent.connectors.publishing import SamplePublisher
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import ModbusConnectorSettings, PublishingSettings
from forewarn.config_cmd import settings_class
from forewarn.localservices import MosquittoServer, free_port, wait_until
from shared import topics
from shared.config import MqttSettings, load_settings, render_settings
from shared.errors import ContractError
from shared.messages import ConnectorStatus, decode_connector_status, encode
from shared.timebase import NS_PER_S, now_ns
from tests.connectors_support import RawCollector, broker_settings


@pytest.fixture
def collector(broker: MosquittoServer, unique_id: Callable[[str], str]) -> Iterator[RawCollector]:
    collector = RawCollector(broker, [unique_id("asset")], unique_id("collector"))
    yield collector
    collector.close()


def _publisher(broker: MosquittoServer, metrics: ConnectorMetrics, **publishing: object) -> SamplePublisher:
    return SamplePublisher(
        mqtt_settings=MqttSettings.model_validate(broker_settings(broker)),
        settings=PublishingSettings.model_validate(publishing),
        client_id="test-publisher",
        metrics=metrics,
    )


def test_polled_values_on_their_grid_make_one_batch_and_a_late_one_starts_the_next_as_a_counted_gap(
    broker: MosquittoServer, collector: RawCollector, unique_id: Callable[[str], str]
) -> None:
    asset = unique_id("asset")
    metrics = ConnectorMetrics()
    t0 = now_ns() - 60 * NS_PER_S
    period = NS_PER_S // 10
    jitter = [0, 20, -30, 10, 0, -10, 40, 0, 5, -5]  # ms, within half a period
    with _publisher(broker, metrics, max_delay_s=60.0) as publisher:
        for i in range(10):
            assert publisher.add_value(
                asset, "temperature", t0 + i * period + jitter[i] * 10**6, 20.0 + i, 10.0
            )
        late = t0 + 13 * period  # three polls missing
        for i in range(5):
            assert publisher.add_value(asset, "temperature", late + i * period, 30.0 + i, 10.0)
        assert not publisher.add_value(asset, "temperature", late + 2 * period, 99.0, 10.0)  # in the past
        assert publisher.flush(timeout_s=5)
    collector.wait_samples(asset, "temperature", 15)
    first, second = collector.of(asset, "temperature")
    assert (first.seq, first.start_ns, first.sample_rate_hz) == (0, t0, 10.0)
    assert first.samples.tolist() == [20.0 + i for i in range(10)]
    assert (second.seq, second.start_ns) == (1, late)
    assert second.samples.tolist() == [30.0 + i for i in range(5)]
    assert metrics.gaps == 1
    assert metrics.rejected == {"out_of_order": 1}
    assert (metrics.values_published, metrics.batches_published) == (15, 2)


def test_a_block_is_split_into_batches_of_at_most_max_samples_with_rising_seq_and_exact_times(
    broker: MosquittoServer, collector: RawCollector, unique_id: Callable[[str], str]
) -> None:
    asset = unique_id("asset")
    metrics = ConnectorMetrics()
    rate = 25_600.0
    start = now_ns() - 10 * NS_PER_S
    values = np.sin(np.arange(10_000) / 7.0)
    with _publisher(broker, metrics, max_batch_samples=4096) as publisher:
        assert publisher.add_block(asset, "vibration", start, rate, values)
        assert publisher.flush(timeout_s=5)
    collector.wait_samples(asset, "vibration", 10_000)
    batches = collector.of(asset, "vibration")
    assert [len(b.samples) for b in batches] == [4096, 4096, 1808]
    assert [b.seq for b in batches] == [0, 1, 2]
    assert [b.start_ns for b in batches] == [start + round(k * 4096 * NS_PER_S / rate) for k in range(3)]
    np.testing.assert_array_equal(collector.samples(asset, "vibration"), values.astype(np.float32))


@pytest.mark.slow  # paho's reconnect wait (1 s at least) delays its loop's stop
def test_without_a_broker_values_are_held_up_to_the_buffer_and_the_rest_dropped_and_counted() -> None:
    metrics = ConnectorMetrics()
    nowhere = MqttSettings.model_validate({"port": free_port()})
    publisher = SamplePublisher(
        mqtt_settings=nowhere,
        settings=PublishingSettings(max_buffered_samples=100, connect_timeout_s=0.1),
        client_id="test-nowhere",
        metrics=metrics,
    )
    t0 = now_ns()
    publisher.__enter__()
    try:
        accepted = [publisher.add_value("a1", "pressure", t0 + i * NS_PER_S, 1.0, 1.0) for i in range(150)]
        assert not publisher.add_block("a1", "vibration", t0, 1000.0, np.zeros(10))
        assert publisher.buffered_samples == 100
        assert not publisher.add_value("a1", "pressure", t0 + 200 * NS_PER_S, float("nan"), 1.0)
        assert not publisher.flush(timeout_s=0.05)
    finally:
        publisher.close(timeout_s=0.05)
    assert sum(accepted) == 100
    assert metrics.dropped == {"buffer_full": 50 + 10}
    assert metrics.rejected == {"non_finite": 1}
    assert metrics.values_published == 0


def test_heartbeat_is_retained_with_the_counters_and_replaced_by_offline_on_stop(
    broker: MosquittoServer, unique_id: Callable[[str], str]
) -> None:
    connector_id = unique_id("conn")
    settings = load_settings(
        ModbusConnectorSettings,
        environ={},
        overrides={
            "connector_id": connector_id,
            "mqtt": broker_settings(broker),
            "health": {"interval_s": 0.2},
        },
    )
    with ConnectorRuntime(settings) as runtime:
        runtime.metrics.values_read = 7
        runtime.metrics.reject("timeout", 2)
        runtime.metrics.error("poll timed out")
        late = RawCollector(broker, [], unique_id("late"))  # subscribes after the first heartbeat: retained
        status = wait_until(
            lambda: next(
                (s for s in late.statuses if s.connector_id == connector_id and s.values_read == 7), None
            )
        )
        assert (status.state, status.connector_kind, status.rejected) == ("online", "modbus", {"timeout": 2})
        assert status.broker_connected
        assert status.last_error == "poll timed out"
    wait_until(lambda: late.statuses[-1].state == "offline")
    late.close()


def test_connector_status_topic_and_message_round_trip_and_bad_ones_name_the_field() -> None:
    topic = topics.connector_status("modbus-line3")
    assert topics.parse(topic) == topics.ParsedTopic(
        topics.TopicKind.CONNECTOR_STATUS, connector_id="modbus-line3"
    )
    assert topics.subscription(topics.TopicKind.CONNECTOR_STATUS) == "forewarn/v1/connectors/+/status"
    status = ConnectorStatus(
        connector_id="modbus-line3",
        connector_kind="modbus",
        ts_ns=now_ns(),
        state="online",
        values_read=12,
        rejected={"modbus_exception": 3},
    )
    assert decode_connector_status(encode(status)) == status
    with pytest.raises(ContractError) as bad:
        decode_connector_status(encode(status).replace(b'"values_read":12', b'"values_read":-1'))
    assert bad.value.field == "values_read"
    with pytest.raises(ContractError):
        topics.connector_status("bad/id")


@pytest.mark.parametrize(
    ("component", "example"),
    [
        ("connect-files", "connect-files.toml"),
        ("connect-modbus", "connect-modbus.toml"),
        ("connect-opcua", "connect-opcua.toml"),
        ("connect-sparkplug", "connect-sparkplug.toml"),
    ],
)
def test_connector_examples_load_and_their_rendered_settings_load_back_the_same(
    component: str, example: str, tmp_path: Path
) -> None:
    cls = settings_class(component)
    path = Path(__file__).resolve().parent.parent / "examples" / example
    settings = load_settings(cls, toml_path=path, environ={})
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(render_settings(settings))
    assert load_settings(cls, toml_path=rendered, environ={}) == settings
    assert cls.component == component
