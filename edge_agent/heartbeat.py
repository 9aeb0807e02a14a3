"""The gateway heartbeat: a retained `Status` every N seconds, and the offline status used as last will.

A `Heartbeat` thread (`edge-heartbeat`) calls a collector for the agent's counters and gauges, turns the
counters listed in `rate_keys` into per-second rates over the last interval, adds CPU and memory of the
process, and publishes the `shared.messages.Status` through a publish function (the forwarder's upstream
client). `trigger()` makes it publish at once (after each upstream connect, so the retained offline will
is replaced by an online status without waiting a whole interval).
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.messages import Status, encode
from shared.timebase import now_ns

__all__ = ["Heartbeat", "ProcessUsage", "Readings", "offline_status"]

logger = logging.getLogger(__name__)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Readings:
    """What the agent reports: counters and gauges (flat names), and the model version per asset."""

    metrics: Mapping[str, float]
    model_versions: Mapping[str, str] = field(default_factory=dict)


class ProcessUsage:
    """CPU share since the previous call and resident memory, from `resource` and `/proc`."""

    def __init__(self) -> None:
        self._last_cpu_s = self._cpu_s()
        self._last_wall_s = time.monotonic()

    @staticmethod
    def _cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def cpu_percent(self) -> float:
        """Percent of one core used by this process since the previous call (may exceed 100)."""
        cpu_s, wall_s = self._cpu_s(), time.monotonic()
        elapsed = wall_s - self._last_wall_s
        percent = 100.0 * (cpu_s - self._last_cpu_s) / elapsed if elapsed > 0 else 0.0
        self._last_cpu_s, self._last_wall_s = cpu_s, wall_s
        return max(0.0, percent)

    @staticmethod
    def memory_bytes() -> int:
        """Resident set size now (peak RSS where `/proc` is missing)."""
        try:
            resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return resident_pages * _PAGE_SIZE


def offline_status(gateway_id: str) -> bytes:
    """The retained status meaning "this gateway is gone" (the last will, and the clean-shutdown status)."""
    return encode(Status(gateway_id=gateway_id, ts_ns=now_ns(), state="offline"))


def _finite(value: float) -> float:
    return value if -1e15 <= value <= 1e15 else 0.0  # NaN fails both comparisons


class Heartbeat:
    """Publishes the gateway status every `interval_s` on its own thread.

    Args:
        gateway_id: whose status.
        interval_s: seconds between heartbeats.
        collect: returns the current readings (called on the heartbeat thread).
        publish: sends a status payload; returns False if it could not (offline).
        rate_keys: cumulative counters to also report as `<key>_per_s` over the last interval.
    """

    def __init__(
        self,
        *,
        gateway_id: str,
        interval_s: float,
        collect: Callable[[], Readings],
        publish: Callable[[bytes], bool],
        rate_keys: Sequence[str] = (),
    ) -> None:
        self._gateway_id = gateway_id
        self._interval_s = interval_s
        self._collect = collect
        self._publish = publish
        self._rate_keys = tuple(rate_keys)
        self._usage = ProcessUsage()
        self._started_mono = time.monotonic()
        self._last: tuple[float, dict[str, float]] | None = None
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.last_status: Status | None = None

    def status(self) -> Status:
        """Build the current status (updates the rate baseline)."""
        readings = self._collect()
        metrics = {key: _finite(float(value)) for key, value in readings.metrics.items()}
        now = time.monotonic()
        if self._last is not None:
            then, previous = self._last
            elapsed = max(now - then, 1e-9)
            for key in self._rate_keys:
                if key in metrics and key in previous:
                    metrics[f"{key}_per_s"] = _finite((metrics[key] - previous[key]) / elapsed)
        self._last = (now, {key: metrics[key] for key in self._rate_keys if key in metrics})
        return Status(
            gateway_id=self._gateway_id,
            ts_ns=now_ns(),
            state="online",
            uptime_s=now - self._started_mono,
            metrics=metrics,
            model_versions=dict(readings.model_versions),
            cpu_percent=min(self._usage.cpu_percent(), 1e5),
            memory_bytes=self._usage.memory_bytes(),
        )

    def beat(self) -> bool:
        """Build and publish one status now; True if it was handed to the broker client."""
        status = self.status()
        self.last_status = status
        sent = self._publish(encode(status))
        self.sent += int(sent)
        return sent

    def trigger(self) -> None:
        """Publish at the next opportunity instead of waiting for the interval (thread-safe)."""
        self._due.set()

    def start(self) -> None:
        """Start the `edge-heartbeat` thread."""
        self._thread = threading.Thread(target=self._run, name="edge-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and join it."""
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._due.wait(self._interval_s)
            self._due.clear()
            if self._stop.is_set():
                break
            try:
                self.beat()
            except Exception:  # a heartbeat failure must never stop the agent; logged and retried next time
                logger.exception("heartbeat failed")
