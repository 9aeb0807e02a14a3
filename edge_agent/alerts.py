"""Debounced alerts: k of the last n scored windows anomalous raises; a run of normal windows clears.

The debouncer sees one flag per scored window (score above the threshold or not). Windows that were not
scored (missing sensor data, features that do not match the model) are not flags: they neither raise nor
clear. A batch with no anomalous window while no alert is raised, the common case, is handled without a
per-window loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge_agent.settings import AlertSettings

__all__ = ["AlertDebouncer", "Transition", "severity"]

Severity = Literal["info", "warning", "critical"]


def severity(score: float, threshold: float, settings: AlertSettings) -> Severity:
    """Severity of an anomalous score from its ratio to the threshold.

    >>> severity(13.0, 6.0, AlertSettings()), severity(7.0, 6.0, AlertSettings())
    ('critical', 'warning')
    """
    ratio = score / threshold if threshold > 0 else float("inf")
    if ratio >= settings.critical_ratio:
        return "critical"
    return "warning" if ratio >= settings.warning_ratio else "info"


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert raised or cleared at the window with position `index` in the batch given to `update`."""

    index: int
    state: Literal["raised", "cleared"]


class AlertDebouncer:
    """k-of-n raise and clear-after-m-normal debouncing for one asset.

    Args:
        k: anomalous windows among the last `n` that raise an alert.
        n: length of the history.
        clear_after: consecutive normal windows that clear a raised alert.

    >>> d = AlertDebouncer(k=2, n=3, clear_after=2)
    >>> d.update(np.array([True, False, True, False, False]))
    [Transition(index=2, state='raised'), Transition(index=4, state='cleared')]
    """

    def __init__(self, *, k: int, n: int, clear_after: int) -> None:
        self.k = k
        self.n = n
        self.clear_after = clear_after
        self.reset()

    def reset(self) -> None:
        """Back to no alert and an all-normal history."""
        self._history = np.zeros(self.n, dtype=np.bool_)  # ring of the last n flags
        self._pos = 0
        self._n_anomalous = 0
        self._normal_run = 0
        self._is_raised = False

    @property
    def is_raised(self) -> bool:
        """Whether an alert is currently raised."""
        return self._is_raised

    def update(self, anomalous: npt.NDArray[np.bool_]) -> list[Transition]:
        """Feed the flags of consecutive scored windows; return the transitions they cause, in order."""
        count = len(anomalous)
        if count == 0:
            return []
        if not anomalous.any():
            if not self._is_raised:
                self._push_normals(count)
                return []
            if self._normal_run + count < self.clear_after:
                self._normal_run += count
                self._push_normals(count)
                return []
        return self._update_slow(anomalous)

    def _push_normals(self, count: int) -> None:
        if count >= self.n:
            self._history[:] = False
            self._n_anomalous = 0
            self._pos = 0
            return
        idx = (self._pos + np.arange(count)) % self.n
        self._n_anomalous -= int(np.count_nonzero(self._history[idx]))
        self._history[idx] = False
        self._pos = (self._pos + count) % self.n

    def _update_slow(self, anomalous: npt.NDArray[np.bool_]) -> list[Transition]:
        transitions: list[Transition] = []
        for index, flag in enumerate(anomalous.tolist()):
            self._n_anomalous += int(flag) - int(self._history[self._pos])
            self._history[self._pos] = flag
            self._pos = (self._pos + 1) % self.n
            self._normal_run = 0 if flag else self._normal_run + 1
            if not self._is_raised and self._n_anomalous >= self.k:
                self._is_raised = True
                transitions.append(Transition(index, "raised"))
            elif self._is_raised and self._normal_run >= self.clear_after:
                self._is_raised = False
                transitions.append(Transition(index, "cleared"))
        return transitions
