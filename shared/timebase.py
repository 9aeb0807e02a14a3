"""Timestamps: UTC epoch nanoseconds, their conversions, the text forms recordings use, and the plausibility
window every decoded timestamp must fall in.

Every part of Forewarn keeps time as integer UTC epoch nanoseconds (`ts_ns`). This module is the one place
that turns them into aware datetimes and back (PostgreSQL keeps microseconds), into ISO 8601 text, and that
reads the time column of a recording: ISO 8601 with a time zone, epoch seconds (up to nine decimals) or
integer epoch nanoseconds, all exact to the nanosecond.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import math
import re
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shared.errors import ContractError

__all__ = [
    "EPOCH_NS_MIN_DIGITS",
    "MAX_FUTURE_SKEW_NS",
    "MIN_TIMESTAMP_NS",
    "NS_PER_S",
    "check_time_ns",
    "datetime_to_ns",
    "iso_time",
    "now_ns",
    "ns_to_datetime",
    "parse_time_ns",
    "parse_times_ns",
]

NS_PER_S = 1_000_000_000
# 1990-01-01T00:00:00Z: older than any recording a plant would replay, newer than a zeroed clock.
MIN_TIMESTAMP_NS = 631_152_000 * NS_PER_S
# A gateway clock may run ahead of ours; one day ahead is a broken clock, not skew.
MAX_FUTURE_SKEW_NS = 24 * 3600 * NS_PER_S
# An integer time with no fraction at or above 1e15 is read as epoch nanoseconds: as epoch seconds it would
# lie 30 million years ahead, and as nanoseconds 1e15 is 1970-01-12, before any real recording.
EPOCH_NS_MIN_DIGITS = 10**15

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NS_PER_US = 1000
_NS_PER_DAY = 86_400 * NS_PER_S
# Epoch seconds beyond this overflow int64 nanoseconds (the year 2262).
_MAX_EPOCH_S = (2**63 - 1) // NS_PER_S
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_DECIMAL = re.compile(r"^(-?)(\d+)(?:\.(\d{1,9})\d*)?$")
_EXPECTED = "ISO 8601 with a time zone, epoch ns or epoch seconds"


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


def ns_to_datetime(ts_ns: int) -> dt.datetime:
    """UTC epoch nanoseconds as an aware UTC datetime, truncated to the microsecond (as PostgreSQL keeps).

    >>> ns_to_datetime(1_767_225_600_123_456_789).isoformat()
    '2026-01-01T00:00:00.123456+00:00'
    """
    return _EPOCH + dt.timedelta(microseconds=ts_ns // _NS_PER_US)


def datetime_to_ns(moment: dt.datetime) -> int:
    """An aware datetime as UTC epoch nanoseconds, exactly (no float in between).

    >>> datetime_to_ns(dt.datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC))
    1767225600123456000

    Raises:
        ValueError: `moment` has no time zone (a naive datetime is ambiguous).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; Forewarn times are aware UTC datetimes")
    delta = moment - _EPOCH
    return delta.days * _NS_PER_DAY + delta.seconds * NS_PER_S + delta.microseconds * _NS_PER_US


def iso_time(ts_ns: int) -> str:
    """A UTC epoch-ns timestamp as ISO 8601 with microseconds and `Z`.

    >>> iso_time(1_767_225_600_000_001_000)
    '2026-01-01T00:00:00.000001Z'
    """
    return ns_to_datetime(ts_ns).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=4096)
def _whole_seconds_ns(text: str, zone: str) -> int:
    stamp = dt.datetime.fromisoformat(text + ("+00:00" if zone == "Z" else zone))
    return calendar.timegm(stamp.utctimetuple()) * NS_PER_S


def _fraction_ns(fraction: str | None) -> int:
    return int(fraction.ljust(9, "0")) if fraction else 0


def parse_time_ns(text: str) -> int:
    """A recording's time text to UTC epoch ns, exactly.

    Accepted: ISO 8601 with a time zone (up to nine fractional digits), integer epoch nanoseconds (no
    fraction, >= 1e15), or epoch seconds (up to nine decimals kept exactly; other float forms such as
    `1.7e9` are read as a float).

    >>> parse_time_ns("2026-01-01T00:00:00.0001Z"), parse_time_ns("1767225600.5")
    (1767225600000100000, 1767225600500000000)
    >>> parse_time_ns("1767225600.000000001"), parse_time_ns("1767225600000000001")
    (1767225600000000001, 1767225600000000001)

    Raises:
        ContractError: naming `time`.
    """
    text = text.strip()
    try:
        iso = _ISO.match(text)
        if iso:
            whole, fraction, zone = iso.groups()
            return _whole_seconds_ns(whole, zone) + _fraction_ns(fraction)
        decimal = _DECIMAL.match(text)
        if decimal:
            sign, whole, fraction = decimal.groups()
            if not fraction and int(whole) >= EPOCH_NS_MIN_DIGITS:
                return int(text)
            if int(whole) > _MAX_EPOCH_S:
                raise ContractError("time", text, "epoch seconds before the year 2262")
            ns = int(whole) * NS_PER_S + _fraction_ns(fraction)
            return -ns if sign else ns
        seconds = float(text)
    except ValueError as exc:
        raise ContractError("time", text, _EXPECTED) from exc
    if not math.isfinite(seconds) or abs(seconds) > _MAX_EPOCH_S:
        raise ContractError("time", text, "a finite time before the year 2262")
    return round(seconds * NS_PER_S)


def _parse_iso_utc_column(column: npt.NDArray[np.str_]) -> npt.NDArray[np.int64] | None:
    """Every cell `...T...Z`: numpy's datetime64[ns] parses them exactly; else None."""
    if not (np.all(np.strings.endswith(column, "Z")) and np.all(np.strings.find(column, "T") > 0)):
        return None
    try:
        stamps = np.strings.slice(column, 0, -1).astype("datetime64[ns]")
    except ValueError:
        return None
    return stamps.astype(np.int64)


def _parse_decimal_column(column: npt.NDArray[np.str_]) -> npt.NDArray[np.int64] | None:
    """Every cell a plain decimal number: epoch ns or exact epoch seconds; else None."""
    whole_text, dots, fraction = np.strings.partition(column, ".")
    negative = np.strings.startswith(whole_text, "-")
    digits = np.where(negative, np.strings.slice(whole_text, 1, None), whole_text)
    fraction = np.strings.slice(fraction, 0, 9)
    has_fraction = dots != ""
    if not (
        np.all(np.strings.isdigit(digits))
        and np.all(np.strings.isdigit(fraction) | ~has_fraction)
        and np.all(np.strings.str_len(digits) <= 19)
    ):
        return None
    try:
        whole = digits.astype(np.uint64)
    except (ValueError, OverflowError):
        return None
    is_ns = ~has_fraction & (whole >= EPOCH_NS_MIN_DIGITS)
    if np.any(is_ns & (whole > np.iinfo(np.int64).max)) or np.any(~is_ns & (whole > _MAX_EPOCH_S)):
        return None
    padded = np.strings.ljust(np.where(has_fraction, fraction, "0"), 9, "0")
    seconds_ns = whole.astype(np.int64) * NS_PER_S + padded.astype(np.int64)
    times = np.where(is_ns, whole.astype(np.int64), seconds_ns)
    return np.where(negative, -times, times)


def parse_times_ns(texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """A recording's time column to UTC epoch ns, exactly, and which cells parsed.

    The same rules as `parse_time_ns`, vectorised for a column that is all `...Z` ISO times or all plain
    decimal numbers; any other column is read cell by cell. A cell that does not parse has time 0 and
    `False` in the second array.

    >>> times, good = parse_times_ns(["1767225600.000000001", "1767225600000000002", "noon"])
    >>> times.tolist(), good.tolist()
    ([1767225600000000001, 1767225600000000002, 0], [True, True, False])
    """
    column = np.strings.strip(np.asarray(texts, dtype=np.str_))
    if column.size:
        for fast in (_parse_iso_utc_column, _parse_decimal_column):
            times = fast(column)
            if times is not None:
                return times, np.ones(column.size, dtype=np.bool_)
    times = np.zeros(column.size, dtype=np.int64)
    good = np.ones(column.size, dtype=np.bool_)
    for i, text in enumerate(column.tolist()):
        try:
            times[i] = parse_time_ns(text)
        except ContractError:
            good[i] = False
    return times, good
