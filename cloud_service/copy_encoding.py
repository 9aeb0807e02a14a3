"""PostgreSQL's binary COPY format for aggregate rows: a pure function of aggregate blocks.

The stream is built column by column from `AggregateBlock`s: every fixed-width column (numbers,
timestamps, the three feature arrays) of a block is laid out at once in one numpy structured array in
PostgreSQL's binary tuple format, and each row only appends its text columns (encoded once per block), so
the per-row Python work is one slice and one join; building rows value by value cost more than the COPY
itself. The stream's columns are `AGGREGATE_BULK_COLUMNS`, in that order (fixed-width ones first).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.aggregate_block import block_stats
from shared.messages import AggregateBlock

__all__ = ["AGGREGATE_BULK_COLUMNS", "AGGREGATE_COLUMNS", "PG_EPOCH_US", "aggregate_copy_data"]

# The columns of `aggregates` a stream fills, with the types the binary values are encoded as.
AGGREGATE_COLUMNS = (
    ("gateway_id", "text"),
    ("seq", "int8"),
    ("asset_id", "text"),
    ("period_start", "timestamptz"),
    ("period_end", "timestamptz"),
    ("feature_set_id", "int4"),
    ("feature_mean", "float4[]"),
    ("feature_min", "float4[]"),
    ("feature_max", "float4[]"),
    ("score_mean", "float4"),
    ("score_max", "float4"),
    ("threshold", "float4"),
    ("n_windows", "int8"),
    ("n_above", "int8"),
    ("model_version", "text"),
    ("model_kind", "text"),
    ("received_at", "timestamptz"),
    ("clock_skew_s", "float4"),
)
_FLOAT4_OID = 700
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z, PostgreSQL's binary timestamp origin, in Unix µs
# The same columns, fixed-width ones first, so that a group's fixed part is one numpy record per row.
_TEXT_COLUMNS = ("gateway_id", "asset_id", "model_version", "model_kind")
_BULK_ORDER = (
    "seq",
    "period_start",
    "period_end",
    "feature_set_id",
    "feature_mean",
    "feature_min",
    "feature_max",
    "score_mean",
    "score_max",
    "threshold",
    "n_windows",
    "n_above",
    "received_at",
    *_TEXT_COLUMNS,
    "clock_skew_s",  # nullable, after the text columns: one value per block, NULL unless flagged
)
AGGREGATE_BULK_COLUMNS = ", ".join(_BULK_ORDER)
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
_INT4 = struct.Struct(">i")
_FLOAT4_FIELD = struct.Struct(">if")
_NULL_FIELD = _INT4.pack(-1)


def _fixed_dtype(n: int) -> np.dtype[Any]:
    """One row's fixed-width part in PostgreSQL's binary COPY format: field count, then each column as a
    4-byte length and its value (`float4[]`: array header and `n` length-prefixed elements)."""
    cell = np.dtype([("len", ">i4"), ("value", ">f4")])
    fields: list[tuple[Any, ...]] = [("n_fields", ">i2")]
    for name, kind in (("seq", ">i8"), ("start", ">i8"), ("end", ">i8"), ("feature_set_id", ">i4")):
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    for name in ("mean", "min", "max"):
        fields += [(f"{name}_len", ">i4"), (f"{name}_header", ">i4", (5,)), (name, cell, (n,))]
    for name, kind in (
        ("score_mean", ">f4"),
        ("score_max", ">f4"),
        ("threshold", ">f4"),
        ("n_windows", ">i8"),
        ("n_above", ">i8"),
        ("received", ">i8"),
    ):
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    return np.dtype(fields)


@functools.lru_cache(maxsize=64)
def _fixed_template(n: int) -> np.ndarray:
    """One row's fixed-width part with every constant (field count, lengths, array headers) filled in."""
    row = np.zeros(1, dtype=_fixed_dtype(n))
    row["n_fields"] = len(_BULK_ORDER)
    for name, size in (("seq", 8), ("start", 8), ("end", 8), ("feature_set_id", 4), ("score_mean", 4)):
        row[f"{name}_len"] = size
    for name, size in (("score_max", 4), ("threshold", 4), ("n_windows", 8), ("n_above", 8), ("received", 8)):
        row[f"{name}_len"] = size
    for name in ("mean", "min", "max"):
        row[f"{name}_len"] = 20 + 8 * n
        # ndim, has-nulls, element type, length, lower bound
        row[f"{name}_header"] = (1, 0, _FLOAT4_OID, n, 1)
        row[name]["len"] = 4
    return row


def _fixed_part(block: AggregateBlock, feature_set_id: int, received_us: int) -> np.ndarray:
    """Every row's fixed-width part of `block`, filled column by column from the block's lists."""
    out = np.repeat(_fixed_template(len(block.feature_names)), len(block))
    out["seq"] = block.seq
    out["start"] = np.asarray(block.period_start_ns, dtype=np.int64) // 1000 - PG_EPOCH_US
    out["end"] = np.asarray(block.period_end_ns, dtype=np.int64) // 1000 - PG_EPOCH_US
    out["feature_set_id"] = feature_set_id
    out["score_mean"] = block.score_mean
    out["score_max"] = block.score_max
    out["threshold"] = block.threshold
    out["n_windows"] = block.n_windows
    out["n_above"] = block.n_above_threshold
    out["received"] = received_us
    stats = block_stats(block)
    for index, name in enumerate(("mean", "min", "max")):
        out[name]["value"] = stats[:, index, :]
    return out


def _text(value: str) -> bytes:
    raw = value.encode()
    return _INT4.pack(len(raw)) + raw


def _skew_field(skew_s: float | None) -> bytes:
    return _NULL_FIELD if skew_s is None else _FLOAT4_FIELD.pack(4, skew_s)


def aggregate_copy_data(
    blocks: Sequence[AggregateBlock],
    ids: Sequence[int],
    *,
    received_us: int,
    clock_skew_s: Mapping[str, float] | None = None,
) -> bytes:
    """A complete binary COPY stream of every row of `blocks` in `AGGREGATE_BULK_COLUMNS` order.

    Args:
        blocks: the rows, block by block.
        ids: each block's `feature_set_id`.
        received_us: `received_at`, in microseconds since 2000-01-01 UTC.
        clock_skew_s: the flagged gateways' clock skews; other gateways' rows get NULL.
    """
    skews = clock_skew_s or {}
    parts: list[Any] = [_COPY_SIGNATURE]
    for block, feature_set_id in zip(blocks, ids, strict=True):
        fixed = memoryview(_fixed_part(block, feature_set_id, received_us).tobytes())
        stride = len(fixed) // len(block)
        gateway = _text(block.gateway_id)
        assets = [_text(asset_id) for asset_id in block.assets]
        models = [_text(m.version) + _text(m.kind) for m in block.models]
        skew = _skew_field(skews.get(block.gateway_id))
        for index, (asset, model) in enumerate(zip(block.asset, block.model, strict=True)):
            parts += (
                fixed[index * stride : (index + 1) * stride],
                gateway,
                assets[asset],
                models[model],
                skew,
            )
    parts.append(_COPY_TRAILER)
    return b"".join(parts)
