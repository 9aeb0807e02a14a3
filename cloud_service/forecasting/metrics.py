"""Metrics a maintenance planner cares about, and the evaluation of a predictions file against truth.

- RMSE and MAE of RUL.
- Prognostic score (the PHM08 / C-MAPSS scoring function): with d = predicted - true RUL, each asset adds
  exp(-d/13) - 1 if d < 0 (early) and exp(d/10) - 1 otherwise (late, penalised more); summed over assets.
- Coverage: the share of true RULs inside [rul_low, rul_high].
- Brier score of P(failure within horizon) against "true RUL <= horizon", and the base-rate Brier (always
  predicting the evaluated set's own failure rate, p(1 - p)): the model should be well below it.
- Warning lead time: with forecasts at every time (`predict --all-times`), for each asset whose true RUL at
  its last time is within the horizon, the time from the start of its final unbroken alarm
  (p_fail >= threshold) to its failure (last time + true RUL); an asset without an alarm at its last time
  counts as missed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud_service.forecasting.data import PredictionRow
from cloud_service.forecasting.errors import ForecastDataError

__all__ = [
    "brier",
    "coverage",
    "evaluate_predictions",
    "lead_times",
    "mae",
    "prognostic_score",
    "rmse",
]

FloatArray = npt.NDArray[np.float64]


def rmse(predicted: Sequence[float] | FloatArray, true: Sequence[float] | FloatArray) -> float:
    """Root mean squared error.

    >>> rmse([1.0, 3.0], [0.0, 0.0])
    2.23606797749979
    """
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sqrt(np.mean(error * error)))


def mae(predicted: Sequence[float] | FloatArray, true: Sequence[float] | FloatArray) -> float:
    """Mean absolute error.

    >>> mae([1.0, -3.0], [0.0, 0.0])
    2.0
    """
    return float(
        np.mean(np.abs(np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)))
    )


def prognostic_score(predicted: Sequence[float] | FloatArray, true: Sequence[float] | FloatArray) -> float:
    """Sum of exp(-d/13) - 1 (early, d < 0) and exp(d/10) - 1 (late), d = predicted - true.

    >>> round(prognostic_score([110.0], [100.0]), 6)  # 10 late: e - 1
    1.718282
    """
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(np.maximum(d, 0.0) / 10.0))))


def coverage(
    low: Sequence[float] | FloatArray, high: Sequence[float] | FloatArray, true: Sequence[float] | FloatArray
) -> float:
    """Share of `true` within [low, high] (inclusive).

    >>> coverage([0, 0], [10, 10], [5, 11])
    0.5
    """
    value = np.asarray(true, dtype=np.float64)
    inside = (value >= np.asarray(low, dtype=np.float64)) & (value <= np.asarray(high, dtype=np.float64))
    return float(np.mean(inside))


def brier(probability: Sequence[float] | FloatArray, outcome: Sequence[float] | FloatArray) -> float:
    """Mean squared difference of a probability and the 0/1 outcome.

    >>> brier([0.5, 1.0], [1, 1])
    0.125
    """
    diff = np.asarray(probability, dtype=np.float64) - np.asarray(outcome, dtype=np.float64)
    return float(np.mean(diff * diff))


def lead_times(
    forecasts: Mapping[str, Sequence[PredictionRow]], truth: Mapping[str, float], *, threshold: float = 0.5
) -> dict[str, float | int | None]:
    """Warning lead time over assets whose true RUL at their last time is within the horizon."""
    leads: list[float] = []
    eligible = 0
    for asset_id, rows in forecasts.items():
        if asset_id not in truth or len(rows) < 2:
            continue
        last = rows[-1]
        if not truth[asset_id] <= last.horizon:
            continue
        eligible += 1
        if last.p_fail < threshold:
            continue
        first_alarm = len(rows) - 1
        while first_alarm > 0 and rows[first_alarm - 1].p_fail >= threshold:
            first_alarm -= 1
        failure_time = last.time + truth[asset_id]
        leads.append(failure_time - rows[first_alarm].time)
    return {
        "lead_time_assets": eligible,
        "warned_fraction": round(len(leads) / eligible, 4) if eligible else None,
        "lead_time_mean": round(float(np.mean(leads)), 4) if leads else None,
        "lead_time_median": round(float(np.median(leads)), 4) if leads else None,
    }


def evaluate_predictions(
    predictions: Sequence[PredictionRow],
    truth: Mapping[str, float],
    *,
    horizon: float | None = None,
    alarm_threshold: float = 0.5,
) -> dict[str, Any]:
    """Every metric, at each asset's last forecast, for the assets in both `predictions` and `truth`.

    Args:
        predictions: forecasts (one or many times per asset).
        truth: true RUL at each asset's last time.
        horizon: the horizon for the Brier score (default: the predictions' `horizon` column).
        alarm_threshold: p_fail at or above which an asset is in alarm (lead time).

    Raises:
        ForecastDataError: if no asset is in both.

    Without a horizon (no `horizon` column, no `horizon` argument) the probability metrics are None.
    """
    forecasts: dict[str, list[PredictionRow]] = {}
    for row in predictions:
        forecasts.setdefault(row.asset_id, []).append(row)
    for rows in forecasts.values():
        rows.sort(key=lambda row: row.time)
    matched = [asset_id for asset_id in truth if asset_id in forecasts]
    if not matched:
        raise ForecastDataError("no asset of the truth file has a prediction")
    last = [forecasts[asset_id][-1] for asset_id in matched]
    true = np.array([truth[asset_id] for asset_id in matched])
    rul = np.array([row.rul for row in last])
    h = horizon if horizon is not None else last[0].horizon
    if horizon is not None:
        forecasts = {key: [_with_horizon(row, horizon) for row in rows] for key, rows in forecasts.items()}
    figures = {
        "n_assets": len(matched),
        "n_missing": len(truth) - len(matched),
        "n_short_history": sum(row.short_history for row in last),
        "rmse": round(rmse(rul, true), 4),
        "mae": round(mae(rul, true), 4),
        "prognostic_score": round(prognostic_score(rul, true), 4),
        "coverage": round(coverage([row.rul_low for row in last], [row.rul_high for row in last], true), 4),
    }
    if not math.isfinite(h):  # no horizon column and no --horizon: no probability metrics
        return figures | {"horizon": None, "brier": None, "brier_base_rate": None, "failure_rate": None}
    outcome = (true <= h).astype(np.float64)
    base_rate = float(outcome.mean())
    return figures | {
        "horizon": h,
        "brier": round(brier([row.p_fail for row in last], outcome), 6),
        "brier_base_rate": round(base_rate * (1.0 - base_rate), 6),
        "failure_rate": round(base_rate, 4),
        **lead_times(forecasts, truth, threshold=alarm_threshold),
    }


def _with_horizon(row: PredictionRow, horizon: float) -> PredictionRow:
    return PredictionRow(
        row.asset_id,
        row.time_label,
        row.time,
        row.rul,
        row.rul_low,
        row.rul_high,
        row.p_fail,
        horizon,
        row.short_history,
    )
