"""Binary and JSON raw batches: round trips, and every kind of bad payload gives a ContractError naming it."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared.errors import ContractError
from shared.raw_batch import (
    MAX_RAW_BATCH_BYTES,
    RawBatch,
    decode_raw_batch,
    decode_raw_batch_json,
    encode_raw_batch,
    encode_raw_batch_json,
)
from shared.timebase import MIN_TIMESTAMP_NS, NS_PER_S, now_ns

NOW = now_ns()
idents = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
finite_samples = hnp.arrays(
    np.float32,
    st.integers(min_value=1, max_value=300),
    elements=st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False),
)
batches = st.builds(
    RawBatch,
    asset_id=idents,
    sensor=idents,
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    start_ns=st.integers(min_value=MIN_TIMESTAMP_NS, max_value=NOW),
    sample_rate_hz=st.floats(min_value=0.001, max_value=1e6),
    samples=finite_samples,
)


def _batch(*, samples: npt.NDArray[np.float32] | None = None) -> RawBatch:
    return RawBatch(
        asset_id="pump-1",
        sensor="vibration",
        seq=7,
        start_ns=NOW,
        sample_rate_hz=10_000.0,
        samples=np.linspace(-1, 1, 64, dtype=np.float32) if samples is None else samples,
    )


@given(batches)
def test_binary_round_trip(batch: RawBatch) -> None:
    assert decode_raw_batch(encode_raw_batch(batch), reference_ns=NOW) == batch


@given(batches)
def test_json_round_trip(batch: RawBatch) -> None:
    assert decode_raw_batch_json(encode_raw_batch_json(batch), reference_ns=NOW) == batch


def test_binary_is_compact_and_zero_copy() -> None:
    payload = encode_raw_batch(_batch(samples=np.zeros(4096, dtype=np.float32)))
    assert len(payload) == 36 + len("pump-1vibration") + 1 + 4 * 4096
    decoded = decode_raw_batch(payload)
    assert not decoded.samples.flags.writeable  # a view on the payload, not a copy


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_contract_error(payload: bytes) -> None:
    with contextlib.suppress(ContractError):
        decode_raw_batch(payload)
    with contextlib.suppress(ContractError):
        decode_raw_batch_json(payload)


def _replace_header(payload: bytes, fmt: str, offset: int, value: object) -> bytes:
    return payload[:offset] + struct.pack(fmt, value) + payload[offset + struct.calcsize(fmt) :]


GOOD = encode_raw_batch(_batch())


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (GOOD[:20], "payload"),  # truncated header
        (GOOD[:-3], "payload"),  # truncated body
        (GOOD + b"\0\0\0\0", "payload"),  # trailing bytes
        (b"\0" * (MAX_RAW_BATCH_BYTES + 1), "payload"),  # oversized
        (b"XXXX" + GOOD[4:], "magic"),
        (_replace_header(GOOD, "<B", 4, 9), "version"),  # unknown schema version
        (_replace_header(GOOD, "<I", 8, 0), "n_samples"),
        (_replace_header(GOOD, "<q", 12, 5), "start_ns"),  # far past
        (_replace_header(GOOD, "<q", 12, NOW + 30 * 24 * 3600 * NS_PER_S), "start_ns"),  # far future
        (_replace_header(GOOD, "<d", 20, float("nan")), "sample_rate_hz"),
        (_replace_header(GOOD, "<d", 20, -10.0), "sample_rate_hz"),
        (encode_raw_batch(_batch(samples=np.array([1.0, np.nan], dtype=np.float32))), "samples"),
        (encode_raw_batch(_batch(samples=np.array([np.inf], dtype=np.float32))), "samples"),
        (GOOD.replace(b"pump-1", b"pump/1"), "asset_id"),
    ],
    ids=[  # stable names: the payloads hold the time of collection, and pytest-xdist's workers must agree
        "truncated-header",
        "truncated-body",
        "trailing-bytes",
        "oversized",
        "bad-magic",
        "unknown-version",
        "no-samples",
        "far-past",
        "far-future",
        "nan-rate",
        "negative-rate",
        "nan-sample",
        "inf-sample",
        "bad-asset-id",
    ],
)
def test_bad_binary_payloads_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_raw_batch(payload)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_nonfinite_samples_pass_when_the_caller_counts_them() -> None:
    batch = _batch(samples=np.array([1.0, np.nan], dtype=np.float32))
    assert decode_raw_batch(encode_raw_batch(batch), allow_nonfinite=True) == batch


JSON_GOOD = encode_raw_batch_json(_batch())


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (JSON_GOOD[:30], "payload"),
        (JSON_GOOD.replace(b'"raw/1"', b'"raw/2"'), "kind"),
        (JSON_GOOD.replace(b'"seq":7', b'"seq":"7"'), "seq"),
        (JSON_GOOD.replace(b'"seq":7', b'"seq":-1'), "seq"),
        (JSON_GOOD.replace(b'"samples":[', b'"samples":[1e999,'), "samples[0]"),
        (JSON_GOOD.replace(b'"samples":[', b'"samples":[1e39,'), "samples"),  # overflows float32
        (JSON_GOOD.replace(b'"samples":[', b'"samples":[null,'), "samples[0]"),
        (JSON_GOOD.replace(b'"sample_rate_hz":10000.0', b'"sample_rate_hz":0'), "sample_rate_hz"),
        (JSON_GOOD.replace(str(NOW).encode(), b"12"), "start_ns"),
    ],
    ids=[
        "truncated",
        "unknown-kind",
        "seq-as-string",
        "negative-seq",
        "infinite-sample",
        "float32-overflow",
        "null-sample",
        "zero-rate",
        "far-past",
    ],
)
def test_bad_json_payloads_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_raw_batch_json(payload)
    assert caught.value.field == field
