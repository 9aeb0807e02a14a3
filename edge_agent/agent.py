"""The edge agent process: plant broker -> decode -> pipeline -> local alerts + disk queue -> upstream.

Threads, each with one job, stopped through `threading.Event`s and joined with timeouts:

* paho's network thread of the plant client: raw batches into the bounded intake queue (`edge_agent.intake`);
* `edge-scorer`: takes batches from the intake queue, decodes them (`ContractError` -> quarantine, counted by
  reason), runs `Pipeline.process`, publishes alerts at once to the plant broker, and hands every outbound
  message to the queue writer, one hand-over per group of up to `queue.batch_max` batches;
* `edge-queue-writer`: commits the scorer's outbound messages to the disk queue, several hand-overs per
  transaction, so an fsync never delays scoring or a local alert;
* `edge-forwarder` (and paho's thread of the upstream client): the disk queue to the upstream broker;
* `edge-heartbeat`: the retained status;
* `edge-deploy` (and paho's thread of its own upstream client), when deployments are configured: signed
  models in; it commits each deployment acknowledgement to the disk queue itself, so acknowledgements
  travel upstream through the forwarder like every other uplink message.

`stop()` is orderly: stop taking raw batches (unsubscribe), score what is already queued, flush the
pipeline (closing open aggregation periods), stop receiving deployments, wait up to
`shutdown_ack_wait_s` for the broker to acknowledge the queue, publish the offline status, disconnect.
Whatever is not acknowledged by then stays in the disk queue for the next start.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # ships no type hints

from edge_agent.deployment import DeploymentClient, DeploymentReceiver
from edge_agent.disk_queue import DiskQueue, Outbound
from edge_agent.forwarder import Forwarder
from edge_agent.heartbeat import Heartbeat, Readings, offline_status
from edge_agent.intake import Intake, Received
from edge_agent.model_store import ModelStore
from edge_agent.pipeline import Pipeline
from edge_agent.pipeline_metrics import PipelineMetrics
from edge_agent.quarantine import Quarantine
from edge_agent.settings import EdgeSettings
from edge_agent.write_hold import WriteHold
from shared import topics
from shared.errors import ContractError, StorageError
from shared.messages import Aggregate, Alert, DeploymentAck, encode
from shared.rate_limited_log import RateLimitedLog
from shared.raw_batch import RawBatch, decode_raw_batch, encode_raw_batch

__all__ = ["AgentMetrics", "EdgeAgent", "PipelineLike", "RejectCallback"]

logger = logging.getLogger(__name__)

RejectCallback = Callable[[str, RawBatch, str], None]
_GET_TIMEOUT_S = 0.1
QUEUE_FILE = "outbox.sqlite"
_OUTBOX_SIZE = 1024  # hand-overs (lists of messages) waiting for the queue writer
_WRITE_BATCH_MAX = 512  # messages per disk-queue transaction
_HOLD_RETRY_S = 1.0  # while messages are held, the writer retries the disk queue this often
_HELD_CHUNK = 32  # held messages per disk-queue transaction once it takes writes again


class PipelineLike(Protocol):
    """What the agent needs of `edge_agent.pipeline.Pipeline`."""

    def process(self, batch: RawBatch) -> list[Outbound]:
        """Score one raw batch; returns outbound messages with `seq=0`."""
        ...

    def poll(self) -> list[Outbound]:
        """Score windows that waited long enough (called when no batch arrived for a while)."""
        ...

    def flush(self) -> list[Outbound]:
        """Close open aggregation periods."""
        ...

    @property
    def metrics(self) -> PipelineMetrics:
        """The pipeline's counters."""
        ...


PipelineFactory = Callable[[RejectCallback], PipelineLike]


@dataclasses.dataclass
class AgentMetrics:
    """Counters of the scorer thread."""

    batches_decoded: int = 0
    samples_in: int = 0
    outbound_enqueued: int = 0
    alerts_out: int = 0
    enqueue_failed: int = 0  # disk-queue commits that failed (their messages held; each retry counts)
    queue_write_failing: int = 0  # 1 while the disk queue's last commit failed
    scorer_errors: int = 0
    alert_latency_ms_max: float = 0.0  # raw batch received -> its alert handed to the plant client


@functools.lru_cache(maxsize=4096)
def _topic_source(topic: str) -> tuple[str, str] | None:
    try:
        parsed = topics.parse(topic)
    except ContractError:
        return None
    return parsed.asset_id, parsed.sensor


def _flatten(prefix: str, value: object, into: dict[str, float]) -> None:
    if isinstance(value, (bool, int, float)):
        into[prefix] = float(value)
    elif isinstance(value, Mapping):
        for key, item in list(value.items()):  # a copy: another thread may add a key meanwhile
            _flatten(f"{prefix}.{key}", item, into)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            _flatten(f"{prefix}.{item.name}", getattr(value, item.name), into)


class EdgeAgent:
    """The edge agent, built from its settings; `start()`, then `stop()` (or `run(stop_event)`).

    Args:
        settings: the agent's settings.
        pipeline_factory: builds the pipeline given the reject callback (default: `edge_agent.pipeline`).
    """

    def __init__(self, settings: EdgeSettings, *, pipeline_factory: PipelineFactory | None = None) -> None:
        self.settings = settings
        gateway_id = settings.gateway_id
        self.metrics = AgentMetrics()
        # Recent raw-batch-received -> alert-published latencies at the gateway (bench and diagnostics).
        self.alert_latencies_ms: collections.deque[float] = collections.deque(maxlen=4096)
        self.quarantine = Quarantine(
            directory=settings.quarantine.dir,
            max_files=settings.quarantine.max_files,
            max_bytes=settings.quarantine.max_bytes,
            max_per_reason_per_min=settings.quarantine.max_per_reason_per_min,
        )
        self.disk_queue = DiskQueue(
            path=settings.queue.dir / QUEUE_FILE,
            gateway_id=gateway_id,
            max_bytes=settings.queue.max_bytes,
            synchronous=settings.queue.synchronous,
        )
        self.models = ModelStore(settings.models)
        factory = pipeline_factory or self._default_pipeline
        self.pipeline = factory(self._on_pipeline_reject)
        self.intake = Intake(
            settings=settings.plant_mqtt,
            gateway_id=gateway_id,
            asset_ids=[asset.asset_id for asset in settings.pipeline.assets],
            maxsize=settings.intake_queue_size,
            session_expiry_s=settings.session_expiry_s,
        )
        self.forwarder = Forwarder(
            settings=settings.upstream_mqtt,
            gateway_id=gateway_id,
            disk_queue=self.disk_queue,
            window=settings.queue.window,
            batch_max_messages=settings.queue.batch_max_messages,
            batch_max_bytes=settings.queue.batch_max_bytes,
            compression_level=settings.queue.batch_compression_level,
            will=offline_status(gateway_id),
            session_expiry_s=settings.session_expiry_s,
        )
        self.heartbeat = Heartbeat(
            gateway_id=gateway_id,
            interval_s=settings.heartbeat_interval_s,
            collect=self.readings,
            publish=self.forwarder.publish_status,
            rate_keys=("samples_in", "windows", "intake.received_bytes", "uplink.bytes_out"),
        )
        self.forwarder.on_connected.append(self.heartbeat.trigger)
        # Model deployments from the cloud (edge_agent.deployment), when a public key is configured.
        self.deployments = self._deployment_client() if settings.deployment.public_key else None
        self._stop_scoring = threading.Event()
        self._abandon_scoring = threading.Event()  # shutdown_drain_s passed: stop before the intake is empty
        self._scorer: threading.Thread | None = None
        # Outbound messages from the scorer to the queue writer: fsyncs never stall scoring. Bounded: if
        # the disk cannot keep up, the scorer waits (and raw batches are shed at the intake, counted).
        self._outbox: queue.Queue[list[Outbound] | None] = queue.Queue(maxsize=_OUTBOX_SIZE)
        self._writer: threading.Thread | None = None
        self.write_hold = WriteHold(max_messages=settings.queue.hold_max_messages)
        self._write_warnings = RateLimitedLog(logger)
        self._started = False

    def _deployment_client(self) -> DeploymentClient:
        """The receiver of signed models for this gateway's targets, on its own upstream connection."""
        assets = self.settings.pipeline.assets
        self._asset_targets = {asset.asset_id: asset.target for asset in assets}
        receiver = DeploymentReceiver(
            settings=self.settings.deployment,
            store=self.models,
            gateway_id=self.settings.gateway_id,
            targets=set(self._asset_targets.values()),
            expected_features={
                a.target: self.settings.pipeline.feature_spec(a).feature_names for a in assets
            },
            expected_specs={a.target: self.settings.pipeline.feature_spec(a).spec_id for a in assets},
            assets_per_target=collections.Counter(self._asset_targets.values()),
        )
        receiver.add_ack_listener(self._enqueue_ack)
        return DeploymentClient(
            settings=self.settings.upstream_mqtt,
            receiver=receiver,
            client_id=f"{self.settings.gateway_id}-deploy",
            session_expiry_s=self.settings.session_expiry_s,
        )

    def _enqueue_ack(self, ack: DeploymentAck) -> None:
        """Commit a deployment acknowledgement to the disk queue (on `edge-deploy`, never paho's thread).

        The receiver acknowledges the deployment's MQTT message only after this returns, so an answer
        lost in a crash means the broker redelivers the order.
        """
        try:
            self.disk_queue.put_many([ack])
        except StorageError:
            self.metrics.enqueue_failed += 1
            logger.exception("could not enqueue the deployment acknowledgement of %s", ack.target)
            return
        self.forwarder.notify()

    def _default_pipeline(self, on_reject: RejectCallback) -> PipelineLike:
        return Pipeline(
            settings=self.settings.pipeline,
            gateway_id=self.settings.gateway_id,
            models=self.models,
            on_reject=on_reject,
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect both brokers and start every thread (limits the process's BLAS threads first)."""
        threadpool_limits(limits=self.settings.blas_threads, user_api="blas")
        self.forwarder.start()
        self.heartbeat.start()
        if self.deployments is not None:
            self.deployments.start()
        self._writer = threading.Thread(target=self._write_loop, name="edge-queue-writer", daemon=True)
        self._writer.start()
        self._scorer = threading.Thread(target=self._score_loop, name="edge-scorer", daemon=True)
        self._scorer.start()
        self.intake.start()
        self._started = True
        logger.info("edge agent started", extra={"gateway_id": self.settings.gateway_id})

    def stop(self, *, join_timeout_s: float = 10.0) -> None:
        """Orderly stop: drain intake and pipeline, wait briefly for acks, go offline, close the queue."""
        if not self._started:
            self.disk_queue.close()
            return
        self._started = False
        self.intake.pause()
        self._stop_scoring.set()
        self._join_scorer(join_timeout_s)
        self._outbox.put(None)  # after everything the scorer handed over
        if self._writer is not None:
            self._writer.join(join_timeout_s)
            if self._writer.is_alive():
                logger.warning("edge-queue-writer did not stop within %.1f s", join_timeout_s)
        self.intake.stop()
        if self.deployments is not None:  # before the drain: its last acknowledgements go out with it
            self.deployments.stop()
        if not self.forwarder.drain(self.settings.shutdown_ack_wait_s):
            logger.info(
                "stopping with %d message(s) not yet acknowledged; they are sent after the next start",
                self.disk_queue.stats().depth,
            )
        self.heartbeat.stop()
        self.forwarder.stop(offline_status=offline_status(self.settings.gateway_id))
        self.disk_queue.close()
        logger.info("edge agent stopped")

    def _join_scorer(self, join_timeout_s: float) -> None:
        """Let the scorer score what the intake holds for up to `shutdown_drain_s`; count what is left."""
        if self._scorer is None:
            return
        self._scorer.join(self.settings.shutdown_drain_s)
        if self._scorer.is_alive():
            self._abandon_scoring.set()
            self._scorer.join(join_timeout_s)
            if self._scorer.is_alive():
                logger.warning("edge-scorer did not stop within %.1f s", join_timeout_s)
        left = self.intake.queue.qsize()
        if left:
            self.intake.metrics.dropped_at_shutdown += left
            logger.warning(
                "stopping with %d raw batch(es) not scored within shutdown_drain_s (%.1f s)",
                left,
                self.settings.shutdown_drain_s,
            )

    def run(self, stop_event: threading.Event) -> None:
        """Start, run until `stop_event` is set (e.g. by SIGTERM), then stop in order."""
        self.start()
        try:
            while not stop_event.wait(1.0):
                pass
        finally:
            self.stop()

    # --- the scorer thread ------------------------------------------------------------------------

    def _score_loop(self) -> None:
        batch_max = self.settings.queue.batch_max
        intake = self.intake.queue
        idle_wait_s = min(_GET_TIMEOUT_S, max(self.settings.pipeline.score_max_delay_ms / 1000.0, 0.001))
        while not self._abandon_scoring.is_set():
            try:
                first = intake.get(timeout=idle_wait_s)
            except queue.Empty:
                self._commit(self._poll_pipeline())
                if self._stop_scoring.is_set():
                    break
                continue
            items = [first]
            while len(items) < batch_max:
                try:
                    items.append(intake.get_nowait())
                except queue.Empty:
                    break
            outbound: list[Outbound] = []
            for item in items:
                outbound.extend(self._handle(item))
            self._commit(outbound)
        self._commit(self._flush_pipeline())

    def _poll_pipeline(self) -> list[Outbound]:
        try:
            outbound = self.pipeline.poll()
        except Exception:  # scoring must go on; logged with the traceback and counted
            self.metrics.scorer_errors += 1
            logger.exception("pipeline poll failed")
            return []
        self._publish_alerts(outbound)
        return outbound

    def _flush_pipeline(self) -> list[Outbound]:
        try:
            outbound = self.pipeline.flush()
        except Exception:  # shutdown must go on; logged with the traceback and counted
            self.metrics.scorer_errors += 1
            logger.exception("pipeline flush failed")
            return []
        self._publish_alerts(outbound)
        return outbound

    def _handle(self, item: Received) -> list[Outbound]:
        """Decode and score one raw message; never raises."""
        try:
            batch = decode_raw_batch(item.payload, allow_nonfinite=True)
        except ContractError as exc:
            self.quarantine.reject(topic=item.topic, reason=exc.reason, detail=str(exc), payload=item.payload)
            return []
        source = _topic_source(item.topic)
        if source is None or source != (batch.asset_id, batch.sensor):
            detail = f"topic {item.topic} carries a batch of {batch.asset_id}/{batch.sensor}"
            self.quarantine.reject(topic=item.topic, reason="topic", detail=detail, payload=item.payload)
            return []
        self.metrics.batches_decoded += 1
        self.metrics.samples_in += len(batch.samples)
        try:
            outbound = self.pipeline.process(batch)
        except Exception:  # a bug on one batch must not stop scoring; logged with the traceback and counted
            self.metrics.scorer_errors += 1
            logger.exception("pipeline failed on a batch", extra={"asset_id": batch.asset_id})
            return []
        if self._publish_alerts(outbound):
            latency_ms = (time.monotonic_ns() - item.received_mono_ns) / 1e6
            self.alert_latencies_ms.append(latency_ms)
            self.metrics.alert_latency_ms_max = max(self.metrics.alert_latency_ms_max, latency_ms)
        return outbound

    def _publish_alerts(self, outbound: list[Outbound]) -> int:
        """Alerts go to the plant broker at once (with `seq=0`: the seq is the uplink's, given at enqueue).

        Returns:
            How many alerts were raised (not cleared) in `outbound`.
        """
        raised = 0
        for message in outbound:
            if isinstance(message, Alert):
                raised += message.state == "raised"
                self.intake.publish_alert(message.asset_id, encode(message))
                self.metrics.alerts_out += 1
                if self.deployments is not None and message.state == "raised":  # model probation
                    self.deployments.receiver.observe_alert(self._asset_targets.get(message.asset_id, ""))
        return raised

    def _commit(self, outbound: list[Outbound]) -> None:
        """Hand outbound messages to the queue writer (blocks only if the writer is far behind)."""
        if outbound:
            self._observe_windows(outbound)
            self._outbox.put(outbound)

    def _observe_windows(self, outbound: list[Outbound]) -> None:
        """Model probation: the windows each aggregate's model scored, and how many were anomalous."""
        if self.deployments is None:
            return
        for message in outbound:
            if isinstance(message, Aggregate) and message.score.n_windows:
                ref = _model_ref(message.model_version)
                if ref is not None:
                    self.deployments.receiver.observe_windows(
                        ref[0],
                        version=ref[1],
                        scored=message.score.n_windows,
                        anomalous=message.score.n_above_threshold,
                    )

    # --- the queue writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        """Commit what the scorer hands over, several hand-overs per transaction, in order; while the
        disk queue fails, retry the held messages every `_HOLD_RETRY_S` even when nothing new arrives."""
        while True:
            try:
                first = self._outbox.get(timeout=_HOLD_RETRY_S if len(self.write_hold) else None)
            except queue.Empty:
                self._write([])
                continue
            if first is None:
                self._write([], is_last=True)
                return
            pending = list(first)
            is_last = False
            while len(pending) < _WRITE_BATCH_MAX:
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    is_last = True
                    break
                pending.extend(more)
            self._write(pending, is_last=is_last)
            if is_last:
                return

    def _write(self, outbound: list[Outbound], *, is_last: bool = False) -> None:
        """Commit the held messages, then `outbound`; on failure hold what is left (bounded, counted).

        Held messages go in small transactions: one commit of a long hold can need more room than a
        nearly full disk has, and would then fail for ever.
        """
        held = self.write_hold.take()
        pending = held + outbound
        step = _HELD_CHUNK if held else max(len(pending), 1)
        for start in range(0, len(pending), step):
            chunk = pending[start : start + step]
            try:
                self.disk_queue.put_many(chunk)
            except Exception as exc:  # noqa: BLE001  # StorageError (disk full, I/O) or a bug: hold them
                self._hold(pending[start:], exc, is_last=is_last)
                return
            self.metrics.outbound_enqueued += len(chunk)
            self.forwarder.notify()
        if pending and self.metrics.queue_write_failing:
            self.metrics.queue_write_failing = 0
            logger.warning("disk queue writable again: %d message(s) committed", len(pending))

    def _hold(self, pending: list[Outbound], exc: Exception, *, is_last: bool) -> None:
        self.metrics.queue_write_failing = 1
        self.metrics.enqueue_failed += 1
        if is_last:
            logger.error(
                "stopping: %d message(s) the disk queue could not take are lost: %s", len(pending), exc
            )
            return
        self.write_hold.keep(pending)
        if not isinstance(exc, StorageError):
            logger.exception("unexpected error enqueuing %d upstream message(s)", len(pending))
        self._write_warnings.warn(
            "write",
            "disk queue cannot write (%s): %d message(s) held in memory, %d shed so far",
            exc,
            len(self.write_hold),
            sum(self.write_hold.dropped.values()),
        )

    def _on_pipeline_reject(self, reason: str, batch: RawBatch, detail: str) -> None:
        """The pipeline's reject callback: count and sample the batch (re-encoded: a memory copy)."""
        self.quarantine.reject(
            topic=topics.raw(batch.asset_id, batch.sensor),
            reason=reason,
            detail=detail,
            payload=encode_raw_batch(batch),
        )

    # --- health ------------------------------------------------------------------------------------

    def model_versions(self) -> dict[str, str]:
        """The model version scoring each asset (`baseline` until a model is active)."""
        versions = {}
        for asset in self.settings.pipeline.assets:
            target = asset.model_target or asset.asset_id
            loaded = self.models.active(target)
            versions[asset.asset_id] = (
                f"{loaded.manifest.target}:v{loaded.manifest.version}" if loaded else "baseline"
            )
        return versions

    def readings(self) -> Readings:
        """Counters and gauges for the heartbeat (flat names)."""
        metrics: dict[str, float] = {}
        _flatten("agent", self.metrics, metrics)
        _flatten("intake", self.intake.metrics, metrics)
        if self.deployments is not None:
            _flatten("deploy", self.deployments.receiver.metrics, metrics)
        metrics["intake.queue_depth"] = float(self.intake.queue.qsize())
        metrics.update(self.pipeline.metrics.as_dict())
        stats = self.disk_queue.stats()
        metrics["queue.depth"] = float(stats.depth)
        metrics["queue.bytes"] = float(stats.bytes)
        metrics["queue.next_seq"] = float(stats.next_seq)
        for kind, count in stats.dropped.items():
            metrics[f"queue.dropped.{kind}"] = float(count)
        metrics["queue.held"] = float(len(self.write_hold))
        for kind, count in self.write_hold.dropped.items():
            metrics[f"queue.hold_dropped.{kind}"] = float(count)
        forwarder = self.forwarder.metrics
        metrics["uplink.published"] = float(forwarder.published)
        metrics["uplink.acked"] = float(forwarder.acked)
        metrics["uplink.unacked"] = float(self.forwarder.unacked)
        metrics["uplink.acked_not_deleted"] = float(self.forwarder.acked_not_deleted)
        metrics["uplink.refused"] = float(forwarder.refused)
        metrics["uplink.bytes_out"] = float(forwarder.bytes_out)
        metrics["uplink.connected"] = float(self.forwarder.is_connected)
        for reason, count in self.quarantine.counts.items():
            metrics[f"rejected.{reason}"] = float(count)
        metrics["rejected.total"] = float(sum(self.quarantine.counts.values()))
        metrics["quarantine.kept"] = float(self.quarantine.kept)
        metrics["samples_in"] = float(self.metrics.samples_in)
        metrics["windows"] = _windows(metrics)
        raw_bytes = self.intake.metrics.received_bytes
        metrics["upstream_bytes_per_raw_byte"] = forwarder.bytes_out / raw_bytes if raw_bytes else 0.0
        return Readings(metrics=metrics, model_versions=self.model_versions())


def _model_ref(model_version: str) -> tuple[str, int] | None:
    """(target, version) of a model label `target:vN` (None for the baseline)."""
    target, _, version = model_version.rpartition(":v")
    return (target, int(version)) if target and version.isdigit() else None


def _windows(metrics: Mapping[str, float]) -> float:
    for key in ("pipeline.windows_scored", "pipeline.windows"):
        if key in metrics:
            return metrics[key]
    return 0.0
