"""Small timing helpers shared by the benchmark suites."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["best_rate", "percentile"]


def best_rate(work: Callable[[], int], *, repeats: int = 5, min_time_s: float = 0.2) -> float:
    """Items per second of `work` (which returns how many items it did), best of `repeats` timed runs.

    Best-of is the least noisy estimate of what the code can do on a shared machine.
    """
    rates = []
    for _ in range(repeats):
        items = 0
        start = time.perf_counter()
        while True:
            items += work()
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        rates.append(items / elapsed)
    return max(rates)


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, by linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, min(998, round(q * 10) - 1))]
