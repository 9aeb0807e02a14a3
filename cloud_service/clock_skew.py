"""Each gateway's clock skew, measured by the cloud from the gateway's heartbeats.

A heartbeat (`Status`) carries `ts_ns`, the gateway's clock when it was sent. The cloud's receive time minus
that is the transport delay minus the skew, so the observed offset `ts_ns - received` is the skew minus the
delay. The delay is never negative, and a heartbeat that waited in a queue (a broker's session, the ingest
queue, a database outage) only adds to it: every observation is at or below the true skew. Like NTP, which
trusts the sample with the smallest round-trip delay, the estimate is therefore the largest observed offset
over the recent heartbeats (a minimum-delay filter). Observations age out after `window_s`.

A maximum alone would hide a clock set back (fixed, or stepped behind) for a whole window, so the
observations of a gateway start over when its clock is seen to step: when the gateway restarted (its
`uptime_s`, from its monotonic clock, went down) or when its wall clock moved more than `step_s` apart
from its uptime between two heartbeats.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping

from shared.timebase import NS_PER_S

__all__ = ["ClockSkewEstimator", "SkewWarnings"]

logger = logging.getLogger(__name__)


class ClockSkewEstimator:
    """Each gateway's clock offset from the cloud's (positive: the gateway's clock is ahead).

    Args:
        window_s: how long an observation counts, in seconds of the cloud's clock.
        max_samples: observations kept per gateway (the oldest go first).
        step_s: a wall clock moving this much more or less than the uptime between two heartbeats stepped.
    """

    def __init__(self, *, window_s: float = 300.0, max_samples: int = 256, step_s: float = 1.0) -> None:
        self.window_s = window_s
        self.max_samples = max_samples
        self.step_s = step_s
        self._samples: dict[str, collections.deque[tuple[int, int]]] = {}
        self._last_beat: dict[str, tuple[int, float]] = {}

    def observe(
        self, gateway_id: str, *, sent_ns: int, received_ns: int, uptime_s: float | None = None
    ) -> None:
        """Add one heartbeat: the gateway's send time and the cloud's receive time (epoch ns), and the
        gateway's uptime when it sent it (None: unknown, no step detection)."""
        samples = self._samples.setdefault(gateway_id, collections.deque(maxlen=self.max_samples))
        if uptime_s is not None:
            if self._clock_stepped(gateway_id, sent_ns, uptime_s):
                samples.clear()
            self._last_beat[gateway_id] = (sent_ns, uptime_s)
        samples.append((received_ns, sent_ns - received_ns))

    def _clock_stepped(self, gateway_id: str, sent_ns: int, uptime_s: float) -> bool:
        last = self._last_beat.get(gateway_id)
        if last is None:
            return False
        last_sent_ns, last_uptime_s = last
        if uptime_s < last_uptime_s:  # restarted: its clock may have been set meanwhile
            return True
        return abs((sent_ns - last_sent_ns) / NS_PER_S - (uptime_s - last_uptime_s)) > self.step_s

    def skew_s(self, gateway_id: str, *, now_ns: int | None = None) -> float | None:
        """The gateway's estimated skew in seconds, or None without a recent heartbeat."""
        samples = self._samples.get(gateway_id)
        if not samples:
            return None
        oldest_ns = (time.time_ns() if now_ns is None else now_ns) - int(self.window_s * NS_PER_S)
        while samples and samples[0][0] < oldest_ns:
            samples.popleft()
        if not samples:
            return None
        return max(offset for _, offset in samples) / NS_PER_S

    def skews_s(self, *, now_ns: int | None = None) -> dict[str, float]:
        """Every gateway with a recent heartbeat and its estimated skew in seconds."""
        found = {g: self.skew_s(g, now_ns=now_ns) for g in list(self._samples)}
        return {g: skew for g, skew in found.items() if skew is not None}


class SkewWarnings:
    """Logs a gateway's excessive skew at most once per `every_s` per gateway."""

    def __init__(self, *, max_skew_s: float, every_s: float = 300.0) -> None:
        self.max_skew_s = max_skew_s
        self.every_s = every_s
        self._last_warned: dict[str, float] = {}

    def flagged(self, skews_s: Mapping[str, float]) -> dict[str, float]:
        """The gateways whose |skew| exceeds the limit, with their skews; warns about each (rate-limited)."""
        flagged = {g: skew for g, skew in skews_s.items() if abs(skew) > self.max_skew_s}
        now = time.monotonic()
        for gateway_id, skew in flagged.items():
            last = self._last_warned.get(gateway_id)
            if last is None or now - last >= self.every_s:
                self._last_warned[gateway_id] = now
                logger.warning(
                    "gateway %s: its clock is %+.1f s off the cloud's (limit %.1f s, "
                    "ingest.max_clock_skew_s); its aggregates and alerts are stored with clock_skew_s set, "
                    "their timestamps unchanged",
                    gateway_id,
                    skew,
                    self.max_skew_s,
                )
        return flagged
