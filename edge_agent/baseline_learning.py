"""What an asset's online baseline learns from: its warm-up, and after it only confirmed-normal windows.

Warm-up: the first `warmup_windows` windows learned (one per `learn_interval_s` of data time), or, with
`learn_first_s`, every window ending within `learn_first_s` data seconds of the start of the asset's first
window. Warm-up windows are not
scored: the pipeline reports them as `warmup`.

After warm-up (with `keep_learning`) a window is learned only when all of these hold:

* it was scored normal (score <= threshold): a window scored anomalous is never learned;
* no level shift is open: a one-sided CUSUM (Page's test) of the scores, each first turned into a normal
  score through the distribution of the scores the baseline gives its own healthy rows (its quantile
  there, then the standard normal quantile of that: healthy windows give N(0, 1) whatever the skew of the
  score), with slack `k = 0.5` and alarm level `h = 8`. A sustained rise of half a healthy standard
  deviation or more (a developing fault, or a new operating state) opens a shift within h / (shift - k)
  windows, 16 for a rise of one deviation;
  healthy scores seldom do (0 to 2 false shifts in 20,000 simulated healthy windows read against 1,024
  reference scores; each only pauses learning for a while).
  A shift closes when the statistic falls back to 0 (the scores came back);
* it survived probation: it is held back for `PROBATION_WINDOWS` scored windows (more than the CUSUM needs
  to open a shift of one deviation), and dropped if a shift opens meanwhile, so the windows at the start of
  a shift, before it is detected, are not learned either.

A shift is *confirmed* as a new operating state, and its windows learned, when for `shift_confirm_s` of data
time (and at least `MIN_CONFIRM_WINDOWS` windows) no window was scored anomalous (any such window restarts
the period) and the scores show no rising trend (checked at the end of each batch of windows): the later
half of the period does not score higher than the earlier half (one-sided Mann-Whitney U test, normal
approximation, z below 2.326, the 1 % level). A fault keeps growing or crosses the threshold; a new
operating state is stationary and normal to the baseline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from edge_agent.scoring import BaselineScorer
from edge_agent.settings import BaselineSettings
from shared.timebase import NS_PER_S

__all__ = [
    "CUSUM_ALARM",
    "CUSUM_SLACK",
    "MIN_CONFIRM_WINDOWS",
    "PROBATION_WINDOWS",
    "BaselineLearner",
    "LevelShiftGuard",
    "normal_scores",
    "rising_trend_z",
]

FloatArray = npt.NDArray[np.float32]

CUSUM_SLACK = 0.5
"""k: the CUSUM ignores rises smaller than this many healthy score deviations."""
CUSUM_ALARM = 8.0
"""h: the CUSUM opens a shift when its statistic exceeds this."""
_CUSUM_CAP = 2 * CUSUM_ALARM  # bounds how long the statistic takes to fall back once the scores return
PROBATION_WINDOWS = 64
"""Scored windows a learning candidate waits before it is learned (dropped if a shift opens meanwhile)."""
MIN_CONFIRM_WINDOWS = 40
"""The fewest windows of a shift before it can be confirmed as a new operating state."""
_TREND_Z = 2.326  # one-sided 1 % point of the standard normal
_MAX_SHIFT_SCORES = 8192  # the trend test keeps at most this many scores (evenly thinned beyond)
_NEVER = 1 << 62


def normal_scores(
    scores: FloatArray | npt.NDArray[np.float64], healthy_scores: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each score's quantile among the sorted `healthy_scores`, as a standard normal quantile.

    A healthy window's normal score is N(0, 1) whatever the shape of the score's distribution; the
    quantile is (rank + 0.5) / (n + 1), so a score above every healthy one gives about 3.3 for n = 1024.

    >>> normal_scores(np.array([-1.0, 5.0, 100.0]), np.arange(11.0)).round(2).tolist()
    [-1.73, 0.0, 1.73]
    """
    n = len(healthy_scores)
    left = np.searchsorted(healthy_scores, scores, side="left")
    right = np.searchsorted(healthy_scores, scores, side="right")
    quantile = ((left + right) / 2 + 0.5) / (n + 1)
    return np.asarray(ndtri(quantile), dtype=np.float64)


def rising_trend_z(scores: Sequence[float]) -> float:
    """Mann-Whitney z of the later half of `scores` against the earlier half (> 0: the later is higher).

    >>> round(rising_trend_z([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]), 2)
    2.31
    """
    values = np.asarray(scores, dtype=np.float64)
    half = len(values) // 2
    if half == 0:
        return 0.0
    early, late = values[:half], values[half:]
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)
    n1, n2 = len(early), len(late)
    u_late = ranks[half:].sum() - n2 * (n2 + 1) / 2
    mean = n1 * n2 / 2
    sd = np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return float((u_late - mean) / sd)


@dataclass
class ShiftUpdate:
    """What one batch of scores did to the guard.

    Attributes:
        in_shift: per window, whether a shift was open after it.
        opened: whether a shift opened in the batch.
        confirmed: whether an open shift was confirmed as a new operating state in the batch.
    """

    in_shift: npt.NDArray[np.bool_]
    opened: bool
    confirmed: bool


class LevelShiftGuard:
    """Detects a sustained rise of an online baseline's scores and confirms it as a new operating state.

    Args:
        confirm_s: data seconds of normal, trendless scores that confirm an open shift.

    >>> guard = LevelShiftGuard(confirm_s=10.0)
    >>> ends = np.arange(1, 101, dtype=np.int64) * 1_000_000_000
    >>> reference = np.linspace(0.5, 2.0, 1000)  # the healthy scores, sorted
    >>> healthy = guard.update(np.full(100, 1.25), ends, healthy_scores=reference, threshold=6.0)
    >>> raised = guard.update(np.full(100, 3.0), ends + 100 * 10**9, healthy_scores=reference, threshold=6.0)
    >>> healthy.opened, raised.opened, int(np.argmax(raised.in_shift))  # 3.3 - 0.5 a window: open at the 3rd
    (False, True, 2)
    """

    def __init__(self, *, confirm_s: float) -> None:
        self.confirm_ns = round(confirm_s * NS_PER_S)
        self.reset()

    def reset(self) -> None:
        """Close any shift and forget the statistic."""
        self._statistic = 0.0
        self._is_open = False
        self._since_ns = 0
        self._scores: list[float] = []

    @property
    def is_open(self) -> bool:
        """Whether a shift is open (learning paused)."""
        return self._is_open

    def update(
        self,
        scores: FloatArray,
        end_ns: npt.NDArray[np.int64],
        *,
        healthy_scores: npt.NDArray[np.float64],
        threshold: float,
    ) -> ShiftUpdate:
        """Feed the scores of a batch of scored windows, in order.

        Args:
            scores: the windows' scores.
            end_ns: their end times.
            healthy_scores: the sorted scores of healthy windows the scores are read against.
            threshold: a score above this is anomalous.
        """
        in_shift = np.zeros(len(scores), dtype=np.bool_)
        opened = confirmed = False
        statistic = self._statistic
        increments = normal_scores(scores, healthy_scores) - CUSUM_SLACK
        if not self._is_open and len(increments):
            # the common case, vectorised: S_t = C_t - min(-S_0, min_{j<=t} C_j), C the running sum
            running = np.cumsum(increments)
            path = running - np.minimum(np.minimum.accumulate(running), -statistic)
            if path.max() <= CUSUM_ALARM:
                self._statistic = float(path[-1])
                return ShiftUpdate(in_shift=in_shift, opened=False, confirmed=False)
        for i, (step, score, ts_ns) in enumerate(
            zip(increments.tolist(), scores.tolist(), end_ns.tolist(), strict=True)
        ):
            statistic = min(max(0.0, statistic + step), _CUSUM_CAP)
            if not self._is_open and statistic > CUSUM_ALARM:
                self._is_open, opened = True, True
                self._since_ns, self._scores = ts_ns, []
            elif self._is_open and statistic == 0.0:
                self._is_open = False
            if self._is_open:
                if score > threshold:
                    self._since_ns, self._scores = ts_ns, []
                else:
                    self._scores.append(score)
                    if len(self._scores) > _MAX_SHIFT_SCORES:
                        self._scores = self._scores[::2]
            in_shift[i] = self._is_open
        if self._is_open and len(end_ns) and self._is_confirmed(int(end_ns[-1])):
            confirmed = True
            statistic = 0.0
            self._is_open = False
        self._statistic = statistic
        return ShiftUpdate(in_shift=in_shift, opened=opened, confirmed=confirmed)

    def _is_confirmed(self, ts_ns: int) -> bool:
        return (
            ts_ns - self._since_ns >= self.confirm_ns
            and len(self._scores) >= MIN_CONFIRM_WINDOWS
            and rising_trend_z(self._scores) < _TREND_Z
        )


class BaselineLearner:
    """Decides, per batch of one asset's windows, what its `BaselineScorer` learns (see the module doc).

    Args:
        settings: the baseline settings.
        asset_id: seeds the choice of the windows learned.
        window_s: the length of the asset's windows (`learn_first_s` counts from the first one's start).
    """

    def __init__(self, settings: BaselineSettings, *, asset_id: str, window_s: float = 0.0) -> None:
        self.settings = settings
        self.interval_ns = round(settings.learn_interval_s * NS_PER_S)
        self.learn_first_ns = round(settings.learn_first_s * NS_PER_S)
        self.window_ns = round(window_s * NS_PER_S)
        self._rng = np.random.default_rng([settings.seed, *asset_id.encode()])
        self._next_ns = -_NEVER
        self._first_ns: int | None = None
        self._guard = LevelShiftGuard(confirm_s=settings.shift_confirm_s)
        self._probation: deque[tuple[int, FloatArray]] = deque()
        self._shifted: list[FloatArray] = []
        self._n_scored = 0

    def make_baseline(self, feature_names: Sequence[str]) -> BaselineScorer:
        """A new baseline for the asset (with `learn_first_s`, it warms up by time, not by count)."""
        settings = self.settings
        return BaselineScorer(
            feature_names=feature_names,
            threshold=settings.threshold,
            warmup_windows=_NEVER if self.learn_first_ns else settings.warmup_windows,
            seed=settings.seed,
            features=settings.features,
            combine_top=settings.combine_top,
        )

    @property
    def is_paused(self) -> bool:
        """Whether an unconfirmed level shift pauses learning."""
        return self._guard.is_open

    def note_start(self, end_ns: npt.NDArray[np.int64]) -> None:
        """Remember when the asset's first window started (the start of `learn_first_s`)."""
        if self._first_ns is None and len(end_ns):
            self._first_ns = int(end_ns[0]) - self.window_ns

    def warm_up(
        self, baseline: BaselineScorer, rows: FloatArray, end_ns: npt.NDArray[np.int64]
    ) -> tuple[int, FloatArray]:
        """Learn warm-up windows from the start of a batch of eligible rows, in order.

        Returns:
            How many leading rows were warm-up (not to be scored; the rest are scored if the baseline
            is warmed up now), and the rows learned.
        """
        if self.learn_first_ns:
            return self._warm_up_by_time(baseline, rows, end_ns)
        due = self._due(end_ns)
        needed = baseline.warmup_windows - baseline.n_seen
        learned_at = np.flatnonzero(due)
        if len(learned_at) >= needed:
            n_warm = int(learned_at[needed - 1]) + 1
            learned_at = learned_at[:needed]
        else:
            n_warm = len(rows)
        learned = rows[learned_at]
        if len(learned):
            baseline.update(learned)
        return n_warm, learned

    def _warm_up_by_time(
        self, baseline: BaselineScorer, rows: FloatArray, end_ns: npt.NDArray[np.int64]
    ) -> tuple[int, FloatArray]:
        start = self._first_ns if self._first_ns is not None else int(end_ns[0]) - self.window_ns
        n_warm = int(np.searchsorted(end_ns, start + self.learn_first_ns, side="right"))  # ends within S
        if n_warm == len(rows):
            baseline.update(rows)
            return n_warm, rows
        baseline.update(rows[:n_warm])
        if baseline.finish_warmup():
            return n_warm, rows[:n_warm]
        baseline.update(rows[n_warm:])  # too few windows so far: keep warming up, past the time
        baseline.finish_warmup()
        return len(rows), rows

    def learn(
        self, baseline: BaselineScorer, rows: FloatArray, scores: FloatArray, end_ns: npt.NDArray[np.int64]
    ) -> tuple[FloatArray, bool]:
        """After warm-up: watch a batch of scored rows for shifts and learn what is due.

        Returns:
            The rows learned, and whether a level shift opened in the batch.
        """
        empty = rows[:0]
        if not self.settings.keep_learning or len(rows) == 0:
            return empty, False
        update = self._guard.update(
            scores,
            end_ns,
            healthy_scores=baseline.healthy_scores_,
            threshold=baseline.threshold,
        )
        if update.opened:
            self._probation.clear()
        candidates = self._due(end_ns) & (scores <= baseline.threshold)
        base = self._n_scored
        self._n_scored += len(rows)
        for i in np.flatnonzero(candidates).tolist():
            row = rows[i : i + 1]
            if update.in_shift[i]:
                self._shifted.append(row)
            else:
                self._probation.append((base + i, row))
        learned: list[FloatArray] = []
        if update.confirmed:
            learned.extend(self._shifted)
        if update.confirmed or not self._guard.is_open:
            self._shifted = []
        while self._probation and self._probation[0][0] <= self._n_scored - PROBATION_WINDOWS:
            learned.append(self._probation.popleft()[1])
        if len(self._shifted) > baseline.reservoir_size:
            self._shifted = self._shifted[-baseline.reservoir_size :]
        if not learned:
            return empty, update.opened
        batch = np.concatenate(learned)
        baseline.update(batch)
        if update.confirmed:
            baseline.finish_warmup()  # refit now, so the new state's scores come down
        return batch, update.opened

    def _due(self, end_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which windows are due for learning: the first ending a random 0.5-1.5 intervals after the last.

        About one per interval on a continuous stream, one per burst for a sensor sending short bursts less
        often. Random, not every k-th: a fixed stride can alias with a periodic signal.
        """
        due = np.zeros(len(end_ns), dtype=np.bool_)
        interval_ns = self.interval_ns
        if interval_ns <= 0:
            due[:] = True
            return due
        if len(end_ns) == 0 or (
            self._next_ns - 2 * interval_ns <= int(end_ns[0]) and int(end_ns[-1]) < self._next_ns
        ):
            return due  # the common case: no window of this batch is due
        for i, ts_ns in enumerate(end_ns.tolist()):
            # due, or the clock stepped back by more than two intervals
            if ts_ns >= self._next_ns or ts_ns < self._next_ns - 2 * interval_ns:
                due[i] = True
                self._next_ns = ts_ns + round(interval_ns * self._rng.uniform(0.5, 1.5))
        return due
