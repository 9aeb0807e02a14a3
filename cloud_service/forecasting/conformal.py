"""RUL intervals and P(failure within a horizon) by cross-conformal prediction, grouped by asset.

The regressor is fitted K times, each time without one fold of whole assets; every row of a held-out
run-to-failure life gets an out-of-fold prediction, and its residual (true RUL - prediction, against the
true, uncapped RUL) is a calibration score. Forecasts are the mean of the K fold models.

Residuals grow with the predicted RUL, so they are binned by predicted RUL (Mondrian conformal
prediction): equal-count bins of at least `MIN_BIN_ROWS` rows and `LIVES_PER_BIN` lives. The rows of one
life are strongly correlated, so lives, not rows, are the exchangeable units: each life weighs 1 in a bin,
spread over its rows there, and the finite-sample correction uses n = the lives in the bin. The interval's
upper bound is the weighted residual quantile at level min(1, ceil((n + 1) x high) / n), its lower bound the
one at level floor((n + 1) x low) / n (no lower bound below 0). The same weighted residual distribution,
kept as `GRID` quantiles per bin, is the forecast's predictive distribution: P(failure within h) is its
probability that prediction + residual <= h (a conformal predictive system).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ConformalBins", "calibrate"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LIVES_PER_BIN = 8
MIN_BIN_ROWS = 200
MAX_BINS = 10
GRID = 101  # quantile levels kept per bin for the predictive distribution


@dataclass(frozen=True)
class ConformalBins:
    """Residual quantiles per bin of predicted RUL.

    Args:
        edges: inner bin edges of the predicted RUL (a prediction p falls in bin searchsorted(edges, p)).
        low: per bin, the residual at the interval's (corrected) lower level.
        high: per bin, the residual at the interval's (corrected) upper level.
        grid: per bin, the residual quantiles at `GRID` evenly spaced levels from 0 to 1.
        lives: per bin, the calibration lives in it.
    """

    edges: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    grid: tuple[tuple[float, ...], ...]
    lives: tuple[int, ...]

    def interval(self, rul: FloatArray, *, upper_limit: float) -> tuple[FloatArray, FloatArray]:
        """The interval around each predicted RUL, within [0, `upper_limit`] and containing the RUL."""
        bins = np.searchsorted(np.asarray(self.edges), rul, side="right")
        low = np.maximum(rul + np.asarray(self.low)[bins], 0.0)
        high = np.minimum(rul + np.asarray(self.high)[bins], upper_limit)
        return np.minimum(low, rul), np.maximum(high, rul)

    def p_fail(self, rul: FloatArray, horizon: float) -> FloatArray:
        """P(true RUL <= horizon) under each forecast's predictive distribution."""
        bins = np.searchsorted(np.asarray(self.edges), rul, side="right")
        grid = np.asarray(self.grid)[bins]
        below = (rul[:, None] + grid) <= horizon
        return np.asarray(below.mean(axis=1), dtype=np.float64)


def calibrate(
    prediction: FloatArray, truth: FloatArray, life: IntArray, interval: tuple[float, float]
) -> ConformalBins:
    """Bins and residual quantiles from out-of-fold predictions of run-to-failure rows.

    Args:
        prediction: out-of-fold predicted RUL of each calibration row.
        truth: the true RUL of each row.
        life: the life of each row (lives are the exchangeable units).
        interval: the interval's lower and upper quantile.
    """
    residual = truth - prediction
    n_lives = np.unique(life).size
    n_bins = int(np.clip(min(prediction.size // MIN_BIN_ROWS, n_lives // LIVES_PER_BIN), 1, MAX_BINS))
    edges = np.unique(np.quantile(prediction, np.linspace(0, 1, n_bins + 1)[1:-1]))
    bins = np.searchsorted(edges, prediction, side="right")
    low, high, grid, lives = [], [], [], []
    levels = np.linspace(0.0, 1.0, GRID)
    for number in range(edges.size + 1):
        rows = np.flatnonzero(bins == number)
        if rows.size == 0:
            rows = np.arange(prediction.size)
        _, inverse, counts = np.unique(life[rows], return_inverse=True, return_counts=True)
        weight = 1.0 / counts[inverse]
        n = counts.size
        upper_level = min(1.0, math.ceil((n + 1) * interval[1]) / n)
        lower_level = math.floor((n + 1) * interval[0]) / n
        values = residual[rows]
        low.append(_weighted_quantile(values, weight, lower_level) if lower_level > 0 else -math.inf)
        high.append(_weighted_quantile(values, weight, upper_level))
        grid.append(tuple(_weighted_quantile(values, weight, float(q)) for q in levels))
        lives.append(n)
    return ConformalBins(
        edges=tuple(float(e) for e in edges),
        low=tuple(low),
        high=tuple(high),
        grid=tuple(grid),
        lives=tuple(lives),
    )


def _weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    position = q * cumulative[-1]
    return float(values[order][min(int(np.searchsorted(cumulative, position)), values.size - 1)])
