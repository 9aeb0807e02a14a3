"""Receiving models from the cloud: verify, install, hot-swap, acknowledge, and keep new models on probation.

Flow for each target the gateway serves (see `shared.model_transfer` for the wire format)::

    forewarn/v1/models/<target>/chunk/<i>   retained artifact chunks   -> reassembled per version
    forewarn/v1/models/<target>/deployment  retained signed order      -> checks, then ModelStore swap
    forewarn/v1/gw/<gateway>/deploy-ack     DeploymentAck upstream     <- ok, or the refusal with its reason

Checks, in order, each refusal acknowledged with `ok=false` and a reason starting with the check's name:
`signature` (Ed25519 over the manifest text, with the public key only), `manifest` (it decodes and names
the deployment's target and version), `version` (newer than the active one; a rollback order, signed as
such, may name an older version but must be issued after the active model's manifest, so an old order
replayed later is refused), `size` (the chunks add up to the announced size), then the model store's
own checks: `sha256`, `features` (the pipeline's feature names for the target), `load`/`io`, `golden`.
A refused model never replaces the one serving.

Probation: after a swap, `observe_alert(target)` counts the alerts the new model raises; if they exceed
`probation_alert_multiple` times the expected rate (at least `probation_min_alerts`) within `probation_s`,
the receiver rolls the store back to the previous version, remembers the version as rolled back (so its
retained deployment is not applied again, even after a restart), and acknowledges `ok=false` with reason
`probation: ...`.

Threads: `on_message` runs on paho's thread and only enqueues; `edge-deploy` does the work (ONNX loading,
golden pairs, files) and acknowledges the MQTT message afterwards (`manual_ack`), so the broker's Receive
Maximum bounds what is buffered.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, Field

from edge_agent.model_store import ModelStore
from shared import topics
from shared.config import MqttSettings
from shared.errors import ConfigError, ContractError, ModelVerificationError
from shared.messages import (
    DeploymentAck,
    ModelDeployment,
    ModelManifest,
    decode_deployment,
    decode_manifest,
    encode,
)
from shared.model_transfer import Chunk, decode_chunk, signed_text
from shared.mqtt import connect, make_client

__all__ = [
    "AckListener",
    "DeploymentClient",
    "DeploymentMetrics",
    "DeploymentReceiver",
    "DeploymentSettings",
    "Probation",
    "load_public_key",
]

logger = logging.getLogger(__name__)

AckListener = Callable[[DeploymentAck], None]
_MAX_REASON = 1000
_VERSIONS_BUFFERED = 2
_GET_TIMEOUT_S = 0.1


class DeploymentSettings(BaseModel, frozen=True, extra="forbid"):
    """Section `deployment` of the edge settings: receiving signed models and watching them on probation."""

    public_key: Path | None = Field(
        None,
        description="Ed25519 public key (PEM) deployments must be signed with (the gateway never holds the "
        "private key); not set: this gateway receives no deployments.",
    )
    state_file: Path = Field(
        Path("/var/lib/forewarn/edge/deployments.json"),
        description="Versions rolled back by probation (their retained deployments are not applied again).",
    )
    max_artifact_bytes: int = Field(64 << 20, ge=1024, description="Largest model artifact accepted.")
    queue_size: int = Field(
        256, ge=8, le=65535, description="Deployment messages buffered between MQTT and the installer."
    )
    probation_s: float = Field(3600.0, ge=0, description="How long a newly swapped model is on probation.")
    probation_alert_multiple: float = Field(
        10.0, gt=0, description="Roll back when alerts exceed this multiple of the expected rate."
    )
    expected_alerts_per_asset_per_h: float = Field(
        1.0 / 168.0, gt=0, description="Expected alert rate of a healthy asset (the false-alarm budget)."
    )
    probation_min_alerts: int = Field(
        5, ge=1, description="Never roll back for fewer alerts than this within the probation period."
    )


def load_public_key(path: Path | None) -> Ed25519PublicKey:
    """Read the Ed25519 public key deployments are verified with.

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


@dataclasses.dataclass
class DeploymentMetrics:
    """Counters of the receiver (they travel in the heartbeat)."""

    deployments_received: int = 0
    chunks_received: int = 0
    malformed: int = 0
    installed: int = 0
    refused: int = 0
    rolled_back: int = 0
    ignored: int = 0
    dropped_queue_full: int = 0
    worker_errors: int = 0


class Probation:
    """Watches a freshly swapped model's alert rate; `observe` says when it must be rolled back.

    Args:
        target: the model target.
        version: the version on probation.
        started_s: when it was swapped in (monotonic seconds).
        period_s: how long probation lasts.
        allowed_alerts: the most alerts tolerated within the period.
    """

    def __init__(
        self, *, target: str, version: int, started_s: float, period_s: float, allowed_alerts: int
    ) -> None:
        self.target = target
        self.version = version
        self.started_s = started_s
        self.period_s = period_s
        self.allowed_alerts = allowed_alerts
        self._alerts = 0
        self._tripped = False

    @property
    def alerts(self) -> int:
        """Alerts raised by the model since it was swapped in (within the period)."""
        return self._alerts

    @property
    def is_tripped(self) -> bool:
        """Whether the model exceeded its allowance (reported once)."""
        return self._tripped

    def is_over(self, now_s: float) -> bool:
        """Whether probation has ended (passed or tripped)."""
        return self._tripped or now_s - self.started_s > self.period_s

    def observe(self, alert_raised: bool, now_s: float) -> bool:
        """Count one scored decision; True exactly once, when the alerts exceed the allowance in time."""
        if self.is_over(now_s) or not alert_raised:
            return False
        self._alerts += 1
        if self._alerts > self.allowed_alerts:
            self._tripped = True
            return True
        return False


@dataclasses.dataclass
class _Assembly:
    """Chunks received for one target, per deployment version."""

    chunks: dict[int, dict[int, bytes]] = dataclasses.field(default_factory=dict)
    counts: dict[int, int] = dataclasses.field(default_factory=dict)

    def add(self, chunk: Chunk, max_bytes: int) -> bool:
        if chunk.version not in self.chunks and len(self.chunks) >= _VERSIONS_BUFFERED:
            del self.chunks[min(self.chunks)]
        parts = self.chunks.setdefault(chunk.version, {})
        if self.counts.setdefault(chunk.version, chunk.chunk_count) != chunk.chunk_count:
            return False
        if sum(len(p) for p in parts.values()) + len(chunk.data) > max_bytes:
            return False
        parts[chunk.index] = chunk.data
        return True

    def artifact(self, version: int, chunk_count: int) -> bytes | None:
        parts = self.chunks.get(version, {})
        if self.counts.get(version) != chunk_count or len(parts) < chunk_count:
            return None
        return b"".join(parts[i] for i in range(chunk_count))

    def discard_up_to(self, version: int) -> None:
        for known in [v for v in self.chunks if v <= version]:
            del self.chunks[known]
            self.counts.pop(known, None)


class _RefusedError(Exception):
    """A deployment is refused; `check` names the failed check."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class DeploymentReceiver:
    """Verifies and installs signed model deployments for this gateway's targets.

    Args:
        settings: the `deployment` section.
        store: the edge model store (install, activate, rollback).
        gateway_id: this gateway.
        targets: model targets this gateway serves.
        expected_features: per target, the feature names the pipeline computes (checked before install).
        expected_specs: per target, the feature spec id the pipeline computes (checked before install).
        assets_per_target: per target, how many assets it scores (scales the probation allowance).
        public_key: the verification key (default: read from `settings.public_key`).
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        *,
        settings: DeploymentSettings,
        store: ModelStore,
        gateway_id: str,
        targets: Iterable[str],
        expected_features: Mapping[str, Sequence[str]] | None = None,
        expected_specs: Mapping[str, str] | None = None,
        assets_per_target: Mapping[str, int] | None = None,
        public_key: Ed25519PublicKey | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.gateway_id = gateway_id
        self.targets = frozenset(topics.check_ident("target", t) for t in targets)
        self.metrics = DeploymentMetrics()
        self._expected = {k: list(v) for k, v in (expected_features or {}).items()}
        self._specs = dict(expected_specs or {})
        self._assets = dict(assets_per_target or {})
        self._public_key = public_key if public_key is not None else load_public_key(settings.public_key)
        self._clock = clock
        self._ack_listeners: list[AckListener] = []
        self._assemblies: dict[str, _Assembly] = {}
        self._orders: dict[str, ModelDeployment] = {}
        self._seen: set[tuple[str, int, bool, str]] = set()
        self._probation: dict[str, Probation] = {}
        self._rolled_back = self._read_state()
        self._work: queue.Queue[tuple[str, bytes, Callable[[], object] | None]] = queue.Queue(
            settings.queue_size
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- wiring -----------------------------------------------------------------------------------------

    def add_ack_listener(self, listener: AckListener) -> None:
        """Call `listener(ack)` (on the `edge-deploy` thread) for every acknowledgement produced."""
        self._ack_listeners.append(listener)

    def subscriptions(self) -> list[str]:
        """Topic filters to subscribe (QoS 1) on the upstream broker."""
        filters = []
        for target in sorted(self.targets):
            filters += [topics.model_deployment(target), topics.model_chunk(target, "+")]
        return filters

    def start(self) -> None:
        """Start the `edge-deploy` worker thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edge-deploy", daemon=True)
        self._thread.start()

    def stop(self, *, join_timeout_s: float = 10.0) -> None:
        """Stop the worker thread (messages still queued are redelivered by the broker later)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(join_timeout_s)
            self._thread = None

    def on_message(self, topic: str, payload: bytes, done: Callable[[], object] | None = None) -> None:
        """Hand one MQTT message to the worker (paho's thread: enqueue only); `done` runs after handling."""
        try:
            self._work.put_nowait((topic, payload, done))
        except queue.Full:
            self.metrics.dropped_queue_full += 1

    def observe_alert(self, target: str, *, alert_raised: bool = True, now_s: float | None = None) -> None:
        """Tell probation that the model of `target` raised an alert (called by the pipeline's thread)."""
        probation = self._probation.get(target)
        if probation is None:
            return
        if probation.observe(alert_raised, self._clock() if now_s is None else now_s):
            self.on_message("", target.encode())  # an empty topic asks the worker to roll back

    def probation(self, target: str) -> Probation | None:
        """The probation of `target`'s current model, if one is running or tripped."""
        return self._probation.get(target)

    # --- the worker -------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                topic, payload, done = self._work.get(timeout=_GET_TIMEOUT_S)
            except queue.Empty:
                continue
            try:
                self.handle(topic, payload)
            except Exception:  # the worker must survive anything one message does
                self.metrics.worker_errors += 1
                logger.exception("deployment worker failed on %s", topic)
            if done is not None:
                done()

    def handle(self, topic: str, payload: bytes) -> None:
        """Process one message synchronously (the worker's job; tests may call it directly)."""
        if not topic:
            self._probation_rollback(payload.decode())
            return
        try:
            parsed = topics.parse(topic)
        except ContractError:
            self.metrics.malformed += 1
            return
        if parsed.target not in self.targets:
            self.metrics.ignored += 1
            return
        if parsed.kind is topics.TopicKind.MODEL_CHUNK:
            self._on_chunk(parsed.target, payload)
        elif parsed.kind is topics.TopicKind.DEPLOYMENT:
            self._on_deployment(parsed.target, payload)
        self._try_complete(parsed.target)

    def _on_chunk(self, target: str, payload: bytes) -> None:
        if not payload:  # a cleared retained chunk
            return
        self.metrics.chunks_received += 1
        try:
            chunk = decode_chunk(payload)
        except ContractError:
            self.metrics.malformed += 1
            return
        assembly = self._assemblies.setdefault(target, _Assembly())
        if not assembly.add(chunk, self.settings.max_artifact_bytes):
            self.metrics.malformed += 1

    def _on_deployment(self, target: str, payload: bytes) -> None:
        if not payload:
            return
        self.metrics.deployments_received += 1
        try:
            order = decode_deployment(payload)
        except ContractError as exc:
            self.metrics.malformed += 1
            logger.warning("malformed deployment for %s: %s", target, exc)
            return
        if order.target != target:
            self.metrics.malformed += 1
            return
        key = (target, order.version, order.is_rollback, order.signature_b64)
        if self._is_known(order, key):
            self.metrics.ignored += 1
            return
        try:
            self._check_signature(order)
            if order.artifact_bytes > self.settings.max_artifact_bytes:
                raise _RefusedError(
                    "size", f"{order.artifact_bytes} bytes > {self.settings.max_artifact_bytes}"
                )
        except _RefusedError as refusal:
            self._seen.add(key)
            self._refuse(order, refusal)
            return
        self._orders[target] = order

    def _is_known(self, order: ModelDeployment, key: tuple[str, int, bool, str]) -> bool:
        """Seen already, already serving it (retained, seen again after a reconnect), or rolled back."""
        if key in self._seen:
            return True
        active = self.store.active(order.target)
        is_active = active is not None and active.manifest.version == order.version
        was_rolled_back = order.version in self._rolled_back.get(order.target, ())
        if not order.is_rollback and (is_active or was_rolled_back):
            self._seen.add(key)
            return True
        return False

    def _check_signature(self, order: ModelDeployment) -> None:
        try:
            signature = base64.b64decode(order.signature_b64, validate=True)
            self._public_key.verify(
                signature, signed_text(order.manifest_json, is_rollback=order.is_rollback)
            )
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise _RefusedError("signature", "not signed by the configured deployment key") from exc

    def _try_complete(self, target: str) -> None:
        order = self._orders.get(target)
        if order is None:
            return
        assembly = self._assemblies.setdefault(target, _Assembly())
        artifact = assembly.artifact(order.version, order.chunk_count)
        if artifact is None:
            return
        del self._orders[target]
        self._seen.add((target, order.version, order.is_rollback, order.signature_b64))
        assembly.discard_up_to(order.version)
        try:
            message = self._install(order, artifact)
        except _RefusedError as refusal:
            self._refuse(order, refusal)
            return
        except ModelVerificationError as exc:
            self._refuse(order, _RefusedError(exc.check, exc.detail))
            return
        self.metrics.installed += 1
        self._ack(order.target, order.version, ok=True, reason=message)

    def _manifest(self, order: ModelDeployment) -> ModelManifest:
        try:
            manifest = decode_manifest(order.manifest_json)
        except ContractError as exc:
            raise _RefusedError("manifest", str(exc)) from exc
        if manifest.target != order.target or manifest.version != order.version:
            raise _RefusedError(
                "manifest",
                f"manifest names {manifest.target} v{manifest.version}, "
                f"the order {order.target} v{order.version}",
            )
        return manifest

    def _check_version(self, order: ModelDeployment, manifest: ModelManifest) -> int | None:
        """The running version, if the order may replace it; else a `version` refusal.

        An ordinary order must be newer. A rollback order (signed as such) may name any version, but must
        have been issued after the running model's manifest, so an old order replayed later is refused;
        on a gateway without a model, or one older than the order's, it simply installs that version.
        """
        active = self.store.active(order.target)
        current = active.manifest.version if active is not None else None
        if order.is_rollback:
            if active is not None and manifest.created_ns <= active.manifest.created_ns:
                raise _RefusedError(
                    "version", "rollback order is older than the model running now (a replay)"
                )
        elif current is not None and manifest.version <= current:
            raise _RefusedError("version", f"v{manifest.version} is not newer than the running v{current}")
        return current

    def _install(self, order: ModelDeployment, artifact: bytes) -> str:
        manifest = self._manifest(order)
        current = self._check_version(order, manifest)
        if len(artifact) != order.artifact_bytes:
            raise _RefusedError(
                "size", f"received {len(artifact)} bytes, the order announced {order.artifact_bytes}"
            )
        spec = self._specs.get(order.target)
        if spec is not None and manifest.feature_spec != spec:
            raise _RefusedError(
                "features", f"feature spec {manifest.feature_spec!r} is not the pipeline's {spec!r}"
            )
        if order.is_rollback and current == manifest.version:
            self._probation.pop(order.target, None)
            return f"already running v{current} (rollback order)"
        self.store.install(manifest, artifact, expected_feature_names=self._expected.get(order.target))
        self.store.activate(order.target, manifest.version)
        was = f"v{current}" if current is not None else "none"
        if order.is_rollback:
            self._probation.pop(order.target, None)
            return f"rolled back to v{manifest.version} by order (was {was})"
        self._start_probation(order.target, manifest.version)
        return f"activated v{manifest.version} (was {was})"

    def _start_probation(self, target: str, version: int) -> None:
        s = self.settings
        expected = (
            s.probation_alert_multiple * s.expected_alerts_per_asset_per_h * self._assets.get(target, 1)
        )
        allowed = max(s.probation_min_alerts, int(expected * s.probation_s / 3600.0))
        self._probation[target] = Probation(
            target=target,
            version=version,
            started_s=self._clock(),
            period_s=s.probation_s,
            allowed_alerts=allowed,
        )

    def _probation_rollback(self, target: str) -> None:
        probation = self._probation.get(target)
        active = self.store.active(target)
        if probation is None or active is None or active.manifest.version != probation.version:
            return
        elapsed = self._clock() - probation.started_s
        what = f"probation: {probation.alerts} alerts in {elapsed:.0f} s (allowed {probation.allowed_alerts})"
        try:
            previous = self.store.rollback(target)
        except ModelVerificationError as exc:
            self._ack(target, probation.version, ok=False, reason=f"{what}; cannot roll back: {exc.detail}")
            return
        self._rolled_back.setdefault(target, set()).add(probation.version)
        self._write_state()
        self.metrics.rolled_back += 1
        logger.warning("%s: %s; rolled back to v%d", target, what, previous.manifest.version)
        self._ack(
            target, probation.version, ok=False, reason=f"{what}; rolled back to v{previous.manifest.version}"
        )

    def _refuse(self, order: ModelDeployment, refusal: _RefusedError) -> None:
        self.metrics.refused += 1
        logger.warning("refused %s v%d: %s", order.target, order.version, refusal)
        self._ack(order.target, order.version, ok=False, reason=str(refusal))

    def _ack(self, target: str, version: int, *, ok: bool, reason: str) -> None:
        ack = DeploymentAck(
            gateway_id=self.gateway_id,
            seq=0,
            target=target,
            version=version,
            ok=ok,
            reason=reason[:_MAX_REASON],
            ts_ns=time.time_ns(),
        )
        for listener in self._ack_listeners:
            try:
                listener(ack)
            except Exception:  # one listener must not stop the others
                logger.exception("deployment ack listener failed")

    # --- the small persistent state -----------------------------------------------------------------------

    def _read_state(self) -> dict[str, set[int]]:
        path = self.settings.state_file
        try:
            raw = json.loads(path.read_bytes())
            return {str(t): {int(v) for v in versions} for t, versions in raw["rolled_back"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.error("deployment state %s is unreadable (%s); starting without it", path, exc)
            return {}

    def _write_state(self) -> None:
        path = self.settings.state_file
        data = json.dumps({"rolled_back": {t: sorted(v) for t, v in self._rolled_back.items()}}).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
        except OSError as exc:
            logger.error("cannot write deployment state %s: %s", path, exc)


class DeploymentClient:
    """The receiver's own MQTT connection to the upstream broker: subscriptions in, acknowledgements out.

    Acknowledgements are published QoS 1 on `topics.deploy_ack(gateway_id)` with a `seq` unique per gateway
    (microseconds since the epoch, strictly increasing), so the cloud keeps every one of them. Until the
    broker acknowledges one, it is kept in a small file next to `state_file` (`<stem>-acks.json`) and
    published again after a restart; the cloud stores it once, as `(gateway_id, seq)` is unique there.

    Args:
        settings: the upstream broker.
        receiver: the receiver to feed.
        client_id: MQTT client id (stable, for the persistent session).
        session_expiry_s: how long the broker keeps our session while we are away.
    """

    def __init__(
        self,
        *,
        settings: MqttSettings,
        receiver: DeploymentReceiver,
        client_id: str,
        session_expiry_s: int = 7 * 24 * 3600,
    ) -> None:
        self.settings = settings.model_copy(update={"receive_maximum": receiver.settings.queue_size})
        self.receiver = receiver
        self._session_expiry_s = session_expiry_s
        self._client = make_client(self.settings, client_id=client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        state = receiver.settings.state_file
        self._outbox_path = state.with_name(f"{state.stem}-acks.json")
        self._lock = threading.Lock()
        self._last_seq = 0
        self._pending: dict[int, str] = self._read_outbox()  # seq -> encoded ack, until the broker has it
        self._in_flight: dict[int, int] = {}  # paho mid -> seq
        self._early: set[int] = set()  # mids the broker acknowledged before `_publish` recorded them
        self._resend = set(self._pending)
        self.acks_published = 0
        receiver.add_ack_listener(self.publish_ack)

    def start(self) -> None:
        """Start the receiver's worker, then connect (asynchronously, with backoff)."""
        self.receiver.start()
        connect(self._client, self.settings, session_expiry_s=self._session_expiry_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the worker."""
        with contextlib.suppress(Exception):  # paho may already be disconnected; stopping must not fail
            self._client.disconnect()
        self._client.loop_stop()
        self.receiver.stop()

    @property
    def is_connected(self) -> bool:
        """Whether the upstream connection is up."""
        return bool(self._client.is_connected())

    @property
    def pending_acks(self) -> int:
        """Acknowledgements not yet acknowledged by the broker."""
        return len(self._pending)

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, properties: object
    ) -> None:
        if reason.is_failure:
            logger.warning("deployment client: connection refused (%s)", reason)
            return
        filters = self.receiver.subscriptions()
        if filters:
            client.subscribe([(topic, 1) for topic in filters])
        with self._lock:
            resend, self._resend = sorted(self._resend), set()
        for seq in resend:  # left over from before a restart (paho itself resends within one process)
            self._publish(seq)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        mid, qos = msg.mid, msg.qos
        self.receiver.on_message(msg.topic, bytes(msg.payload), lambda: client.ack(mid, qos))

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode, properties: object
    ) -> None:
        with self._lock:
            seq = self._in_flight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
                return
            if self._pending.pop(seq, None) is not None:
                self._write_outbox(sync=False)  # a lost removal only means one more (idempotent) resend

    def _next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000, *self._pending)
        return self._last_seq

    def publish_ack(self, ack: DeploymentAck) -> None:
        """Keep an acknowledgement until the broker has it, and publish it (QoS 1) with a fresh `seq`."""
        with self._lock:
            seq = self._next_seq()
            self._pending[seq] = encode(msgspec.structs.replace(ack, seq=seq)).decode()
            self._write_outbox(sync=True)
        self._publish(seq)
        self.acks_published += 1

    def _publish(self, seq: int) -> None:
        # Never call paho while holding our lock: its network thread holds paho's locks when it calls
        # `_on_publish`, which takes ours.
        with self._lock:
            payload = self._pending.get(seq)
        if payload is None:
            return
        info = self._client.publish(topics.deploy_ack(self.receiver.gateway_id), payload.encode(), qos=1)
        with self._lock:
            if info.mid in self._early:  # the broker acknowledged before we got here
                self._early.discard(info.mid)
                self._pending.pop(seq, None)
                self._write_outbox(sync=False)
            else:
                self._in_flight[info.mid] = seq

    def _read_outbox(self) -> dict[int, str]:
        try:
            raw = json.loads(self._outbox_path.read_bytes())
            return {int(seq): str(payload) for seq, payload in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.error(
                "deployment ack outbox %s is unreadable (%s); starting empty", self._outbox_path, exc
            )
            return {}

    def _write_outbox(self, *, sync: bool) -> None:
        data = json.dumps({str(seq): payload for seq, payload in self._pending.items()}).encode()
        try:
            self._outbox_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._outbox_path.with_name(self._outbox_path.name + ".tmp")
            with tmp.open("wb") as handle:
                handle.write(data)
                if sync:
                    handle.flush()
                    os.fsync(handle.fileno())
            tmp.replace(self._outbox_path)
        except OSError as exc:
            logger.error("cannot write deployment ack outbox %s: %s", self._outbox_path, exc)
