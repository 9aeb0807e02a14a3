"""How a model travels from the cloud to a gateway: the signed text of a deployment and the chunk format.

A deployment (`shared.messages.ModelDeployment`) carries the manifest as text and an Ed25519 signature of
`signed_text(manifest_json, is_rollback)`: the manifest bytes for an ordinary deployment, and the same bytes
after a fixed prefix for a rollback order, so flipping `is_rollback` on a signed order breaks its signature.

The artifact is split into chunks, each published retained on `shared.topics.model_chunk(target, i)`. A chunk
is a fixed 16-byte header (magic `FWC1`, version, chunk count, index; big-endian uint32) and the data, so a
receiver can tell chunks of two deployments of one target apart while they overlap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.errors import ContractError

__all__ = [
    "CHUNK_HEADER_BYTES",
    "ROLLBACK_PREFIX",
    "Chunk",
    "decode_chunk",
    "encode_chunk",
    "signed_text",
    "split_artifact",
]

ROLLBACK_PREFIX = b"forewarn-rollback/1\n"
_MAGIC = b"FWC1"
_HEADER = struct.Struct(">4sIII")
CHUNK_HEADER_BYTES = _HEADER.size


def signed_text(manifest_json: str, *, is_rollback: bool) -> bytes:
    """The exact bytes a deployment's signature covers."""
    body = manifest_json.encode("utf-8")
    return ROLLBACK_PREFIX + body if is_rollback else body


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of an artifact: which deployment version it belongs to, and where it goes."""

    version: int
    chunk_count: int
    index: int
    data: bytes


def encode_chunk(chunk: Chunk) -> bytes:
    """Header and data of one chunk."""
    return _HEADER.pack(_MAGIC, chunk.version, chunk.chunk_count, chunk.index) + chunk.data


def decode_chunk(payload: bytes) -> Chunk:
    """Parse a chunk payload.

    Raises:
        ContractError: naming the header field that is wrong.
    """
    if len(payload) < CHUNK_HEADER_BYTES:
        raise ContractError("chunk", f"{len(payload)} bytes", f"at least {CHUNK_HEADER_BYTES} bytes")
    magic, version, count, index = _HEADER.unpack_from(payload)
    if magic != _MAGIC:
        raise ContractError("chunk.magic", magic, repr(_MAGIC))
    if version < 1:
        raise ContractError("chunk.version", version, ">= 1")
    if count < 1 or index >= count:
        raise ContractError("chunk.index", index, f"0 <= index < chunk_count ({count})")
    return Chunk(version=version, chunk_count=count, index=index, data=bytes(payload[CHUNK_HEADER_BYTES:]))


def split_artifact(artifact: bytes, *, version: int, chunk_bytes: int) -> list[Chunk]:
    """Split an artifact into chunks of at most `chunk_bytes` data bytes (at least one chunk).

    >>> [len(c.data) for c in split_artifact(b"x" * 10, version=1, chunk_bytes=4)]
    [4, 4, 2]
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be >= 1")
    pieces = [artifact[i : i + chunk_bytes] for i in range(0, len(artifact), chunk_bytes)] or [b""]
    return [
        Chunk(version=version, chunk_count=len(pieces), index=i, data=piece) for i, piece in enumerate(pieces)
    ]
