"""Aggregate blocks: aggregates column by column round-trip exactly, and bad blocks name their field."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_service.deadletter import DeadLetter
from cloud_service.ingest import decode_received
from shared import topics
from shared.aggregate_block import block_stats, pack_aggregates, unpack_block
from shared.errors import ContractError
from shared.messages import (
    MAX_MESSAGE_BYTES,
    Aggregate,
    AggregateBlock,
    FeatureStats,
    ScoreStats,
    UplinkBatch,
    decode_uplink,
    decode_uplink_batch,
    deflate_batch,
    encode,
    uplink_rows,
)
from shared.timebase import MIN_TIMESTAMP_NS, NS_PER_S, now_ns

NOW = now_ns()
NAMES = ("vibration.rms", "vibration.kurtosis", "temperature.mean")
float32s = st.floats(min_value=-(2.0**39), max_value=2.0**39, allow_nan=False, width=32)
stats = st.builds(FeatureStats, float32s, float32s, float32s)


def _aggregate(
    seq: int, asset_id: str = "a1", *, value: float = 1.0, names: tuple[str, ...] = NAMES
) -> Aggregate:
    start = NOW - 10 * NS_PER_S
    return Aggregate(
        gateway_id="gw-1",
        asset_id=asset_id,
        seq=seq,
        period_start_ns=start,
        period_end_ns=start + 10 * NS_PER_S,
        feature_spec="spec:1",
        features={name: FeatureStats(value + i, value - 1.0, value + 2.0) for i, name in enumerate(names)},
        score=ScoreStats(mean=0.25, max=0.5, threshold=1.0, n_windows=10, n_above_threshold=1),
        model_version="3",
        model_kind="onnx",
    )


@st.composite
def runs(draw: st.DrawFn) -> list[Aggregate]:
    """Aggregates of one gateway and one feature set, as a forwarder packs them."""
    n = draw(st.integers(1, 5))
    name = st.from_regex(r"\A[a-z]{1,8}\.[a-z_0-9]{1,8}\Z")
    names = draw(st.lists(name, min_size=0, max_size=6, unique=True))
    start = draw(st.integers(MIN_TIMESTAMP_NS, NOW))
    return [
        Aggregate(
            gateway_id="gw-1",
            asset_id=draw(st.sampled_from(["a1", "a2", "pump-7"])),
            seq=seq,
            period_start_ns=start,
            period_end_ns=draw(st.integers(start, NOW)),
            feature_spec="spec:1",
            features={name: draw(stats) for name in names},
            score=ScoreStats(
                mean=draw(float32s),
                max=draw(float32s),
                threshold=draw(float32s),
                n_windows=draw(st.integers(0, 10_000)),
                n_above_threshold=draw(st.integers(0, 10_000)),
            ),
            model_version=draw(st.sampled_from(["1", "2", "baseline"])),
            model_kind=draw(st.sampled_from(["baseline", "onnx"])),
        )
        for seq in range(n)
    ]


@given(run=runs())
def test_block_round_trip_is_exact_for_float32_statistics(run: list[Aggregate]) -> None:
    (block,) = pack_aggregates(run)
    batch = decode_uplink_batch(encode(UplinkBatch(gateway_id="gw-1", messages=[block])), reference_ns=NOW)
    (decoded,) = batch.messages
    assert isinstance(decoded, AggregateBlock)
    assert unpack_block(decoded) == run
    assert uplink_rows(decoded) == len(run)


def test_block_statistics_are_mean_min_max_per_row_and_feature() -> None:
    run = [_aggregate(0, value=1.0), _aggregate(1, value=10.0)]
    (block,) = pack_aggregates(run)
    values = block_stats(block)
    assert values.shape == (2, 3, len(NAMES))
    assert values[1, :, 0].tolist() == [10.0, 9.0, 12.0]  # mean, min, max of the first feature
    assert values[0, 0].tolist() == [1.0, 2.0, 3.0]  # means of every feature


def test_pack_cuts_runs_at_gateway_feature_set_and_size_changes() -> None:
    other_names = ("current.rms",)
    run = [
        _aggregate(0),
        _aggregate(1, "a2"),
        _aggregate(2, names=other_names),
        msgspec.structs.replace(_aggregate(3), gateway_id="gw-2"),
        _aggregate(4),
        _aggregate(5),
        _aggregate(6),
    ]
    blocks = pack_aggregates(run, max_rows=2)
    assert [len(b) for b in blocks] == [2, 1, 1, 2, 1]
    assert [b.gateway_id for b in blocks] == ["gw-1", "gw-1", "gw-2", "gw-1", "gw-1"]
    assert [row for b in blocks for row in unpack_block(b)] == run
    assert blocks[0].assets == ["a1", "a2"]
    assert blocks[0].asset == [0, 1]


def test_a_block_is_smaller_than_its_rows() -> None:
    run = [_aggregate(seq, f"a{seq % 20}", value=seq * 0.137) for seq in range(256)]
    block_bytes = len(encode(pack_aggregates(run)[0]))
    assert block_bytes * 2 < sum(len(encode(m)) for m in run)


def _good() -> dict[str, Any]:
    block = pack_aggregates([_aggregate(0), _aggregate(1, "a2")])[0]
    return msgspec.json.decode(encode(block), type=dict[str, Any])


def _with(**changes: Any) -> bytes:
    body = _good()
    body.update(changes)
    return msgspec.json.encode(body)


def _stats_with(value: float) -> str:
    values = np.frombuffer(base64.b64decode(_good()["stats"]), dtype="<f4").copy()
    values[len(NAMES) * 3 + 1] = value  # the second row
    return base64.b64encode(values.tobytes()).decode()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_with(seq=[0]), "seq"),
        (_with(model=[0, 0, 0]), "model"),
        (_with(asset=[0, 2]), "asset[1]"),
        (_with(model=[1, 0]), "model[0]"),
        (_with(asset=[]), "asset"),
        (_with(period_start_ns=[NOW - NS_PER_S, MIN_TIMESTAMP_NS - 1]), "period_start_ns[1]"),
        (_with(period_end_ns=[NOW, NOW + 25 * 3600 * NS_PER_S]), "period_end_ns[1]"),
        (_with(period_end_ns=[NOW, NOW - 20 * NS_PER_S]), "period_end_ns[1]"),
        (_with(stats=_good()["stats"][:-8]), "stats"),
        (_with(stats="not base64!"), "stats"),
        (_with(stats=_stats_with(float("nan"))), "stats[1]"),
        (_with(stats=_stats_with(float("inf"))), "stats[1]"),
        (_with(stats=_stats_with(3e15)), "stats[1]"),
        (_with(feature_names=["a.b", "a.b", "c.d"]), "feature_names"),
        (_with(feature_names=["vib/rms", "a.b", "c.d"]), "feature_names"),
        (_with(assets=["a1", "Not An Ident!"]), "assets[1]"),
        (_with(models=[["3", "tensorflow"]]), "models[0][1]"),
        (_with(score_max=[0.5, 1e16]), "score_max[1]"),
        (_with(n_windows=[1, -1]), "n_windows[1]"),
    ],
)
def test_bad_blocks_name_their_field(payload: bytes, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_uplink(payload, reference_ns=NOW)
    assert caught.value.field == field


def test_cloud_takes_a_block_on_the_aggregate_topic_and_in_batches_but_not_another_gateways() -> None:
    block = pack_aggregates([_aggregate(0), _aggregate(1, "a2")])[0]
    single = decode_received(topics.aggregate("gw-1"), encode(block))
    assert not isinstance(single, DeadLetter)
    assert sum(map(uplink_rows, single)) == 2
    batched = decode_received(topics.batch("gw-1"), encode(UplinkBatch(gateway_id="gw-1", messages=[block])))
    assert not isinstance(batched, DeadLetter)
    assert list(batched) == [block]
    foreign = decode_received(topics.aggregate("gw-9"), encode(block))
    assert isinstance(foreign, DeadLetter)
    assert foreign.label == "gateway_id"


def test_a_compressed_batch_decodes_as_the_plain_one() -> None:
    batch = UplinkBatch(gateway_id="gw-1", messages=[*pack_aggregates([_aggregate(0), _aggregate(1, "a2")])])
    plain = encode(batch)
    packed = deflate_batch(plain)
    assert packed[:1] == b"\x78"
    assert decode_uplink_batch(packed, reference_ns=NOW) == decode_uplink_batch(plain, reference_ns=NOW)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (zlib.compress(b" " * (MAX_MESSAGE_BYTES + 1)), "inflated"),  # a bomb: refused, not inflated
        (zlib.compress(b'{"kind":"batch/1"')[:-6], "a complete zlib stream"),
        (b"\x78\x9c not zlib at all", "valid zlib-compressed JSON"),
        (zlib.compress(b'{"kind":"batch/1","gateway_id":"gw-1","messages":[}'), "valid JSON"),
    ],
)
def test_bad_compressed_batches_are_contract_errors(payload: bytes, expected: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_uplink_batch(payload, reference_ns=NOW)
    assert caught.value.field == "payload"
    assert expected in caught.value.expected
