"""The Sparkplug B host's state machine on its own (no broker): sequence numbers wrap from 255 to 0 without a
gap, a skipped number is a gap that asks for one rebirth, aliases resolve per device, and values that cannot
be used are counted by reason."""

from __future__ import annotations

from edge_agent.connectors.health import ConnectorMetrics
from edge_agent.connectors.settings import SparkplugMetricMap
from edge_agent.connectors.sparkplug import SparkplugHost
from shared.sparkplug import (
    BD_SEQ_METRIC,
    DataType,
    MessageType,
    Metric,
    Payload,
    SparkplugTopic,
    encode_payload,
)

GROUP, NODE, DEVICE = "plant", "line3", "pump7"
T0_MS = 1_800_000_000_000


class _Host:
    def __init__(self) -> None:
        self.values: list[tuple[str, str, int, float, float]] = []
        self.rebirths: list[tuple[str, str]] = []
        self.metrics = ConnectorMetrics()
        mapping = SparkplugMetricMap(
            group_id=GROUP,
            edge_node_id=NODE,
            device_id=DEVICE,
            metric="Speed",
            asset_id="pump-7",
            sensor="speed",
            scale=2.0,
            offset=1.0,
            sample_rate_hz=10.0,
        )
        self.host = SparkplugHost(
            mappings=(mapping,),
            metrics=self.metrics,
            add_value=lambda *value: self.values.append(value),
            request_rebirth=lambda group, node: self.rebirths.append((group, node)),
            rebirth_interval_s=0.0,
        )

    def send(self, message_type: MessageType, seq: int | None, metrics: tuple[Metric, ...]) -> None:
        device = DEVICE if message_type.is_device_message else None
        topic = SparkplugTopic(GROUP, message_type, NODE, device)
        payload = Payload(timestamp_ms=T0_MS, seq=seq, metrics=metrics)
        self.host.handle(str(topic), encode_payload(payload), T0_MS * 1_000_000)

    def born(self, first_seq: int = 0) -> None:
        self.send(
            MessageType.NBIRTH, first_seq, (Metric(name=BD_SEQ_METRIC, datatype=DataType.INT64, value=1),)
        )
        speed = Metric(name="Speed", alias=5, datatype=DataType.UINT16, value=100, timestamp_ms=T0_MS)
        self.send(MessageType.DBIRTH, (first_seq + 1) % 256, (speed,))

    def data(self, seq: int, value: int, time_ms: int) -> None:
        metric = Metric(alias=5, datatype=DataType.UINT16, value=value, timestamp_ms=time_ms)
        self.send(MessageType.DDATA, seq, (metric,))


def test_sequence_numbers_wrap_from_255_to_0_without_a_gap() -> None:
    host = _Host()
    host.born(first_seq=250)  # NBIRTH 250, DBIRTH 251
    for index, seq in enumerate([252, 253, 254, 255, 0, 1, 2]):
        host.data(seq, 101 + index, T0_MS + 100 * (index + 1))
    assert host.host.stats.sequence_gaps == 0
    assert host.rebirths == []
    assert [value[3] for value in host.values] == [2.0 * v + 1.0 for v in range(100, 108)]
    assert host.values[-1][:3] == ("pump-7", "speed", (T0_MS + 700) * 1_000_000)


def test_a_skipped_sequence_number_is_a_gap_that_asks_for_a_rebirth() -> None:
    host = _Host()
    host.born()  # 0, 1
    host.data(2, 101, T0_MS + 100)
    host.data(5, 104, T0_MS + 400)  # 3 and 4 lost
    assert host.host.stats.sequence_gaps == 1
    assert host.metrics.gaps == 1
    assert host.rebirths == [(GROUP, NODE)]
    host.data(6, 105, T0_MS + 500)  # counting goes on from the number received
    assert host.host.stats.sequence_gaps == 1
    assert len(host.values) == 4  # the birth's value and the three data values are all used


def test_an_unknown_alias_a_null_and_text_are_counted_by_reason() -> None:
    host = _Host()
    host.born()
    host.send(MessageType.DDATA, 2, (Metric(alias=99, datatype=DataType.DOUBLE, value=1.0),))
    host.send(MessageType.DDATA, 3, (Metric(alias=5, datatype=DataType.UINT16, is_null=True),))
    host.send(MessageType.DDATA, 4, (Metric(name="Speed", datatype=DataType.STRING, value="fast"),))
    assert host.metrics.rejected == {"unknown_alias": 1, "null": 1, "not_numeric": 1}
    assert host.rebirths == [(GROUP, NODE)]  # the unknown alias
    assert host.host.stats.sequence_gaps == 0
