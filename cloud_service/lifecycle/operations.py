"""What an operator (or automatic approval) does with a registered model: approve, deploy, roll back.

Each operation is one unit of work on the caller's connection: it commits when it has succeeded (after
the broker acknowledged, for a push) and leaves the transaction to the caller's rollback when it fails.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_service.lifecycle import registry
from cloud_service.lifecycle.publisher import DeploymentOrder, build_order, publish_order
from cloud_service.lifecycle.signing import sign_manifest, signature_for_current_key
from shared.config import MqttSettings
from shared.errors import StorageError
from shared.messages import decode_manifest, encode
from shared.timebase import now_ns

__all__ = ["approve", "deploy", "rollback", "rollback_order"]

logger = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


def _model(conn: Conn, target: str, version: int) -> registry.ModelRecord:
    record = registry.get_model(conn, target, version, with_artifact=True)
    if record is None:
        raise StorageError("models", f"no model {target} v{version}")
    return record


def approve(conn: Conn, target: str, version: int, *, reason: str = "approved") -> None:
    """Approve a candidate for deployment (committed).

    Raises:
        StorageError: no such model, or it is not a candidate (a rejected model is never approved).
    """
    record = _model(conn, target, version)
    if record.status != "candidate":
        raise StorageError("models", f"{target} v{version} is {record.status}, not a candidate")
    registry.set_status(conn, target, version, "approved", reason)
    conn.commit()


def deploy(
    conn: Conn,
    mqtt: MqttSettings,
    target: str,
    version: int,
    *,
    chunk_bytes: int,
    timeout_s: float = 30.0,
    private_key: Ed25519PrivateKey | None = None,
) -> DeploymentOrder:
    """Push an approved (or retired, or already deployed) model to the gateways and mark it deployed
    (committed). With `private_key`, a model signed by a key rotated out since is re-signed with it.

    Raises:
        StorageError: no such model, it is not deployable, or the broker did not take it.
    """
    record = _model(conn, target, version)
    if record.status not in ("approved", "deployed", "retired"):
        raise StorageError("models", f"{target} v{version} is {record.status}; approve it first")
    signature = record.signature_b64
    if private_key is not None:
        signature = signature_for_current_key(private_key, record.manifest_json, signature)
    order = build_order(
        manifest_json=record.manifest_json,
        signature_b64=signature,
        artifact=record.artifact,
        target=target,
        version=version,
        chunk_bytes=chunk_bytes,
    )
    publish_order(order, mqtt, timeout_s=timeout_s)
    previous = registry.mark_deployed(conn, target, version, reason="pushed to gateways")
    conn.commit()
    logger.info("deployed %s v%d (previous: %s)", target, version, previous)
    return order


def rollback_order(
    record: registry.ModelRecord, private_key: Ed25519PrivateKey, *, chunk_bytes: int
) -> DeploymentOrder:
    """A signed rollback order for a model: its manifest re-issued now, signed as a rollback.

    The fresh `created_ns` lets gateways refuse an old rollback order replayed later.
    """
    manifest = msgspec.structs.replace(decode_manifest(record.manifest_json), created_ns=now_ns())
    manifest_json = encode(manifest).decode()
    return build_order(
        manifest_json=manifest_json,
        signature_b64=sign_manifest(private_key, manifest_json, is_rollback=True),
        artifact=record.artifact,
        target=record.target,
        version=record.version,
        chunk_bytes=chunk_bytes,
        is_rollback=True,
    )


def rollback(
    conn: Conn,
    mqtt: MqttSettings,
    private_key: Ed25519PrivateKey,
    target: str,
    *,
    to_version: int | None = None,
    chunk_bytes: int,
    timeout_s: float = 30.0,
) -> DeploymentOrder:
    """Send the gateways back to an older model (default: the newest retired one) with a signed order
    (committed).

    Raises:
        StorageError: nothing is deployed, no older model to go back to, or the broker did not take it.
    """
    current = registry.deployed_model(conn, target)
    if current is None:
        raise StorageError("models", f"nothing is deployed for {target}")
    if to_version is None:
        older = [m for m in registry.list_models(conn, target=target) if m.status == "retired"]
        older = [m for m in older if m.version < current.version]
        if not older:
            raise StorageError("models", f"{target} has no retired model older than v{current.version}")
        to_version = older[0].version
    if to_version >= current.version:
        raise StorageError("models", f"v{to_version} is not older than the deployed v{current.version}")
    record = _model(conn, target, to_version)
    if record.status == "rejected":
        raise StorageError("models", f"{target} v{to_version} was rejected: {record.reason}")
    order = rollback_order(record, private_key, chunk_bytes=chunk_bytes)
    publish_order(order, mqtt, timeout_s=timeout_s)
    registry.set_status(conn, target, current.version, "retired", f"rolled back to v{to_version}")
    registry.mark_deployed(conn, target, to_version, reason=f"rollback from v{current.version}")
    conn.commit()
    logger.warning("rolled %s back from v%d to v%d", target, current.version, to_version)
    return order
