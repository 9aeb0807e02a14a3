"""Chaos scenario `model-push-during-outage`: signed models pushed and rolled back while a gateway is away.

One gateway of the rig (the victim) is given a deployment key, a short probation and a small disk queue
(`queue.max_bytes` at its 10,000-byte minimum), and restarted. Then, with the load running:

1. the victim's edge agent is stopped (SIGTERM) and a signed model that never alerts (v1) is pushed
   through the cloud's real path: registered, `operations.deploy` over the upstream broker. After
   `outage_s` the agent starts again; the retained order reaches it, it verifies and installs the model,
   and its acknowledgement makes the cloud's per-gateway state `active`
   (`deployed_after_reconnect_s`);
2. a signed model that scores every window as anomalous (v2) is pushed and acknowledged `active`, and the
   upstream broker is stopped at once. With the uplink down the victim's queue fills and sheds its oldest
   aggregates; v2's probation trips on its share of anomalous windows and rolls it back locally (read
   from the agent's `deployments.json` while the broker is still down), v1 serves again. After another
   `outage_s` the broker returns, and the rollback acknowledgement, kept in the full queue (acks are
   dropped last), makes the cloud's state of v2 `rolled_back` (`rollback_reported_after_reconnect_s`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_service.lifecycle import operations, registry
from cloud_service.lifecycle.signing import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    KeyPair,
    init_keys,
    load_private_key,
    sign_manifest,
)
from cloud_service.modeling import build_anomaly_model, synthetic_features
from cloud_service.queries import latest_gateway_metrics, latest_gateway_model
from edge_agent.deployment import DeploymentSettings
from edge_agent.disk_queue import read_bytes, read_dropped
from edge_agent.settings import EdgeSettings
from forewarn.localservices import wait_until
from shared.config import MqttSettings, load_settings, render_settings
from shared.messages import ModelManifest, encode

if TYPE_CHECKING:
    from forewarn.chaos_fault import Durations, Rig

__all__ = ["QUEUE_MAX_BYTES", "model_push_during_outage"]

QUEUE_MAX_BYTES = 10_000  # the smallest queue bound allowed: a few seconds of the victim's uplink
# Windows the flooding model scores before probation judges them: the smoke load gives the victim's asset
# 4 windows per wall second, so about 10 s, time enough for the queue to fill with the uplink down.
_PROBATION_MIN_WINDOWS = 40
_CHUNK_BYTES = 4096
_T = TypeVar("_T")


def _timed(condition: Callable[[], _T], timeout_s: float) -> tuple[_T | None, float | None]:
    """(value, seconds) once `condition()` is truthy, or (None, None) after `timeout_s`."""
    start = time.monotonic()
    try:
        value = wait_until(condition, timeout_s=timeout_s, interval_s=0.1)
    except TimeoutError:
        return None, None
    return value, round(time.monotonic() - start, 2)


class _Victim:
    """The gateway the scenario works on: its configuration, state files and model target."""

    def __init__(self, rig: Rig, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        self.process = rig.edges[gateway_id]
        self.state_dir = rig.state_dirs[gateway_id]
        self.queue_file = rig.queue_file(gateway_id)
        self.config = self.state_dir.parent / f"{gateway_id}.toml"
        self.settings = load_settings(EdgeSettings, toml_path=self.config, environ={})
        asset = self.settings.pipeline.assets[0]
        self.target = asset.model_target or asset.asset_id
        self.spec = self.settings.pipeline.feature_spec(asset)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "deployments.json"

    def enable_deployments(self, public_key: Path) -> None:
        """Restart the agent with a deployment key, a short probation and a small queue."""
        deployment = DeploymentSettings(
            public_key=public_key,
            state_file=self.state_file,
            probation_s=600.0,
            probation_min_windows=_PROBATION_MIN_WINDOWS,
        )
        queue = self.settings.queue.model_copy(update={"max_bytes": QUEUE_MAX_BYTES})
        self.settings = self.settings.model_copy(update={"deployment": deployment, "queue": queue})
        self.config.write_text(render_settings(self.settings))
        self.process.stop()
        self.process.start()

    def rolled_back(self) -> list[int]:
        """Versions of the target the agent's probation rolled back (read beside the running agent)."""
        try:
            state = json.loads(self.state_file.read_bytes())
        except (FileNotFoundError, ValueError):
            return []
        return [int(v) for v in state.get("rolled_back", {}).get(self.target, [])]


def _register(
    conn: psycopg.Connection[Any], manifest: ModelManifest, artifact: bytes, key: Ed25519PrivateKey
) -> None:
    """Register a signed, approved model, as a training run with approval would (committed)."""
    text = encode(manifest).decode()
    registry.insert_model(
        conn,
        target=manifest.target,
        version=manifest.version,
        model_type=manifest.model_type,
        sha256=manifest.artifact_sha256,
        artifact=artifact,
        manifest_json=text,
        signature_b64=sign_manifest(key, text),
        feature_spec=manifest.feature_spec,
        feature_names=manifest.feature_names,
        threshold=manifest.threshold,
        assets=[],
        train_start=None,
        train_end=None,
        n_train_rows=0,
        metrics=None,
        gates=None,
        reference=None,
        status="approved",
        reason="chaos: model-push-during-outage",
    )
    conn.commit()


def _push(rig: Rig, victim: _Victim, key: Ed25519PrivateKey, *, threshold: float) -> int:
    """Register a new version of the victim's target scoring at `threshold`, and deploy it (the cloud's
    path: signed, chunks and order retained on the upstream broker). Returns the version."""
    rows = synthetic_features(200, spec=victim.spec, seed=3)
    with psycopg.connect(rig.conninfo) as conn:
        version = registry.allocate_version(conn, victim.target)
        model = build_anomaly_model(
            rows,
            list(victim.spec.feature_names),
            feature_spec=victim.spec.spec_id,
            target=victim.target,
            version=version,
        )
        manifest = msgspec.structs.replace(model.manifest, threshold=threshold)
        _register(conn, manifest, model.onnx_int8, key)
        mqtt = MqttSettings(host=rig.upstream.host, port=rig.upstream.port)
        operations.deploy(conn, mqtt, victim.target, version, chunk_bytes=_CHUNK_BYTES)
    return version


def _state(rig: Rig, victim: _Victim, version: int) -> str:
    """The cloud's state of `version` on the victim (`active`, `refused`, `rolled_back`), or ''."""
    try:
        with psycopg.connect(rig.conninfo, connect_timeout=2) as conn:
            states = registry.gateway_states(conn, victim.target, version=version)
    except psycopg.OperationalError:
        return ""
    return next((s.state for s in states if s.gateway_id == victim.gateway_id), "")


def _has_deployments(rig: Rig, victim: _Victim) -> bool:
    """Whether the victim's newest stored heartbeat carries the deployment receiver's counters."""
    with psycopg.connect(rig.conninfo, connect_timeout=2) as conn:
        return "deploy.installed" in latest_gateway_metrics(conn, victim.gateway_id)


def model_push_during_outage(rig: Rig, durations: Durations) -> dict[str, Any]:
    """Run the scenario on the last gateway of the rig; returns its own figures."""
    victim = _Victim(rig, sorted(rig.edges)[-1])
    key_dir = victim.state_dir.parent / "signing-keys"
    if (key_dir / PRIVATE_KEY_FILE).exists():  # a work directory used before (`--workdir`)
        keys = KeyPair(key_dir / PRIVATE_KEY_FILE, key_dir / PUBLIC_KEY_FILE)
    else:
        keys = init_keys(key_dir)
    key = load_private_key(keys.private_key)
    victim.enable_deployments(keys.public_key)
    wait_until(lambda: _has_deployments(rig, victim), timeout_s=60, interval_s=0.2)

    # (a) a model pushed while the gateway is stopped arrives, verifies and is acknowledged after it returns
    victim.process.stop()
    quiet = _push(rig, victim, key, threshold=1e9)  # never alerts
    state_while_away = _state(rig, victim, quiet)
    time.sleep(durations.outage_s)
    victim.process.start()
    active, deployed_after_s = _timed(lambda: _state(rig, victim, quiet) == "active", timeout_s=60)

    # (b) a flooding model rolled back locally with the uplink down and the queue full; reported after
    flooding = _push(rig, victim, key, threshold=-1e9)  # every window anomalous
    flooding_active, _ = _timed(lambda: _state(rig, victim, flooding) == "active", timeout_s=30)
    rig.upstream.stop()
    dropped_before = sum(read_dropped(victim.queue_file).values())
    rolled, rollback_s = _timed(lambda: flooding in victim.rolled_back(), timeout_s=90)
    dropped_at_rollback = sum(read_dropped(victim.queue_file).values())
    queue_bytes_at_rollback = read_bytes(victim.queue_file)
    time.sleep(durations.outage_s)
    rig.upstream.start()
    reported, reported_after_s = _timed(lambda: _state(rig, victim, flooding) == "rolled_back", timeout_s=60)
    return {
        "gateway": victim.gateway_id,
        "target": victim.target,
        "state_while_away": state_while_away or None,
        "deployed_after_reconnect_s": deployed_after_s,
        "active_after_reconnect": bool(active),
        "flooding_model_active": bool(flooding_active),
        "rolled_back": bool(rolled),
        "rollback_after_uplink_down_s": rollback_s,
        "queue_max_bytes": QUEUE_MAX_BYTES,
        "queue_bytes_at_rollback": queue_bytes_at_rollback,
        "queue_dropped_before_rollback": dropped_at_rollback - dropped_before,
        "rollback_reported": bool(reported),
        "rollback_reported_after_reconnect_s": reported_after_s,
        "serving_after_rollback": _serving(rig, victim, quiet),
    }


def _serving(rig: Rig, victim: _Victim, version: int) -> str | None:
    """The model the victim's newest stored aggregate was scored with, once it is `version` (or after
    a while, whatever it is)."""
    label = f"{victim.target}:v{version}"

    def latest() -> str | None:
        with psycopg.connect(rig.conninfo) as conn:
            return latest_gateway_model(conn, victim.gateway_id)

    _timed(lambda: latest() == label, timeout_s=20)
    return latest()
