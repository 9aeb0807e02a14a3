"""The RUL target: true remaining life, capped where the training lives stop supporting it.

A healthy machine's sensors say that it is healthy, not how long it will stay so: above some RUL every
value looks the same. The cap is taken from the run-to-failure lives' own lengths: the shortest life
among those at least half the median life long (shorter ones are early failures that say nothing about how
long a healthy machine lasts). Every such life was seen from a healthy start with at least that much life
left, so up to the cap the RUL is supported by every typical training life; above it, by fewer and fewer.
The regressor learns min(RUL, cap) and no forecast exceeds the cap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["choose_cap", "target_rows"]


def choose_cap(life_lengths: Sequence[float]) -> tuple[float, str]:
    """The RUL cap and the reason, from the lengths of the run-to-failure lives.

    >>> choose_cap([10.0, 100.0, 120.0, 150.0])[0]
    100.0
    """
    lengths = np.asarray(life_lengths, dtype=np.float64)
    median = float(np.median(lengths))
    typical = lengths[lengths >= 0.5 * median]
    cap = float(typical.min())
    early = int(lengths.size - typical.size)
    reason = (
        f"shortest of {typical.size} run-to-failure lives at least half the median life ({median:g}) long"
        + (f" ({early} shorter early failures left out)" if early else "")
        + ": every one of them was seen with at least this much life left"
    )
    return cap, reason


def target_rows(time_left: np.ndarray, failed: np.ndarray, cap: float) -> np.ndarray:
    """Rows whose capped target is known: failed lives, and censored rows with at least `cap` left."""
    return np.flatnonzero(failed | (time_left >= cap))
