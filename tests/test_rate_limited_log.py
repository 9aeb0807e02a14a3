"""Rate-limited warnings (`shared.rate_limited_log`)."""

from __future__ import annotations

import logging
import time

import pytest

from shared.rate_limited_log import RateLimitedLog

LOGGER = "tests.rate_limited_log"


def test_one_warning_per_key_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger(LOGGER), interval_s=60.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        logged = [limited.warn("gap", "batch %d: gap", i) for i in range(4)]
        logged.append(limited.warn("duplicate", "batch %d: duplicate", 9))
    assert logged == [True, False, False, False, True]
    assert caplog.messages == [
        "batch 0: gap (0 more like it since the last report)",
        "batch 9: duplicate (0 more like it since the last report)",
    ]


def test_the_next_warning_counts_those_held_back(caplog: pytest.LogCaptureFixture) -> None:
    interval_s = 0.05
    limited = RateLimitedLog(logging.getLogger(LOGGER), interval_s=interval_s)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        started = time.monotonic()
        for i in range(3):
            limited.warn("gap", "batch %d: gap", i)
        while time.monotonic() - started < interval_s:  # bounded: one interval
            time.sleep(0.01)
        assert limited.warn("gap", "batch %d: gap", 3)
    assert caplog.messages[-1] == "batch 3: gap (2 more like it since the last report)"
