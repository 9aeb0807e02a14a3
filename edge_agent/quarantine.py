"""The local quarantine: every rejected payload is counted by reason; a bounded sample is kept on disk.

Each kept sample is two files in the quarantine directory, named by time, reason and a counter:
``{ts_ns}-{n}-{reason}.bin`` (the payload exactly as received) and ``.json`` beside it (topic, reason,
detail, time, size). At most `max_per_reason_per_min` samples per reason are written per minute, so a flood
of bad input costs little; when the directory holds more than `max_files` samples or `max_bytes`, the
oldest are deleted. Counting never stops.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared.rate_limited_log import RateLimitedLog
from shared.timebase import now_ns

__all__ = ["Quarantine", "QuarantineSample"]

logger = logging.getLogger(__name__)

_REASON_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_WARNING_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class QuarantineSample:
    """A kept sample, as read back from disk."""

    topic: str
    reason: str
    detail: str
    ts_ns: int
    payload: bytes


def clean_reason(reason: str) -> str:
    """A reason label safe for file names and metric keys (`[A-Za-z0-9_.-]`, at most 48 characters)."""
    return _REASON_CHARS.sub("_", reason)[:48] or "unknown"


class Quarantine:
    """Counts rejections per reason and keeps a bounded, rate-limited sample of them on disk.

    Thread-safe (one lock, owned here): the scorer and the pipeline's reject callback both report.

    Args:
        directory: where samples are written (created if missing).
        max_files: most samples kept.
        max_bytes: most payload bytes kept.
        max_per_reason_per_min: most samples written per reason per minute.
    """

    def __init__(
        self,
        *,
        directory: Path,
        max_files: int = 200,
        max_bytes: int = 20_000_000,
        max_per_reason_per_min: int = 10,
    ) -> None:
        self._dir = directory
        self._max_files = max_files
        self._max_bytes = max_bytes
        self._max_per_min = max_per_reason_per_min
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._kept = 0
        self._write_errors = 0
        self._minute_start = time.monotonic()
        self._minute_counts: dict[str, int] = {}
        self._log = RateLimitedLog(logger, interval_s=_WARNING_INTERVAL_S)
        self._serial = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._files: list[tuple[Path, int]] = self._existing()
        self._bytes = sum(size for _, size in self._files)

    def _existing(self) -> list[tuple[Path, int]]:
        return [(path, path.stat().st_size) for path in sorted(self._dir.glob("*.bin"))]

    @property
    def counts(self) -> dict[str, int]:
        """Rejections per reason since start."""
        with self._lock:
            return dict(self._counts)

    @property
    def kept(self) -> int:
        """Samples written since start."""
        return self._kept

    def reject(self, *, topic: str, reason: str, detail: str, payload: bytes) -> None:
        """Count one rejected payload and keep it on disk if the sample allows."""
        reason = clean_reason(reason)
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1
            if not self._sample_due(reason):
                return
            self._serial += 1
            serial = self._serial
        self._warn(reason, detail)
        self._write(topic, reason, detail, payload, serial)

    def _sample_due(self, reason: str) -> bool:
        now = time.monotonic()
        if now - self._minute_start >= 60.0:
            self._minute_start = now
            self._minute_counts.clear()
        taken = self._minute_counts.get(reason, 0)
        if taken >= self._max_per_min:
            return False
        self._minute_counts[reason] = taken + 1
        return True

    def _warn(self, reason: str, detail: str) -> None:
        self._log.warn(
            "rejected", "payloads rejected so far: %s; last: %s (%s)", self.counts, reason, detail[:200]
        )

    def _write(self, topic: str, reason: str, detail: str, payload: bytes, serial: int) -> None:
        ts_ns = now_ns()
        stem = self._dir / f"{ts_ns:020d}-{serial:06d}-{reason}"
        meta = {
            "topic": topic,
            "reason": reason,
            "detail": detail[:1000],
            "ts_ns": ts_ns,
            "size": len(payload),
        }
        try:
            stem.with_suffix(".json").write_text(json.dumps(meta))
            stem.with_suffix(".bin").write_bytes(payload)
        except OSError as exc:
            with self._lock:
                self._write_errors += 1
            logger.warning("quarantine sample not written: %s", exc)
            return
        with self._lock:
            self._kept += 1
            self._files.append((stem.with_suffix(".bin"), len(payload)))
            self._bytes += len(payload)
            victims = []
            while self._files and (len(self._files) > self._max_files or self._bytes > self._max_bytes):
                path, size = self._files.pop(0)
                self._bytes -= size
                victims.append(path)
        for path in victims:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)

    def samples(self) -> list[QuarantineSample]:
        """The samples on disk, oldest first (for inspection and tests)."""
        found = []
        for path in sorted(self._dir.glob("*.bin")):
            try:
                meta = json.loads(path.with_suffix(".json").read_text())
                payload = path.read_bytes()
            except (OSError, ValueError):
                continue  # being deleted, or half-written by a crash
            found.append(
                QuarantineSample(meta["topic"], meta["reason"], meta["detail"], int(meta["ts_ns"]), payload)
            )
        return found
