"""Attacks on model deployment, end to end through the real broker, and signing-key rotation.

Already covered in test_lifecycle_deployment: a tampered artifact (`sha256`), a wrong key (`signature`), an
older version signed properly (`version`), golden pairs the artifact does not reproduce (`golden`), a
deployment re-labelled as a rollback (`signature`), and a feature spec refused by a receiver called
directly. Here: an unsigned order, orders whose manifest does not match the order or the artifact, the
feature-spec mismatch over the broker, a byte-exact replay of an older order, a chunk stream that never
completes, and key rotation. Every refusal is acknowledged with its check's name, and the running model
keeps scoring exactly as before.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_service.lifecycle.key_rotation import make_link, publish_rotation, read_chain, rotate_keys
from cloud_service.lifecycle.publisher import DeploymentOrder, build_order, publish_order
from cloud_service.lifecycle.signing import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    init_keys,
    load_private_key,
    sign_manifest,
    signature_for_current_key,
    verify_manifest,
)
from cloud_service.modeling import ModelArtifact, synthetic_features
from edge_agent.deployment import DeploymentClient, DeploymentReceiver, DeploymentSettings
from edge_agent.deployment.trust import TrustedKey
from edge_agent.deployment.verification import load_public_key
from edge_agent.model_store import ModelStore
from edge_agent.settings import ModelSettings
from forewarn import keys_cmd
from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.features import DEFAULT_SPEC
from shared.key_rotation import KeyRotation
from shared.messages import DeploymentAck, ModelManifest, encode
from shared.mqtt import make_client
from tests.test_lifecycle_deployment import NAMES, make_model, mqtt_settings

PROBE = synthetic_features(8, spec=DEFAULT_SPEC, seed=5)


class Gateway:
    """A deployment receiver on the broker with its own store, recording its acknowledgements."""

    def __init__(
        self, broker: MosquittoServer, directory: Path, gateway_id: str, target: str, **settings: object
    ) -> None:
        self.directory = directory
        self.target = target
        self.acks: list[DeploymentAck] = []
        self.receiver = DeploymentReceiver(
            settings=DeploymentSettings.model_validate(
                {
                    "state_file": directory / "deployments.json",
                    "public_key": directory / "root.pub",
                    **settings,
                }
            ),
            store=ModelStore(ModelSettings(store_dir=directory / "models")),
            gateway_id=gateway_id,
            targets=[target],
            expected_features={target: NAMES},
            expected_specs={target: DEFAULT_SPEC.spec_id},
        )
        self.receiver.add_ack_listener(self.acks.append)  # list.append is atomic: no lock needed
        self.client = DeploymentClient(
            settings=mqtt_settings(broker), receiver=self.receiver, client_id=gateway_id
        )
        self.client.start()
        wait_until(lambda: self.client.is_connected, timeout_s=10)

    def ack(self, version: int, timeout_s: float = 10.0) -> DeploymentAck:
        return wait_until(
            lambda: next((a for a in reversed(self.acks) if a.version == version), None), timeout_s=timeout_s
        )

    def active_version(self) -> int | None:
        active = self.receiver.store.active(self.target)
        return active.manifest.version if active else None

    def scores(self) -> np.ndarray:
        active = self.receiver.store.active(self.target)
        assert active is not None
        return active.scorer.score(PROBE)

    def stop(self) -> None:
        self.client.stop()


@pytest.fixture
def signing_dir(workdir: Path) -> Path:
    init_keys(workdir / "keys")
    return workdir / "keys"


@pytest.fixture
def gateways(
    broker: MosquittoServer, workdir: Path, signing_dir: Path, unique_id: Callable[[str], str]
) -> Iterator[Callable[..., Gateway]]:
    """Build gateways that trust the key `signing_dir` holds at the time they are built."""
    started: list[Gateway] = []

    def build(target: str, *, name: str = "gw", **settings: object) -> Gateway:
        gateway_id = unique_id(name)
        directory = workdir / gateway_id
        directory.mkdir()
        (directory / "root.pub").write_bytes((signing_dir / PUBLIC_KEY_FILE).read_bytes())
        gateway = Gateway(broker, directory, gateway_id, target, **settings)
        started.append(gateway)
        return gateway

    yield build
    for gateway in started:
        gateway.stop()


@pytest.fixture
def clean_rotation(broker: MosquittoServer) -> Iterator[None]:
    """Clear the retained signing-key announcement after the test, so other tests never see it."""
    yield
    broker.start()
    client = make_client(mqtt_settings(broker), client_id="clear-keys")
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topics.signing_key(), b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def order_of(
    manifest: ModelManifest,
    artifact: bytes,
    key: Ed25519PrivateKey | None,
    *,
    chunk_bytes: int = 4096,
    **changes: object,
) -> DeploymentOrder:
    """The order of `manifest` and `artifact` signed by `key` (None: unsigned); `changes` alter it."""
    text = encode(manifest).decode()
    order = build_order(
        manifest_json=text,
        signature_b64=sign_manifest(key, text) if key is not None else "",
        artifact=artifact,
        target=manifest.target,
        version=manifest.version,
        chunk_bytes=chunk_bytes,
    )
    message = msgspec.structs.replace(order.message, **changes) if changes else order.message
    return DeploymentOrder(message.target, message.version, message, order.chunks)


def deploy(broker: MosquittoServer, model: ModelArtifact, key: Ed25519PrivateKey) -> None:
    """Publish a properly signed order of `model`."""
    publish_order(order_of(model.manifest, model.onnx_int8, key), mqtt_settings(broker), timeout_s=10)


# --- attacks --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unsigned_mismatched_and_wrong_spec_orders_are_refused_while_the_model_keeps_serving(
    broker: MosquittoServer,
    gateways: Callable[..., Gateway],
    signing_dir: Path,
    unique_id: Callable[[str], str],
) -> None:
    target = unique_id("t")
    gateway = gateways(target)
    key = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    deploy(broker, make_model(target, 1), key)
    assert gateway.ack(1).ok
    before = gateway.scores()
    settings = mqtt_settings(broker)

    v2 = make_model(target, 2, seed=2)  # 1. unsigned
    publish_order(order_of(v2.manifest, v2.onnx_int8, None), settings, timeout_s=10)
    assert gateway.ack(2).reason.startswith("signature")
    v3 = make_model(target, 3, seed=3)  # 2. a properly signed v3 manifest in an order that claims v4
    publish_order(order_of(v3.manifest, v3.onnx_int8, key, version=4), settings, timeout_s=10)
    assert gateway.ack(4).reason.startswith("manifest")
    v5 = make_model(target, 5, seed=5)  # 3. another target's signed manifest in an order for this one
    other = msgspec.structs.replace(v5.manifest, target=unique_id("other"))
    publish_order(order_of(other, v5.onnx_int8, key, target=target), settings, timeout_s=10)
    assert gateway.ack(5).reason.startswith("manifest")
    v6, v7 = (
        make_model(target, 6, seed=6),
        make_model(target, 7, seed=7),
    )  # 4. v7's artifact under v6's manifest
    publish_order(order_of(v6.manifest, v7.onnx_int8, key), settings, timeout_s=10)
    assert gateway.ack(6).reason.startswith(("sha256", "size"))
    v8 = make_model(target, 8, seed=8)  # 5. the order announces more bytes than its chunks carry
    publish_order(
        order_of(v8.manifest, v8.onnx_int8, key, artifact_bytes=len(v8.onnx_int8) + 1), settings, timeout_s=10
    )
    assert gateway.ack(8).reason.startswith("size")
    v9 = make_model(target, 9, seed=9)  # 6. signed for another feature specification
    wrong_spec = msgspec.structs.replace(v9.manifest, feature_spec="vib-temp-current-spectral@1")
    publish_order(order_of(wrong_spec, v9.onnx_int8, key), settings, timeout_s=10)
    assert gateway.ack(9).reason.startswith("features")

    assert [a.ok for a in gateway.acks] == [True] + [False] * 6
    assert gateway.receiver.metrics.refused == 6
    assert gateway.active_version() == 1
    np.testing.assert_array_equal(before, gateway.scores())


@pytest.mark.slow
def test_a_replayed_older_order_is_refused_by_a_restarted_gateway(
    broker: MosquittoServer,
    gateways: Callable[..., Gateway],
    signing_dir: Path,
    unique_id: Callable[[str], str],
) -> None:
    target = unique_id("t")
    gateway = gateways(target)
    key = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    v1, v2 = make_model(target, 1), make_model(target, 2, seed=2)
    captured = order_of(v1.manifest, v1.onnx_int8, key)  # what an eavesdropper recorded
    publish_order(captured, mqtt_settings(broker), timeout_s=10)
    assert gateway.ack(1).ok
    deploy(broker, v2, key)
    assert gateway.ack(2).ok
    gateway.stop()
    restarted = Gateway(broker, gateway.directory, gateway.receiver.gateway_id, target)
    try:
        wait_until(lambda: restarted.receiver.metrics.ignored >= 1)  # the retained v2: running already
        publish_order(captured, mqtt_settings(broker), timeout_s=10)  # byte for byte, validly signed
        ack = restarted.ack(1)
        assert not ack.ok
        assert ack.reason.startswith("version")
        assert restarted.active_version() == 2
    finally:
        restarted.stop()


@pytest.mark.slow
def test_a_chunk_stream_that_never_completes_is_refused_as_incomplete(
    broker: MosquittoServer,
    gateways: Callable[..., Gateway],
    signing_dir: Path,
    unique_id: Callable[[str], str],
) -> None:
    target = unique_id("t")
    gateway = gateways(target, chunk_timeout_s=1.0)
    key = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    deploy(broker, make_model(target, 1), key)
    assert gateway.ack(1).ok
    before = gateway.scores()
    v2 = make_model(target, 2, seed=2)
    order = order_of(v2.manifest, v2.onnx_int8, key, chunk_bytes=1000)
    assert len(order.chunks) >= 3
    stalled = DeploymentOrder(order.target, order.version, order.message, order.chunks[:1])
    publish_order(stalled, mqtt_settings(broker), timeout_s=10)  # the order and only its first chunk
    ack = gateway.ack(2, timeout_s=10)
    assert not ack.ok
    assert ack.reason.startswith(f"incomplete: 1 of {len(order.chunks)} chunks")
    assert gateway.receiver.metrics.incomplete == 1
    assert gateway.active_version() == 1
    np.testing.assert_array_equal(before, gateway.scores())
    deploy(broker, make_model(target, 3, seed=3), key)  # the receiver still takes the next model
    assert gateway.ack(3).ok


# --- signing-key rotation -------------------------------------------------------------------------------


def test_trust_follows_only_links_the_trusted_key_signed_and_survives_a_restart(workdir: Path) -> None:
    k1, k2, k3, rogue = (Ed25519PrivateKey.generate() for _ in range(4))
    state = workdir / "signing-key.json"
    trust = TrustedKey(k1.public_key(), state)
    forged = make_link(rogue, rogue.public_key(), issued_ns=10)
    assert trust.apply(KeyRotation(links=[forged])).rejected == 1
    assert trust.key == k1.public_key()
    chain = [make_link(k1, k2.public_key(), issued_ns=100), make_link(k2, k3.public_key(), issued_ns=200)]
    assert trust.apply(KeyRotation(links=chain)).followed == 2  # a gateway two rotations behind catches up
    assert trust.key == k3.public_key()
    assert trust.apply(KeyRotation(links=chain[:1])).followed == 0  # a replay moves nothing back
    branch = make_link(k1, rogue.public_key(), issued_ns=300)  # signed by a retired key
    assert trust.apply(KeyRotation(links=[branch])).rejected == 1
    assert trust.key == k3.public_key()
    assert TrustedKey(k1.public_key(), state).key == k3.public_key()  # kept across a restart
    reprovisioned = TrustedKey(rogue.public_key(), state)  # the operator configured another root key
    assert reprovisioned.key == rogue.public_key()
    assert (
        json.loads(state.read_bytes())["current"]
        == base64.b64encode(k3.public_key().public_bytes_raw()).decode()
    )


def test_keys_rotate_keeps_the_old_pair_and_chains_the_new_key(signing_dir: Path) -> None:
    old = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    parser = argparse.ArgumentParser()
    keys_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", "rotate", "--dir", str(signing_dir)])  # without the whole CLI
    assert args.handler(args) == 0
    rotation = rotate_keys(signing_dir)  # a second rotation
    assert [link.issued_ns for link in rotation.links] == sorted({link.issued_ns for link in rotation.links})
    assert read_chain(signing_dir) == rotation.links
    new = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    assert (signing_dir / PRIVATE_KEY_FILE).stat().st_mode & 0o077 == 0
    assert len(list((signing_dir / "retired").glob(f"*-{PRIVATE_KEY_FILE}"))) == 2
    trust = TrustedKey(old.public_key(), signing_dir / "state.json")
    assert trust.apply(rotation).followed == 2
    assert trust.key == new.public_key()
    assert load_public_key(signing_dir / PUBLIC_KEY_FILE) == new.public_key()


@pytest.mark.slow
@pytest.mark.usefixtures("clean_rotation")
def test_a_gateway_trusts_a_new_key_announced_under_the_old_one(
    broker: MosquittoServer,
    gateways: Callable[..., Gateway],
    signing_dir: Path,
    unique_id: Callable[[str], str],
) -> None:
    target = unique_id("t")
    gateway = gateways(target)
    k1 = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    deploy(broker, make_model(target, 1), k1)
    assert gateway.ack(1).ok
    settings = mqtt_settings(broker)

    rogue = Ed25519PrivateKey.generate()  # an announcement not signed by the trusted key moves nothing
    publish_rotation(KeyRotation(links=[make_link(rogue, rogue.public_key(), issued_ns=1)]), settings)
    wait_until(lambda: gateway.receiver.metrics.key_links_rejected == 1)
    deploy(broker, make_model(target, 2, seed=2), rogue)
    assert gateway.ack(2).reason.startswith("signature")

    publish_rotation(rotate_keys(signing_dir), settings)  # k1 -> k2
    wait_until(lambda: gateway.receiver.metrics.key_rotations == 1)
    k2 = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    deploy(broker, make_model(target, 3, seed=3), k1)  # the retired key no longer deploys
    assert gateway.ack(3).reason.startswith("signature")
    deploy(broker, make_model(target, 4, seed=4), k2)
    assert gateway.ack(4).ok

    rotation = rotate_keys(signing_dir)  # k2 -> k3; a model signed with k3 arrives before the announcement
    k3 = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    deploy(broker, make_model(target, 5, seed=5), k3)
    assert gateway.ack(5).reason.startswith("signature")
    publish_rotation(rotation, settings)
    wait_until(lambda: (a := gateway.ack(5)) and a.ok, timeout_s=10)  # retried once the key moved
    assert gateway.active_version() == 5
    assert len([a for a in gateway.acks if a.version == 2]) == 1  # the rogue order was not refused twice

    # a gateway provisioned with k1 that connects only now follows both links, then installs v5
    late_dir = gateway.directory.parent / unique_id("late")
    late_dir.mkdir()
    (late_dir / "root.pub").write_bytes((gateway.directory / "root.pub").read_bytes())
    late = Gateway(broker, late_dir, late_dir.name, target)
    try:
        ack = late.ack(5)
        assert ack.ok, ack.reason
        assert late.receiver.metrics.key_rotations == 2
    finally:
        late.stop()


def test_a_model_signed_before_a_rotation_is_re_signed_with_the_current_key(signing_dir: Path) -> None:
    old = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    text = encode(make_model("t-resign", 1).manifest).decode()
    registered = sign_manifest(old, text)
    assert signature_for_current_key(old, text, registered) == registered  # no rotation: kept as is
    rotate_keys(signing_dir)
    new = load_private_key(signing_dir / PRIVATE_KEY_FILE)
    fresh = signature_for_current_key(new, text, registered)
    assert verify_manifest(new.public_key(), text, fresh)
    assert not verify_manifest(new.public_key(), text, registered)
