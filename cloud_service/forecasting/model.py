"""The failure forecaster: remaining useful life (RUL) with an interval, and P(failure within a horizon).

Method (see README.md, "Failure forecasting" for the reasoning):

1. Each asset's history is cut into lives at its failure and maintenance events. A life that ends in a
   failure gives the exact RUL of each of its rows; any other life is right-censored (RUL is at least the
   time left to its end).
2. Sensors are z-scored per operating regime (`RegimeNormalizer`); then each row is compared with its own
   life's healthy baseline in the same regime, and multi-scale trailing features and pooled health
   indicators are computed per life (`features.trailing_features`), with windows scaled to the typical
   run-to-failure life.
3. Degradation onset: in each run-to-failure life, the knee of a hinge fitted to the pooled health
   indicator (flat, then rising). Before it the RUL is not observable from the sensors.
4. RUL target: piecewise-linear, capped at `cap` (the prognostics literature's answer to that: the model
   learns "healthy: at least `cap`"). Candidate caps are quantiles of the RUL at the detected onsets and a
   fraction of the median life, plus no cap. The cap, the feature set (pooled indicators with per-sensor
   deviations, or every feature) and the regressor's hyper-parameters are chosen by grouped
   cross-validation (whole assets held out), scored by RMSE against the true, uncapped RUL with each
   held-out life weighing the same, half of it on its degradation phase (onset to failure: where the
   forecast can be right and where action is taken) and half on its whole life (a forecast is read all
   through life). Censored rows join the training set only where their capped target is known exactly
   (time left >= cap).
5. Interval: conformalised residual quantiles. The out-of-fold residuals (true RUL - prediction) of the
   chosen configuration are binned by predicted RUL (at least 5 lives per bin), and each bin stores the
   10th and 90th percentiles (by default) under the same weights, so the interval covers the true RUL,
   not the capped one.
6. P(failure within horizon): a gradient-boosted classifier on every feature, calibrated (isotonic, or
   sigmoid with few positives) by `CalibratedClassifierCV` over the same asset-grouped folds. Censored
   rows are used where the label is known (the life went on for at least the horizon after the row).
"""

from __future__ import annotations

import logging
import math
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs

from cloud_service.forecasting.data import AssetSeries, History, Life, PredictionRow, TimeKind, split_lives
from cloud_service.forecasting.errors import ForecastDataError
from cloud_service.forecasting.features import FeatureSpec, baseline_spread, feature_names, trailing_features
from cloud_service.forecasting.regimes import RegimeNormalizer

__all__ = ["FORMAT_VERSION", "ForecastConfig", "Forecaster", "fit", "predict"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Progress = Callable[[str], None]

FORMAT_VERSION = 2  # 2: baseline-relative multi-scale features (FeatureSpec)
MIN_FAILURES = 3
LIVES_PER_BIN = 5  # run-to-failure lives per interval bin, at least
KNEE_POINTS = 300  # rows per life in the degradation-onset (knee) fit
HOURS_PER_WEEK = 168.0
# Regressor settings tried by grouped CV; the first also chooses the cap.
REGRESSOR_GRID: tuple[dict[str, float], ...] = (
    {
        "learning_rate": 0.06,
        "max_iter": 200,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
    },
    {
        "learning_rate": 0.06,
        "max_iter": 200,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "l2_regularization": 0.1,
    },
)
CLASSIFIER_PARAMS: dict[str, float] = {
    "learning_rate": 0.08,
    "max_iter": 120,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}


@dataclass(frozen=True)
class ForecastConfig:
    """What to learn and how hard to search.

    Args:
        condition_columns: columns describing the operating condition (load, speed, ...): used to find
            regimes, not as sensors.
        sensor_columns: value columns used as sensors (default: every column not a condition column).
        horizon: the failure-probability horizon in the data's time unit (hours for ISO 8601 time).
        interval: the lower and upper quantile of the RUL interval.
        min_history_rows: assets with fewer rows are left out of training and flagged at prediction.
        cap_quantiles: candidate RUL caps as quantiles of the RUL at the detected degradation onsets of the
            run-to-failure lives (no cap is always a candidate too).
        cap_fractions: more candidate caps, as fractions of the median run-to-failure life.
        cv_folds: grouped cross-validation folds (fewer if there are fewer run-to-failure assets).
        max_cv_rows: training rows sampled per cross-validation fit (speed).
        max_fit_rows: training rows sampled for the final fits (speed).
        threads: OpenMP threads for the gradient boosting (None: every core). One is the default: on a
            shared 2-core machine two threads made small fits up to 7x slower (measured).
        seed: seed of every random choice.
    """

    condition_columns: tuple[str, ...] = ()
    sensor_columns: tuple[str, ...] | None = None
    horizon: float = HOURS_PER_WEEK
    interval: tuple[float, float] = (0.1, 0.9)
    min_history_rows: int = 5
    cap_quantiles: tuple[float, ...] = (0.25, 0.5, 0.75)
    cap_fractions: tuple[float, ...] = (0.5,)
    cv_folds: int = 3
    max_cv_rows: int = 40_000
    max_fit_rows: int = 80_000
    threads: int | None = 1
    seed: int = 0


@dataclass
class Forecaster:
    """A fitted forecaster: everything `predict` needs, plus what was learned about the data."""

    sensor_columns: tuple[str, ...]
    condition_columns: tuple[str, ...]
    time_kind: TimeKind
    horizon: float
    interval: tuple[float, float]
    rul_cap: float | None
    min_history_rows: int
    normalizer: RegimeNormalizer
    regressor: HistGradientBoostingRegressor
    classifier: Any  # a calibrated classifier, or None when every training label was the same
    constant_p_fail: float
    interval_edges: list[float]
    interval_low: list[float]
    interval_high: list[float]
    max_life: float
    feature_names: list[str]
    feature_spec: FeatureSpec
    columns: list[int]  # the feature columns the regressor reads (the classifier reads every one)
    summary: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@dataclass
class _Table:
    """Features and targets of every row of a history, rows grouped by asset then life."""

    x: npt.NDArray[np.float32]
    asset: IntArray
    life: IntArray
    time: FloatArray
    time_left: FloatArray  # time to the life's end: exact RUL if failed, else a lower bound
    failed: npt.NDArray[np.bool_]
    life_rows: FloatArray  # rows in the row's life (for per-life weights)
    last_row: IntArray  # index of each asset's last row


def _say(progress: Progress | None, message: str, *args: object) -> None:
    logger.info(message, *args)
    if progress is not None:
        progress(message % args if args else message)


def fit(
    history: History, config: ForecastConfig | None = None, *, progress: Progress | None = None
) -> Forecaster:
    """Learn a forecaster from run-to-failure and censored histories.

    Raises:
        ForecastDataError: with fewer than 3 run-to-failure lives, or unknown condition columns.
    """
    config = config or ForecastConfig()
    with threadpool_limits(limits=config.threads):
        return _fit(history, config, progress)


def _fit(history: History, config: ForecastConfig, progress: Progress | None) -> Forecaster:
    started = _time.monotonic()
    sensors, conditions = _split_columns(history, config)
    kept = _usable_assets(history, config.min_history_rows, progress)
    lives = split_lives(kept)
    failed_lives = [life for life in lives if life.failed]
    if len(failed_lives) < MIN_FAILURES:
        raise ForecastDataError(
            f"{history.source}: {len(failed_lives)} run-to-failure histories (failure events matching "
            f"telemetry); at least {MIN_FAILURES} are needed to learn remaining useful life"
        )
    sensor_idx, condition_idx = kept.column_index(sensors), kept.column_index(conditions)
    raw = np.concatenate([asset.values for asset in kept.assets])
    normalizer = RegimeNormalizer(seed=config.seed).fit(raw[:, condition_idx], raw[:, sensor_idx])
    _say(
        progress,
        "fit: %d assets, %d rows, %d failures, %d regimes",
        len(kept.assets),
        kept.n_rows,
        len(failed_lives),
        normalizer.n_regimes_,
    )
    life_rows = float(np.median([len(life) for life in failed_lives]))
    table, spec = _build_table(kept, lives, normalizer, sensor_idx, condition_idx, life_rows=life_rows)
    _say(
        progress,
        "fit: features over windows of %d/%d/%d rows, baseline %d rows",
        spec.short_rows,
        spec.mid_rows,
        spec.long_rows,
        spec.baseline_rows,
    )
    lengths = np.array([life.end_time - life.start_time for life in failed_lives])
    names = feature_names(sensors)
    degrading, onset_rul = _degradation_onsets(table, names.index("hi_rms"))
    column_sets = _column_sets(names)
    search = _search(
        table,
        config,
        median_life=float(np.median(lengths)),
        degrading=degrading,
        onset_rul=onset_rul,
        column_sets=column_sets,
        progress=progress,
    )
    columns = column_sets[search.columns]
    final_rows = _regression_rows(table, search.cap, exclude_groups=None)
    final_rows = _subsample(final_rows, config.max_fit_rows, config.seed)
    _say(progress, "fit: final regressor on %d rows (cap %s)", final_rows.size, _cap_text(search.cap))
    regressor = _regressor(search.params, config.seed)
    regressor.fit(table.x[np.ix_(final_rows, columns)], _target(table, final_rows, search.cap))
    _say(progress, "fit: calibrated failure classifier, horizon %g", config.horizon)
    classifier, constant_p, base_rate = _fit_classifier(table, config)
    edges, low, high = _interval_bins(
        search.oof_pred, search.oof_true, search.oof_life, search.oof_degrading, config.interval
    )
    search.report["interval_coverage"] = _oof_coverage(search, edges, low, high)
    failed_rows = np.flatnonzero(table.failed)
    summary = {
        "n_assets": len(kept.assets),
        "n_rows": kept.n_rows,
        "n_failures": len(failed_lives),
        "n_censored_lives": len(lives) - len(failed_lives),
        "n_assets_too_short": len(history.assets) - len(kept.assets),
        "median_life": round(float(np.median(lengths)), 4),
        "train_mean_rul": round(float(table.time_left[failed_rows].mean()), 4),
        "base_rate": round(base_rate, 6),
        "cv": search.report,
        "fit_s": round(_time.monotonic() - started, 2),
    }
    _say(
        progress,
        "fit: done in %.1f s (cap %s, CV RMSE %.4g)",
        summary["fit_s"],
        _cap_text(search.cap),
        search.score,
    )
    return Forecaster(
        sensor_columns=tuple(sensors),
        condition_columns=tuple(conditions),
        time_kind=history.time_kind,
        horizon=config.horizon,
        interval=config.interval,
        rul_cap=None if math.isinf(search.cap) else search.cap,
        min_history_rows=config.min_history_rows,
        normalizer=normalizer,
        regressor=regressor,
        classifier=classifier,
        constant_p_fail=constant_p,
        interval_edges=edges,
        interval_low=low,
        interval_high=high,
        max_life=float(lengths.max()),
        feature_names=feature_names(sensors),
        feature_spec=spec,
        columns=columns.tolist(),
        summary=summary,
    )


def predict(
    model: Forecaster, history: History, *, all_times: bool = False, progress: Progress | None = None
) -> list[PredictionRow]:
    """Forecast each asset at its last time (or at every time).

    Maintenance and failure events in `history` restart an asset's life (its age and windows). Assets with
    fewer than `model.min_history_rows` rows are forecast too, flagged `short_history`, with the interval
    widened to [0, the longest training life].

    Raises:
        ForecastDataError: if the history lacks a column the model uses, or uses another time kind.
    """
    with threadpool_limits(limits=1):
        return _predict(model, history, all_times=all_times, progress=progress)


def _predict(
    model: Forecaster, history: History, *, all_times: bool, progress: Progress | None
) -> list[PredictionRow]:
    started = _time.monotonic()
    if history.time_kind is not model.time_kind and history.n_rows:
        raise ForecastDataError(
            f"{history.source}: time is {history.time_kind}, "
            f"but the model was fitted on {model.time_kind} time"
        )
    try:
        sensor_idx = history.column_index(model.sensor_columns)
        condition_idx = history.column_index(model.condition_columns)
    except KeyError as exc:
        raise ForecastDataError(
            f"{history.source}: missing column {exc.args[0]!r}, which the model uses"
        ) from exc
    if not history.assets:
        return []
    is_short = np.array([len(asset) < model.min_history_rows for asset in history.assets])
    lives = split_lives(history)
    if not all_times:
        history, lives, skipped = _current_lives(history, lives, model.feature_spec)
    table, _ = _build_table(
        history, lives, model.normalizer, sensor_idx, condition_idx, spec=model.feature_spec
    )
    if not all_times:
        table.x[:, -1] += skipped  # rows_in_life counts the rows left out of the middle of the life
    rows = np.arange(table.x.shape[0]) if all_times else table.last_row
    rul = np.maximum(model.regressor.predict(table.x[np.ix_(rows, np.asarray(model.columns))]), 0.0)
    low, high = _apply_interval(model, rul)
    p_fail = _p_fail(model, table.x[rows])
    short = is_short[table.asset[rows]]
    low = np.where(short, 0.0, low)
    high = np.where(short, np.maximum(high, model.max_life), high)
    result = [
        PredictionRow(
            asset_id=history.assets[table.asset[row]].asset_id,
            time_label=history.assets[table.asset[row]].label(
                int(row - _asset_offset(table, table.asset[row]))
            ),
            time=float(table.time[row]),
            rul=float(rul[i]),
            rul_low=float(low[i]),
            rul_high=float(high[i]),
            p_fail=float(p_fail[i]),
            horizon=model.horizon,
            short_history=bool(short[i]),
        )
        for i, row in enumerate(rows)
    ]
    _say(
        progress,
        "predict: %d forecasts for %d assets (%d short) in %.2f s",
        len(result),
        len(history.assets),
        int(short[np.unique(table.asset[rows], return_index=True)[1]].sum()),
        _time.monotonic() - started,
    )
    return result


# --- data preparation -------------------------------------------------------------------------------------


def _current_lives(
    history: History, lives: list[Life], spec: FeatureSpec
) -> tuple[History, list[Life], FloatArray]:
    """Each asset's current life, trimmed to what the last row's features read.

    That is the life's first `spec.baseline_rows` rows (the baseline) and its last `spec.tail_rows` rows
    (what the longest windows read); the rows in between only count (returned per kept row, to add to
    `rows_in_life`). Forecasting the last row of a long history then costs the same as of a short one.
    """
    last_life = {life.asset_index: life for life in lives}
    assets, kept_lives, skipped = [], [], []
    for index, asset in enumerate(history.assets):
        life = last_life[index]
        head = np.arange(life.start, life.stop)
        if len(head) > spec.baseline_rows + spec.tail_rows:
            head = np.concatenate([head[: spec.baseline_rows], head[-spec.tail_rows :]])
        gap = len(life) - len(head)
        skipped.append(np.where(np.arange(len(head)) >= spec.baseline_rows, float(gap), 0.0))
        labels = None if asset.time_labels is None else tuple(asset.time_labels[i] for i in head)
        assets.append(AssetSeries(asset.asset_id, asset.time[head], asset.values[head], labels))
        kept_lives.append(
            Life(len(assets) - 1, asset.asset_id, 0, len(head), life.start_time, life.end_time, life.failed)
        )
    trimmed = History(history.columns, tuple(assets), (), history.time_kind, history.source)
    return trimmed, kept_lives, np.concatenate(skipped)


def _split_columns(history: History, config: ForecastConfig) -> tuple[list[str], list[str]]:
    conditions = list(config.condition_columns)
    unknown = [name for name in conditions if name not in history.columns]
    if unknown:
        raise ForecastDataError(
            f"{history.source}: condition column {unknown[0]!r} is not in the telemetry "
            f"(columns: {', '.join(history.columns)})"
        )
    if config.sensor_columns is not None:
        sensors = list(config.sensor_columns)
        missing = [name for name in sensors if name not in history.columns]
        if missing:
            raise ForecastDataError(f"{history.source}: sensor column {missing[0]!r} is not in the telemetry")
    else:
        sensors = [name for name in history.columns if name not in conditions]
    if not sensors:
        raise ForecastDataError(f"{history.source}: no sensor columns left besides the condition columns")
    return sensors, conditions


def _usable_assets(history: History, min_rows: int, progress: Progress | None) -> History:
    kept = tuple(asset for asset in history.assets if len(asset) >= min_rows)
    dropped = len(history.assets) - len(kept)
    if dropped:
        _say(
            progress, "fit: %d assets have fewer than %d rows and are left out of training", dropped, min_rows
        )
    known = {asset.asset_id for asset in kept}
    orphan = sum(1 for event in history.events if event.asset_id not in known)
    if orphan:
        _say(progress, "fit: %d events name assets without (enough) telemetry and are ignored", orphan)
    return History(history.columns, kept, history.events, history.time_kind, history.source)


def _build_table(
    history: History,
    lives: Sequence[Life],
    normalizer: RegimeNormalizer,
    sensor_idx: list[int],
    condition_idx: list[int],
    *,
    spec: FeatureSpec | None = None,
    life_rows: float = 0.0,
) -> tuple[_Table, FeatureSpec]:
    """Features and targets; without `spec`, one is made for lives of `life_rows` rows (fit)."""
    offsets = np.cumsum([0] + [len(asset) for asset in history.assets])
    raw = np.concatenate([asset.values for asset in history.assets])
    time = np.concatenate([asset.time for asset in history.assets])
    z = normalizer.transform(raw[:, condition_idx], raw[:, sensor_idx])
    n = time.shape[0]
    life_start = np.zeros(n, dtype=np.int64)
    life_start_time = np.zeros(n)
    life_index = np.zeros(n, dtype=np.int64)
    time_left = np.zeros(n)
    failed = np.zeros(n, dtype=bool)
    rows_per_life = np.ones(n)
    for number, life in enumerate(lives):
        first, stop = offsets[life.asset_index] + life.start, offsets[life.asset_index] + life.stop
        life_start[first:stop] = first
        life_start_time[first:stop] = life.start_time
        life_index[first:stop] = number
        time_left[first:stop] = np.maximum(life.end_time - time[first:stop], 0.0)
        failed[first:stop] = life.failed
        rows_per_life[first:stop] = stop - first
    asset = np.repeat(np.arange(len(history.assets)), np.diff(offsets))
    regime = normalizer.regimes(raw[:, condition_idx])
    if spec is None:
        baseline_rows = FeatureSpec.for_life_rows(life_rows, ()).baseline_rows
        prior_sd = baseline_spread(z, regime, life_start, baseline_rows)
        spec = FeatureSpec.for_life_rows(life_rows, prior_sd.tolist())
    x = trailing_features(
        z, regime=regime, time=time, life_start=life_start, life_start_time=life_start_time, spec=spec
    )
    return _Table(x, asset, life_index, time, time_left, failed, rows_per_life, offsets[1:] - 1), spec


def _asset_offset(table: _Table, asset_index: int) -> int:
    return int(table.last_row[asset_index - 1] + 1) if asset_index > 0 else 0


def _subsample(rows: IntArray, limit: int, seed: int) -> IntArray:
    if rows.size <= limit:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, limit, replace=False))


def _regression_rows(table: _Table, cap: float, exclude_groups: IntArray | None) -> IntArray:
    """Rows whose (capped) target is known: failed lives, and censored rows with time left >= cap."""
    known = table.failed | (table.time_left >= cap)
    if exclude_groups is not None:
        known &= ~np.isin(table.asset, exclude_groups)
    return np.flatnonzero(known)


def _target(table: _Table, rows: IntArray, cap: float) -> FloatArray:
    return np.minimum(table.time_left[rows], cap)


def _regressor(params: dict[str, float], seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        learning_rate=params["learning_rate"],
        max_iter=int(params["max_iter"]),
        max_leaf_nodes=int(params["max_leaf_nodes"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        l2_regularization=params["l2_regularization"],
        early_stopping=False,
        random_state=seed,
    )


def _column_sets(names: list[str]) -> dict[str, IntArray]:
    """Candidate feature sets: the pooled health indicators with the per-sensor deviations, and all."""
    compact = [
        i for i, name in enumerate(names) if ":" not in name or name.endswith((":dev_mid", ":dev_long"))
    ]
    return {
        "indicators": np.array(compact, dtype=np.int64),
        "all": np.arange(len(names), dtype=np.int64),
    }


def _cap_text(cap: float) -> str:
    return "none" if math.isinf(cap) else f"{cap:.4g}"


# --- model selection by grouped cross-validation ----------------------------------------------------------


@dataclass
class _Search:
    cap: float
    columns: str
    params: dict[str, float]
    score: float
    oof_pred: FloatArray
    oof_true: FloatArray
    oof_life: IntArray
    oof_degrading: npt.NDArray[np.bool_]
    report: dict[str, Any]


def _folds(table: _Table, n_folds: int) -> list[tuple[IntArray, IntArray]]:
    """(held-out asset ids, held-out failed rows) per fold; folds hold out whole run-to-failure assets."""
    failed_rows = np.flatnonzero(table.failed)
    groups = table.asset[failed_rows]
    n_groups = np.unique(groups).size
    n_splits = max(2, min(n_folds, n_groups))
    result = []
    for _, test in GroupKFold(n_splits=n_splits).split(failed_rows, groups=groups):
        result.append((np.unique(groups[test]), failed_rows[test]))
    return result


def _cv_predictions(
    table: _Table,
    folds: list[tuple[IntArray, IntArray]],
    cap: float,
    params: dict[str, float],
    *,
    config: ForecastConfig,
    columns: IntArray,
) -> FloatArray:
    prediction = np.full(table.x.shape[0], np.nan)
    for held_out, test_rows in folds:
        train = _subsample(_regression_rows(table, cap, held_out), config.max_cv_rows, config.seed)
        x_train = table.x[np.ix_(train, columns)]
        model = _regressor(params, config.seed).fit(x_train, _target(table, train, cap))
        prediction[test_rows] = np.maximum(model.predict(table.x[np.ix_(test_rows, columns)]), 0.0)
    return prediction


def _degradation_onsets(table: _Table, hi_column: int) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Rows of run-to-failure lives from their detected degradation onset on, and each onset's RUL.

    The onset is the knee of a hinge fitted by least squares to log(1 + pooled health indicator) over the
    life: flat, then rising linearly (on at most `KNEE_POINTS` evenly spaced rows). A life without a
    rising hinge counts from its start.
    """
    degrading = np.zeros(table.time.shape[0], dtype=bool)
    onset_rul = []
    for life in np.unique(table.life[table.failed]):
        rows = np.flatnonzero(table.life == life)
        pick = np.unique(np.linspace(0, rows.size - 1, min(rows.size, KNEE_POINTS)).round()).astype(np.int64)
        t = table.time[rows[pick]]
        y = np.log1p(np.abs(table.x[rows[pick], hi_column].astype(np.float64)))
        y = y - y.mean()
        best_sse, best = float(np.sum(y * y)), 0
        for i in range(1, pick.size - 2):
            hinge = np.maximum(0.0, t - t[i])
            hinge -= hinge.mean()
            denominator = float(np.dot(hinge, hinge))
            slope = float(np.dot(hinge, y)) / denominator if denominator > 0 else 0.0
            if slope <= 0:
                continue
            sse = float(np.sum((y - slope * hinge) ** 2))
            if sse < best_sse:
                best_sse, best = sse, i
        first = rows[pick[best]]
        degrading[first : rows[-1] + 1] = True
        onset_rul.append(table.time_left[first])
    return degrading, np.array(onset_rul)


def _mixed_weights(life: IntArray, degrading: npt.NDArray[np.bool_]) -> FloatArray:
    """Row weights: each life weighs 1, half spread over its degradation phase, half over its whole life.

    A forecast is read all through life (the whole-life half, like a test set cut at random times), but
    its errors matter most as failure approaches (the degradation-phase half, where action is taken).
    """
    whole = 0.5 / np.bincount(life)[life]
    phase_count = np.bincount(life, weights=degrading.astype(np.float64))[life]
    return np.asarray(whole + np.where(degrading, 0.5 / np.maximum(phase_count, 1.0), 0.0), dtype=np.float64)


def _life_weighted_rmse(table: _Table, rows: IntArray, prediction: FloatArray) -> float:
    """RMSE over `rows` with each life's rows weighing 1 in all."""
    counts = np.bincount(table.life[rows])
    weight = 1.0 / counts[table.life[rows]]
    error = prediction[rows] - table.time_left[rows]
    return float(np.sqrt(np.sum(weight * error * error) / np.sum(weight)))


def _search(
    table: _Table,
    config: ForecastConfig,
    *,
    median_life: float,
    degrading: npt.NDArray[np.bool_],
    onset_rul: FloatArray,
    column_sets: dict[str, IntArray],
    progress: Progress | None,
) -> _Search:
    """Cap, feature set and regressor setting by grouped CV (`_mixed_weights` scoring)."""
    folds = _folds(table, config.cv_folds)
    rows = np.concatenate([test for _, test in folds])
    scored = rows[degrading[rows]]
    weight = _mixed_weights(table.life[rows], degrading[rows])
    caps = {round(float(np.quantile(onset_rul, q)), 6) for q in config.cap_quantiles}
    caps |= {round(fraction * median_life, 6) for fraction in config.cap_fractions if fraction > 0}
    candidates = [*sorted(cap for cap in caps if cap > 0), math.inf]
    set_names = list(column_sets)
    scores: dict[str, float] = {}
    phase: dict[str, float] = {}
    whole: dict[str, float] = {}
    best: tuple[float, float, str, dict[str, float], FloatArray] | None = None

    def trial(label: str, cap: float, columns: str, params: dict[str, float]) -> None:
        nonlocal best
        prediction = _cv_predictions(table, folds, cap, params, config=config, columns=column_sets[columns])
        error = prediction[rows] - table.time_left[rows]
        score = float(np.sqrt(np.sum(weight * error * error) / np.sum(weight)))
        scores[label] = round(score, 4)
        phase[label] = round(_life_weighted_rmse(table, scored, prediction), 4)
        whole[label] = round(_life_weighted_rmse(table, rows, prediction), 4)
        _say(
            progress,
            "fit: CV %s: RMSE %.4g (degradation phase %.4g, whole lives %.4g; %d folds)",
            label,
            score,
            phase[label],
            whole[label],
            len(folds),
        )
        if best is None or score < best[0]:
            best = (score, cap, columns, params, prediction)

    for cap in candidates:
        trial(f"cap={_cap_text(cap)}, features={set_names[0]}", cap, set_names[0], REGRESSOR_GRID[0])
    if best is None:
        raise ForecastDataError("no RUL cap candidate")  # unreachable: "no cap" is always a candidate
    chosen_cap = best[1]
    for name in set_names[1:]:
        trial(f"cap={_cap_text(chosen_cap)}, features={name}", chosen_cap, name, REGRESSOR_GRID[0])
    chosen_set = best[2]
    for number, params in enumerate(REGRESSOR_GRID[1:], start=1):
        label = f"cap={_cap_text(chosen_cap)}, features={chosen_set}, setting={number}"
        trial(label, chosen_cap, chosen_set, params)
    score, cap, columns, params, prediction = best
    report = {
        "folds": len(folds),
        "metric": "RMSE of true RUL, out of fold, each held-out run-to-failure life weighted equally, half "
        "of its weight on its degradation phase (from the knee of its health indicator), half on its whole "
        "life",
        "degradation_onset_rul_median": round(float(np.median(onset_rul)), 4),
        "rmse_by_trial": scores,
        "degradation_phase_rmse_by_trial": phase,
        "whole_life_rmse_by_trial": whole,
        "chosen_cap": None if math.isinf(cap) else cap,
        "chosen_features": columns,
        "chosen_setting": params,
        "rmse": round(score, 4),
        "degradation_phase_rmse": round(_life_weighted_rmse(table, scored, prediction), 4),
        "whole_life_rmse": round(_life_weighted_rmse(table, rows, prediction), 4),
    }
    return _Search(
        cap,
        columns,
        params,
        score,
        prediction[rows],
        table.time_left[rows],
        table.life[rows],
        degrading[rows],
        report,
    )


# --- interval ---------------------------------------------------------------------------------------------


def _weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    position = q * cumulative[-1]
    return float(values[order][min(int(np.searchsorted(cumulative, position)), values.size - 1)])


def _interval_bins(
    prediction: FloatArray,
    truth: FloatArray,
    life: IntArray,
    degrading: npt.NDArray[np.bool_],
    interval: tuple[float, float],
) -> tuple[list[float], list[float], list[float]]:
    """Out-of-fold residual quantiles per bin of predicted RUL, weighted as in model selection.

    Bins have equal counts of rows, at least 200 rows and `LIVES_PER_BIN` lives each (rows of one life are
    strongly correlated: lives, not rows, are the sample size). Each life weighs the same, half on its
    degradation phase and half on its whole life (`_mixed_weights`), as in the cap's selection.
    """
    residual = truth - prediction
    weight = _mixed_weights(life, degrading)
    n_lives = np.unique(life).size
    n_bins = int(np.clip(min(prediction.size // 200, n_lives // LIVES_PER_BIN), 1, 10))
    edges = np.unique(np.quantile(prediction, np.linspace(0, 1, n_bins + 1)[1:-1]))
    bins = np.searchsorted(edges, prediction, side="right")
    low, high = [], []
    for number in range(edges.size + 1):
        rows = np.flatnonzero(bins == number)
        if rows.size == 0:
            rows = np.arange(prediction.size)
        low.append(_weighted_quantile(residual[rows], weight[rows], interval[0]))
        high.append(_weighted_quantile(residual[rows], weight[rows], interval[1]))
    return [float(e) for e in edges], low, high


def _oof_coverage(
    search: _Search, edges: list[float], low: list[float], high: list[float]
) -> dict[str, float]:
    """Out-of-fold coverage of the interval, each life weighted equally (optimistic: same residuals)."""
    bins = np.searchsorted(np.asarray(edges), search.oof_pred, side="right")
    lower = np.maximum(search.oof_pred + np.asarray(low)[bins], 0.0)
    upper = search.oof_pred + np.asarray(high)[bins]
    inside = ((search.oof_true >= lower) & (search.oof_true <= upper)).astype(np.float64)
    result = {}
    for name, mask in (
        ("degradation_phase", search.oof_degrading),
        ("whole_life", np.ones_like(inside, bool)),
    ):
        life = search.oof_life[mask]
        weight = 1.0 / np.bincount(life)[life]
        result[name] = round(float(np.sum(weight * inside[mask]) / np.sum(weight)), 4)
    return result


def _apply_interval(model: Forecaster, rul: FloatArray) -> tuple[FloatArray, FloatArray]:
    bins = np.searchsorted(np.asarray(model.interval_edges), rul, side="right")
    low = np.maximum(rul + np.asarray(model.interval_low)[bins], 0.0)
    high = rul + np.asarray(model.interval_high)[bins]
    return np.minimum(low, rul), np.maximum(high, rul)


# --- failure probability ----------------------------------------------------------------------------------


def _fit_classifier(table: _Table, config: ForecastConfig) -> tuple[Any, float, float]:
    """The calibrated classifier (or None), the constant probability used without one, the base rate."""
    horizon = config.horizon
    known = table.failed | (table.time_left > horizon)
    rows = _subsample(np.flatnonzero(known), config.max_fit_rows, config.seed)
    label = (table.failed[rows] & (table.time_left[rows] <= horizon)).astype(np.int64)
    base_rate = float(label.mean()) if label.size else 0.0
    if label.size == 0 or label.min() == label.max():
        logger.warning(
            "every known label within horizon %g is %d: P(failure) is a constant",
            horizon,
            int(base_rate > 0.5),
        )
        return None, base_rate, base_rate
    groups = table.asset[rows]
    n_splits = min(config.cv_folds, np.unique(groups).size)
    splits = [
        (train, test)
        for train, test in GroupKFold(n_splits=max(2, n_splits)).split(rows, label, groups)
        if np.unique(label[train]).size == 2
    ]
    method = "isotonic" if label.sum() >= 500 else "sigmoid"
    estimator = HistGradientBoostingClassifier(
        learning_rate=CLASSIFIER_PARAMS["learning_rate"],
        max_iter=int(CLASSIFIER_PARAMS["max_iter"]),
        max_leaf_nodes=int(CLASSIFIER_PARAMS["max_leaf_nodes"]),
        min_samples_leaf=int(CLASSIFIER_PARAMS["min_samples_leaf"]),
        l2_regularization=CLASSIFIER_PARAMS["l2_regularization"],
        early_stopping=False,
        random_state=config.seed,
    )
    if len(splits) >= 2:
        classifier: Any = CalibratedClassifierCV(estimator, method=method, cv=splits)
    else:
        logger.warning("too few assets on both sides of the horizon for calibration: uncalibrated classifier")
        classifier = estimator
    try:
        classifier.fit(table.x[rows], label)
    except ValueError as exc:  # a degenerate calibration fold (e.g. one class only): keep the raw classifier
        logger.warning("calibration failed (%s): uncalibrated classifier", exc)
        classifier = estimator.fit(table.x[rows], label)
    return classifier, base_rate, base_rate


def _p_fail(model: Forecaster, x: npt.NDArray[np.float32]) -> FloatArray:
    if model.classifier is None:
        return np.full(x.shape[0], model.constant_p_fail)
    return np.asarray(model.classifier.predict_proba(x)[:, 1], dtype=np.float64)
