"""Trailing-window features per asset and time, computed causally (only rows up to that time).

Two ideas carry the degradation signal on machines of any type:

- **Each life against its own baseline.** Machines of one fleet differ (offsets, gains, types), so a
  fleet-wide z-score hides a drift that is large for the machine itself. Every sensor is compared with
  the mean and spread of the life's first `baseline_rows` rows (its healthy baseline, after the regime
  normalisation): `dev = (trailing mean - baseline mean) / baseline spread`. The spread is shrunk towards
  the fleet's typical within-life spread (`prior_sd`, learned in `fit`), so a short or frozen baseline
  cannot blow up.
- **Several time scales, scaled to the data.** The short, mid and long windows and the baseline are
  fractions of the typical run-to-failure life in rows (`FeatureSpec.for_life_rows`), so the same method
  reads hours-long bursts and engine cycles alike.

Per sensor: the mid-window level (fleet units), the deviation from the baseline over the short, mid and
long windows, least-squares slopes over the mid and long windows and the mid-window spread (baseline
units). Pooled health indicators over all sensors: the RMS, maximum and mean log deviation, the same RMS
over the long window, and the slopes of log(1 + RMS deviation) over the mid and long windows (the growth
rate of an exponentially developing fault gives its remaining time). Then the age (time since the life
started: the asset's first row or its last failure/maintenance) and the number of rows since then (last
column). Windows restart at each failure or maintenance; a window that reaches before the life's start
uses the rows there are. Missing values are carried forward within a life, and are 0 (the regime mean)
before the first reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["GLOBAL_FEATURES", "PER_SENSOR_FEATURES", "FeatureSpec", "feature_names", "trailing_features"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PER_SENSOR_FEATURES = ("level", "dev_short", "dev_mid", "dev_long", "slope_mid", "slope_long", "spread_mid")
GLOBAL_FEATURES = (
    "hi_rms",
    "hi_max",
    "hi_log_mean",
    "hi_rms_long",
    "hi_growth_mid",
    "hi_growth_long",
    "age",
    "rows_in_life",
)
PRIOR_WEIGHT_ROWS = 5.0  # pseudo-rows of the fleet's typical spread in each baseline spread
MIN_REGIME_ROWS = 3  # baseline rows a regime needs before its rows are compared with it
SLOPE_NOISE = 1e-9  # slopes below this (per time unit) are rounding noise
# Windows and baseline as fractions of the typical run-to-failure life (rows), with floors in rows.
_FRACTIONS = {"short": (0.01, 3), "mid": (1 / 30, 5), "long": (0.1, 10), "baseline": (0.1, 5)}


@dataclass(frozen=True)
class FeatureSpec:
    """Window lengths (rows) and the fleet's typical within-life spread of each sensor.

    Args:
        short_rows, mid_rows, long_rows: trailing window lengths.
        baseline_rows: the first rows of each life that form its healthy baseline.
        prior_sd: per sensor, the typical spread of a life's baseline (normalised units).
    """

    short_rows: int
    mid_rows: int
    long_rows: int
    baseline_rows: int
    prior_sd: tuple[float, ...]

    @classmethod
    def for_life_rows(cls, life_rows: float, prior_sd: Sequence[float]) -> FeatureSpec:
        """Windows scaled to a typical run-to-failure life of `life_rows` rows."""
        rows = {
            name: max(floor, round(fraction * life_rows)) for name, (fraction, floor) in _FRACTIONS.items()
        }
        return cls(
            short_rows=rows["short"],
            mid_rows=max(rows["mid"], rows["short"] + 1),
            long_rows=max(rows["long"], rows["mid"] + 1),
            baseline_rows=rows["baseline"],
            prior_sd=tuple(float(v) for v in prior_sd),
        )

    @property
    def tail_rows(self) -> int:
        """Rows before a time that its features read (besides the life's baseline)."""
        return self.long_rows + self.short_rows


def feature_names(sensors: Sequence[str]) -> list[str]:
    """Column names of the feature matrix for these sensor columns."""
    names = [f"{sensor}:{feature}" for sensor in sensors for feature in PER_SENSOR_FEATURES]
    return names + list(GLOBAL_FEATURES)


def baseline_spread(z: FloatArray, regime: IntArray, life_start: IntArray, baseline_rows: int) -> FloatArray:
    """Per sensor, the median spread of a life's baseline rows within one regime.

    Over every (life, regime) pair with at least 5 rows among the life's first `baseline_rows` rows.

    Args:
        z: normalised sensor values, rows grouped by life (NaN = missing).
        regime: the operating regime of each row.
        life_start: for each row, the index of the first row of its life.
        baseline_rows: rows of each life's baseline.
    """
    filled = _forward_fill(z, life_start)
    spreads = []
    for first in np.unique(life_start):
        rows = first + np.flatnonzero(life_start[first : first + baseline_rows] == first)
        for value in np.unique(regime[rows]):
            block = filled[rows[regime[rows] == value]]
            if block.shape[0] >= 5:
                spreads.append(block.std(axis=0))
    if not spreads:
        return np.ones(z.shape[1])
    typical = np.median(np.array(spreads), axis=0)
    # A sensor that never moves within a life gets a tenth of the fleet spread: its deviations stay finite.
    return np.asarray(np.where(typical > 1e-6, typical, 0.1), dtype=np.float64)


def _regime_baseline(
    filled: FloatArray, regime: IntArray, life_start: IntArray, spec: FeatureSpec
) -> tuple[FloatArray, FloatArray]:
    """Each row's baseline mean and spread: its life's baseline rows in its own regime, up to the row.

    Shrunk with `PRIOR_WEIGHT_ROWS` pseudo-rows towards the mean of all the life's baseline rows so far and
    towards the fleet's typical spread (`spec.prior_sd`). Rows of a regime with fewer than
    `MIN_REGIME_ROWS` baseline rows so far get NaN: they are not comparable with anything yet.
    """
    n, k = filled.shape
    index = np.arange(n)
    in_baseline = (index - life_start < spec.baseline_rows).astype(np.float64)
    base_last = np.minimum(index, life_start + spec.baseline_rows - 1)
    pooled = _range_mean(filled, life_start, base_last)
    prior_var = np.square(np.asarray(spec.prior_sd, dtype=np.float64))[None, :]
    mean = np.empty((n, k))
    var = np.empty((n, k))
    for value in np.unique(regime):
        weight = in_baseline * (regime == value)
        rows = np.flatnonzero(regime == value)
        weight_prefix = _prefix(weight)
        count = (weight_prefix[rows + 1] - weight_prefix[life_start[rows]])[:, None]
        total = _prefix(filled * weight[:, None])
        sums = total[rows + 1] - total[life_start[rows]]
        del total
        square = _prefix(filled * filled * weight[:, None])
        sums_sq = square[rows + 1] - square[life_start[rows]]
        del square
        own = sums / np.maximum(count, 1.0)
        own_var = np.maximum(sums_sq / np.maximum(count, 1.0) - own * own, 0.0)
        mean[rows] = np.where(
            count >= MIN_REGIME_ROWS,
            (sums + PRIOR_WEIGHT_ROWS * pooled[rows]) / (count + PRIOR_WEIGHT_ROWS),
            np.nan,
        )
        var[rows] = (count * own_var + PRIOR_WEIGHT_ROWS * prior_var) / (count + PRIOR_WEIGHT_ROWS)
    return mean, np.sqrt(var)


def trailing_features(
    z: FloatArray,
    *,
    regime: IntArray,
    time: FloatArray,
    life_start: IntArray,
    life_start_time: FloatArray,
    spec: FeatureSpec,
) -> npt.NDArray[np.float32]:
    """The feature matrix (float32) for rows `z` (rows x sensors, normalised, NaN = missing).

    Args:
        z: normalised sensor values, rows grouped by life and in time order within a life.
        regime: the operating regime of each row.
        time: the time of each row.
        life_start: for each row, the index of the first row of its life.
        life_start_time: for each row, the time its life started.
        spec: window lengths and the sensors' typical baseline spread.
    """
    n, k = z.shape
    stride = len(PER_SENSOR_FEATURES)
    out = np.empty((n, k * stride + len(GLOBAL_FEATURES)), dtype=np.float32)
    index = np.arange(n)
    filled = _forward_fill(z, life_start)
    local_time = time - time[life_start]
    base_mean, spread = _regime_baseline(filled, regime, life_start, spec)
    # Each row against its life's baseline in its own regime; rows of a regime without a baseline yet
    # read 0 (no evidence either way), so a row's features depend only on the rows its windows cover.
    residual = np.nan_to_num((filled - base_mean) / spread, nan=0.0)
    del base_mean, spread
    starts = {
        name: _window_start(index, life_start, rows)
        for name, rows in (("short", spec.short_rows), ("mid", spec.mid_rows), ("long", spec.long_rows))
    }
    dev_short = _window_mean(residual, starts["short"])
    dev_mid = _window_mean(residual, starts["mid"])
    dev_long = _window_mean(residual, starts["long"])
    columns = {
        "level": lambda: _window_mean(filled, starts["mid"]),
        "dev_short": lambda: dev_short,
        "dev_mid": lambda: dev_mid,
        "dev_long": lambda: dev_long,
        "slope_mid": lambda: _window_slope(residual, local_time, starts["mid"]),
        "slope_long": lambda: _window_slope(residual, local_time, starts["long"]),
        "spread_mid": lambda: _window_std(residual, starts["mid"]),
    }
    for position, name in enumerate(PER_SENSOR_FEATURES):
        out[:, position : k * stride : stride] = columns[name]()  # one block at a time: bounded memory
    base = k * stride
    if k:
        hi_short = np.log1p(np.sqrt(np.mean(dev_short * dev_short, axis=1)))[:, None]
        out[:, base] = np.sqrt(np.mean(dev_mid * dev_mid, axis=1))
        out[:, base + 1] = np.abs(dev_mid).max(axis=1)
        out[:, base + 2] = np.log1p(np.abs(dev_mid)).mean(axis=1)
        out[:, base + 3] = np.sqrt(np.mean(dev_long * dev_long, axis=1))
        out[:, base + 4] = _window_slope(hi_short, local_time, starts["mid"])[:, 0]
        out[:, base + 5] = _window_slope(hi_short, local_time, starts["long"])[:, 0]
    else:
        out[:, base : base + 6] = 0.0
    out[:, base + 6] = time - life_start_time
    out[:, base + 7] = index - life_start + 1
    return out


def _forward_fill(z: FloatArray, life_start: IntArray) -> FloatArray:
    n = z.shape[0]
    valid = ~np.isnan(z)
    source = np.where(valid, np.arange(n)[:, None], -1)
    source = np.maximum.accumulate(source, axis=0)
    usable = source >= life_start[:, None]
    picked = np.take_along_axis(z, np.maximum(source, 0), axis=0)
    return np.where(usable, picked, 0.0)


def _window_start(index: IntArray, life_start: IntArray, window: int) -> IntArray:
    return np.maximum(life_start, index - window + 1)


def _prefix(values: FloatArray) -> FloatArray:
    """Cumulative sums with a leading zero row: sum of rows [a, b] = P[b + 1] - P[a]."""
    prefix = np.zeros((values.shape[0] + 1, *values.shape[1:]), dtype=np.float64)
    np.cumsum(values, axis=0, out=prefix[1:])
    return prefix


def _range_mean(values: FloatArray, first: IntArray, last: IntArray) -> FloatArray:
    prefix = _prefix(values)
    count = (last - first + 1).astype(np.float64)[:, None]
    return np.asarray((prefix[last + 1] - prefix[first]) / count, dtype=np.float64)


def _window_mean(values: FloatArray, start: IntArray) -> FloatArray:
    return _range_mean(values, start, np.arange(values.shape[0]))


def _window_std(values: FloatArray, start: IntArray) -> FloatArray:
    mean = _window_mean(values, start)
    mean_square = _window_mean(values * values, start)
    return np.sqrt(np.maximum(mean_square - mean * mean, 0.0))


def _window_slope(values: FloatArray, time: FloatArray, start: IntArray) -> FloatArray:
    """Least-squares slope of values against time over each trailing window (0 for a single row)."""
    end = np.arange(values.shape[0]) + 1
    count = (end - start).astype(np.float64)
    t_prefix = _prefix(time)
    tt_prefix = _prefix(time * time)
    sum_t = t_prefix[end] - t_prefix[start]
    sum_tt = tt_prefix[end] - tt_prefix[start]
    x_prefix = _prefix(values)
    tx_prefix = _prefix(values * time[:, None])
    sum_x = x_prefix[end] - x_prefix[start]
    sum_tx = tx_prefix[end] - tx_prefix[start]
    denominator = count * sum_tt - sum_t * sum_t
    scale = np.maximum(count * sum_tt, 1e-300)
    ok = denominator > 1e-9 * scale
    safe = np.where(ok, denominator, 1.0)
    slope = (count[:, None] * sum_tx - sum_t[:, None] * sum_x) / safe[:, None]
    # Prefix sums over the whole table leave rounding noise (~1e-12) where the slope is 0; it must not
    # depend on how much history precedes the window (the last-time path reads a trimmed history).
    return np.where(ok[:, None] & (np.abs(slope) >= SLOPE_NOISE), slope, 0.0)
