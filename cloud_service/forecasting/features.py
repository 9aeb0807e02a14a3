"""Trailing-window features per asset and time, computed causally (only rows up to that time).

For each (regime-normalised) sensor: the last value, trailing means over 5 and 20 rows, the standard
deviation over 20 rows, least-squares slopes (per time unit) over 20 and 60 rows, and the drift of the
20-row mean from the life's baseline (the mean of its first 10 rows). Over all sensors: the mean absolute
drift (a pooled health indicator), the age (time since the life started: the asset's first row or its last
failure/maintenance) and the number of rows since then. Windows are counted in rows and restart at each
failure or maintenance; a window that reaches before the life's start uses the rows there are.
Missing values are carried forward within a life, and are 0 (the regime mean) before the first reading.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["PER_SENSOR_FEATURES", "feature_names", "trailing_features"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STD_WINDOW = 20
SLOPE_WINDOWS = (20, 60)
BASELINE_ROWS = 10
TAIL_ROWS = max(20, STD_WINDOW, *SLOPE_WINDOWS)  # the longest trailing window
PER_SENSOR_FEATURES = ("value", "mean5", "mean20", "std20", "slope20", "slope60", "drift")
GLOBAL_FEATURES = ("mean_abs_drift", "age", "rows_in_life")


def feature_names(sensors: Sequence[str]) -> list[str]:
    """Column names of the feature matrix for these sensor columns."""
    names = [f"{sensor}:{feature}" for sensor in sensors for feature in PER_SENSOR_FEATURES]
    return names + list(GLOBAL_FEATURES)


def trailing_features(
    z: FloatArray, time: FloatArray, life_start: IntArray, life_start_time: FloatArray
) -> npt.NDArray[np.float32]:
    """The feature matrix (float32) for rows `z` (rows x sensors, normalised, NaN = missing).

    Args:
        z: normalised sensor values, rows grouped by life and in time order within a life.
        time: the time of each row.
        life_start: for each row, the index of the first row of its life.
        life_start_time: for each row, the time its life started.
    """
    n, k = z.shape
    stride = len(PER_SENSOR_FEATURES)
    out = np.empty((n, k * stride + len(GLOBAL_FEATURES)), dtype=np.float32)
    index = np.arange(n)
    filled = _forward_fill(z, life_start)
    local_time = time - time[life_start]
    mean20 = _window_mean(filled, _window_start(index, life_start, 20))
    baseline = _range_mean(filled, life_start, np.minimum(index, life_start + BASELINE_ROWS - 1))
    drift = mean20 - baseline
    columns = {
        "value": lambda: filled,
        "mean5": lambda: _window_mean(filled, _window_start(index, life_start, 5)),
        "mean20": lambda: mean20,
        "std20": lambda: _window_std(filled, _window_start(index, life_start, STD_WINDOW)),
        "slope20": lambda: _window_slope(
            filled, local_time, _window_start(index, life_start, SLOPE_WINDOWS[0])
        ),
        "slope60": lambda: _window_slope(
            filled, local_time, _window_start(index, life_start, SLOPE_WINDOWS[1])
        ),
        "drift": lambda: drift,
    }
    for position, name in enumerate(PER_SENSOR_FEATURES):
        out[:, position : k * stride : stride] = columns[name]()  # one block at a time: bounded memory
    base = k * stride
    out[:, base] = np.abs(drift).mean(axis=1) if k else 0.0
    out[:, base + 1] = time - life_start_time
    out[:, base + 2] = index - life_start + 1
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
    return np.where(ok[:, None], slope, 0.0)
