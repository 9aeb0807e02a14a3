"""Raw sensor sample batches and their binary and JSON encodings.

The binary form is the hot path: a fixed little-endian header, the asset and sensor names, padding to a
multiple of 4 bytes, then float32 samples read with `numpy.frombuffer` without a copy::

    offset size field
    0      4    magic b"FWRB"
    4      1    version (1)
    5      1    flags (0, reserved)
    6      1    asset_id length A
    7      1    sensor length S
    8      4    n_samples (uint32)
    12     8    start_ns (int64, UTC epoch ns of the first sample)
    20     8    sample_rate_hz (float64)
    28     8    seq (uint64, per asset and sensor)
    36     A+S  asset_id, sensor (ASCII)
    ...    pad  zero bytes to a multiple of 4
    ...    4n   samples (float32, little-endian)

The JSON form (`{"kind": "raw/1", ...}`) exists for tools and debugging; it cannot carry NaN samples.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from dataclasses import dataclass
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt

from shared.errors import ContractError
from shared.timebase import NS_PER_S, check_time_ns
from shared.topics import IDENT_PATTERN

__all__ = [
    "MAX_RAW_BATCH_BYTES",
    "MAX_SAMPLES_PER_BATCH",
    "MAX_SAMPLE_RATE_HZ",
    "RawBatch",
    "decode_raw_batch",
    "decode_raw_batch_json",
    "encode_raw_batch",
    "encode_raw_batch_json",
]

MAGIC = b"FWRB"
VERSION = 1
MAX_SAMPLES_PER_BATCH = 1 << 20
MAX_SAMPLE_RATE_HZ = 10_000_000.0
_HEADER = struct.Struct("<4sBBBBIqdQ")
MAX_RAW_BATCH_BYTES = _HEADER.size + 2 * 64 + 3 + 4 * MAX_SAMPLES_PER_BATCH
_IDENT = re.compile(IDENT_PATTERN.encode())
_FLOAT32_LE = np.dtype("<f4")


@dataclass(frozen=True, slots=True, eq=False)
class RawBatch:
    """Consecutive samples of one sensor of one asset.

    Attributes:
        asset_id: the asset the sensor is mounted on.
        sensor: the sensor's name on that asset (`vibration`, `temperature`, ...).
        seq: sequence number of the batch, per asset and sensor, for gap and duplicate detection.
        start_ns: UTC epoch ns of the first sample.
        sample_rate_hz: samples per second.
        samples: float32 samples, read-only.
    """

    asset_id: str
    sensor: str
    seq: int
    start_ns: int
    sample_rate_hz: float
    samples: npt.NDArray[np.float32]

    @property
    def end_ns(self) -> int:
        """UTC epoch ns just after the last sample."""
        return self.start_ns + round(len(self.samples) * NS_PER_S / self.sample_rate_hz)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawBatch):
            return NotImplemented
        return (
            (self.asset_id, self.sensor, self.seq, self.start_ns, self.sample_rate_hz)
            == (other.asset_id, other.sensor, other.seq, other.start_ns, other.sample_rate_hz)
            and self.samples.shape == other.samples.shape
            and bool(np.array_equal(self.samples, other.samples, equal_nan=True))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking array payload: not hashable


def _padding(n: int) -> int:
    return (-n) % 4


def encode_raw_batch(batch: RawBatch) -> bytes:
    """Encode a batch in the binary form."""
    asset = batch.asset_id.encode("ascii")
    sensor = batch.sensor.encode("ascii")
    samples = np.ascontiguousarray(batch.samples, dtype=_FLOAT32_LE)
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        0,
        len(asset),
        len(sensor),
        len(samples),
        batch.start_ns,
        batch.sample_rate_hz,
        batch.seq,
    )
    pad = b"\0" * _padding(len(asset) + len(sensor))
    return b"".join((header, asset, sensor, pad, samples.tobytes()))


@functools.lru_cache(maxsize=8192)
def _ident(field: str, raw: bytes) -> str:
    if not _IDENT.match(raw):
        raise ContractError(field, raw, f"an identifier matching {IDENT_PATTERN}")
    return raw.decode("ascii")


def _check_rate(rate: float) -> float:
    if not (math.isfinite(rate) and 0.0 < rate <= MAX_SAMPLE_RATE_HZ):
        raise ContractError("sample_rate_hz", rate, f"a finite rate in (0, {MAX_SAMPLE_RATE_HZ:g}]")
    return rate


def _check_finite(samples: npt.NDArray[np.float32]) -> None:
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - np.count_nonzero(finite))
        raise ContractError("samples", f"{bad} non-finite of {samples.size}", "finite samples")


def decode_raw_batch(
    payload: bytes, *, allow_nonfinite: bool = False, reference_ns: int | None = None
) -> RawBatch:
    """Decode and validate a binary raw batch.

    Args:
        payload: the message body.
        allow_nonfinite: accept NaN/inf samples (a caller that counts them itself); rejected by default.
        reference_ns: "now" for the future-timestamp check (default: the clock).

    Raises:
        ContractError: naming the first field that breaks the contract.
    """
    size = len(payload)
    if size > MAX_RAW_BATCH_BYTES:
        raise ContractError("payload", f"{size} bytes", f"at most {MAX_RAW_BATCH_BYTES} bytes")
    if size < _HEADER.size:
        raise ContractError("payload", f"{size} bytes", f"at least the {_HEADER.size}-byte header")
    magic, version, _flags, asset_len, sensor_len, n, start_ns, rate, seq = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise ContractError("magic", magic, f"{MAGIC!r} (a binary raw batch)")
    if version != VERSION:
        raise ContractError("version", version, f"raw batch version {VERSION}")
    names_end = _HEADER.size + asset_len + sensor_len
    body_start = names_end + _padding(asset_len + sensor_len)
    expected_size = body_start + 4 * n
    if n == 0 or n > MAX_SAMPLES_PER_BATCH:
        raise ContractError("n_samples", n, f"1 to {MAX_SAMPLES_PER_BATCH} samples")
    if size != expected_size:
        raise ContractError("payload", f"{size} bytes", f"{expected_size} bytes for {n} samples")
    asset_id = _ident("asset_id", bytes(payload[_HEADER.size : _HEADER.size + asset_len]))
    sensor = _ident("sensor", bytes(payload[_HEADER.size + asset_len : names_end]))
    samples = np.frombuffer(payload, dtype=_FLOAT32_LE, count=n, offset=body_start)
    if not allow_nonfinite:
        _check_finite(samples)
    return RawBatch(
        asset_id=asset_id,
        sensor=sensor,
        seq=seq,
        start_ns=check_time_ns("start_ns", start_ns, reference_ns=reference_ns),
        sample_rate_hz=_check_rate(rate),
        samples=samples,
    )


_Ident = Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN)]


class _RawBatchJson(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="raw/1"):
    asset_id: _Ident
    sensor: _Ident
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    start_ns: int
    sample_rate_hz: Annotated[float, msgspec.Meta(gt=0.0, le=MAX_SAMPLE_RATE_HZ)]
    samples: Annotated[list[float], msgspec.Meta(min_length=1, max_length=MAX_SAMPLES_PER_BATCH)]


_JSON_DECODER = msgspec.json.Decoder(_RawBatchJson)
_JSON_ENCODER = msgspec.json.Encoder()
_MAX_JSON_BYTES = 32 * MAX_SAMPLES_PER_BATCH


def encode_raw_batch_json(batch: RawBatch) -> bytes:
    """Encode a batch as JSON (tools and debugging; NaN samples become null and will not decode)."""
    return _JSON_ENCODER.encode(
        _RawBatchJson(
            asset_id=batch.asset_id,
            sensor=batch.sensor,
            seq=batch.seq,
            start_ns=batch.start_ns,
            sample_rate_hz=batch.sample_rate_hz,
            samples=batch.samples.tolist(),
        )
    )


def decode_raw_batch_json(payload: bytes, *, reference_ns: int | None = None) -> RawBatch:
    """Decode and validate a JSON raw batch.

    Raises:
        ContractError: naming the first field that breaks the contract.
    """
    if len(payload) > _MAX_JSON_BYTES:
        raise ContractError("payload", f"{len(payload)} bytes", f"at most {_MAX_JSON_BYTES} bytes")
    try:
        message = _JSON_DECODER.decode(payload)
    except msgspec.ValidationError as exc:
        raise ContractError.from_validation(exc, payload) from exc
    except msgspec.DecodeError as exc:
        raise ContractError("payload", bytes(payload[:40]), "valid JSON") from exc
    with np.errstate(over="ignore"):  # values beyond float32's range become inf and are rejected next
        samples = np.asarray(message.samples, dtype=np.float32)
    _check_finite(samples)
    samples.flags.writeable = False
    return RawBatch(
        asset_id=message.asset_id,
        sensor=message.sensor,
        seq=message.seq,
        start_ns=check_time_ns("start_ns", message.start_ns, reference_ns=reference_ns),
        sample_rate_hz=message.sample_rate_hz,
        samples=samples,
    )
