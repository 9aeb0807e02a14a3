"""The deployment key a gateway trusts: the configured one, or the newest reached through signed rotations.

`deployment.public_key` is the root of trust. A `shared.key_rotation.KeyRotation` announcement moves the
trust along its chain, one link at a time, only through links signed by the key trusted at that point and
issued later than it. The key reached is kept in `deployment.key_state_file` as
`{"root": <b64>, "current": <b64>, "issued_ns": <int>}`, replaced atomically; a state file written under
another root (the operator configured a new `public_key`) is ignored, so re-provisioning always wins.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.atomic_files import write_atomically
from shared.errors import ContractError
from shared.key_rotation import KeyRotation, link_text, public_key_bytes

__all__ = ["RotationResult", "TrustedKey"]

logger = logging.getLogger(__name__)


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What one announcement did: links followed, links that were neither followed nor already behind us."""

    followed: int
    rejected: int


class TrustedKey:
    """The key deployments are verified with now; `apply` follows signed rotations.

    Args:
        root: the configured public key (`deployment.public_key`).
        state_file: where the key reached by rotation is kept across restarts.
    """

    def __init__(self, root: Ed25519PublicKey, state_file: Path) -> None:
        self.state_file = state_file
        self._root = _raw(root)
        self.key = root
        self.issued_ns = 0
        self._load()

    @property
    def fingerprint(self) -> str:
        """The trusted key's raw bytes in base64 (shown in logs and tests)."""
        return base64.b64encode(_raw(self.key)).decode("ascii")

    def apply(self, rotation: KeyRotation) -> RotationResult:
        """Follow every link of `rotation` that the key trusted at that point signed; persist the result.

        A link issued no later than the trusted key is behind us (already followed, or an older branch)
        and ignored; a later link with a bad signature is rejected and counted.
        """
        followed = rejected = 0
        for link in rotation.links:
            if link.issued_ns <= self.issued_ns:
                continue
            try:
                self.key.verify(base64.b64decode(link.signature_b64, validate=True), link_text(link))
                next_key = Ed25519PublicKey.from_public_bytes(public_key_bytes(link))
            except (InvalidSignature, ContractError, ValueError):
                rejected += 1
                continue
            self.key, self.issued_ns = next_key, link.issued_ns
            followed += 1
        if followed:
            self._save()
        return RotationResult(followed, rejected)

    def _save(self) -> None:
        state = {
            "root": base64.b64encode(self._root).decode("ascii"),
            "current": self.fingerprint,
            "issued_ns": self.issued_ns,
        }
        try:
            write_atomically(self.state_file, json.dumps(state).encode(), make_parents=True)
        except OSError as exc:  # trust still moved in memory; the announcement is retained and seen again
            logger.error("cannot write the signing-key state %s: %s", self.state_file, exc)

    def _load(self) -> None:
        try:
            state = json.loads(self.state_file.read_bytes())
            if base64.b64decode(state["root"]) != self._root:
                logger.warning("signing-key state %s is for another root key; ignored", self.state_file)
                return
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(state["current"]))
            issued_ns = int(state["issued_ns"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error(
                "signing-key state %s is unreadable (%s); trusting the configured key", self.state_file, exc
            )
            return
        self.key, self.issued_ns = key, issued_ns
