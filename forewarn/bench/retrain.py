"""`forewarn bench retrain`: the model lifecycle's cycle time, parity, sizes, and deploy-to-ack time.

Against throwaway local PostgreSQL and Mosquitto (`forewarn.localservices`):

* a fleet of simulated assets (seeded synthetic healthy features, `cloud_service.modeling`) is stored as
  10-second aggregates through the cloud's own write path (`cloud_service.writer.BatchWriter`);
* `train_convert_quantize_validate_sign_s`: one training run of a target covering every asset (data from
  the database, every candidate type trained, converted to ONNX, quantized to int8, thresholded, gated,
  signed and registered);
* `deploy_to_ack_s`: publishing the winner (retained chunks and the signed order) until a running edge
  agent on the broker has verified, installed, swapped and acknowledged it (median of a few).
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psycopg

from cloud_service import queries
from cloud_service.lifecycle import registry
from cloud_service.lifecycle.operations import approve
from cloud_service.lifecycle.publisher import build_order, publish_order
from cloud_service.lifecycle.retraining import train_target
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.lifecycle.signing import init_keys, load_private_key, sign_manifest
from cloud_service.migrate import migrate
from cloud_service.modeling import synthetic_features
from cloud_service.writer import BatchWriter
from edge_agent.agent import EdgeAgent
from edge_agent.settings import EdgeSettings
from forewarn.localservices import (
    MosquittoServer,
    PostgresServer,
    running,
    temporary_directory,
    wait_until,
)
from shared.config import MqttSettings, load_settings
from shared.features import DEFAULT_SPEC, FeatureSpec
from shared.messages import Aggregate, DeploymentAck, FeatureStats, MaintenanceEvent, ScoreStats, encode

__all__ = ["run", "seed_fleet"]

PERIOD_S = 10
_WRITE_BATCH = 5000


def _aggregates(  # noqa: PLR0917 - a private helper of one caller
    gateway_id: str,
    asset_id: str,
    windows: np.ndarray[Any, Any],
    start: datetime,
    spec: FeatureSpec,
    first_seq: int,
) -> list[Aggregate]:
    """One aggregate per period from its windows' features, shape (periods, windows, features)."""
    names = spec.feature_names
    base_ns = int(start.timestamp()) * 10**9
    means, lows, highs = windows.mean(axis=1), windows.min(axis=1), windows.max(axis=1)
    out = []
    for i in range(len(windows)):
        stats = zip(names, means[i].tolist(), lows[i].tolist(), highs[i].tolist(), strict=True)
        t0 = base_ns + i * PERIOD_S * 10**9
        out.append(
            Aggregate(
                gateway_id=gateway_id,
                asset_id=asset_id,
                seq=first_seq + i,
                period_start_ns=t0,
                period_end_ns=t0 + PERIOD_S * 10**9,
                feature_spec=spec.spec_id,
                features={n: FeatureStats(mean, low, high) for n, mean, low, high in stats},
                score=ScoreStats(mean=0.5, max=0.8, threshold=6.0, n_windows=100, n_above_threshold=0),
                model_version="baseline",
                model_kind="baseline",
            )
        )
    return out


def seed_fleet(
    conninfo: str,
    *,
    asset_ids: list[str],
    asset_type: str,
    rows_per_asset: int,
    end: datetime | None = None,
    failing_asset: str | None = None,
    spec: FeatureSpec = DEFAULT_SPEC,
    windows_per_period: int = 4,
    seed: int = 0,
    gateway_prefix: str = "gw",
) -> datetime:
    """Store `rows_per_asset` healthy 10 s aggregates per asset (ending at `end`), typed `asset_type`.

    Each period summarises `windows_per_period` synthetic windows (mean, min, max of each feature). With
    `failing_asset`, its last quarter of periods shows a bearing fault and a failure event is stored at
    the end of its data. Assets sit 25 to a gateway named `gateway_prefix-NNN` (a second fleet in the same
    database needs its own prefix: a gateway's sequence numbers are unique). Returns the start time.
    """
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    start = end - timedelta(seconds=PERIOD_S * rows_per_asset)
    with psycopg.connect(conninfo) as conn:
        writer = BatchWriter(conn)
        pending: list[Aggregate | MaintenanceEvent] = []
        for index, asset_id in enumerate(asset_ids):
            n_windows = rows_per_asset * windows_per_period
            rows = synthetic_features(n_windows, spec=spec, seed=seed * 10_000 + index)
            if asset_id == failing_asset:
                n_fault = n_windows // 4
                rows[-n_fault:] = synthetic_features(n_fault, spec=spec, fault="bearing", seed=seed + 77)
                pending.append(
                    MaintenanceEvent(asset_id=asset_id, ts_ns=int(end.timestamp()) * 10**9, event="failure")
                )
            rows = rows.reshape(rows_per_asset, windows_per_period, -1)
            pending.extend(
                _aggregates(
                    f"{gateway_prefix}-{index // 25:03d}",
                    asset_id,
                    rows,
                    start,
                    spec,
                    1 + index * rows_per_asset,
                )
            )
            if len(pending) >= _WRITE_BATCH:
                writer.write(pending)
                pending = []
        if pending:
            writer.write(pending)
        for asset_id in asset_ids:
            queries.update_asset(conn, asset_id, asset_type=asset_type)
        conn.commit()
    return start


def _mqtt(broker: MosquittoServer) -> MqttSettings:
    return MqttSettings.model_validate({"host": broker.host, "port": broker.port})


def _agent(
    broker: MosquittoServer, workdir: Path, public_key: Path, target: str, acks: list[DeploymentAck]
) -> EdgeAgent:
    """A running edge agent serving one pump of `target` (the model's features: vibration, temperature,
    current), receiving deployments from the broker."""
    mqtt = {"host": broker.host, "port": broker.port}
    asset = {
        "asset_id": "pump-bench",
        "model_target": target,
        "sensors": [
            {"name": "vibration", "kind": "vibration", "sample_rate_hz": 10_240.0},
            {"name": "temperature", "kind": "slow", "sample_rate_hz": 10.0},
            {"name": "current", "kind": "slow", "sample_rate_hz": 10.0},
        ],
    }
    settings = load_settings(
        EdgeSettings,
        environ={},
        overrides={
            "gateway_id": "gw-bench",
            "plant_mqtt": mqtt,
            "upstream_mqtt": mqtt,
            "pipeline": {"assets": [asset]},
            "models": {"store_dir": str(workdir / "edge" / "models")},
            "queue": {"dir": str(workdir / "edge" / "queue")},
            "quarantine": {"dir": str(workdir / "edge" / "quarantine")},
            "deployment": {"public_key": str(public_key), "state_file": str(workdir / "edge" / "state.json")},
        },
    )
    agent = EdgeAgent(settings)
    if agent.deployments is None:
        raise RuntimeError("the bench agent has no deployment receiver")
    lock = threading.Lock()

    def keep(ack: DeploymentAck) -> None:
        with lock:
            acks.append(ack)

    agent.deployments.receiver.add_ack_listener(keep)
    agent.start()
    wait_until(lambda: agent.deployments is not None and agent.deployments.is_connected, timeout_s=30)
    return agent


def _ack_of(acks: list[DeploymentAck], version: int) -> DeploymentAck | None:
    return next((a for a in list(acks) if a.version == version), None)


def _deploy_to_ack(
    broker: MosquittoServer, record: registry.ModelRecord, key_path: Path, acks: list[DeploymentAck], n: int
) -> list[float]:
    """Publish the model as versions v, v+1, ... (re-signed) and time each until its ack arrives."""
    private = load_private_key(key_path)
    mqtt = _mqtt(broker)
    timings = []
    manifest = msgspec.json.decode(record.manifest_json.encode())
    for i in range(n):
        version = record.version + i
        manifest["version"] = version
        text = msgspec.json.encode(manifest).decode()
        order = build_order(
            manifest_json=text,
            signature_b64=sign_manifest(private, text),
            artifact=record.artifact,
            target=record.target,
            version=version,
            chunk_bytes=LifecycleSettings.model_validate({}).chunk_bytes,
        )
        started = time.perf_counter()
        publish_order(order, mqtt, timeout_s=30)
        ack = wait_until(functools.partial(_ack_of, acks, version), timeout_s=30, interval_s=0.002)
        timings.append(time.perf_counter() - started)
        if ack is None or not ack.ok:
            raise RuntimeError(f"bench deployment refused: {ack}")
    return timings


def run(*, quick: bool = False) -> dict[str, object]:
    """Measure the retraining cycle for a 100-asset target and deploy-to-ack on local services."""
    n_assets = 20 if quick else 100
    rows_per_asset = 240 if quick else 480
    target = "pump"
    with (
        temporary_directory("forewarn-bench-retrain-") as workdir,
        running(PostgresServer(workdir / "pg")) as postgres,
        running(MosquittoServer(workdir / "mq")) as broker,
    ):
        conninfo = postgres.create_database("bench")
        migrate(conninfo, allow_timescale=False)
        assets = [f"pump-{i:03d}" for i in range(n_assets)]
        seed_fleet(conninfo, asset_ids=assets, asset_type=target, rows_per_asset=rows_per_asset)
        keys = init_keys(workdir / "keys")
        settings = LifecycleSettings.model_validate(
            {"signing_key": keys.private_key, "min_training_rows": 100}
        )
        with psycopg.connect(conninfo) as conn:
            started = time.perf_counter()
            report = train_target(conn, settings, target, private_key=load_private_key(keys.private_key))
            conn.commit()
            cycle_s = time.perf_counter() - started
            if report.selected is None:
                raise RuntimeError(f"no candidate passed the gates: {report}")
            approve(conn, target, report.selected)
            with conn.transaction():
                record = registry.get_model(conn, target, report.selected, with_artifact=True)
        if record is None:
            raise RuntimeError("the selected model vanished from the registry")
        acks: list[DeploymentAck] = []
        agent = _agent(broker, workdir, keys.public_key, target, acks)
        try:
            timings = _deploy_to_ack(broker, record, keys.private_key, acks, 3 if quick else 5)
        finally:
            agent.stop()
    if record.metrics is None:
        raise RuntimeError("the selected model was registered without metrics")
    return {
        "assets": n_assets,
        "rows_per_asset": rows_per_asset,
        "train_rows": report.rows.fit + report.rows.validation,
        "candidates": [f"v{c.version} {c.model_type}: {c.status}" for c in report.candidates],
        "selected_model_type": record.model_type,
        "train_convert_quantize_validate_sign_s": round(cycle_s, 3),
        "int8_float_decision_agreement": record.metrics.int8_float_decision_agreement,
        "model_bytes_float": int(record.metrics.model_bytes_float),
        "model_bytes_int8": int(record.metrics.model_bytes_int8),
        "int8_latency_us": round(record.metrics.int8_latency_us, 2),
        "deploy_to_ack_s": round(statistics.median(timings), 4),
        "deploy_to_ack_max_s": round(max(timings), 4),
        "encoded_order_bytes": len(encode(record_order_message(record))),
    }


def record_order_message(record: registry.ModelRecord) -> Any:
    """The deployment message of a registered model (for its size)."""
    return build_order(
        manifest_json=record.manifest_json,
        signature_b64=record.signature_b64,
        artifact=record.artifact,
        target=record.target,
        version=record.version,
        chunk_bytes=LifecycleSettings.model_validate({}).chunk_bytes,
    ).message
