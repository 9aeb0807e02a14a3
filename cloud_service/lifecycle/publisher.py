"""Push a signed model to gateways: retained artifact chunks, then the retained signed deployment order.

Chunks go first, so a gateway that sees the order finds (or soon receives) every chunk; both are retained
per target, so a gateway that connects later, or reconnects, gets the current model without a resend.
Acknowledgements come back on `topics.deploy_ack(gateway)` as `DeploymentAck` messages; the ingest service
stores them in `deployment_acks`, from which the registry's per-gateway state is read (no second consumer).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from shared import topics
from shared.config import MqttSettings
from shared.errors import StorageError
from shared.messages import ModelDeployment, encode
from shared.model_transfer import encode_chunk, split_artifact
from shared.mqtt import connect, make_client

__all__ = ["DeploymentOrder", "build_order", "publish_order"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeploymentOrder:
    """Everything published for one deployment: the order message and its chunk payloads."""

    target: str
    version: int
    message: ModelDeployment
    chunks: tuple[bytes, ...]


def build_order(
    *,
    manifest_json: str,
    signature_b64: str,
    artifact: bytes,
    target: str,
    version: int,
    chunk_bytes: int,
    is_rollback: bool = False,
) -> DeploymentOrder:
    """The deployment message and chunk payloads of a signed model (nothing is published)."""
    chunks = split_artifact(artifact, version=version, chunk_bytes=chunk_bytes)
    message = ModelDeployment(
        target=target,
        version=version,
        manifest_json=manifest_json,
        signature_b64=signature_b64,
        chunk_count=len(chunks),
        artifact_bytes=len(artifact),
        is_rollback=is_rollback,
    )
    return DeploymentOrder(target, version, message, tuple(encode_chunk(chunk) for chunk in chunks))


def _wait_connected(client: mqtt.Client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise StorageError("mqtt", f"not connected to the broker within {timeout_s} s")
        time.sleep(0.01)


def publish_order(
    order: DeploymentOrder,
    settings: MqttSettings,
    *,
    client: mqtt.Client | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Publish the chunks, then the order, retained at QoS 1, and wait for the broker's acknowledgements.

    Args:
        order: what to publish.
        settings: the cloud broker (used when `client` is None: a short-lived connection is made).
        client: an already connected client to publish with, if any.
        timeout_s: bound on connecting and on every acknowledgement.

    Raises:
        StorageError: the broker could not be reached, or did not acknowledge in time.
    """
    own = client is None
    if client is None:
        client = make_client(settings, client_id=f"forewarn-publisher-{uuid.uuid4().hex[:12]}")
        connect(client, settings, clean_start=True, session_expiry_s=0)
        client.loop_start()
    try:
        _wait_connected(client, timeout_s)
        infos = [
            client.publish(topics.model_chunk(order.target, index), payload, qos=1, retain=True)
            for index, payload in enumerate(order.chunks)
        ]
        infos.append(
            client.publish(topics.model_deployment(order.target), encode(order.message), qos=1, retain=True)
        )
        for info in infos:
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise StorageError("mqtt", f"deployment of {order.target} v{order.version} not acknowledged")
        logger.info(
            "published %s v%d: %d chunk(s), %d bytes%s",
            order.target,
            order.version,
            len(order.chunks),
            order.message.artifact_bytes,
            " (rollback)" if order.message.is_rollback else "",
        )
    finally:
        if own:
            with contextlib.suppress(Exception):  # best effort: the messages are acknowledged already
                client.disconnect()
            client.loop_stop()
