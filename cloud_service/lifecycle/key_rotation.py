"""Rotating the deployment signing key: a new key pair, announced to gateways under the old key.

`rotate_keys(directory)` replaces the key pair in a `forewarn keys init` directory by a new one, after
signing a `shared.key_rotation.KeyLink` to the new public key with the old private key, and appends the
link to the chain in `forewarn-signing.chain.json`. The old pair moves to `retired/`. `publish_rotation`
publishes the chain retained on `shared.topics.signing_key()`, where every gateway (online now or later)
finds it and moves its trust along it (`edge_agent.deployment.trust`). Publish the chain before pushing
models signed with the new key; a gateway that sees such an order first retries it after the rotation.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_service.lifecycle.signing import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    load_private_key,
    public_key_pem,
)
from shared import topics
from shared.atomic_files import write_atomically
from shared.config import MqttSettings
from shared.errors import ConfigError, ContractError, StorageError
from shared.key_rotation import MAX_LINKS, KeyLink, KeyRotation, decode_rotation, encode_rotation, link_text
from shared.mqtt import connect, make_client

__all__ = ["CHAIN_FILE", "make_link", "publish_rotation", "read_chain", "rotate_keys"]

logger = logging.getLogger(__name__)

CHAIN_FILE = "forewarn-signing.chain.json"
RETIRED_DIR = "retired"


def make_link(previous: Ed25519PrivateKey, next_key: Ed25519PublicKey, *, issued_ns: int) -> KeyLink:
    """The link that hands trust from `previous` to `next_key`, signed by `previous`."""
    raw = next_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    unsigned = KeyLink(
        public_key_b64=base64.b64encode(raw).decode("ascii"), issued_ns=issued_ns, signature_b64=""
    )
    signature = previous.sign(link_text(unsigned))
    return KeyLink(
        public_key_b64=unsigned.public_key_b64,
        issued_ns=issued_ns,
        signature_b64=base64.b64encode(signature).decode("ascii"),
    )


def read_chain(directory: Path) -> list[KeyLink]:
    """The rotations made in `directory` so far (none yet: empty).

    Raises:
        ConfigError: the chain file is unreadable or invalid.
    """
    path = directory / CHAIN_FILE
    try:
        return list(decode_rotation(path.read_bytes()).links)
    except FileNotFoundError:
        return []
    except (OSError, ContractError) as exc:
        raise ConfigError("keys rotate", str(path), f"must be a valid key-rotation chain: {exc}") from exc


def rotate_keys(directory: Path, *, clock: Callable[[], int] = time.time_ns) -> KeyRotation:
    """Replace the key pair in `directory` by a new one announced under the old; returns the whole chain.

    Raises:
        ConfigError: no key pair there, or an invalid chain file.
    """
    old = load_private_key(directory / PRIVATE_KEY_FILE)
    chain = read_chain(directory)
    issued_ns = max(clock(), chain[-1].issued_ns + 1 if chain else 0)
    new = Ed25519PrivateKey.generate()
    rotation = KeyRotation(links=[*chain, make_link(old, new.public_key(), issued_ns=issued_ns)][-MAX_LINKS:])
    private_pem = new.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    staged = {PRIVATE_KEY_FILE: private_pem, PUBLIC_KEY_FILE: public_key_pem(new)}
    for name, data in staged.items():  # the new pair first: a crash leaves the old pair in place
        write_atomically(directory / f"{name}.next", data)  # a mkstemp file: mode 0600
    write_atomically(directory / CHAIN_FILE, encode_rotation(rotation))
    (directory / CHAIN_FILE).chmod(0o644)
    retired = directory / RETIRED_DIR
    retired.mkdir(mode=0o700, exist_ok=True)
    for name in staged:  # the old pair is kept, never overwritten: one per rotation
        (directory / name).replace(retired / f"{issued_ns}-{name}")
        (directory / f"{name}.next").replace(directory / name)
    (directory / PUBLIC_KEY_FILE).chmod(0o644)
    return rotation


def publish_rotation(rotation: KeyRotation, settings: MqttSettings, *, timeout_s: float = 30.0) -> None:
    """Publish the chain retained at QoS 1 on `topics.signing_key()` and wait for the broker's ack.

    Raises:
        StorageError: the broker could not be reached or did not acknowledge in time.
    """
    client = make_client(settings, client_id=f"forewarn-keys-{uuid.uuid4().hex[:12]}")
    connect(client, settings, clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise StorageError("mqtt", f"not connected to the broker within {timeout_s} s")
            time.sleep(0.01)
        info = client.publish(topics.signing_key(), encode_rotation(rotation), qos=1, retain=True)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise StorageError("mqtt", "signing-key rotation not acknowledged")
        logger.info("published the signing-key chain (%d link(s))", len(rotation.links))
    finally:
        client.disconnect()
        client.loop_stop()
