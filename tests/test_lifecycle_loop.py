"""The whole model loop: gateway data, ingest, training, signed push; the agent acks and scores with it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import msgspec
import psycopg
import pytest

from cloud_service.lifecycle import operations, registry
from cloud_service.lifecycle.publisher import build_order, publish_order
from cloud_service.lifecycle.retraining import deploy_selected, train_target
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.lifecycle.signing import init_keys, load_private_key, sign_manifest
from cloud_service.migrate import migrate
from cloud_service.modeling import build_anomaly_model, synthetic_features
from edge_agent.agent import EdgeAgent
from edge_agent.settings import AggregationSettings, PipelineSettings
from forewarn.localservices import MosquittoServer, wait_until
from shared.config import MqttSettings
from shared.messages import encode
from shared.timebase import now_ns
from tests.test_edge_agent_helpers import (
    RawPublisher,
    edge_settings,
    feed,
    vibration_asset,
    vibration_batches,
)
from tests.test_lifecycle_deployment import _ingest

NS_PER_S = 10**9


def _count(db: str, sql: str, *params: object) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_gateway_data_trains_a_model_that_the_agent_installs_acknowledges_and_scores_with(
    broker: MosquittoServer, db: str, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    migrate(db)
    keys = init_keys(workdir / "keys")
    asset = unique_id("pump")
    gateway_id = unique_id("gw")
    pipeline = PipelineSettings(
        assets=(vibration_asset(asset),), aggregation=AggregationSettings(period_s=0.25)
    )  # 4 aggregates per second of data: enough training rows from a short stream
    settings = edge_settings(
        workdir,
        gateway_id=gateway_id,
        plant=broker,
        upstream=broker,
        pipeline=pipeline,
        deployment={"public_key": str(keys.public_key), "state_file": str(workdir / "deployments.json")},
    )
    worker = _ingest(broker, db, unique_id("ingest"))
    agent = EdgeAgent(settings)
    agent.start()
    publisher = RawPublisher(broker, unique_id("pub"))
    try:
        wait_until(lambda: agent.intake.is_subscribed, timeout_s=10)
        start_ns = now_ns() - 3600 * NS_PER_S
        feed(publisher, vibration_batches(asset, n_batches=70, start_ns=start_ns), agent.intake.queue.qsize)
        wait_until(
            lambda: _count(db, "SELECT count(*) FROM aggregates WHERE asset_id = %s", asset) >= 240,
            timeout_s=60,
        )

        lifecycle = LifecycleSettings(
            approval="auto",
            min_training_rows=150,
            model_types=("pca", "mlp_autoencoder"),
            signing_key=keys.private_key,
        )
        mqtt = MqttSettings(host=broker.host, port=broker.port)

        def deploy(target: str, version: int) -> None:
            with psycopg.connect(db) as conn:
                operations.deploy(conn, mqtt, target, version, chunk_bytes=2048)

        with psycopg.connect(db) as conn:
            report = train_target(conn, lifecycle, asset, private_key=load_private_key(keys.private_key))
            conn.commit()
        report = deploy_selected(report, lifecycle, deploy)
        assert report.selected is not None, report
        assert report.deployed
        version = report.selected

        def active() -> int | None:
            model = agent.models.active(asset)
            return model.manifest.version if model else None

        wait_until(lambda: active() == version, timeout_s=20)
        with psycopg.connect(db) as conn:
            states = wait_until(lambda: registry.gateway_states(conn, asset, version=version), timeout_s=20)
            model = registry.get_model(conn, asset, version)
        assert states[0].gateway_id == gateway_id
        assert states[0].state == "active"
        assert model is not None
        assert model.status == "deployed"

        # new data is scored by the deployed model, and its aggregates say so upstream
        feed(
            publisher,
            vibration_batches(asset, n_batches=10, start_ns=start_ns, first_seq=70),
            agent.intake.queue.qsize,
        )
        scored_by = f"{asset}:v{version}"
        wait_until(
            lambda: _count(db, "SELECT count(*) FROM aggregates WHERE model_version = %s", scored_by) > 0,
            timeout_s=30,
        )
        # trained on the spread of windows (not only period means), it does not flood healthy data
        assert agent.deployments is not None
        assert agent.deployments.receiver.metrics.rolled_back == 0
        assert agent.pipeline.metrics.alerts_raised <= 1
    finally:
        publisher.close()
        agent.stop()
        worker.stop()


def test_a_model_that_floods_alerts_is_rolled_back_by_the_running_agent(
    broker: MosquittoServer, db: str, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    migrate(db)
    keys = init_keys(workdir / "keys")
    key = load_private_key(keys.private_key)
    target = unique_id("pumps")
    assets = (unique_id("pa"), unique_id("pb"))
    pipeline = PipelineSettings(
        assets=tuple(vibration_asset(a).model_copy(update={"model_target": target}) for a in assets)
    )
    settings = edge_settings(
        workdir,
        gateway_id=unique_id("gw"),
        plant=broker,
        upstream=broker,
        pipeline=pipeline,
        deployment={
            "public_key": str(keys.public_key),
            "state_file": str(workdir / "deployments.json"),
            "probation_min_alerts": 1,
        },
    )
    names = list(pipeline.feature_spec(pipeline.assets[0]).feature_names)
    spec = pipeline.feature_spec(pipeline.assets[0])
    rows = synthetic_features(200, spec=spec, seed=3)
    model = build_anomaly_model(rows, names, feature_spec=spec.spec_id, target=target, version=1)
    quiet = msgspec.structs.replace(model.manifest, threshold=1e9)  # never alerts
    noisy = msgspec.structs.replace(model.manifest, version=2, threshold=-1e9)  # alerts on every window
    worker = _ingest(broker, db, unique_id("ingest"))
    agent = EdgeAgent(settings)
    agent.start()
    publisher = RawPublisher(broker, unique_id("pub"))
    mqtt = MqttSettings(host=broker.host, port=broker.port)
    try:
        wait_until(lambda: agent.intake.is_subscribed, timeout_s=10)
        for manifest in (quiet, noisy):
            text = encode(manifest).decode()
            order = build_order(
                manifest_json=text,
                signature_b64=sign_manifest(key, text),
                artifact=model.onnx_int8,
                target=target,
                version=manifest.version,
                chunk_bytes=4096,
            )
            publish_order(order, mqtt)
            wait_until(functools.partial(_is_active, agent, target, manifest.version), timeout_s=20)
        start_ns = now_ns() - 3600 * NS_PER_S
        for index, asset in enumerate(assets):
            batches = vibration_batches(asset, n_batches=12, start_ns=start_ns, seed=index)
            feed(publisher, batches, agent.intake.queue.qsize)
        wait_until(lambda: _active(agent, target) == 1, timeout_s=30)  # probation rolled it back
        with psycopg.connect(db) as conn:

            def rolled_back() -> list[registry.GatewayState]:
                return [
                    s for s in registry.gateway_states(conn, target, version=2) if s.state == "rolled_back"
                ]

            state = wait_until(rolled_back, timeout_s=20)
        assert state[0].reason.startswith("probation:")
        assert agent.deployments is not None
        assert agent.deployments.receiver.metrics.rolled_back == 1
    finally:
        publisher.close()
        agent.stop()
        worker.stop()


def test_a_model_holding_one_alert_raised_on_a_single_asset_is_rolled_back_by_its_anomalous_share(
    broker: MosquittoServer, db: str, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    """One asset, default alert allowance (5): a model scoring every window anomalous raises one alert and
    holds it, so only the share of anomalous windows can catch it."""
    migrate(db)
    keys = init_keys(workdir / "keys")
    key = load_private_key(keys.private_key)
    asset = unique_id("pa")
    pipeline = PipelineSettings(assets=(vibration_asset(asset),))
    settings = edge_settings(
        workdir,
        gateway_id=unique_id("gw"),
        plant=broker,
        upstream=broker,
        pipeline=pipeline,
        deployment={
            "public_key": str(keys.public_key),
            "state_file": str(workdir / "deployments.json"),
            "probation_min_windows": 16,
        },
    )
    spec = pipeline.feature_spec(pipeline.assets[0])
    rows = synthetic_features(200, spec=spec, seed=3)
    model = build_anomaly_model(
        rows, list(spec.feature_names), feature_spec=spec.spec_id, target=asset, version=1
    )
    quiet = msgspec.structs.replace(model.manifest, threshold=1e9)  # never alerts
    noisy = msgspec.structs.replace(model.manifest, version=2, threshold=-1e9)  # every window anomalous
    worker = _ingest(broker, db, unique_id("ingest"))
    agent = EdgeAgent(settings)
    agent.start()
    publisher = RawPublisher(broker, unique_id("pub"))
    mqtt = MqttSettings(host=broker.host, port=broker.port)
    try:
        wait_until(lambda: agent.intake.is_subscribed, timeout_s=10)
        for manifest in (quiet, noisy):
            text = encode(manifest).decode()
            order = build_order(
                manifest_json=text,
                signature_b64=sign_manifest(key, text),
                artifact=model.onnx_int8,
                target=asset,
                version=manifest.version,
                chunk_bytes=4096,
            )
            publish_order(order, mqtt)
            wait_until(functools.partial(_is_active, agent, asset, manifest.version), timeout_s=20)
        batches = vibration_batches(asset, n_batches=12, start_ns=now_ns() - 3600 * NS_PER_S)
        feed(publisher, batches, agent.intake.queue.qsize)
        wait_until(lambda: _active(agent, asset) == 1, timeout_s=30)
        with psycopg.connect(db) as conn:
            state = wait_until(
                lambda: [
                    s for s in registry.gateway_states(conn, asset, version=2) if s.state == "rolled_back"
                ],
                timeout_s=20,
            )
        assert "windows anomalous" in state[0].reason
        assert agent.pipeline.metrics.alerts_raised == 1  # under the allowance of 5 alerts
    finally:
        publisher.close()
        agent.stop()
        worker.stop()


def _active(agent: EdgeAgent, target: str) -> int | None:
    model = agent.models.active(target)
    return model.manifest.version if model else None


def _is_active(agent: EdgeAgent, target: str, version: int) -> bool:
    return _active(agent, target) == version
