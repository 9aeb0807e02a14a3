"""The operating state of an asset (stopped, transient, running) and isolated spikes of its driving sensor.

Both decide which windows the statistical baseline leaves alone: a stopped machine's vibration is its
sensor's noise floor, a start or load step moves shapes and spectra for reasons that are not the machine's
condition, and a single-sample spike is a sensor or wiring fault.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge_agent.settings import BaselineSettings
from shared.timebase import NS_PER_S

__all__ = ["CURRENT_SENSOR", "SPIKE_SIGMAS", "OperatingState", "asset_operating_state", "spiky_windows"]

FloatArray = npt.NDArray[np.float32]

_STATE_HISTORY = 4096  # windows whose levels define an asset's running level
_STATE_MIN_WINDOWS = 16  # before this many, no window is judged stopped
_STATE_REFIT_EVERY = 64
_RUNNING_QUANTILE = 0.9  # the running level: this quantile of the recent levels
_RECENT_WINDOWS = 8  # a level change is measured against the median of this many running windows
SPIKE_SIGMAS = 8.0
"""A sample this many standard deviations off its window's mean may be a spike."""
_SPIKE_NEIGHBOUR_RATIO = 0.25  # ... if its two neighbours on each side are within this fraction of it
CURRENT_SENSOR = "current"
"""A slow sensor of this name is the motor current: its mean is an operating-state level (0 when stopped)."""


class OperatingState:
    """Tells, per window, whether the machine is stopped or in a transient, from level features.

    Levels: the driving sensor's RMS and, if the asset has one, the `current` sensor's mean. The running
    level of each is anchored to the healthy machine: the median level of the last 4096 windows the
    baseline learned (`learn_healthy`, from 16 of them on), so a fault that raises the vibration cannot
    raise the running level with it and make a later dip back to a healthy level look like a stop. Until
    the baseline has learned 16 windows, it is the 90th percentile of the last 4096 windows (so a machine
    running at least 10 % of the time has one). A window is *stopped* when a level is below
    `stopped_ratio` x its running level,
    and *transient* within `settle_s` of data time after a start (a stopped window followed by a running
    one) or a load change (the current's level off the median of the last 8 running windows by more than
    `change_ratio`, relative): start-up, run-down and load or speed steps, when shapes and spectra move for
    reasons that are not the machine's condition. Only the current detects load changes: a developing
    fault raises the vibration RMS too, and must not be mistaken for a transient.

    Args:
        columns: the level columns (the driving sensor's RMS first, then the current's mean, if any).
        change_columns: those of `columns` (positions in it) that detect load changes.
        stopped_ratio: a level below this fraction of its running level means stopped.
        change_ratio: a relative level change above this starts a transient.
        settle_s: data seconds a transient lasts.
    """

    def __init__(
        self,
        columns: npt.NDArray[np.intp],
        *,
        change_columns: npt.NDArray[np.intp],
        stopped_ratio: float,
        change_ratio: float,
        settle_s: float,
    ) -> None:
        self.columns = columns
        self.change_columns = change_columns
        self.stopped_ratio = stopped_ratio
        self.change_ratio = change_ratio
        self.settle_ns = round(settle_s * NS_PER_S)
        self._history = np.full((_STATE_HISTORY, len(columns)), np.nan)
        self._pos = 0
        self._count = 0
        self._since_refit = 0
        self._running: npt.NDArray[np.float64] | None = None
        self._healthy = np.full((_STATE_HISTORY, len(columns)), np.nan)
        self._healthy_pos = 0
        self._healthy_count = 0
        self._recent = np.empty((0, len(change_columns)))  # levels of the last running windows
        self._was_stopped = False
        self._last_change_ns = -(1 << 62)

    def classify(
        self, matrix: FloatArray, end_ns: npt.NDArray[np.int64], finite: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(stopped, transient) flags of a batch of windows, in order; learns their levels."""
        n = len(end_ns)
        stopped = np.zeros(n, dtype=np.bool_)
        transient = np.zeros(n, dtype=np.bool_)
        if len(self.columns) == 0 or not finite.any():
            return stopped, transient
        levels = matrix[:, self.columns].astype(np.float64)
        running = self._running
        if running is not None and self.stopped_ratio > 0:
            stopped = finite & (levels < self.stopped_ratio * running).any(axis=1)
        change = np.zeros(n, dtype=np.bool_)
        previous_stopped = np.concatenate(([self._was_stopped], stopped[:-1]))
        change |= finite & ~stopped & previous_stopped
        if len(self.change_columns):
            change |= self._level_changed(levels[:, self.change_columns], finite & ~stopped)
        changed_at = np.where(change, end_ns, -(1 << 62))
        last_change = np.maximum(np.maximum.accumulate(changed_at), self._last_change_ns)
        transient = finite & ~stopped & (end_ns - last_change < self.settle_ns)
        if finite.any():
            self._was_stopped = bool(stopped[np.flatnonzero(finite)[-1]])
        self._last_change_ns = int(last_change[-1])
        self._remember(levels[finite])
        return stopped, transient

    def _level_changed(
        self, levels: npt.NDArray[np.float64], is_running: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.bool_]:
        """Windows whose level is off the recent running median by more than `change_ratio`.

        Vectorised per batch of windows: each is compared with the median of the running windows before
        the batch; after a change the new level becomes the reference (the batch's windows from the
        change on), so within one batch only the first change is flagged.
        """
        changed = np.zeros(len(levels), dtype=np.bool_)
        running = np.flatnonzero(is_running)
        if len(running) == 0:
            return changed
        recent = self._recent
        if len(recent) >= _RECENT_WINDOWS // 2:
            reference = np.sort(recent, axis=0)[len(recent) // 2]  # the (upper) median, cheaply
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.abs(levels[running] - reference) / np.abs(reference)
            off = np.flatnonzero((ratio > self.change_ratio).any(axis=1))
            if len(off):
                first = int(off[0])
                changed[running[first]] = True
                self._recent = levels[running[first:]][-_RECENT_WINDOWS:]
                return changed
        self._recent = np.concatenate((recent, levels[running]))[-_RECENT_WINDOWS:]
        return changed

    @property
    def is_anchored(self) -> bool:
        """Whether the running level comes from windows the baseline learned as healthy."""
        return self._healthy_count >= _STATE_MIN_WINDOWS

    def learn_healthy(self, rows: FloatArray) -> None:
        """Anchor the running level to feature rows a baseline learned as healthy running windows."""
        if len(self.columns) == 0 or len(rows) == 0:
            return
        levels = rows[-_STATE_HISTORY:, self.columns].astype(np.float64)
        slots = (self._healthy_pos + np.arange(len(levels))) % _STATE_HISTORY
        self._healthy[slots] = levels
        self._healthy_pos = (self._healthy_pos + len(levels)) % _STATE_HISTORY
        self._healthy_count += len(levels)
        if self.is_anchored:
            known = self._healthy[: min(self._healthy_count, _STATE_HISTORY)]
            self._running = np.median(known, axis=0)

    def _remember(self, levels: npt.NDArray[np.float64]) -> None:
        """Keep the last `_STATE_HISTORY` windows' levels; re-estimate the running level now and then."""
        rows = levels[-_STATE_HISTORY:]
        slots = (self._pos + np.arange(len(rows))) % _STATE_HISTORY
        self._history[slots] = rows
        self._pos = (self._pos + len(rows)) % _STATE_HISTORY
        self._count += len(levels)
        self._since_refit += len(levels)
        if (
            not self.is_anchored
            and self._count >= _STATE_MIN_WINDOWS
            and (self._running is None or self._since_refit >= _STATE_REFIT_EVERY)
        ):
            known = self._history[: min(self._count, _STATE_HISTORY)]
            self._running = np.quantile(known, _RUNNING_QUANTILE, axis=0)
            self._since_refit = 0


def spiky_windows(windows: FloatArray) -> npt.NDArray[np.bool_]:
    """Which windows (rows) hold an isolated spike: a sensor or wiring fault, not a machine condition.

    A spike is a sample more than 8 standard deviations off its window's mean while its two neighbours
    on each side stay within a quarter of its deviation: a single-sample event. Gaussian noise never
    does this (8 sigma), nor does a machine: impacts ring a structural resonance, so the samples next
    to their peak are large too (a ringing at any frequency below fs/4 keeps some neighbour within
    two samples above a quarter of the peak).

    >>> x = np.sin(np.linspace(0, 60, 1024, dtype=np.float32))[None, :].repeat(2, axis=0)
    >>> x[1, 500] = 40.0
    >>> spiky_windows(x).tolist()
    [False, True]
    """
    deviation = np.abs(windows - windows.mean(axis=1, keepdims=True))
    sigma = windows.std(axis=1, keepdims=True)
    rows, cols = np.nonzero(deviation > SPIKE_SIGMAS * sigma)
    spiky = np.zeros(len(windows), dtype=np.bool_)
    if len(rows) == 0:
        return spiky
    width = windows.shape[1]
    peak = deviation[rows, cols]
    neighbours = np.zeros_like(peak)
    for offset in (-2, -1, 1, 2):
        at = np.clip(cols + offset, 0, width - 1)
        neighbours = np.maximum(neighbours, np.where(at == cols, 0.0, deviation[rows, at]))
    spiky[rows[neighbours < _SPIKE_NEIGHBOUR_RATIO * peak]] = True
    return spiky


def asset_operating_state(
    feature_names: tuple[str, ...], driver_name: str, baseline: BaselineSettings
) -> OperatingState:
    """The operating-state tracker of an asset: its driving sensor's RMS and its current's mean, if any.

    Args:
        feature_names: the asset's feature vector columns (`sensor.feature`).
        driver_name: the name of the asset's driving sensor.
        baseline: the baseline settings (`stopped_ratio`, `change_ratio`, `settle_s`).

    Returns:
        A tracker over the columns of those levels the asset has (none: it never flags a window).
    """
    index = {name: j for j, name in enumerate(feature_names)}
    rms, current = f"{driver_name}.rms", f"{CURRENT_SENSOR}.mean"
    names = [name for name in (rms, current) if name in index]
    return OperatingState(
        np.array([index[name] for name in names], dtype=np.intp),
        change_columns=np.array([j for j, name in enumerate(names) if name == current], dtype=np.intp),
        stopped_ratio=baseline.stopped_ratio,
        change_ratio=baseline.change_ratio,
        settle_s=baseline.settle_s,
    )
