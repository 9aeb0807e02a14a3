"""The aggregate COPY encoder writes the bytes PostgreSQL itself writes for the same rows (real server)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import psycopg

from cloud_service.copy_encoding import (
    AGGREGATE_BULK_COLUMNS,
    AGGREGATE_COLUMNS,
    PG_EPOCH_US,
    aggregate_copy_data,
)
from shared.aggregate_block import pack_aggregates
from shared.messages import Aggregate, FeatureStats, ModelKind, ScoreStats
from shared.timebase import ns_to_datetime

NS_PER_S = 1_000_000_000
START_NS = 1_767_225_600 * NS_PER_S + 123_456_789  # a period start with a sub-microsecond part
RECEIVED_US = 850_000_000_123_456  # microseconds after 2000-01-01 UTC
FEATURES = ("rms", "peak", "kurtosis")
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"


def _aggregate(gateway_id: str, asset_id: str, seq: int, *, version: str, kind: ModelKind) -> Aggregate:
    features = {
        name: FeatureStats(seq * 1.1 + i, seq * 1.1 + i - 0.7, seq * 1.1 + i + 0.3)
        for i, name in enumerate(FEATURES)
    }
    return Aggregate(
        gateway_id=gateway_id,
        asset_id=asset_id,
        seq=seq,
        period_start_ns=START_NS + seq * 10 * NS_PER_S,
        period_end_ns=START_NS + (seq + 1) * 10 * NS_PER_S,
        feature_spec="spec-a",
        features=features,
        score=ScoreStats(
            mean=0.1 * seq, max=0.3 * seq, threshold=1.5, n_windows=10 + seq, n_above_threshold=seq
        ),
        model_version=version,
        model_kind=kind,
    )


def _rows() -> list[Aggregate]:
    """Two gateways (two blocks), several assets and models within a block."""
    return [
        _aggregate("gw-1", "pump-1", 0, version="3", kind="onnx"),
        _aggregate("gw-1", "pump-2", 1, version="3", kind="onnx"),
        _aggregate("gw-1", "pump-1", 2, version="4", kind="baseline"),
        _aggregate("gw-2", "fan-é", 7, version="1", kind="onnx"),  # non-ASCII text: lengths are in bytes
    ]


def _f4(value: float) -> float:
    return float(np.float32(value))


def _row_values(message: Aggregate, feature_set_id: int) -> dict[str, object]:
    """The row `message` becomes, value by value, written independently of the encoder."""
    stats = [message.features[name] for name in FEATURES]
    return {
        "seq": message.seq,
        "period_start": ns_to_datetime(message.period_start_ns),
        "period_end": ns_to_datetime(message.period_end_ns),
        "feature_set_id": feature_set_id,
        "feature_mean": [_f4(s.mean) for s in stats],
        "feature_min": [_f4(s.min) for s in stats],
        "feature_max": [_f4(s.max) for s in stats],
        "score_mean": _f4(message.score.mean),
        "score_max": _f4(message.score.max),
        "threshold": _f4(message.score.threshold),
        "n_windows": message.score.n_windows,
        "n_above": message.score.n_above_threshold,
        "received_at": ns_to_datetime(0) + timedelta(microseconds=PG_EPOCH_US + RECEIVED_US),
        "gateway_id": message.gateway_id,
        "asset_id": message.asset_id,
        "model_version": message.model_version,
        "model_kind": message.model_kind,
    }


def _create_table(conn: psycopg.Connection[object]) -> None:
    columns = ", ".join(
        f"{name} {sql_type.replace('float4', 'real')}" for name, sql_type in AGGREGATE_COLUMNS
    )
    conn.execute(f"CREATE TEMPORARY TABLE copy_rows (ord serial, {columns})")


def _server_copy(conn: psycopg.Connection[object]) -> bytes:
    """The table's rows as PostgreSQL writes them in binary COPY, in the encoder's column order."""
    statement = (
        f"COPY (SELECT {AGGREGATE_BULK_COLUMNS} FROM copy_rows ORDER BY ord) TO STDOUT (FORMAT BINARY)"
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def test_encoder_bytes_equal_postgresql_binary_copy_of_the_same_rows(db: str) -> None:
    messages = _rows()
    blocks = pack_aggregates(messages)
    ids = [11, 42]
    assert [block.gateway_id for block in blocks] == ["gw-1", "gw-2"]
    encoded = aggregate_copy_data(blocks, ids, received_us=RECEIVED_US)
    block_of_gateway = {"gw-1": ids[0], "gw-2": ids[1]}
    with psycopg.connect(db) as conn:
        _create_table(conn)
        for message in messages:
            values = _row_values(message, block_of_gateway[message.gateway_id])
            names = ", ".join(values)
            conn.execute(
                f"INSERT INTO copy_rows ({names}) VALUES ({', '.join(['%s'] * len(values))})",
                list(values.values()),
            )
        expected = _server_copy(conn)
        assert encoded[: len(HEADER)] == expected[: len(HEADER)] == HEADER
        assert encoded[-len(TRAILER) :] == expected[-len(TRAILER) :] == TRAILER
        assert encoded[len(HEADER) : -len(TRAILER)] == expected[len(HEADER) : -len(TRAILER)]

        # and the server reads the encoder's stream back into the same rows
        conn.execute("TRUNCATE copy_rows")
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY copy_rows ({AGGREGATE_BULK_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(encoded)
        assert _server_copy(conn) == expected
