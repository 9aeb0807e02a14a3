"""Slowing repeated failed logins in the dashboard process, per user name and per client address.

The database's per-user lock (`cloud_service.users.verify_login`) lasts across restarts but only knows
users that exist. This throttle also counts names that do not exist, so an unknown name is refused exactly
as a known one (no user enumeration from the responses), and it counts per client address, so one client
cannot try many names. Each attempt is counted as a failure when it starts (under a lock) and given back if
it succeeds: attempts made at the same moment from many threads cannot pass the limit together.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["LoginThrottle"]


@dataclass(slots=True)
class _Count:
    failures: int = 0
    locked_until: datetime | None = None
    last_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Rule:
    free_failures: int
    base_delay: timedelta
    max_delay: timedelta

    def delay(self, failures: int) -> timedelta:
        if failures < self.free_failures:
            return timedelta(0)
        return min(self.base_delay * (1 << min(failures - self.free_failures, 30)), self.max_delay)


class LoginThrottle:
    """Failed-login counts per key (`user:NAME`, `addr:ADDRESS`), each key locked for a doubling delay
    once it has more than its free failures; bounded to `max_keys` keys (the least recent unlocked go)."""

    def __init__(
        self,
        *,
        user_free_failures: int,
        address_free_failures: int,
        base_delay: timedelta,
        max_delay: timedelta,
        max_keys: int = 10_000,
    ) -> None:
        self._rules = {
            "user": _Rule(user_free_failures, base_delay, max_delay),
            "addr": _Rule(address_free_failures, base_delay, max_delay),
        }
        self._max_keys = max_keys
        self._counts: dict[str, _Count] = {}
        self._lock = threading.Lock()

    def begin(self, keys: Sequence[str], *, now: datetime) -> timedelta | None:
        """Start an attempt: the time left if any key is locked (nothing counted), else None after
        counting the attempt as a failure of every key (give it back with `succeeded`)."""
        with self._lock:
            waits = [
                count.locked_until - now
                for key in keys
                if (count := self._counts.get(key)) is not None
                and count.locked_until is not None
                and count.locked_until > now
            ]
            if waits:
                return max(waits)
            for key in keys:
                count = self._counts.setdefault(key, _Count())
                count.failures += 1
                count.last_at = now
                delay = self._rules[key.partition(":")[0]].delay(count.failures)
                count.locked_until = now + delay if delay else None
            self._prune(now)
            return None

    def succeeded(self, keys: Sequence[str]) -> None:
        """The attempt begun with `keys` logged in: its user's count starts again, its address's drops one."""
        with self._lock:
            for key in keys:
                count = self._counts.get(key)
                if count is None:
                    continue
                if key.startswith("user:"):
                    del self._counts[key]
                else:
                    count.failures = max(0, count.failures - 1)
                    count.locked_until = None

    def _prune(self, now: datetime) -> None:
        if len(self._counts) <= self._max_keys:
            return
        unlocked = sorted(
            (count.last_at or now, key)
            for key, count in self._counts.items()
            if count.locked_until is None or count.locked_until <= now
        )
        for _, key in unlocked[: len(self._counts) - self._max_keys]:
            del self._counts[key]
