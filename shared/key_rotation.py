"""Signing-key rotation: the announcement that hands a gateway's trust from one deployment key to the next.

The cloud publishes one retained `KeyRotation` on `shared.topics.signing_key()`: the chain of every
rotation so far, oldest first. Each link names the next Ed25519 public key and carries a signature, by the
key before it, over `link_text(link)`: a fixed prefix, the raw 32-byte public key and the issue time. The
prefix keeps a link's signature from ever being taken for a deployment's (whose signed text is a manifest
or the rollback prefix), and the issue time orders the links, so an announcement replayed later never
moves a gateway back. A gateway walks the chain from the key it trusts now and ends at the newest key it
can reach through valid links; a link no trusted key signed moves nothing.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from shared.errors import ContractError

__all__ = [
    "MAX_LINKS",
    "KeyLink",
    "KeyRotation",
    "decode_rotation",
    "encode_rotation",
    "link_text",
    "public_key_bytes",
]

ROTATION_PREFIX = b"forewarn-key-rotation/1\n"
MAX_LINKS = 64
MAX_ROTATION_BYTES = 64 * 1024
_ED25519_PUBLIC_BYTES = 32
_TIME = struct.Struct(">Q")

Base64 = Annotated[str, Meta(max_length=256, pattern=r"^[A-Za-z0-9+/=]*$")]


class KeyLink(Struct, frozen=True, kw_only=True):
    """One rotation: the next public key (raw, base64), its issue time, the previous key's signature."""

    public_key_b64: Base64
    issued_ns: Annotated[int, Meta(ge=0)]
    signature_b64: Base64


class KeyRotation(Struct, frozen=True, kw_only=True, tag_field="kind", tag="key-rotation/1"):
    """Every rotation of the deployment signing key so far, oldest first."""

    links: Annotated[list[KeyLink], Meta(min_length=1, max_length=MAX_LINKS)]


_DECODER = msgspec.json.Decoder(KeyRotation)
_ENCODER = msgspec.json.Encoder()


def public_key_bytes(link: KeyLink) -> bytes:
    """The raw Ed25519 public key a link names.

    Raises:
        ContractError: not base64 of 32 bytes.
    """
    try:
        raw = base64.b64decode(link.public_key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError("public_key_b64", link.public_key_b64[:40], "base64") from exc
    if len(raw) != _ED25519_PUBLIC_BYTES:
        raise ContractError("public_key_b64", f"{len(raw)} bytes", f"{_ED25519_PUBLIC_BYTES} bytes")
    return raw


def link_text(link: KeyLink) -> bytes:
    """The exact bytes the previous key signs for `link`."""
    return ROTATION_PREFIX + public_key_bytes(link) + _TIME.pack(link.issued_ns)


def encode_rotation(rotation: KeyRotation) -> bytes:
    """The announcement's JSON."""
    return _ENCODER.encode(rotation)


def decode_rotation(payload: bytes) -> KeyRotation:
    """Parse an announcement.

    Raises:
        ContractError: too large, not JSON, or not a valid `KeyRotation`.
    """
    if len(payload) > MAX_ROTATION_BYTES:
        raise ContractError("payload", len(payload), f"at most {MAX_ROTATION_BYTES} bytes")
    try:
        return _DECODER.decode(payload)
    except msgspec.ValidationError as exc:
        raise ContractError("key_rotation", str(exc), "a valid key-rotation/1 message") from exc
    except msgspec.DecodeError as exc:
        raise ContractError("payload", payload[:40], "valid JSON") from exc
