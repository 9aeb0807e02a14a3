"""A connector's counters (`ConnectorMetrics`) and its heartbeat (`HealthReporter`).

The heartbeat is a retained `shared.messages.ConnectorStatus` on `shared.topics.connector_status(id)` of
the plant broker, published every `health.interval_s` by the `connector-health` thread; the same message
with `state="offline"` is the connector's MQTT last will and its clean-shutdown status, so a dashboard
reading the retained topic always sees whether the connector is there and what it has done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.messages import ConnectorStatus, encode
from shared.timebase import now_ns

__all__ = ["ConnectorMetrics", "HealthReporter", "offline_status"]

logger = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 1000


@dataclass
class ConnectorMetrics:
    """Counters of one connector, written by its source loop and the publisher, read by the heartbeat.

    Plain ints and flags (one writer each); the by-reason counts go through `reject` and `drop`, which
    take a lock because several threads add to them.
    """

    values_read: int = 0
    values_published: int = 0
    batches_published: int = 0
    reconnects: int = 0
    gaps: int = 0
    source_connected: bool = False
    last_error: str = ""
    last_error_ns: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reject(self, reason: str, count: int = 1) -> None:
        """Count `count` source values not used, for `reason` (`bad_quality`, `timeout`, ...)."""
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def drop(self, reason: str, count: int = 1) -> None:
        """Count `count` samples lost on the connector's side, for `reason` (`buffer_full`, ...)."""
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def error(self, text: str) -> None:
        """Remember the latest error (shown in the heartbeat)."""
        self.last_error = text[:_MAX_ERROR_CHARS]
        self.last_error_ns = now_ns()

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Copies of the rejected and dropped counts."""
        with self._lock:
            return dict(self.rejected), dict(self.dropped)


def offline_status(connector_id: str, connector_kind: str) -> bytes:
    """The retained status meaning "this connector is gone" (last will and clean-shutdown status)."""
    return encode(
        ConnectorStatus(
            connector_id=connector_id, connector_kind=connector_kind, ts_ns=now_ns(), state="offline"
        )
    )


class HealthReporter:
    """Publishes the connector's status every `interval_s` on the `connector-health` thread.

    Args:
        connector_id: whose status.
        connector_kind: `files`, `modbus`, `opcua`, `sparkplug`.
        metrics: the counters reported.
        interval_s: seconds between heartbeats.
        publish: sends a status payload (retained); returns False if it could not.
        is_broker_connected: whether the plant broker link is up (reported as `broker_connected`).
    """

    def __init__(
        self,
        *,
        connector_id: str,
        connector_kind: str,
        metrics: ConnectorMetrics,
        interval_s: float,
        publish: Callable[[bytes], bool],
        is_broker_connected: Callable[[], bool],
    ) -> None:
        self._connector_id = connector_id
        self._connector_kind = connector_kind
        self._metrics = metrics
        self._interval_s = interval_s
        self._publish = publish
        self._is_broker_connected = is_broker_connected
        self._started_mono = time.monotonic()
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_status: ConnectorStatus | None = None

    def status(self) -> ConnectorStatus:
        """The current status."""
        metrics = self._metrics
        rejected, dropped = metrics.counts()
        return ConnectorStatus(
            connector_id=self._connector_id,
            connector_kind=self._connector_kind,
            ts_ns=now_ns(),
            state="online",
            seq=self._seq,
            uptime_s=time.monotonic() - self._started_mono,
            source_connected=metrics.source_connected,
            broker_connected=self._is_broker_connected(),
            values_read=metrics.values_read,
            values_published=metrics.values_published,
            batches_published=metrics.batches_published,
            rejected=rejected,
            dropped=dropped,
            reconnects=metrics.reconnects,
            gaps=metrics.gaps,
            last_error=metrics.last_error,
            last_error_ns=metrics.last_error_ns,
        )

    def beat(self) -> bool:
        """Build and publish one status now; True if the client took it."""
        status = self.status()
        self.last_status = status
        self._seq += 1
        return self._publish(encode(status))

    def start(self) -> None:
        """Start the `connector-health` thread (its first heartbeat goes out at once)."""
        self._thread = threading.Thread(target=self._run, name="connector-health", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and join it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # a heartbeat failure must never stop the connector; logged, retried
                logger.exception("connector heartbeat failed")
            if self._stop.wait(self._interval_s):
                return
