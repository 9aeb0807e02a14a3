"""Timestamps: UTC epoch nanoseconds, and the plausibility window every decoded timestamp must fall in."""

from __future__ import annotations

import time

from shared.errors import ContractError

__all__ = ["MAX_FUTURE_SKEW_NS", "MIN_TIMESTAMP_NS", "NS_PER_S", "check_time_ns", "now_ns"]

NS_PER_S = 1_000_000_000
# 1990-01-01T00:00:00Z: older than any recording a plant would replay, newer than a zeroed clock.
MIN_TIMESTAMP_NS = 631_152_000 * NS_PER_S
# A gateway clock may run ahead of ours; one day ahead is a broken clock, not skew.
MAX_FUTURE_SKEW_NS = 24 * 3600 * NS_PER_S


def now_ns() -> int:
    """The current UTC time in epoch nanoseconds."""
    return time.time_ns()


def check_time_ns(field: str, ts_ns: int, *, reference_ns: int | None = None) -> int:
    """Return `ts_ns` if it is a plausible timestamp, else raise `ContractError` naming `field`.

    Plausible means after 1990-01-01 and at most `MAX_FUTURE_SKEW_NS` after `reference_ns` (default: now).
    """
    if ts_ns < MIN_TIMESTAMP_NS:
        raise ContractError(
            field, ts_ns, f"a UTC epoch-ns timestamp after 1990-01-01 (>= {MIN_TIMESTAMP_NS})"
        )
    latest = (now_ns() if reference_ns is None else reference_ns) + MAX_FUTURE_SKEW_NS
    if ts_ns > latest:
        raise ContractError(field, ts_ns, f"a timestamp at most 24 h in the future (<= {latest})")
    return ts_ns
