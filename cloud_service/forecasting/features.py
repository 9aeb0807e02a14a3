"""Trailing-window features per asset and time, computed causally (only rows of the life up to that time).

Inputs are sensors z-scored per operating regime (`RegimeNormalizer`). Window lengths are fractions of the
typical run-to-failure life in rows (`FeatureSpec.for_life_rows`), so the same method reads hourly
aggregates and engine cycles alike. Windows restart at each failure or maintenance; a window that reaches
before the life's start uses the rows there are. Missing values are carried forward within a life and are
0 (the regime mean) before the first reading.

Two feature sets:

- `REFERENCE_FEATURES` (the plain reference learner): per sensor the current value and its means over the
  short and the long window.
- `FORECAST_FEATURES` (the shipped forecaster): per sensor the short- and long-window means (the current
  value alone is mostly noise) and the drift, the long-window mean minus the mean of the life's first
  `baseline_rows` rows (each machine against its own healthy start: units of one fleet differ in
  offsets); plus the age (time since the life started).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["FORECAST_FEATURES", "REFERENCE_FEATURES", "FeatureSpec", "feature_matrix", "feature_names"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REFERENCE_FEATURES = ("value", "mean_short", "mean_long")
FORECAST_FEATURES = ("mean_short", "mean_long", "drift")
# Windows and baseline as fractions of the typical run-to-failure life (rows), with floors in rows.
_FRACTIONS = {"short": (0.05, 3), "long": (0.15, 5), "baseline": (0.1, 5)}


@dataclass(frozen=True)
class FeatureSpec:
    """Window lengths in rows.

    Args:
        short_rows: the short trailing window.
        long_rows: the long trailing window.
        baseline_rows: the first rows of each life that form its healthy baseline.
    """

    short_rows: int
    long_rows: int
    baseline_rows: int

    @classmethod
    def for_life_rows(cls, life_rows: float) -> FeatureSpec:
        """Windows scaled to a typical run-to-failure life of `life_rows` rows."""
        rows = {
            name: max(floor, round(fraction * life_rows)) for name, (fraction, floor) in _FRACTIONS.items()
        }
        return cls(
            short_rows=rows["short"],
            long_rows=max(rows["long"], rows["short"] + 1),
            baseline_rows=rows["baseline"],
        )


def feature_names(sensors: Sequence[str], *, reference: bool) -> list[str]:
    """Column names of the feature matrix for these sensor columns."""
    per_sensor = REFERENCE_FEATURES if reference else FORECAST_FEATURES
    names = [f"{sensor}:{feature}" for feature in per_sensor for sensor in sensors]
    return names if reference else [*names, "age"]


def feature_matrix(
    z: FloatArray,
    *,
    life_start: IntArray,
    age: FloatArray,
    spec: FeatureSpec,
    reference: bool,
) -> npt.NDArray[np.float32]:
    """The feature matrix (float32, columns as `feature_names`) for rows `z` (rows x sensors, NaN = missing).

    Args:
        z: normalised sensor values, rows grouped by life and in time order within a life.
        life_start: for each row, the index of the first row of its life.
        age: for each row, the time since its life started.
        spec: window lengths.
        reference: the reference learner's features (else the forecaster's).
    """
    index = np.arange(z.shape[0])
    filled = _forward_fill(z, life_start)
    prefix = _prefix(filled)
    mean_short = _range_mean(prefix, np.maximum(life_start, index - spec.short_rows + 1), index)
    mean_long = _range_mean(prefix, np.maximum(life_start, index - spec.long_rows + 1), index)
    if reference:
        return np.hstack([filled, mean_short, mean_long]).astype(np.float32)
    baseline_last = np.minimum(index, life_start + spec.baseline_rows - 1)
    drift = mean_long - _range_mean(prefix, life_start, baseline_last)
    return np.hstack([mean_short, mean_long, drift, age[:, None]]).astype(np.float32)


def _forward_fill(z: FloatArray, life_start: IntArray) -> FloatArray:
    n = z.shape[0]
    valid = ~np.isnan(z)
    source = np.where(valid, np.arange(n)[:, None], -1)
    source = np.maximum.accumulate(source, axis=0)
    usable = source >= life_start[:, None]
    picked = np.take_along_axis(z, np.maximum(source, 0), axis=0)
    return np.where(usable, picked, 0.0)


def _prefix(values: FloatArray) -> FloatArray:
    """Cumulative sums with a leading zero row: sum of rows [a, b] = P[b + 1] - P[a]."""
    prefix = np.zeros((values.shape[0] + 1, *values.shape[1:]), dtype=np.float64)
    np.cumsum(values, axis=0, out=prefix[1:])
    return prefix


def _range_mean(prefix: FloatArray, first: IntArray, last: IntArray) -> FloatArray:
    count = (last - first + 1).astype(np.float64)[:, None]
    return np.asarray((prefix[last + 1] - prefix[first]) / count, dtype=np.float64)
