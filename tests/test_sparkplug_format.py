"""The Sparkplug B payload codec and topic namespace: wire bytes as the Tahu schema defines them, round trips,
two's complement integers, and garbage that is rejected with a ContractError naming `payload`."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.sparkplug import (
    DataType,
    MessageType,
    Metric,
    Payload,
    PayloadMessage,
    SparkplugTopic,
    decode_payload,
    encode_payload,
    node_filter,
    parse_topic,
    state_topic,
)

# Payload{timestamp=1, metrics=[{name="a", alias=3, datatype=Float, float_value=1.0}], seq=2}, written out by
# hand from the field numbers and wire types of sparkplug_b.proto: tag = number << 3 | wire type.
GOLDEN = bytes.fromhex(
    "0801"  # 1 timestamp, varint 1
    "120c"  # 2 metrics, 12 bytes follow
    "0a0161"  # 1 name "a"
    "1003"  # 2 alias 3
    "2009"  # 4 datatype 9 (Float)
    "650000803f"  # 12 float_value, fixed32 1.0
    "1802"  # 3 seq 2
)


def test_golden_bytes_decode_as_the_schema_defines_them() -> None:
    payload = decode_payload(GOLDEN)
    assert payload == Payload(
        timestamp_ms=1, seq=2, metrics=(Metric(name="a", alias=3, datatype=DataType.FLOAT, value=1.0),)
    )


def test_encoding_gives_the_golden_bytes() -> None:
    payload = Payload(
        timestamp_ms=1, seq=2, metrics=(Metric(name="a", alias=3, datatype=DataType.FLOAT, value=1.0),)
    )
    assert encode_payload(payload) == GOLDEN


@pytest.mark.parametrize(
    ("datatype", "value", "wire_value"),
    [
        (DataType.INT8, -1, 0xFF),
        (DataType.INT16, -2, 0xFFFE),
        (DataType.INT32, -3, 0xFFFF_FFFD),
        (DataType.INT64, -4, 0xFFFF_FFFF_FFFF_FFFC),
        (DataType.UINT32, 4_000_000_000, 4_000_000_000),
        (DataType.UINT64, 2**64 - 1, 2**64 - 1),
    ],
)
def test_integers_travel_as_twos_complement_of_their_width(
    datatype: DataType, value: int, wire_value: int
) -> None:
    encoded = encode_payload(Payload(metrics=(Metric(name="m", datatype=datatype, value=value),)))
    raw = PayloadMessage.FromString(encoded).metrics[0]
    assert getattr(raw, raw.WhichOneof("value")) == wire_value
    assert decode_payload(encoded).metrics[0].value == value


def test_a_sign_extended_int8_from_another_encoder_decodes_to_its_value() -> None:
    raw = PayloadMessage()
    metric = raw.metrics.add(name="m", datatype=int(DataType.INT8))
    metric.int_value = 0xFFFF_FFFF  # -1 sign-extended to 32 bits instead of 8
    assert decode_payload(raw.SerializeToString()).metrics[0].value == -1


def test_null_and_flags_round_trip() -> None:
    payload = Payload(
        seq=255,
        metrics=(
            Metric(name="null", datatype=DataType.DOUBLE, is_null=True),
            Metric(name="old", datatype=DataType.DOUBLE, value=2.5, is_historical=True, timestamp_ms=1234),
            Metric(name="text", datatype=DataType.STRING, value="running", is_transient=True),
            Metric(name="raw", datatype=DataType.BYTES, value=b"\x00\x01"),
            Metric(name="when", datatype=DataType.DATETIME, value=1_700_000_000_000),
        ),
        uuid="schema-1",
        body=b"opaque",
    )
    assert decode_payload(encode_payload(payload)) == payload
    assert not decode_payload(encode_payload(payload)).metrics[0].has_value


def test_a_dataset_metric_decodes_without_a_scalar_value() -> None:
    raw = PayloadMessage()
    metric = raw.metrics.add(name="table", datatype=int(DataType.DATASET))
    metric.dataset_value.num_of_columns = 1
    metric.dataset_value.columns.append("x")
    metric.dataset_value.rows.add().elements.add(double_value=1.0)
    decoded = decode_payload(raw.SerializeToString()).metrics[0]
    assert decoded.name == "table"
    assert decoded.value is None


def test_an_unknown_datatype_keeps_the_raw_value() -> None:
    raw = PayloadMessage()
    raw.metrics.add(name="future", datatype=99, double_value=3.0)
    decoded = decode_payload(raw.SerializeToString()).metrics[0]
    assert (decoded.datatype, decoded.value) == (DataType.UNKNOWN, 3.0)


def test_a_value_that_does_not_fit_its_type_is_refused_naming_datatype() -> None:
    with pytest.raises(ContractError) as caught:
        encode_payload(Payload(metrics=(Metric(name="m", datatype=DataType.BYTES, value="text"),)))
    assert caught.value.field == "datatype"


@pytest.mark.parametrize("payload", [b"\xff", b"\x12\x05\x0a", b"\x0a\x02"])
def test_malformed_protobuf_is_rejected_naming_payload(payload: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        decode_payload(payload)
    assert caught.value.field == "payload"


metrics = st.builds(
    Metric,
    name=st.none() | st.text(max_size=20),
    alias=st.none() | st.integers(0, 2**64 - 1),
    timestamp_ms=st.none() | st.integers(0, 2**64 - 1),
    datatype=st.just(DataType.DOUBLE),
    value=st.floats(allow_nan=False),
)


@given(
    st.builds(
        Payload,
        timestamp_ms=st.none() | st.integers(0, 2**64 - 1),
        seq=st.none() | st.integers(0, 255),
        metrics=st.lists(metrics, max_size=5).map(tuple),
    )
)
def test_round_trip(payload: Payload) -> None:
    assert decode_payload(encode_payload(payload)) == payload


@given(st.binary(max_size=512))
def test_garbage_decodes_or_raises_contract_error(data: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode_payload(data)


def test_topics_build_and_parse() -> None:
    device = SparkplugTopic("plant", MessageType.DDATA, "line-3", "pump 7")
    assert str(device) == "spBv1.0/plant/DDATA/line-3/pump 7"
    assert parse_topic(str(device)) == device
    node = parse_topic("spBv1.0/plant/NBIRTH/line-3")
    assert (node.message_type, node.device_id) == (MessageType.NBIRTH, None)
    assert node_filter("plant", "line-3") == "spBv1.0/plant/+/line-3/#"
    assert node_filter("plant") == "spBv1.0/plant/#"
    assert state_topic("forewarn") == "spBv1.0/STATE/forewarn"


@pytest.mark.parametrize(
    ("topic", "field"),
    [
        ("spAv1.0/plant/NDATA/line", "topic"),
        ("spBv1.0/plant/NDATA", "topic"),
        ("spBv1.0/plant/XDATA/line", "message_type"),
        ("spBv1.0/plant/DDATA/line", "device_id"),
        ("spBv1.0/plant/NDATA/line/pump", "device_id"),
        ("spBv1.0//NDATA/line", "group_id"),
    ],
)
def test_bad_topics_name_the_part(topic: str, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_topic(topic)
    assert caught.value.field == field
