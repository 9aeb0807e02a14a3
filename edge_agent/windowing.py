"""Per-sensor stream checks, sample buffers and windows.

Each (asset, sensor) stream has a `StreamChecker` that classifies every batch against the previous one by
its `seq` and its timestamp, a `SampleBuffer` that holds the samples still needed, and either a `Windower`
(for the sensor that drives its asset's feature vectors) or a `JoinedHistory` (for the other sensors,
which join each driving window as of its end time).

Times: a sample's time is `anchor_ns + (index - anchor_index) / rate`, re-anchored at every batch's
`start_ns`, so the small clock jitter tolerated between batches never accumulates. Windows are cut in one
vectorised step per batch (a strided view over the buffer, then one copy).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S

__all__ = [
    "JoinedHistory",
    "SampleBuffer",
    "StreamChecker",
    "Verdict",
    "Windower",
    "Windows",
]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class Verdict(enum.Enum):
    """How a batch relates to the previous batch of its stream."""

    FIRST = "first"  # the stream's first batch: accepted, starts the stream
    CONTIGUOUS = "contiguous"  # next seq (or a skipped seq) and the expected time: accepted
    GAP = "gap"  # later than expected: accepted, windows restart
    CLOCK_BACKWARDS = "clock_backwards"  # newer seq but an earlier time: accepted, windows restart
    SEQ_RESET = "seq_reset"  # seq went back but the time moved on (sender restarted): accepted, restart
    DUPLICATE = "duplicate"  # the same seq again, with old data: dropped
    OUT_OF_ORDER = "out_of_order"  # an older seq with old data: dropped

    @property
    def is_accepted(self) -> bool:
        """Whether the batch's samples are used."""
        return self not in (Verdict.DUPLICATE, Verdict.OUT_OF_ORDER)

    @property
    def is_restart(self) -> bool:
        """Whether the stream's windows start again with this batch."""
        return self in (Verdict.FIRST, Verdict.GAP, Verdict.CLOCK_BACKWARDS, Verdict.SEQ_RESET)


class StreamChecker:
    """Classifies each batch of one stream by `seq` and time against the last accepted batch.

    Args:
        sample_rate_hz: the stream's rate (sets the minimum timing tolerance of half a sample).
        tolerance_s: timestamp jitter accepted between consecutive batches.
    """

    def __init__(self, *, sample_rate_hz: float, tolerance_s: float) -> None:
        self.tolerance_ns = max(tolerance_s * NS_PER_S, 0.5 * NS_PER_S / sample_rate_hz)
        self.last_seq: int | None = None
        self.expected_ns = 0

    def check(self, batch: RawBatch) -> tuple[Verdict, int]:
        """The verdict on `batch` and its time offset from the expected start (ns; > 0 means later).

        Accepted batches become the new reference.
        """
        if self.last_seq is None:
            verdict, offset_ns = Verdict.FIRST, 0
        else:
            offset_ns = batch.start_ns - self.expected_ns
            verdict = self._classify(batch.seq, offset_ns)
        if verdict.is_accepted:
            self.last_seq = batch.seq
            self.expected_ns = batch.end_ns
        return verdict, offset_ns

    def _classify(self, seq: int, offset_ns: int) -> Verdict:
        last = self.last_seq if self.last_seq is not None else -1
        is_late = offset_ns > self.tolerance_ns
        is_early = offset_ns < -self.tolerance_ns
        if seq > last:
            if is_late:
                return Verdict.GAP
            return Verdict.CLOCK_BACKWARDS if is_early else Verdict.CONTIGUOUS
        if not is_early:
            return Verdict.SEQ_RESET
        return Verdict.DUPLICATE if seq == last else Verdict.OUT_OF_ORDER


class SampleBuffer:
    """Contiguous samples of one stream, addressed by absolute sample index since the last restart.

    Appends are amortised O(samples): consumed samples are discarded by moving a start offset, and the
    array is compacted (or grown) only when an append would not fit.

    Args:
        sample_rate_hz: samples per second.
        capacity: initial size of the backing array (it grows if a batch needs more).
    """

    def __init__(self, *, sample_rate_hz: float, capacity: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._ns_per_sample = NS_PER_S / sample_rate_hz
        self._buf = np.empty(max(2 * capacity, 16), dtype=np.float32)
        self.restart()

    def restart(self) -> None:
        """Forget every sample; indices start from 0 again."""
        self._lo = 0
        self._hi = 0
        self.first_index = 0  # absolute index of self._buf[self._lo]
        self.anchor_index = 0
        self.anchor_ns = 0
        self.is_empty_stream = True

    @property
    def end_index(self) -> int:
        """Absolute index just after the last sample held (or discarded)."""
        return self.first_index + (self._hi - self._lo)

    def time_ns(self, index: npt.ArrayLike) -> IntArray:
        """UTC epoch ns of the samples at absolute `index` (vectorised)."""
        offset = (np.asarray(index, dtype=np.float64) - self.anchor_index) * self._ns_per_sample
        return self.anchor_ns + np.rint(offset).astype(np.int64)

    def index_before(self, ts_ns: IntArray) -> IntArray:
        """Absolute index just after the last sample whose time is before `ts_ns` (vectorised)."""
        exact = self.anchor_index + (ts_ns - self.anchor_ns).astype(np.float64) / self._ns_per_sample
        return np.ceil(exact - 1e-6).astype(np.int64)

    def append(self, samples: FloatArray, start_ns: int) -> None:
        """Append samples that follow the held ones; `start_ns` (the first one's time) re-anchors times."""
        count = len(samples)
        if self._hi + count > len(self._buf):
            self._make_room(count)
        self._buf[self._hi : self._hi + count] = samples
        self.anchor_index = self.end_index
        self.anchor_ns = start_ns
        self._hi += count
        self.is_empty_stream = False

    def _make_room(self, count: int) -> None:
        held = self._hi - self._lo
        if held + count > len(self._buf) // 2:
            grown = np.empty(2 * (held + count), dtype=np.float32)
            grown[:held] = self._buf[self._lo : self._hi]
            self._buf = grown
        else:
            self._buf[:held] = self._buf[self._lo : self._hi]
        self._lo, self._hi = 0, held

    def discard_before(self, index: int) -> None:
        """Drop the samples before absolute `index` (clamped to what is held)."""
        drop = min(max(index - self.first_index, 0), self._hi - self._lo)
        self._lo += drop
        self.first_index += drop

    def keep_last(self, count: int) -> None:
        """Drop all but the last `count` samples."""
        self.discard_before(self.end_index - count)

    def held(self) -> FloatArray:
        """A view of the held samples (valid until the next append)."""
        return self._buf[self._lo : self._hi]

    def windows(self, start_index: int, count: int, length: int, step: int) -> FloatArray:
        """A read-only view of `count` windows of `length` samples from `start_index`, `step` apart.

        Raises:
            IndexError: if a window would reach outside the held samples.
        """
        first = start_index - self.first_index
        if count < 0 or first < 0 or first + (count - 1) * step + length > self._hi - self._lo:
            raise IndexError(f"windows {start_index}+{count}x{step} of {length} outside the held samples")
        itemsize = self._buf.itemsize
        view: FloatArray = np.ndarray(
            shape=(count, length),
            dtype=np.float32,
            buffer=self._buf,
            offset=(self._lo + first) * itemsize,
            strides=(step * itemsize, itemsize),
        )
        view.flags.writeable = False
        return view

    def gather(self, end_indices: IntArray, length: int) -> FloatArray:
        """Copies of the windows of `length` samples ending just before each of `end_indices`."""
        starts = end_indices - length - self.first_index + self._lo
        windows: FloatArray = self._buf[starts[:, None] + np.arange(length)]
        return windows

    def slice(self, start_index: int, end_index: int) -> FloatArray:
        """A copy of the samples in [start_index, end_index), clamped to what is held."""
        lo = max(start_index, self.first_index) - self.first_index
        hi = min(end_index, self.end_index) - self.first_index
        if hi <= lo:
            return np.empty(0, dtype=np.float32)
        return self._buf[self._lo + lo : self._lo + hi].copy()


@dataclass(frozen=True, slots=True)
class Windows:
    """A batch of windows of one sensor: samples (m x window_len) and each window's end time."""

    samples: FloatArray
    end_ns: IntArray

    def __len__(self) -> int:
        return len(self.end_ns)


class Windower:
    """Cuts a stream into windows of `window_len` samples every `hop` samples.

    A restart (a gap, a clock step, a run of bad samples) drops the partial window: the next window starts
    at the first sample after the restart.

    Args:
        window_len: samples per window.
        hop: samples between window starts (>= window_len skips samples between windows).
        sample_rate_hz: the stream's rate.
    """

    def __init__(self, *, window_len: int, hop: int, sample_rate_hz: float) -> None:
        self.window_len = window_len
        self.hop = hop
        self.buffer = SampleBuffer(sample_rate_hz=sample_rate_hz, capacity=window_len + 4096)
        self._next_start = 0
        self._empty = Windows(np.empty((0, window_len), dtype=np.float32), np.empty(0, dtype=np.int64))

    def restart(self) -> None:
        """Drop the partial window; the next samples start a new one."""
        self.buffer.restart()
        self._next_start = 0

    def push(self, samples: FloatArray, start_ns: int) -> Windows:
        """Add contiguous samples; return every window they complete (copies), oldest first."""
        buffer = self.buffer
        buffer.append(samples, start_ns)
        available = buffer.end_index - self._next_start
        if available < self.window_len:
            buffer.discard_before(self._next_start)
            return self._empty
        count = (available - self.window_len) // self.hop + 1
        windows = buffer.windows(self._next_start, count, self.window_len, self.hop).copy()
        end_index = self._next_start + self.window_len + self.hop * np.arange(count)
        self._next_start += self.hop * count
        buffer.discard_before(self._next_start)
        return Windows(windows, buffer.time_ns(end_index))


class JoinedHistory:
    """The recent samples of a sensor that joins another sensor's windows as of their end times.

    For a driving window ending at `t`, the joined window is the `span` samples ending at the last sample
    before `t`, or, if this sensor has not reached `t` yet, at its latest sample, provided that one is at
    most `max_lag_s` older than `t`. Otherwise (no data yet, too stale, or not enough contiguous history)
    the joined window is missing and the driving window is not scored.

    Args:
        span: samples per joined window.
        sample_rate_hz: this sensor's rate.
        max_lag_s: how far this sensor may lag (or lead) the driving sensor.
    """

    def __init__(self, *, span: int, sample_rate_hz: float, max_lag_s: float) -> None:
        self.span = span
        self.max_lag_ns = max_lag_s * NS_PER_S
        self._ns_per_sample = NS_PER_S / sample_rate_hz
        self._keep = span + math.ceil((max_lag_s + 1.0) * sample_rate_hz)
        self._pin_ns: int | None = None
        self.buffer = SampleBuffer(sample_rate_hz=sample_rate_hz, capacity=self._keep + 4096)

    def restart(self) -> None:
        """Forget the history (after a gap or a clock step in this sensor)."""
        self.buffer.restart()

    def pin(self, end_ns: int) -> None:
        """Keep the samples a driving window ending at `end_ns` may join, until `unpin`."""
        if self._pin_ns is None or end_ns < self._pin_ns:
            self._pin_ns = end_ns

    def unpin(self) -> None:
        """The pinned windows were joined: keep only the usual history again."""
        self._pin_ns = None

    def push(self, samples: FloatArray, start_ns: int) -> None:
        """Add contiguous samples, keeping the history joins can still use (one batch more than needed).

        The history holds `span` samples plus `max_lag_s` + 1 s plus this batch, so that a sensor whose
        batches run ahead of the driving sensor still covers the driving windows; while windows are
        pinned it also holds everything they may join.
        """
        buffer = self.buffer
        buffer.append(samples, start_ns)
        keep_from = buffer.end_index - self._keep - len(samples)
        if self._pin_ns is not None:
            oldest_ns = self._pin_ns - self.max_lag_ns - buffer.anchor_ns
            oldest = buffer.anchor_index + math.floor(oldest_ns / self._ns_per_sample) - self.span
            keep_from = min(keep_from, oldest)
        buffer.discard_before(keep_from)

    def take(self, end_ns: IntArray) -> tuple[FloatArray, BoolArray]:
        """Joined windows for driving windows ending at `end_ns`: (valid count x span) and the valid mask."""
        buffer = self.buffer
        if buffer.is_empty_stream or buffer.end_index - buffer.first_index < self.span:
            return np.empty((0, self.span), dtype=np.float32), np.zeros(len(end_ns), dtype=np.bool_)
        end_index = np.minimum(buffer.index_before(end_ns), buffer.end_index)
        lag_ns = end_ns - buffer.time_ns(end_index)
        valid = (end_index - self.span >= buffer.first_index) & (np.abs(lag_ns) <= self.max_lag_ns)
        return buffer.gather(end_index[valid], self.span), valid
