"""Ed25519 keys and signatures for model deployments (the cloud side; gateways hold the public key only).

Keys are stored as PEM files: the private key (PKCS#8, unencrypted, mode 0600) and the public key
(SubjectPublicKeyInfo). `sign_deployment_text` signs the exact bytes of
`shared.model_transfer.signed_text(manifest_json, is_rollback=...)`; the edge agent verifies them in
`edge_agent.deployment` with the public key.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import ConfigError
from shared.model_transfer import signed_text

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "KeyPair",
    "init_keys",
    "load_private_key",
    "public_key_pem",
    "sign_manifest",
    "signature_for_current_key",
    "verify_manifest",
]

PRIVATE_KEY_FILE = "forewarn-signing.key"
PUBLIC_KEY_FILE = "forewarn-signing.pub"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """Where `init_keys` wrote a key pair."""

    private_key: Path
    public_key: Path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` (never following or replacing an existing file) and write `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(mode)


def init_keys(directory: Path) -> KeyPair:
    """Create a new Ed25519 key pair in `directory` (created if needed); never overwrites a key.

    Raises:
        ConfigError: a key file already exists there.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE)
    for path in (pair.private_key, pair.public_key):
        if path.exists():
            raise ConfigError(
                "keys init --out", str(directory), f"{path.name} exists; refusing to overwrite it"
            )
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(pair.private_key, private_pem, 0o600)
    _write_new(pair.public_key, public_key_pem(private), 0o644)
    return pair


def public_key_pem(private: Ed25519PrivateKey) -> bytes:
    """The PEM text of a private key's public half."""
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file.

    Raises:
        ConfigError: the file is missing, unreadable, or not an unencrypted Ed25519 private key.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError("lifecycle.signing_key", str(path), f"cannot be read: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "lifecycle.signing_key", str(path), "must be an unencrypted PEM private key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("lifecycle.signing_key", str(path), "must be an Ed25519 private key")
    return key


def sign_manifest(private: Ed25519PrivateKey, manifest_json: str, *, is_rollback: bool = False) -> str:
    """The base64 Ed25519 signature of a deployment's signed text."""
    signature = private.sign(signed_text(manifest_json, is_rollback=is_rollback))
    return base64.b64encode(signature).decode("ascii")


def verify_manifest(
    public: Ed25519PublicKey, manifest_json: str, signature_b64: str, *, is_rollback: bool = False
) -> bool:
    """Whether `signature_b64` signs the deployment's text (a cloud-side self-check before publishing)."""
    try:
        public.verify(
            base64.b64decode(signature_b64, validate=True),
            signed_text(manifest_json, is_rollback=is_rollback),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_for_current_key(private: Ed25519PrivateKey, manifest_json: str, signature_b64: str) -> str:
    """`signature_b64` if `private` made it, else a fresh signature by `private`.

    A model registered before a key rotation carries the retired key's signature, which rotated gateways
    refuse; pushing it re-signs the same manifest text with the current key.
    """
    if verify_manifest(private.public_key(), manifest_json, signature_b64):
        return signature_b64
    return sign_manifest(private, manifest_json)
