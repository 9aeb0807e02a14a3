"""RUL intervals and P(failure within a horizon): cross-conformal, grouped by asset life.

The regressor is fitted K times, each time without one fold of whole assets; every row of a held-out
run-to-failure life gets an out-of-fold prediction, and its residual (true RUL - prediction, against the
true, uncapped RUL: what the interval claims to contain) is a calibration score. Forecasts are the mean of
the K fold models.

- Mondrian bins: residuals grow with the predicted RUL, so they are binned by predicted RUL (equal-count
  bins of at least `MIN_BIN_ROWS` rows and `LIVES_PER_BIN` lives, at most `MAX_BINS`).
- Lives, not rows, are the exchangeable units (the rows of one life are strongly correlated), and a
  forecast is made at some row of a new life: each life weighs 1, spread evenly over its rows, so a row
  weighs 1 / (rows of its life). This is the pooled distribution of hierarchical conformal prediction
  (Lee, Barber and Willett, "Distribution-free inference with hierarchical data", 2023; Dunn, Wasserman
  and Ramdas 2022 call it CDF pooling).
- Interval, conformalised quantiles (Romano, Patterson and Candes 2019, CQR, with the bin's quantiles as
  the quantile model): in each bin the weighted residual quantiles a, c at the interval's levels give the
  shape; a row's score is how far its residual falls outside [a, c], s = max(a - r, r - c). The
  finite-sample correction is applied once, to this two-sided score: Q is the weighted score quantile at
  level min(1, (high - low) x (n + 1) / n), n = the lives in the bin (the new life's mass 1 / (n + 1) put
  at +infinity), and the interval is [prediction + a - Q, prediction + c + Q], within [0, the longest
  training life]. Correcting each tail separately would spend the 1 / (n + 1) twice: with the ~17 lives
  of a small fleet that pushed the upper bound to the largest residual and the coverage to about 0.9.
- The same weighted residual distribution, kept as `GRID` quantiles per bin, is the forecast's predictive
  distribution: P(failure within h) is its probability that prediction + residual <= h (a conformal
  predictive system).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ConformalBins", "calibrate", "corrected_level"]

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
        low: per bin, the interval's lower bound relative to the prediction (corrected residual quantile).
        high: per bin, the interval's upper bound relative to the prediction (corrected residual quantile).
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
    """Bins and residual bounds from out-of-fold predictions of run-to-failure rows.

    Args:
        prediction: out-of-fold predicted RUL of each calibration row.
        truth: the true RUL of each row.
        life: the life of each row (lives are the exchangeable units).
        interval: the interval's lower and upper quantile.
    """
    residual = truth - prediction
    life_ids, row_life, life_rows = np.unique(life, return_inverse=True, return_counts=True)
    weight = 1.0 / life_rows[row_life]
    n_bins = int(np.clip(min(prediction.size // MIN_BIN_ROWS, life_ids.size // LIVES_PER_BIN), 1, MAX_BINS))
    edges = np.unique(np.quantile(prediction, np.linspace(0, 1, n_bins + 1)[1:-1]))
    bins = np.searchsorted(edges, prediction, side="right")
    low, high, grid, lives = [], [], [], []
    levels = np.linspace(0.0, 1.0, GRID)
    for number in range(edges.size + 1):
        rows = np.flatnonzero(bins == number)
        if rows.size == 0:
            rows = np.arange(prediction.size)
        values, weights = residual[rows], weight[rows]
        n = np.unique(row_life[rows]).size
        shape_low = _weighted_quantile(values, weights, interval[0])
        shape_high = _weighted_quantile(values, weights, interval[1])
        score = np.maximum(shape_low - values, values - shape_high)
        correction = _weighted_quantile(score, weights, corrected_level(interval[1] - interval[0], n))
        low.append(shape_low - correction)
        high.append(shape_high + correction)
        grid.append(tuple(_weighted_quantile(values, weights, float(q)) for q in levels))
        lives.append(n)
    return ConformalBins(
        edges=tuple(float(e) for e in edges),
        low=tuple(low),
        high=tuple(high),
        grid=tuple(grid),
        lives=tuple(lives),
    )


def corrected_level(coverage: float, n_lives: int) -> float:
    """The score quantile level that gives `coverage` with `n_lives` exchangeable lives (at most 1).

    >>> corrected_level(0.8, 9)
    0.8888888888888888
    >>> corrected_level(0.8, 3)
    1.0
    """
    return min(1.0, coverage * (n_lives + 1) / n_lives)


def _weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    position = q * cumulative[-1]
    return float(values[order][min(int(np.searchsorted(cumulative, position)), values.size - 1)])
