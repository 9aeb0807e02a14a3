"""The receiver's own checks of a deployment order, before the model store's checks of the artifact.

Each check raises `RefusedError` naming itself (`signature`, `size`, `manifest`, `version`, `features`);
the receiver acknowledges the refusal with that name first in the reason.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.model_store import LoadedModel
from shared.errors import ConfigError, ContractError
from shared.messages import ModelDeployment, ModelManifest, decode_manifest
from shared.model_transfer import signed_text

__all__ = [
    "RefusedError",
    "check_announced_size",
    "check_artifact",
    "check_signature",
    "check_version",
    "load_public_key",
    "order_manifest",
]


class RefusedError(Exception):
    """A deployment is refused; `check` names the failed check.

    Args:
        check: the check's name (the acknowledgement's reason starts with it).
        detail: what was wrong.
    """

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


def load_public_key(path: Path | None) -> Ed25519PublicKey:
    """Read the Ed25519 public key deployments are verified with.

    Args:
        path: the PEM file (`deployment.public_key`).

    Returns:
        The key.

    Raises:
        ConfigError: not set, missing, unreadable, or not an Ed25519 public key.
    """
    if path is None:
        raise ConfigError("edge.deployment.public_key", "", "must name the deployment public key file")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError("edge.deployment.public_key", str(path), f"cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError("edge.deployment.public_key", str(path), "must be a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("edge.deployment.public_key", str(path), "must be an Ed25519 public key")
    return key


def check_signature(public_key: Ed25519PublicKey, order: ModelDeployment) -> None:
    """The order's signature covers its manifest text and its kind (deployment or rollback).

    Raises:
        RefusedError: `signature`.
    """
    try:
        signature = base64.b64decode(order.signature_b64, validate=True)
        public_key.verify(signature, signed_text(order.manifest_json, is_rollback=order.is_rollback))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise RefusedError("signature", "not signed by the configured deployment key") from exc


def check_announced_size(order: ModelDeployment, max_bytes: int) -> None:
    """The artifact the order announces is at most `max_bytes`.

    Raises:
        RefusedError: `size`.
    """
    if order.artifact_bytes > max_bytes:
        raise RefusedError("size", f"{order.artifact_bytes} bytes > {max_bytes}")


def order_manifest(order: ModelDeployment) -> ModelManifest:
    """The order's manifest, which must name the order's target and version.

    Raises:
        RefusedError: `manifest`.
    """
    try:
        manifest = decode_manifest(order.manifest_json)
    except ContractError as exc:
        raise RefusedError("manifest", str(exc)) from exc
    if manifest.target != order.target or manifest.version != order.version:
        raise RefusedError(
            "manifest",
            f"manifest names {manifest.target} v{manifest.version}, "
            f"the order {order.target} v{order.version}",
        )
    return manifest


def check_version(order: ModelDeployment, manifest: ModelManifest, active: LoadedModel | None) -> int | None:
    """The running version, if the order may replace it.

    An ordinary order must be newer. A rollback order (signed as such) may name any version, but must
    have been issued after the running model's manifest, so an old order replayed later is refused;
    on a gateway without a model, or one older than the order's, it simply installs that version.

    Args:
        order: the deployment order.
        manifest: its manifest.
        active: the model serving the order's target now, if any.

    Returns:
        The running version (None without a model).

    Raises:
        RefusedError: `version`.
    """
    current = active.manifest.version if active is not None else None
    if order.is_rollback:
        if active is not None and manifest.created_ns <= active.manifest.created_ns:
            raise RefusedError("version", "rollback order is older than the model running now (a replay)")
    elif current is not None and manifest.version <= current:
        raise RefusedError("version", f"v{manifest.version} is not newer than the running v{current}")
    return current


def check_artifact(
    order: ModelDeployment, manifest: ModelManifest, artifact: bytes, *, feature_spec: str | None
) -> None:
    """The received artifact has the announced size, and the manifest the pipeline's feature spec.

    Args:
        order: the deployment order.
        manifest: its manifest.
        artifact: the reassembled artifact.
        feature_spec: the spec id the pipeline computes for the target (None: not checked).

    Raises:
        RefusedError: `size` or `features`.
    """
    if len(artifact) != order.artifact_bytes:
        raise RefusedError(
            "size", f"received {len(artifact)} bytes, the order announced {order.artifact_bytes}"
        )
    if feature_spec is not None and manifest.feature_spec != feature_spec:
        raise RefusedError(
            "features", f"feature spec {manifest.feature_spec!r} is not the pipeline's {feature_spec!r}"
        )
