"""Every decoder of outside input, fed random and mutated payloads: it returns a valid message or raises
`ContractError` (counted and kept by its caller), never anything else and never hangs."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forewarn.bench.messages import one_of_each
from shared.errors import ContractError
from shared.key_rotation import decode_rotation
from shared.messages import (
    decode_connector_status,
    decode_deployment,
    decode_event,
    decode_manifest,
    decode_uplink,
    decode_uplink_batch,
    encode,
)
from shared.model_transfer import Chunk, decode_chunk, encode_chunk
from shared.raw_batch import (
    RawBatch,
    decode_raw_batch,
    decode_raw_batch_json,
    encode_raw_batch,
    encode_raw_batch_json,
)
from shared.sparkplug import decode_payload
from shared.timebase import NS_PER_S, now_ns

Decoder = Callable[[bytes], object]

DECODERS: dict[str, Decoder] = {
    "raw_batch": decode_raw_batch,
    "raw_batch_json": decode_raw_batch_json,
    "uplink": decode_uplink,
    "uplink_batch": decode_uplink_batch,
    "event": decode_event,
    "deployment": decode_deployment,
    "manifest": decode_manifest,
    "connector_status": decode_connector_status,
    "chunk": decode_chunk,
    "key_rotation": decode_rotation,
    "sparkplug_payload": decode_payload,
}


def _raw_batch() -> RawBatch:
    return RawBatch(
        asset_id="pump-fz",
        sensor="vibration",
        seq=7,
        start_ns=now_ns() - NS_PER_S,
        sample_rate_hz=10_000.0,
        samples=np.linspace(-1, 1, 256, dtype=np.float32),
    )


def _seeds() -> list[bytes]:
    """Valid payloads of every kind, for mutation."""
    seeds = [encode(message) for message in one_of_each("gw-fz", "pump-fz")]
    seeds += [encode_raw_batch(_raw_batch()), encode_raw_batch_json(_raw_batch())]
    seeds.append(encode_chunk(Chunk(version=3, chunk_count=1, index=0, data=b"\x00" * 64)))
    return seeds


def _mutate(seed: bytes, data: st.DataObject) -> bytes:
    buffer = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        if not buffer:
            break
        at = data.draw(st.integers(0, len(buffer) - 1))
        if action == "flip":
            buffer[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del buffer[at : at + data.draw(st.integers(1, 64))]
        elif action == "insert":
            buffer[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            buffer[at:] = data.draw(st.sampled_from(_SEEDS))[at:]
    return bytes(buffer)


_SEEDS = _seeds()


def _decodes_or_refuses(decoder: Decoder, payload: bytes) -> None:
    with contextlib.suppress(ContractError):
        decoder(payload)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=4096))
def test_random_bytes_are_decoded_or_refused(name: str, payload: bytes) -> None:
    _decodes_or_refuses(DECODERS[name], payload)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_payloads_are_decoded_or_refused(name: str, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(_SEEDS))
    _decodes_or_refuses(DECODERS[name], _mutate(seed, data))


@pytest.mark.parametrize("name", ["uplink", "uplink_batch"])
def test_a_zlib_bomb_is_refused_without_inflating_it(name: str) -> None:
    bomb = zlib.compress(b"\x00" * (256 << 20), 9)  # 256 MiB of zeros in about 250 KiB
    with pytest.raises(ContractError):
        DECODERS[name](bomb)
