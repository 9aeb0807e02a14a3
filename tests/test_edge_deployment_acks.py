"""Deployment acknowledgements through the disk queue, the threads writing them, and probation rollbacks."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_service.lifecycle.publisher import DeploymentOrder, build_order, publish_order
from cloud_service.lifecycle.signing import init_keys, load_private_key, sign_manifest
from cloud_service.modeling import ModelArtifact, build_anomaly_model, synthetic_features
from edge_agent.agent import EdgeAgent
from edge_agent.deployment import DeploymentReceiver, DeploymentSettings
from edge_agent.model_store import ModelStore
from edge_agent.settings import EdgeSettings, ModelSettings, PipelineSettings
from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.config import MqttSettings
from shared.messages import DeploymentAck, ModelManifest, Status, decode_uplink, encode
from tests.test_edge_agent_helpers import Collector, collecting, edge_settings, vibration_asset
from tests.test_lifecycle_deployment import NAMES, make_model

_FILE_CALLS = frozenset({io.open, os.open, os.fsync, os.fdatasync, os.replace, os.rename})


class _DiskCalls:
    """Records which thread makes each file or SQLite call, in threads started while it is installed.

    A profile hook (`threading.setprofile`) sees every call into C, so nothing is patched: the calls
    the code really makes are recorded with the name of the thread making them.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._is_recording = True

    def __enter__(self) -> _DiskCalls:
        threading.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)  # None removes the hook
        self._is_recording = False

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        del frame
        if not self._is_recording or event != "c_call":
            return
        is_sqlite = isinstance(getattr(arg, "__self__", None), sqlite3.Connection)
        if is_sqlite or arg in _FILE_CALLS:
            self.calls.append((threading.current_thread().name, str(getattr(arg, "__name__", arg))))

    def by_threads(self, prefix: str) -> list[tuple[str, str]]:
        """Calls made by threads whose name starts with `prefix`."""
        return [call for call in self.calls if call[0].startswith(prefix)]


def _signed_order(manifest: ModelManifest, artifact: bytes, key: Ed25519PrivateKey) -> DeploymentOrder:
    text = encode(manifest).decode()
    return build_order(
        manifest_json=text,
        signature_b64=sign_manifest(key, text),
        artifact=artifact,
        target=manifest.target,
        version=manifest.version,
        chunk_bytes=4096,
    )


def _agent_settings(
    workdir: Path, broker: MosquittoServer, gateway_id: str, asset_id: str, public_key: Path
) -> EdgeSettings:
    return edge_settings(
        workdir,
        gateway_id=gateway_id,
        plant=broker,
        upstream=broker,
        pipeline=PipelineSettings(assets=(vibration_asset(asset_id),)),
        deployment={"public_key": str(public_key), "state_file": str(workdir / "deployments.json")},
        shutdown_ack_wait_s=0.5,
    )


def _acks(collector: Collector, version: int) -> list[DeploymentAck]:
    return [m for m in collector.uplinks() if isinstance(m, DeploymentAck) and m.version == version]


def _deploy_metrics(collector: Collector) -> dict[str, float]:
    """The `deploy.*` metrics of the newest status heartbeat received."""
    is_status = topics.TopicKind.STATUS
    statuses = [decode_uplink(p) for t, p in list(collector.messages) if topics.parse(t).kind is is_status]
    latest = [s for s in statuses if isinstance(s, Status)][-1:]
    return {k: v for s in latest for k, v in s.metrics.items() if k.startswith("deploy.")}


@pytest.mark.slow
def test_the_heartbeat_carries_the_receivers_counters_with_refusals_by_reason(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    keys = init_keys(workdir / "keys")
    key = load_private_key(keys.private_key)
    asset, gateway_id = unique_id("pump"), unique_id("gw")
    settings = _agent_settings(workdir, broker, gateway_id, asset, keys.public_key)
    spec = settings.pipeline.feature_spec(settings.pipeline.assets[0])
    rows = synthetic_features(200, spec=spec, seed=3)
    model = build_anomaly_model(
        rows, list(spec.feature_names), feature_spec=spec.spec_id, target=asset, version=1
    )
    v2 = msgspec.structs.replace(model.manifest, version=2)
    v3 = msgspec.structs.replace(model.manifest, version=3)
    forged = _signed_order(v2, model.onnx_int8, Ed25519PrivateKey.generate())  # `signature`
    oversold = _signed_order(v3, model.onnx_int8, key)  # announces a byte more than it sends: `size`
    oversold = dataclasses.replace(
        oversold,
        message=msgspec.structs.replace(oversold.message, artifact_bytes=len(model.onnx_int8) + 1),
    )
    watched = [topics.deploy_ack(gateway_id), topics.batch(gateway_id), topics.status(gateway_id)]
    mqtt = MqttSettings(host=broker.host, port=broker.port)
    with collecting(broker.host, broker.port, watched, unique_id("col")) as collector:
        agent = EdgeAgent(settings)
        agent.start()
        try:
            for order in (_signed_order(model.manifest, model.onnx_int8, key), forged, oversold):
                publish_order(order, mqtt)
                wait_until(functools.partial(_acks, collector, order.version), timeout_s=20)

            def refusals_reported() -> dict[str, float]:
                agent.heartbeat.trigger()
                metrics = _deploy_metrics(collector)
                return metrics if metrics.get("deploy.refused") == 2.0 else {}

            metrics = wait_until(refusals_reported, timeout_s=10)
        finally:
            agent.stop()
    assert metrics["deploy.installed"] == 1.0
    assert metrics["deploy.refusals.signature"] == 1.0
    assert metrics["deploy.refusals.size"] == 1.0
    assert metrics["deploy.rolled_back"] == 0.0
    assert metrics["deploy.deployments_received"] == 3.0


def test_acks_are_committed_by_the_deploy_worker_and_no_paho_thread_touches_the_disk(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    keys = init_keys(workdir / "keys")
    asset, gateway_id = unique_id("pump"), unique_id("gw")
    settings = _agent_settings(workdir, broker, gateway_id, asset, keys.public_key)
    spec = settings.pipeline.feature_spec(settings.pipeline.assets[0])
    rows = synthetic_features(200, spec=spec, seed=3)
    model = build_anomaly_model(
        rows, list(spec.feature_names), feature_spec=spec.spec_id, target=asset, version=1
    )
    ack_topics = [topics.deploy_ack(gateway_id), topics.batch(gateway_id)]
    with (
        collecting(broker.host, broker.port, ack_topics, unique_id("col")) as collector,
        _DiskCalls() as disk,
    ):
        agent = EdgeAgent(settings)
        agent.start()
        try:
            order = _signed_order(model.manifest, model.onnx_int8, load_private_key(keys.private_key))
            publish_order(order, MqttSettings(host=broker.host, port=broker.port))
            ack = wait_until(lambda: _acks(collector, 1), timeout_s=20)[0]
            assert ack.ok, ack.reason
            wait_until(lambda: agent.disk_queue.stats().depth == 0, timeout_s=10)  # its PUBACK arrived
        finally:
            agent.stop()  # joins every thread: whatever their callbacks did is recorded by now
    assert disk.by_threads("paho-") == []  # paho's network threads do network work only
    queue_writes = {name for name, call in disk.calls if call in {"execute", "executemany"}}
    assert "edge-deploy" in queue_writes  # the deployment worker commits its acks to the disk queue


@pytest.mark.slow
def test_an_ack_produced_while_the_uplink_is_down_survives_a_restart_and_is_sent_once_up(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    keys = init_keys(workdir / "keys")
    asset, gateway_id = unique_id("pump"), unique_id("gw")
    settings = _agent_settings(workdir, broker, gateway_id, asset, keys.public_key)
    model = make_model(asset, 1)
    forged_key = Ed25519PrivateKey.generate()  # refused at once (`signature`): an ack without chunks

    def refused_order(version: int) -> bytes:
        manifest = msgspec.structs.replace(model.manifest, version=version)
        return encode(_signed_order(manifest, model.onnx_int8, forged_key).message)

    ack_topics = [topics.deploy_ack(gateway_id), topics.batch(gateway_id)]
    with collecting(broker.host, broker.port, ack_topics, unique_id("col")) as collector:
        agent = EdgeAgent(settings)
        agent.start()
        try:
            assert agent.deployments is not None
            wait_until(lambda: agent.forwarder.is_connected, timeout_s=10)
            # 1. the broker is down when the ack is made; it leaves once the uplink reconnects
            broker.stop()
            wait_until(lambda: not agent.forwarder.is_connected, timeout_s=10)
            agent.deployments.receiver.on_message(topics.model_deployment(asset), refused_order(1))
            wait_until(lambda: agent.disk_queue.stats().depth == 1, timeout_s=10)
            broker.start()
            first = wait_until(lambda: _acks(collector, 1), timeout_s=20)[0]
            wait_until(lambda: agent.disk_queue.stats().depth == 0, timeout_s=10)
            # 2. down again, and the agent stops before the uplink is back
            broker.stop()
            wait_until(lambda: not agent.forwarder.is_connected, timeout_s=10)
            agent.deployments.receiver.on_message(topics.model_deployment(asset), refused_order(2))
            wait_until(lambda: agent.disk_queue.stats().depth == 1, timeout_s=10)
        finally:
            agent.stop()
        broker.start()
        restarted = EdgeAgent(settings)
        assert restarted.disk_queue.stats().depth == 1
        restarted.start()
        try:
            second = wait_until(lambda: _acks(collector, 2), timeout_s=20)[0]
            wait_until(lambda: restarted.disk_queue.stats().depth == 0, timeout_s=10)
        finally:
            restarted.stop()
    for ack in (first, second):
        assert not ack.ok
        assert ack.reason.startswith("signature")
        assert ack.gateway_id == gateway_id
        assert ack.target == asset
    assert (first.seq, second.seq) == (0, 1)  # the disk queue's seq, never reused across the restart


def test_a_tripped_probation_rolls_back_and_acknowledges_even_when_the_message_queue_is_full(
    workdir: Path,
) -> None:
    keys = init_keys(workdir / "keys")
    key = load_private_key(keys.private_key)
    target = "full-queue"
    settings = DeploymentSettings(
        public_key=keys.public_key, state_file=workdir / "state.json", queue_size=8, probation_min_alerts=2
    )
    store = ModelStore(ModelSettings(store_dir=workdir / "models"))
    receiver = DeploymentReceiver(
        settings=settings,
        store=store,
        gateway_id="gw-full",
        targets=[target],
        expected_features={target: NAMES},
    )
    acks: list[DeploymentAck] = []
    receiver.add_ack_listener(acks.append)
    models: list[ModelArtifact] = [make_model(target, version, seed=version) for version in (1, 2)]
    for model in models:
        order = _signed_order(model.manifest, model.onnx_int8, key)
        for index, chunk in enumerate(order.chunks):
            receiver.handle(topics.model_chunk(target, index), chunk)
        receiver.handle(topics.model_deployment(target), encode(order.message))
    assert [a.ok for a in acks] == [True, True]
    probation = receiver.probation(target)
    assert probation is not None
    assert probation.version == 2
    for _ in range(settings.queue_size):  # cleared retained chunks fill the worker's message queue
        receiver.on_message(topics.model_chunk(target, 0), b"")
    for _ in range(probation.allowed_alerts + 1):  # the new model floods alerts: probation trips
        receiver.observe_alert(target)
    assert probation.is_tripped
    receiver.start()
    try:
        rolled = wait_until(lambda: [a for a in acks if a.version == 2 and not a.ok], timeout_s=10)
    finally:
        receiver.stop()
    assert rolled[0].reason.startswith("probation:")
    assert "rolled back to v1" in rolled[0].reason
    active = store.active(target)
    assert active is not None
    assert active.manifest.version == 1
    assert receiver.metrics.rolled_back == 1
    assert receiver.metrics.dropped_queue_full == 0
    assert json.loads(settings.state_file.read_bytes()) == {"rolled_back": {target: [2]}}
    assert [p.name for p in workdir.iterdir() if p.name.endswith(".tmp")] == []
