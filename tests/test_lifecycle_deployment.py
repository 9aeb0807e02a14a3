"""Model lifecycle, edge side: signing, signed push over a real broker, verification, refusals, probation."""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
import psycopg.conninfo
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.lifecycle import registry
from cloud_service.lifecycle.publisher import build_order, publish_order
from cloud_service.lifecycle.service import LifecycleService
from cloud_service.lifecycle.signing import (
    PRIVATE_KEY_FILE,
    init_keys,
    load_private_key,
    sign_manifest,
    verify_manifest,
)
from cloud_service.migrate import migrate
from cloud_service.modeling import ModelArtifact, build_anomaly_model, synthetic_features
from cloud_service.service import IngestWorker
from cloud_service.settings import CloudSettings
from edge_agent.deployment import DeploymentClient, DeploymentReceiver, DeploymentSettings, Probation
from edge_agent.disk_queue import DiskQueue
from edge_agent.forwarder import Forwarder
from edge_agent.model_store import LoadedModel, ModelStore
from edge_agent.settings import ModelSettings
from forewarn.localservices import MosquittoServer, free_port, wait_until
from shared import topics
from shared.config import MqttSettings, load_settings
from shared.errors import ConfigError, StorageError
from shared.features import DEFAULT_SPEC
from shared.messages import DeploymentAck, GoldenPair, ModelManifest, Uplink, decode_uplink, encode

NAMES = list(DEFAULT_SPEC.feature_names)


def make_model(target: str, version: int, *, seed: int = 0) -> ModelArtifact:
    """A real int8 model (the PCA reconstruction detector) on seeded synthetic healthy features."""
    rows = synthetic_features(240, spec=DEFAULT_SPEC, seed=seed)
    return build_anomaly_model(
        rows, NAMES, feature_spec=DEFAULT_SPEC.spec_id, target=target, version=version, seed=seed
    )


def signed(manifest: ModelManifest, key: Ed25519PrivateKey, *, is_rollback: bool = False) -> tuple[str, str]:
    text = encode(manifest).decode()
    return text, sign_manifest(key, text, is_rollback=is_rollback)


@pytest.fixture
def keys(workdir: Path) -> tuple[Ed25519PrivateKey, Path]:
    pair = init_keys(workdir / "keys")
    return load_private_key(pair.private_key), pair.public_key


@dataclass
class Gateway:
    """A running deployment receiver on the broker, with the acks it produced (also sent upstream through
    its disk queue and forwarder, as the edge agent sends them)."""

    receiver: DeploymentReceiver
    client: DeploymentClient
    store: ModelStore
    queue: DiskQueue
    forwarder: Forwarder
    acks: list[DeploymentAck] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack_for(self, version: int) -> DeploymentAck | None:
        with self.lock:
            matching = [a for a in self.acks if a.version == version]
        return matching[-1] if matching else None

    def wait_ack(self, version: int, timeout_s: float = 10.0) -> DeploymentAck:
        return wait_until(lambda: self.ack_for(version), timeout_s=timeout_s)

    def active_version(self, target: str) -> int | None:
        active = self.store.active(target)
        return active.manifest.version if active else None

    def active_model(self, target: str) -> LoadedModel:
        active = self.store.active(target)
        assert active is not None, f"no active model for {target}"
        return active


def mqtt_settings(broker: MosquittoServer) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port, reconnect_min_s=0.2, reconnect_max_s=1.0)


@pytest.fixture
def gateway_factory(
    broker: MosquittoServer,
    workdir: Path,
    keys: tuple[Ed25519PrivateKey, Path],
    unique_id: Callable[[str], str],
) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def build(target: str, *, name: str = "gw", **overrides: object) -> Gateway:
        gateway_id = unique_id(name)
        settings = DeploymentSettings(
            public_key=keys[1], state_file=workdir / gateway_id / "deployments.json", **overrides
        )
        store = ModelStore(ModelSettings(store_dir=workdir / gateway_id / "models"))
        receiver = DeploymentReceiver(
            settings=settings,
            store=store,
            gateway_id=gateway_id,
            targets=[target],
            expected_features={target: NAMES},
            assets_per_target={target: 1},
        )
        client = DeploymentClient(settings=mqtt_settings(broker), receiver=receiver, client_id=gateway_id)
        queue = DiskQueue(path=workdir / gateway_id / "q.sqlite", gateway_id=gateway_id, max_bytes=1 << 20)
        forwarder = Forwarder(settings=mqtt_settings(broker), gateway_id=gateway_id, disk_queue=queue)
        gateway = Gateway(receiver, client, store, queue, forwarder)

        def keep(ack: DeploymentAck) -> None:
            with gateway.lock:
                gateway.acks.append(ack)
            queue.put_many([ack])
            forwarder.notify()

        receiver.add_ack_listener(keep)
        forwarder.start()
        client.start()
        started.append(gateway)
        return gateway

    yield build
    for gateway in started:
        gateway.client.stop()
        gateway.forwarder.stop()
        gateway.queue.close()


def push(
    broker: MosquittoServer,
    artifact: ModelArtifact,
    key: Ed25519PrivateKey,
    *,
    manifest: ModelManifest | None = None,
    onnx: bytes | None = None,
    is_rollback: bool = False,
    chunk_bytes: int = 1024,
) -> None:
    manifest = manifest or artifact.manifest
    text, signature = signed(manifest, key, is_rollback=is_rollback)
    order = build_order(
        manifest_json=text,
        signature_b64=signature,
        artifact=artifact.onnx_int8 if onnx is None else onnx,
        target=manifest.target,
        version=manifest.version,
        chunk_bytes=chunk_bytes,
        is_rollback=is_rollback,
    )
    publish_order(order, mqtt_settings(broker), timeout_s=10)


# --- signing --------------------------------------------------------------------------------------------


def test_keys_init_writes_private_key_0600_and_refuses_to_overwrite(workdir: Path) -> None:
    pair = init_keys(workdir / "k")
    assert stat.S_IMODE(pair.private_key.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in pair.public_key.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        init_keys(workdir / "k")


def test_signature_verifies_only_the_signed_text_and_kind(keys: tuple[Ed25519PrivateKey, Path]) -> None:
    key = keys[0]
    text = '{"kind":"manifest/1"}'
    signature = sign_manifest(key, text)
    public = key.public_key()
    assert verify_manifest(public, text, signature)
    assert not verify_manifest(public, text + " ", signature)
    assert not verify_manifest(public, text, signature, is_rollback=True)  # a deployment is not a rollback
    assert not verify_manifest(Ed25519PrivateKey.generate().public_key(), text, signature)


# --- deployment over the broker -------------------------------------------------------------------------


@pytest.mark.slow
def test_signed_model_is_installed_activated_and_acknowledged_upstream(
    broker: MosquittoServer,
    gateway_factory: Callable[..., Gateway],
    keys: tuple[Ed25519PrivateKey, Path],
    unique_id: Callable[[str], str],
) -> None:
    target = unique_id("t")
    gateway = gateway_factory(target)
    seen: list[Uplink] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    listener.on_message = lambda c, u, m: seen.append(decode_uplink(bytes(m.payload)))
    listener.connect(broker.host, broker.port)
    listener.subscribe(topics.deploy_ack(gateway.receiver.gateway_id), qos=1)
    listener.loop_start()
    try:
        model = make_model(target, 1)
        push(broker, model, keys[0], chunk_bytes=1000)  # several chunks
        ack = gateway.wait_ack(1)
        assert ack.ok, ack.reason
        assert gateway.active_version(target) == 1
        score = gateway.active_model(target).scorer.score(synthetic_features(4, spec=DEFAULT_SPEC, seed=9))
        assert score.shape == (4,)
        upstream = wait_until(lambda: [a for a in seen if isinstance(a, DeploymentAck)], timeout_s=5)
        assert upstream[0].ok
        assert upstream[0].seq == 0  # the gateway's first uplink message: the disk queue's first seq
        assert upstream[0].target == target
        wait_until(lambda: gateway.queue.stats().depth == 0, timeout_s=5)  # deleted on PUBACK
    finally:
        listener.loop_stop()
        listener.disconnect()


def _ingest(broker: MosquittoServer, db: str, client_id: str) -> IngestWorker:
    params = psycopg.conninfo.conninfo_to_dict(db)
    settings = load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": {"host": broker.host, "port": broker.port, "receive_maximum": 64},
            "db": {"host": params["host"], "port": int(str(params["port"])), "dbname": params["dbname"]},
            "ingest": {"workers": 1, "group": "lc" + client_id[-6:], "queue_size": 64, "batch_max_s": 0.05},
        },
    )
    worker = IngestWorker(settings, client_id=client_id)
    worker.start()
    assert worker.wait_connected(10)
    return worker


def test_bad_models_are_refused_while_the_previous_keeps_serving_and_refusals_reach_the_registry(
    broker: MosquittoServer,
    db: str,
    gateway_factory: Callable[..., Gateway],
    keys: tuple[Ed25519PrivateKey, Path],
    unique_id: Callable[[str], str],
) -> None:
    migrate(db)
    worker = _ingest(broker, db, unique_id("ingest"))
    try:
        target = unique_id("t")
        gateway = gateway_factory(target)
        key = keys[0]
        push(broker, make_model(target, 2), key)
        assert gateway.wait_ack(2).ok
        probe = synthetic_features(8, spec=DEFAULT_SPEC, seed=5)
        before = gateway.active_model(target).scorer.score(probe)

        # 1. tampered artifact: one byte flipped after signing
        v3 = make_model(target, 3, seed=3)
        tampered = bytearray(v3.onnx_int8)
        tampered[len(tampered) // 2] ^= 0xFF
        push(broker, v3, key, onnx=bytes(tampered))
        assert gateway.wait_ack(3).reason.startswith("sha256")
        # 2. wrong signature: signed by another key
        v4 = make_model(target, 4, seed=4)
        push(broker, v4, Ed25519PrivateKey.generate())
        assert gateway.wait_ack(4).reason.startswith("signature")
        # 3. an older version than the one running, properly signed
        push(broker, make_model(target, 1, seed=1), key)
        assert gateway.wait_ack(1).reason.startswith("version")
        # 4. golden pairs that the artifact does not reproduce
        v5 = make_model(target, 5, seed=5)
        bad_golden = [GoldenPair(features=p.features, score=p.score * 3 + 10) for p in v5.manifest.golden]
        push(broker, v5, key, manifest=msgspec.structs.replace(v5.manifest, golden=bad_golden))
        assert gateway.wait_ack(5).reason.startswith("golden")

        for version in (3, 4, 1, 5):
            ack_of_version = gateway.ack_for(version)
            assert ack_of_version is not None
            assert not ack_of_version.ok
        assert gateway.active_version(target) == 2
        after = gateway.active_model(target).scorer.score(probe)
        np.testing.assert_array_equal(before, after)

        with psycopg.connect(db) as conn:
            states = wait_until(lambda: len(registry.gateway_states(conn, target)) == 5, timeout_s=10)
            assert states
            by_version = {s.version: s for s in registry.gateway_states(conn, target)}
        assert by_version[2].state == "active"
        for version, check in ((3, "sha256"), (4, "signature"), (1, "version"), (5, "golden")):
            assert by_version[version].state == "refused"
            assert by_version[version].reason.startswith(check)
    finally:
        worker.stop()


def test_rollback_order_must_be_signed_as_such(
    broker: MosquittoServer,
    gateway_factory: Callable[..., Gateway],
    keys: tuple[Ed25519PrivateKey, Path],
    unique_id: Callable[[str], str],
) -> None:
    target = unique_id("t")
    gateway = gateway_factory(target)
    key = keys[0]
    v1, v2 = make_model(target, 1), make_model(target, 2, seed=2)
    push(broker, v1, key)
    assert gateway.wait_ack(1).ok
    push(broker, v2, key)
    assert gateway.wait_ack(2).ok
    # a plain deployment of v1 with is_rollback flipped on: its signature does not cover a rollback
    text, signature = signed(v1.manifest, key)
    forged = build_order(
        manifest_json=text,
        signature_b64=signature,
        artifact=v1.onnx_int8,
        target=target,
        version=1,
        chunk_bytes=4096,
        is_rollback=True,
    )
    gateway.acks.clear()
    publish_order(forged, mqtt_settings(broker), timeout_s=10)
    assert gateway.wait_ack(1).reason.startswith("signature")
    assert gateway.active_version(target) == 2
    # a real rollback order: the manifest re-issued now, signed as a rollback
    from cloud_service.lifecycle.operations import rollback_order  # noqa: PLC0415

    gateway.acks.clear()
    registered_at = datetime.now(UTC)
    record = registry.ModelRecord(
        target,
        1,
        "pca",
        v1.manifest.artifact_sha256,
        text,
        signature,
        "",
        NAMES,
        1.0,
        [],
        None,
        None,
        0,
        None,
        None,
        None,
        "retired",
        "",
        registered_at,
        registered_at,
        None,
        artifact=v1.onnx_int8,
    )
    publish_order(rollback_order(record, key, chunk_bytes=4096), mqtt_settings(broker), timeout_s=10)
    ack = gateway.wait_ack(1)
    assert ack.ok, ack.reason
    assert gateway.active_version(target) == 1
    # a gateway that connects later, with no model yet, installs what the retained rollback order names
    fresh = gateway_factory(target, name="late")
    late = fresh.wait_ack(1)
    assert late.ok, late.reason
    assert fresh.active_version(target) == 1


def test_a_model_that_floods_alerts_is_rolled_back_by_probation(
    broker: MosquittoServer,
    gateway_factory: Callable[..., Gateway],
    keys: tuple[Ed25519PrivateKey, Path],
    unique_id: Callable[[str], str],
) -> None:
    target = unique_id("t")
    gateway = gateway_factory(target, probation_s=600.0, probation_min_alerts=3)
    push(broker, make_model(target, 1), keys[0])
    assert gateway.wait_ack(1).ok
    push(broker, make_model(target, 2, seed=2), keys[0])
    assert gateway.wait_ack(2).ok
    probation = gateway.receiver.probation(target)
    assert probation is not None
    assert probation.version == 2
    assert probation.allowed_alerts == 3
    for _ in range(4):  # the pipeline reports each alert the new model raises
        gateway.receiver.observe_alert(target)
    wait_until(lambda: gateway.active_version(target) == 1, timeout_s=10)
    rolled = wait_until(lambda: [a for a in gateway.acks if a.version == 2 and not a.ok], timeout_s=5)
    assert rolled[0].reason.startswith("probation:")
    assert "rolled back to v1" in rolled[0].reason
    assert gateway.receiver.metrics.rolled_back == 1
    # after a restart, the retained v2 order is not applied again
    gateway.client.stop()
    restarted_store = ModelStore(gateway.store.settings)
    receiver = DeploymentReceiver(
        settings=gateway.receiver.settings,
        store=restarted_store,
        gateway_id=gateway.receiver.gateway_id,
        targets=[target],
        expected_features={target: NAMES},
    )
    client = DeploymentClient(
        settings=mqtt_settings(broker), receiver=receiver, client_id=receiver.gateway_id
    )
    client.start()
    try:
        wait_until(lambda: receiver.metrics.deployments_received >= 1 and receiver.metrics.ignored >= 1)
        restarted_model = restarted_store.active(target)
        assert restarted_model is not None
        assert restarted_model.manifest.version == 1
        assert receiver.metrics.installed == 0
    finally:
        client.stop()


def test_probation_counts_alerts_only_within_its_period() -> None:
    probation = Probation(target="t", version=2, started_s=100.0, period_s=60.0, allowed_alerts=2)
    assert not probation.observe(True, 101.0)
    assert not probation.observe(False, 102.0)
    assert not probation.observe(True, 103.0)
    assert probation.observe(True, 104.0)  # the third alert is over the allowance: trips once
    assert not probation.observe(True, 105.0)
    late = Probation(target="t", version=2, started_s=0.0, period_s=10.0, allowed_alerts=0)
    assert not late.observe(True, 11.0)  # probation is over: never trips


def test_probation_trips_when_too_many_windows_are_anomalous_and_only_once() -> None:
    probation = Probation(
        target="t",
        version=2,
        started_s=0.0,
        period_s=60.0,
        allowed_alerts=5,
        min_windows=40,
        max_anomalous_fraction=0.5,
    )
    assert not probation.observe_windows(30, 30, 1.0)  # too few windows to judge
    assert not probation.observe_windows(0, 0, 2.0)
    assert probation.observe_windows(10, 10, 3.0)  # 40 of 40 anomalous: one alert held, but rolled back
    assert probation.rollback_request(3.0).reason.startswith("probation: 100% of 40 windows anomalous")
    assert not probation.observe_windows(10, 10, 4.0)
    healthy = Probation(
        target="t",
        version=2,
        started_s=0.0,
        period_s=60.0,
        allowed_alerts=5,
        min_windows=40,
        max_anomalous_fraction=0.5,
    )
    assert not healthy.observe_windows(100, 50, 1.0)  # half is not more than half
    assert healthy.windows == (100, 50)


def test_a_model_for_another_feature_spec_is_refused_before_install(
    workdir: Path, keys: tuple[Ed25519PrivateKey, Path]
) -> None:
    target = "spec-target"
    receiver = DeploymentReceiver(
        settings=DeploymentSettings(public_key=keys[1], state_file=workdir / "state.json"),
        store=ModelStore(ModelSettings(store_dir=workdir / "models")),
        gateway_id="gw-spec",
        targets=[target],
        expected_specs={target: "vib-temp-current-spectral@1"},
    )
    acks: list[DeploymentAck] = []
    receiver.add_ack_listener(acks.append)
    model = make_model(target, 1)
    text, signature = signed(model.manifest, keys[0])
    order = build_order(
        manifest_json=text,
        signature_b64=signature,
        artifact=model.onnx_int8,
        target=target,
        version=1,
        chunk_bytes=1500,
    )
    for index, chunk in enumerate(order.chunks):
        receiver.handle(topics.model_chunk(target, index), chunk)
    receiver.handle(topics.model_deployment(target), encode(order.message))
    assert [a.ok for a in acks] == [False]
    assert acks[0].reason.startswith("features: feature spec")
    assert receiver.store.active(target) is None


@pytest.mark.slow
def test_an_auto_approved_model_whose_push_failed_is_pushed_by_the_retry_job(
    broker: MosquittoServer,
    db: str,
    gateway_factory: Callable[..., Gateway],
    keys: tuple[Ed25519PrivateKey, Path],
    unique_id: Callable[[str], str],
) -> None:
    migrate(db)
    target = unique_id("t")
    artifact = make_model(target, 1)
    text, signature = signed(artifact.manifest, keys[0])
    with psycopg.connect(db) as conn:
        registry.insert_model(
            conn,
            target=target,
            version=1,
            model_type="pca",
            sha256=artifact.manifest.artifact_sha256,
            artifact=artifact.onnx_int8,
            manifest_json=text,
            signature_b64=signature,
            feature_spec=artifact.manifest.feature_spec,
            feature_names=artifact.manifest.feature_names,
            threshold=artifact.manifest.threshold,
            assets=[],
            train_start=None,
            train_end=None,
            n_train_rows=240,
            metrics=None,
            gates=None,
            reference=None,
            status="approved",
        )

    def service(port: int) -> LifecycleService:
        params = psycopg.conninfo.conninfo_to_dict(db)
        settings = load_settings(
            CloudSettings,
            environ={},
            overrides={
                "db": {"host": params["host"], "port": int(str(params["port"])), "dbname": params["dbname"]},
                "mqtt": {"port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
                "lifecycle": {
                    "signing_key": str(keys[1].with_name(PRIVATE_KEY_FILE)),  # pushes re-sign if rotated
                    "approval": "auto",
                    "push_timeout_s": 1.0,
                },
            },
        )
        return LifecycleService(settings, runner_id="test")

    with pytest.raises(StorageError):  # the broker is down: the push fails, the model stays approved
        service(free_port()).deploy(target, 1)
    with psycopg.connect(db) as conn:
        assert [m.version for m in registry.pending_pushes(conn) if m.target == target] == [1]
    gateway = gateway_factory(target)
    assert service(broker.port).push_pending() == [(target, 1)]  # what the push-retry job runs
    assert gateway.wait_ack(1).ok
    with psycopg.connect(db) as conn:
        pushed = registry.get_model(conn, target, 1)
        assert pushed is not None
        assert pushed.status == "deployed"
        assert [m for m in registry.pending_pushes(conn) if m.target == target] == []
    assert service(broker.port).push_pending() == []
    assert "push-retry" in service(broker.port).scheduler().jobs
