"""Rate-limited warnings: a flood of one kind of problem logs one line per interval, with a count."""

from __future__ import annotations

import logging
import math
import time

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs a warning per key at most once per interval, with the count of those held back since.

    Args:
        logger: where the warnings go (the caller's module logger).
        interval_s: least time between two warnings of one key (monotonic clock).

    >>> import logging
    >>> limited = RateLimitedLog(logging.getLogger("example"), interval_s=60.0)
    >>> limited.warn("gap", "batch %d: gap", 1), limited.warn("gap", "batch %d: gap", 2)
    (True, False)
    """

    def __init__(self, logger: logging.Logger, *, interval_s: float = 60.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` was logged less than `interval_s` ago.

        Args:
            key: what counts as "the same problem" (a reject reason, say).
            message: a `%`-style format, formatted only when it is logged.
            *args: its arguments.

        Returns:
            Whether the warning was logged (False: it was counted, to be reported with the next one).
        """
        now = time.monotonic()
        last_at, held_back = self._last.get(key, (-math.inf, 0))
        if now - last_at < self._interval_s:
            self._last[key] = (last_at, held_back + 1)
            return False
        self._last[key] = (now, 0)
        self._logger.warning("%s (%d more like it since the last report)", message % args, held_back)
        return True
