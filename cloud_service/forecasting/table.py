"""The training and prediction table: every telemetry row with its life, its features and its targets.

Rows are grouped by asset, then by life (`data.split_lives`), in time order. For a life that ends in a
failure, `time_left` is the exact RUL of each row; for any other life it is a lower bound (right-censored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud_service.forecasting.data import AssetSeries, History, Life
from cloud_service.forecasting.errors import ForecastDataError
from cloud_service.forecasting.features import FeatureSpec, feature_matrix
from cloud_service.forecasting.regimes import RegimeNormalizer

__all__ = ["Table", "build_table", "current_lives", "split_columns", "subsample", "usable_assets"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class Table:
    """Features and targets of every row of a history, rows grouped by asset then life."""

    x: npt.NDArray[np.float32]
    asset: IntArray
    life: IntArray
    time: FloatArray
    time_left: FloatArray  # time to the life's end: exact RUL if failed, else a lower bound
    failed: npt.NDArray[np.bool_]
    last_row: IntArray  # index of each asset's last row


def build_table(
    history: History,
    lives: Sequence[Life],
    normalizer: RegimeNormalizer,
    *,
    sensor_idx: list[int],
    used: npt.NDArray[np.bool_],
    condition_idx: list[int],
    spec: FeatureSpec,
    reference: bool,
) -> Table:
    """Features (`features.feature_matrix`) and targets of every row of `history`.

    Args:
        history: the telemetry; `lives` must cover its rows.
        lives: the lives of `history` (`split_lives`).
        normalizer: the fitted regime normaliser.
        sensor_idx: the positions of the sensor columns the normaliser was fitted on.
        used: which of those sensors the features read (the ones not constant in training).
        condition_idx: the positions of the condition columns.
        spec: window lengths.
        reference: the reference learner's features (else the forecaster's).
    """
    offsets = np.cumsum([0] + [len(asset) for asset in history.assets])
    raw = np.concatenate([asset.values for asset in history.assets])
    time = np.concatenate([asset.time for asset in history.assets])
    z = normalizer.transform(raw[:, condition_idx], raw[:, sensor_idx])[:, used]
    n = time.shape[0]
    life_start = np.zeros(n, dtype=np.int64)
    age = np.zeros(n)
    life_index = np.zeros(n, dtype=np.int64)
    time_left = np.zeros(n)
    failed = np.zeros(n, dtype=bool)
    for number, life in enumerate(lives):
        first, stop = offsets[life.asset_index] + life.start, offsets[life.asset_index] + life.stop
        life_start[first:stop] = first
        age[first:stop] = time[first:stop] - life.start_time
        life_index[first:stop] = number
        time_left[first:stop] = np.maximum(life.end_time - time[first:stop], 0.0)
        failed[first:stop] = life.failed
    asset = np.repeat(np.arange(len(history.assets)), np.diff(offsets))
    x = feature_matrix(z, life_start=life_start, age=age, spec=spec, reference=reference)
    return Table(x, asset, life_index, time, time_left, failed, offsets[1:] - 1)


def current_lives(history: History, lives: list[Life], spec: FeatureSpec) -> tuple[History, list[Life]]:
    """Each asset's current life, trimmed to what its last row's features read.

    That is the life's first `spec.baseline_rows` rows (the baseline) and its last `spec.long_rows` rows
    (the longest window); the age counts from the life's start time, so the rows in between are not
    needed. Forecasting the last row of a long history then costs the same as of a short one.
    """
    last_life = {life.asset_index: life for life in lives}
    assets, kept_lives = [], []
    for index, asset in enumerate(history.assets):
        life = last_life[index]
        rows = np.arange(life.start, life.stop)
        if len(rows) > spec.baseline_rows + spec.long_rows:
            rows = np.concatenate([rows[: spec.baseline_rows], rows[-spec.long_rows :]])
        labels = None if asset.time_labels is None else tuple(asset.time_labels[i] for i in rows)
        assets.append(AssetSeries(asset.asset_id, asset.time[rows], asset.values[rows], labels))
        kept_lives.append(
            Life(len(assets) - 1, asset.asset_id, 0, len(rows), life.start_time, life.end_time, life.failed)
        )
    return History(history.columns, tuple(assets), (), history.time_kind, history.source), kept_lives


def split_columns(
    history: History, condition_columns: Sequence[str], sensor_columns: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The sensor and condition columns to use (sensors default to every non-condition column).

    Raises:
        ForecastDataError: naming a column that is not in the telemetry, or if no sensor is left.
    """
    conditions = list(condition_columns)
    unknown = [name for name in conditions if name not in history.columns]
    if unknown:
        raise ForecastDataError(
            f"{history.source}: condition column {unknown[0]!r} is not in the telemetry "
            f"(columns: {', '.join(history.columns)})"
        )
    if sensor_columns is not None:
        sensors = list(sensor_columns)
        missing = [name for name in sensors if name not in history.columns]
        if missing:
            raise ForecastDataError(f"{history.source}: sensor column {missing[0]!r} is not in the telemetry")
    else:
        sensors = [name for name in history.columns if name not in conditions]
    if not sensors:
        raise ForecastDataError(f"{history.source}: no sensor columns left besides the condition columns")
    return sensors, conditions


def usable_assets(history: History, min_rows: int) -> tuple[History, int, int]:
    """The assets with at least `min_rows` rows; also how many were left out and how many events orphaned."""
    kept = tuple(asset for asset in history.assets if len(asset) >= min_rows)
    known = {asset.asset_id for asset in kept}
    orphan = sum(1 for event in history.events if event.asset_id not in known)
    usable = History(history.columns, kept, history.events, history.time_kind, history.source)
    return usable, len(history.assets) - len(kept), orphan


def subsample(rows: IntArray, limit: int, seed: int) -> IntArray:
    """At most `limit` of `rows`, drawn without replacement and kept in order."""
    if rows.size <= limit:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, limit, replace=False))
