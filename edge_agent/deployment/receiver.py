"""Receiving models from the cloud: verify, install, hot-swap, acknowledge, and keep new models on probation.

Flow for each target the gateway serves (see `shared.model_transfer` for the wire format)::

    forewarn/v1/models/<target>/chunk/<i>   retained artifact chunks   -> reassembled per version
    forewarn/v1/models/<target>/deployment  retained signed order      -> checks, then ModelStore swap
    forewarn/v1/gw/<gateway>/deploy-ack     DeploymentAck upstream     <- ok, or the refusal with its reason

Checks, in order, each refusal acknowledged with `ok=false` and a reason starting with the check's name:
`signature` (Ed25519 over the manifest text, with the public key only; the key trusted now, see
`trust`), `incomplete` (every chunk arrived within `chunk_timeout_s` of the verified order), `manifest`
(it decodes and names the deployment's target and version), `version` (newer than the active one; a
rollback order, signed as such, may name an older version but must be issued after the active model's
manifest, so an old order replayed later is refused), `size` (the chunks add up to the announced size),
then the model store's own checks: `sha256`, `features` (the pipeline's feature names for the target),
`load`/`io`, `golden`. A refused model never replaces the one serving.

Probation: after a swap, `observe_alert(target)` counts the alerts the new model raises and
`observe_windows(target, ...)` the windows it scored and how many were anomalous; if the alerts exceed
`probation_alert_multiple` times the expected rate (at least `probation_min_alerts`) within `probation_s`,
or more than `probation_max_anomalous_fraction` of at least `probation_min_windows` windows were anomalous
(a model that holds one alert raised on every window), the receiver rolls the store back to the previous
version, remembers the version as rolled back (so its retained deployment is not applied again, even after
a restart), and acknowledges `ok=false` with reason `probation: ...`. The request to roll back waits in
its own slot (`PendingRollbacks`), never in the bounded message queue, so a full queue cannot lose it.

Key rotation: a `shared.key_rotation.KeyRotation` on `topics.signing_key()` (subscribed first, so its
retained announcement arrives before the retained orders signed with the new key) moves the trusted key
along links the trusted key signed (`trust.TrustedKey`); an order refused for its signature just before
is considered again once the key has moved.

Threads: `on_message` runs on paho's thread and only enqueues; `edge-deploy` does the work (ONNX loading,
golden pairs, files), hands each acknowledgement to the ack listeners (the edge agent commits it to the
disk queue) and acknowledges the MQTT message afterwards (`manual_ack`), so the broker's Receive Maximum
bounds what is buffered and an order is acknowledged to the broker only once its answer is durable.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.deployment.assembly import ChunkAssembly
from edge_agent.deployment.probation import PendingRollbacks, Probation, RollbackRequest, allowed_alerts
from edge_agent.deployment.rollback_state import RollbackState
from edge_agent.deployment.settings import DeploymentSettings
from edge_agent.deployment.trust import TrustedKey
from edge_agent.deployment.verification import (
    RefusedError,
    check_announced_size,
    check_artifact,
    check_signature,
    check_version,
    load_public_key,
    order_manifest,
)
from edge_agent.model_store import ModelStore
from shared import topics
from shared.errors import ContractError, ModelVerificationError
from shared.key_rotation import decode_rotation
from shared.messages import DeploymentAck, ModelDeployment, decode_deployment
from shared.model_transfer import decode_chunk

__all__ = ["AckListener", "DeploymentMetrics", "DeploymentReceiver"]

logger = logging.getLogger(__name__)

AckListener = Callable[[DeploymentAck], None]
_MAX_REASON = 1000
_GET_TIMEOUT_S = 0.1  # also the longest a rollback request waits for an idle worker
_OrderKey = tuple[str, int, bool, str]  # target, version, is_rollback, signature


@dataclasses.dataclass
class DeploymentMetrics:
    """Counters of the receiver (they travel in the heartbeat as `deploy.*`).

    `refusals` counts the refused orders by the check that refused them (`signature`, `incomplete`,
    `manifest`, `version`, `size`, `features`, `sha256`, `load`, `io`, `golden`); `refused` is their sum.
    """

    deployments_received: int = 0
    chunks_received: int = 0
    malformed: int = 0
    installed: int = 0
    refused: int = 0
    rolled_back: int = 0
    ignored: int = 0
    dropped_queue_full: int = 0
    worker_errors: int = 0
    incomplete: int = 0
    key_rotations: int = 0
    key_links_rejected: int = 0
    refusals: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class _Received:
    """One MQTT message for the worker; `done` acknowledges it to the broker after handling."""

    topic: str
    payload: bytes
    done: Callable[[], object] | None


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
        root = public_key if public_key is not None else load_public_key(settings.public_key)
        self.trust = TrustedKey(
            root, settings.key_state_file or settings.state_file.with_name("signing-key.json")
        )
        self._clock = clock
        self._ack_listeners: list[AckListener] = []
        self._assemblies: dict[str, ChunkAssembly] = {}
        self._orders: dict[str, ModelDeployment] = {}
        self._order_since: dict[str, float] = {}
        # orders refused for their signature, per target: considered again after a key rotation
        self._unverified: dict[str, ModelDeployment] = {}
        self._seen: set[_OrderKey] = set()
        self._probation: dict[str, Probation] = {}
        self._rolled_back = RollbackState(settings.state_file)
        self._work: queue.Queue[_Received] = queue.Queue(settings.queue_size)
        self._rollbacks = PendingRollbacks()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- wiring -----------------------------------------------------------------------------------------

    def add_ack_listener(self, listener: AckListener) -> None:
        """Call `listener(ack)` (on the `edge-deploy` thread) for every acknowledgement produced.

        The acknowledgement carries `seq=0`; the disk queue assigns the uplink `seq` when it stores it.
        """
        self._ack_listeners.append(listener)

    def subscriptions(self) -> list[str]:
        """Topic filters to subscribe (QoS 1) on the upstream broker."""
        filters = [topics.signing_key()]
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
            self._work.put_nowait(_Received(topic, payload, done))
        except queue.Full:
            self.metrics.dropped_queue_full += 1

    def observe_alert(self, target: str, *, alert_raised: bool = True, now_s: float | None = None) -> None:
        """Tell probation that the model of `target` raised an alert (called by the pipeline's thread)."""
        probation = self._probation.get(target)
        if probation is None:
            return
        now = self._clock() if now_s is None else now_s
        if probation.observe(alert_raised, now):
            self._rollbacks.put(probation.rollback_request(now))

    def observe_windows(
        self, target: str, *, version: int, scored: int, anomalous: int, now_s: float | None = None
    ) -> None:
        """Tell probation that `version` of `target` scored `scored` windows, `anomalous` of them above its
        threshold (called by the pipeline's thread with each aggregate; other versions are ignored)."""
        probation = self._probation.get(target)
        if probation is None or probation.version != version:
            return
        now = self._clock() if now_s is None else now_s
        if probation.observe_windows(scored, anomalous, now):
            self._rollbacks.put(probation.rollback_request(now))

    def probation(self, target: str) -> Probation | None:
        """The probation of `target`'s current model, if one is running or tripped."""
        return self._probation.get(target)

    # --- the worker -------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            for request in self._rollbacks.take_all():  # before more messages: the flooding model goes first
                self._guarded(f"rollback of {request.target}", functools.partial(self._roll_back, request))
            self._guarded("stalled transfers", self.expire_stalled)
            try:
                received = self._work.get(timeout=_GET_TIMEOUT_S)
            except queue.Empty:
                continue
            self._guarded(received.topic, functools.partial(self.handle, received.topic, received.payload))
            if received.done is not None:
                received.done()

    def _guarded(self, what: str, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # the worker must survive anything one message does; logged and counted
            self.metrics.worker_errors += 1
            logger.exception("deployment worker failed on %s", what)

    def handle(self, topic: str, payload: bytes) -> None:
        """Process one message synchronously (the worker's job; tests may call it directly)."""
        try:
            parsed = topics.parse(topic)
        except ContractError:
            self.metrics.malformed += 1
            return
        if parsed.kind is topics.TopicKind.SIGNING_KEY:
            self._on_rotation(payload)
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
        assembly = self._assemblies.setdefault(target, ChunkAssembly())
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
        self._consider(order)

    def _consider(self, order: ModelDeployment) -> None:
        key = (order.target, order.version, order.is_rollback, order.signature_b64)
        if self._is_known(order, key):
            self.metrics.ignored += 1
            return
        try:
            check_signature(self.trust.key, order)
            check_announced_size(order, self.settings.max_artifact_bytes)
            order_manifest(order)  # a mismatched order is refused now, not after waiting for its chunks
        except RefusedError as refusal:
            self._seen.add(key)
            if refusal.check == "signature":
                self._unverified[order.target] = order
            self._refuse(order, refusal)
            return
        self._unverified.pop(order.target, None)
        self._orders[order.target] = order
        self._order_since[order.target] = self._clock()

    def _on_rotation(self, payload: bytes) -> None:
        if not payload:
            return
        try:
            rotation = decode_rotation(payload)
        except ContractError as exc:
            self.metrics.malformed += 1
            logger.warning("malformed signing-key rotation: %s", exc)
            return
        result = self.trust.apply(rotation)
        self.metrics.key_rotations += result.followed
        self.metrics.key_links_rejected += result.rejected
        if result.rejected:
            logger.warning("signing-key rotation: %d link(s) not signed by the trusted key", result.rejected)
        if not result.followed:
            return
        logger.info(
            "signing key rotated (%d link(s)); now trusting %s", result.followed, self.trust.fingerprint
        )
        for target, order in list(self._unverified.items()):
            try:
                check_signature(self.trust.key, order)
            except RefusedError:
                continue  # not signed by the new key either: refused once already, not acknowledged again
            del self._unverified[target]
            self._seen.discard((target, order.version, order.is_rollback, order.signature_b64))
            self._consider(order)
            self._try_complete(target)

    def expire_stalled(self) -> None:
        """Refuse (`incomplete`) each verified order still missing chunks `chunk_timeout_s` after it came."""
        now = self._clock()
        for target, order in list(self._orders.items()):
            waited_s = now - self._order_since.get(target, now)
            if waited_s < self.settings.chunk_timeout_s:
                continue
            del self._orders[target]
            self._order_since.pop(target, None)
            self._seen.add((target, order.version, order.is_rollback, order.signature_b64))
            have = len(self._assemblies.get(target, ChunkAssembly()).chunks.get(order.version, {}))
            self.metrics.incomplete += 1
            detail = f"{have} of {order.chunk_count} chunks after {waited_s:.0f} s"
            self._refuse(order, RefusedError("incomplete", detail))

    def _is_known(self, order: ModelDeployment, key: _OrderKey) -> bool:
        """Seen already, already serving it (retained, seen again after a reconnect), or rolled back."""
        if key in self._seen:
            return True
        active = self.store.active(order.target)
        is_active = active is not None and active.manifest.version == order.version
        was_rolled_back = self._rolled_back.is_rolled_back(order.target, order.version)
        if not order.is_rollback and (is_active or was_rolled_back):
            self._seen.add(key)
            return True
        return False

    def _try_complete(self, target: str) -> None:
        order = self._orders.get(target)
        if order is None:
            return
        assembly = self._assemblies.setdefault(target, ChunkAssembly())
        artifact = assembly.artifact(order.version, order.chunk_count)
        if artifact is None:
            return
        del self._orders[target]
        self._order_since.pop(target, None)
        self._seen.add((target, order.version, order.is_rollback, order.signature_b64))
        assembly.discard_up_to(order.version)
        try:
            message = self._install(order, artifact)
        except RefusedError as refusal:
            self._refuse(order, refusal)
            return
        except ModelVerificationError as exc:
            self._refuse(order, RefusedError(exc.check, exc.detail))
            return
        self.metrics.installed += 1
        self._ack(order.target, order.version, ok=True, reason=message)

    def _install(self, order: ModelDeployment, artifact: bytes) -> str:
        manifest = order_manifest(order)
        current = check_version(order, manifest, self.store.active(order.target))
        check_artifact(order, manifest, artifact, feature_spec=self._specs.get(order.target))
        if order.is_rollback and current == manifest.version:
            self._probation.pop(order.target, None)
            return f"already running v{current} (rollback order)"
        self.store.install(manifest, artifact, expected_feature_names=self._expected.get(order.target))
        self.store.activate(order.target, manifest.version)
        was = f"v{current}" if current is not None else "none"
        if order.is_rollback:
            self._probation.pop(order.target, None)
            return f"rolled back to v{manifest.version} by order (was {was})"
        self._probation[order.target] = Probation(
            target=order.target,
            version=manifest.version,
            started_s=self._clock(),
            period_s=self.settings.probation_s,
            allowed_alerts=allowed_alerts(self.settings, assets=self._assets.get(order.target, 1)),
            min_windows=self.settings.probation_min_windows,
            max_anomalous_fraction=self.settings.probation_max_anomalous_fraction,
        )
        return f"activated v{manifest.version} (was {was})"

    def _roll_back(self, request: RollbackRequest) -> None:
        probation = self._probation.get(request.target)
        active = self.store.active(request.target)
        if probation is None or probation.version != request.version:
            return  # another model was swapped in since the request was made
        if active is None or active.manifest.version != request.version:
            return
        try:
            previous = self.store.rollback(request.target)
        except ModelVerificationError as exc:
            reason = f"{request.reason}; cannot roll back: {exc.detail}"
            self._ack(request.target, request.version, ok=False, reason=reason)
            return
        self._rolled_back.add(request.target, request.version)
        self.metrics.rolled_back += 1
        reason = f"{request.reason}; rolled back to v{previous.manifest.version}"
        logger.warning("%s: %s", request.target, reason)
        self._ack(request.target, request.version, ok=False, reason=reason)

    def _refuse(self, order: ModelDeployment, refusal: RefusedError) -> None:
        self.metrics.refused += 1
        refusals = self.metrics.refusals
        refusals[refusal.check] = refusals.get(refusal.check, 0) + 1
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
            except Exception:  # one listener must not stop the others; logged with the traceback
                logger.exception("deployment ack listener failed")
