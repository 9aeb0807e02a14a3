"""The failure forecaster: remaining useful life (RUL) with an interval, and P(failure within a horizon).

Method (see docs/forecasting.md for the reasoning and the figures):

1. Each asset's history is cut into lives at its failure and maintenance events. A life that ends in a
   failure gives the exact RUL of each of its rows; any other life is right-censored.
2. Operating regimes are found in the condition columns (BIC over Gaussian mixtures, `regimes`) and every
   sensor is z-scored per regime; sensors constant in training are dropped.
3. Features (`features.FORECAST_FEATURES`): per sensor the short- and long-window means and the drift from
   the life's own healthy start, plus the age; windows are fractions of the median run-to-failure life.
4. Target: RUL capped where the training lives stop supporting it (`target.choose_cap`); censored rows join
   where their capped target is known (time left >= cap).
5. Gradient-boosted trees with fixed settings (no search), fitted once per fold of whole assets; the
   forecast is the mean of the fold models, clipped to [0, cap].
6. Interval: cross-conformal over the same folds, lives as the exchangeable units, conformalised bin
   quantiles with one finite-sample correction (`conformal`).
7. P(failure within horizon): a classifier of "a failure within the horizon" on every row whose outcome
   is known (censored rows included), fitted per fold, Platt-recalibrated out of fold, and the fleet's base
   rate when it has no out-of-fold skill (`failprob`). Not derived from the RUL residuals: those come from
   run-to-failure lives only, and conditioned on a coming failure most rows are near one.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs

from cloud_service.forecasting.conformal import ConformalBins, calibrate
from cloud_service.forecasting.data import Event, History, Life, PredictionRow, TimeKind, split_lives
from cloud_service.forecasting.errors import ForecastDataError
from cloud_service.forecasting.failprob import FailureProbability, fit_failure_probability
from cloud_service.forecasting.features import FeatureSpec, feature_names
from cloud_service.forecasting.regimes import RegimeNormalizer
from cloud_service.forecasting.table import (
    Table,
    build_table,
    current_lives,
    split_columns,
    subsample,
    usable_assets,
)
from cloud_service.forecasting.target import choose_cap, target_rows

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

__all__ = [
    "FORMAT_VERSION",
    "FittedColumns",
    "ForecastConfig",
    "Forecaster",
    "Prepared",
    "fit",
    "forecast_table",
    "new_regressor",
    "predict",
    "prepare",
    "prepared_table",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Progress = Callable[[str], None]

# 3: regime BIC, data-derived cap, fold-model ensemble with cross-conformal bins; 4: p_fail from a
# censoring-aware classifier calibrated out of fold (`failprob`), not from the conformal residuals
FORMAT_VERSION = 4
MIN_FAILURES = 3
HOURS_PER_WEEK = 168.0
PREDICT_CHUNK_ASSETS = 64  # assets forecast together: bounded arrays (fresh large arrays cost page faults)
# Fixed gradient-boosting settings (no search): leaves of at least 100 rows, since neighbouring rows of a
# life are nearly copies of each other and a leaf of a few rows learns one life's noise.
REGRESSOR_PARAMS: dict[str, float] = {
    "learning_rate": 0.1,
    "max_iter": 100,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
}


@dataclass(frozen=True)
class ForecastConfig:
    """What to learn.

    Args:
        condition_columns: columns describing the operating condition (load, speed, ...): used to find
            regimes, not as sensors.
        sensor_columns: value columns used as sensors (default: every column not a condition column).
        horizon: the failure-probability horizon in the data's time unit (hours for ISO 8601 time).
        interval: the lower and upper quantile of the RUL interval.
        min_history_rows: assets with fewer rows are left out of training and flagged at prediction.
        n_regimes: operating regimes to use (None: chosen by BIC).
        cv_folds: folds of whole assets (fewer if there are fewer assets): the fold models and the
            cross-conformal calibration.
        max_fit_rows: training rows sampled per fold model (speed).
        threads: OpenMP threads for the gradient boosting (None: every core). One is the default: on a
            shared 2-core machine two threads made small fits up to 7x slower (measured).
        seed: seed of every random choice.
    """

    condition_columns: tuple[str, ...] = ()
    sensor_columns: tuple[str, ...] | None = None
    horizon: float = HOURS_PER_WEEK
    interval: tuple[float, float] = (0.1, 0.9)
    min_history_rows: int = 5
    n_regimes: int | None = None
    cv_folds: int = 3
    max_fit_rows: int = 100_000
    threads: int | None = 1
    seed: int = 0


@dataclass
class Forecaster:
    """A fitted forecaster: everything `predict` needs, plus what was learned about the data."""

    sensor_columns: tuple[str, ...]
    condition_columns: tuple[str, ...]
    used_sensors: tuple[str, ...]
    time_kind: TimeKind
    horizon: float
    interval: tuple[float, float]
    rul_cap: float
    cap_reason: str
    min_history_rows: int
    normalizer: RegimeNormalizer
    regressors: list[HistGradientBoostingRegressor]
    conformal: ConformalBins
    failure: FailureProbability
    max_life: float
    feature_names: list[str]
    feature_spec: FeatureSpec
    summary: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@dataclass
class Prepared:
    """A training history made ready for a regressor: regimes, cap, windows (shared with the reference)."""

    history: History
    lives: list[Life]
    failed_lives: list[Life]
    sensors: list[str]
    conditions: list[str]
    used_sensors: list[str]
    normalizer: RegimeNormalizer
    spec: FeatureSpec
    cap: float
    cap_reason: str
    n_too_short: int


def _say(progress: Progress | None, message: str, *args: object) -> None:
    logger.info(message, *args)
    if progress is not None:
        progress(message % args if args else message)


def prepare(history: History, config: ForecastConfig, progress: Progress | None = None) -> Prepared:
    """Lives, regimes, the used sensors, the RUL cap and the feature windows of a training history.

    Raises:
        ForecastDataError: with fewer than 3 run-to-failure lives, or unknown columns.
    """
    sensors, conditions = split_columns(history, config.condition_columns, config.sensor_columns)
    kept, n_short, orphan = usable_assets(history, config.min_history_rows)
    if n_short:
        _say(
            progress,
            "fit: %d assets have fewer than %d rows and are left out",
            n_short,
            config.min_history_rows,
        )
    if orphan:
        _say(progress, "fit: %d events name assets without (enough) telemetry and are ignored", orphan)
    lives = split_lives(kept)
    failed_lives = [life for life in lives if life.failed]
    if len(failed_lives) < MIN_FAILURES:
        raise ForecastDataError(
            f"{history.source}: {len(failed_lives)} run-to-failure histories (failure events matching "
            f"telemetry); at least {MIN_FAILURES} are needed to learn remaining useful life"
        )
    sensor_idx, condition_idx = kept.column_index(sensors), kept.column_index(conditions)
    raw = np.concatenate([asset.values for asset in kept.assets])
    normalizer = RegimeNormalizer(n_regimes=config.n_regimes, seed=config.seed)
    normalizer.fit(raw[:, condition_idx], raw[:, sensor_idx])
    used = [
        name for name, constant in zip(sensors, normalizer.constant_sensors_, strict=True) if not constant
    ]
    if not used:
        raise ForecastDataError(f"{history.source}: every sensor column is constant in the training data")
    cap, reason = choose_cap([life.end_time - life.start_time for life in failed_lives])
    spec = FeatureSpec.for_life_rows(float(np.median([len(life) for life in failed_lives])))
    _say(
        progress,
        "fit: %d assets, %d rows, %d failures; %d regime(s) (%s); %d of %d sensors vary; RUL cap %g (%s)",
        len(kept.assets),
        kept.n_rows,
        len(failed_lives),
        normalizer.n_regimes_,
        normalizer.criterion,
        len(used),
        len(sensors),
        cap,
        reason,
    )
    return Prepared(
        kept, lives, failed_lives, sensors, conditions, used, normalizer, spec, cap, reason, n_short
    )


def prepared_table(prepared: Prepared, *, reference: bool) -> Table:
    """The training table of a prepared history."""
    history = prepared.history
    return build_table(
        history,
        prepared.lives,
        prepared.normalizer,
        sensor_idx=history.column_index(prepared.sensors),
        used=~prepared.normalizer.constant_sensors_,
        condition_idx=history.column_index(prepared.conditions),
        spec=prepared.spec,
        reference=reference,
    )


def new_regressor(seed: int, params: dict[str, float] | None = None) -> HistGradientBoostingRegressor:
    """A gradient-boosted tree regressor (scikit-learn's defaults, or `params`)."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: PLC0415  # keeps the import cheap

    settings: dict[str, Any] = dict(params or {})
    for name in ("max_iter", "max_leaf_nodes", "min_samples_leaf"):
        if name in settings:
            settings[name] = int(settings[name])
    return HistGradientBoostingRegressor(early_stopping=False, random_state=seed, **settings)


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


def _folds(table: Table, rows: IntArray, n_folds: int) -> list[tuple[IntArray, IntArray]]:
    """(training rows, held-out rows) per fold; folds hold out whole assets.

    Assets with a run-to-failure life are dealt to the folds in turn (so each fold calibrates on about the
    same number of failures), then the others.
    """
    failed_assets = np.unique(table.asset[table.failed])
    n_splits = max(2, min(n_folds, failed_assets.size))
    fold_of_asset = np.full(int(table.asset.max()) + 1, -1)
    fold_of_asset[failed_assets] = np.arange(failed_assets.size) % n_splits
    others = np.flatnonzero(fold_of_asset < 0)
    fold_of_asset[others] = np.arange(others.size) % n_splits
    row_fold = fold_of_asset[table.asset[rows]]
    return [(rows[row_fold != k], rows[row_fold == k]) for k in range(n_splits)]


def _fit(history: History, config: ForecastConfig, progress: Progress | None) -> Forecaster:
    started = _time.monotonic()
    prepared = prepare(history, config, progress)
    table = prepared_table(prepared, reference=False)
    cap = prepared.cap
    rows = target_rows(table.time_left, table.failed, cap)
    target = np.minimum(table.time_left, cap)
    folds = _folds(table, rows, config.cv_folds)
    regressors = []
    oof = np.full(table.x.shape[0], np.nan)
    for number, (fold_train, held_out) in enumerate(folds, start=1):
        train = subsample(fold_train, config.max_fit_rows, config.seed + number)
        model = new_regressor(config.seed, REGRESSOR_PARAMS).fit(table.x[train], target[train])
        regressors.append(model)
        oof[held_out] = np.clip(model.predict(table.x[held_out]), 0.0, cap)
        _say(progress, "fit: fold model %d of %d on %d rows", number, len(folds), train.size)
    failure = fit_failure_probability(
        table,
        prepared.lives,
        horizon=config.horizon,
        folds=_folds(table, np.arange(table.x.shape[0]), config.cv_folds),
        params=REGRESSOR_PARAMS,
        max_fit_rows=config.max_fit_rows,
        seed=config.seed,
    )
    _say(
        progress,
        "fit: p(failure within %g): base rate %.4f, out-of-fold Brier %.4f vs %.4f for the base rate%s",
        config.horizon,
        failure.base_rate,
        failure.report["cv_brier"],
        failure.report["cv_base_rate_brier"],
        " (no skill: the base rate is used)" if failure.report["shrunk_to_base_rate"] else "",
    )
    calibration = np.flatnonzero(table.failed & ~np.isnan(oof))
    conformal = calibrate(
        oof[calibration], table.time_left[calibration], table.life[calibration], config.interval
    )
    lengths = np.array([life.end_time - life.start_time for life in prepared.failed_lives])
    low, high = conformal.interval(oof[calibration], upper_limit=float(lengths.max()))
    truth = table.time_left[calibration]
    life = table.life[calibration]
    weight = 1.0 / np.bincount(life)[life]
    inside = ((truth >= low) & (truth <= high)).astype(np.float64)
    error = oof[calibration] - truth
    capped_error = oof[calibration] - np.minimum(truth, cap)
    cv = {
        "folds": len(folds),
        "metric": "out of fold over every row of the held-out run-to-failure lives, each life weighing 1",
        "rmse": round(float(np.sqrt(np.sum(weight * error**2) / np.sum(weight))), 4),
        "rmse_capped": round(float(np.sqrt(np.sum(weight * capped_error**2) / np.sum(weight))), 4),
        "interval_coverage": round(float(np.sum(weight * inside) / np.sum(weight)), 4),
        "interval_bins": len(conformal.low),
        "p_fail_base_rate": failure.report["base_rate"],
        "p_fail_brier": failure.report["cv_brier"],
        "p_fail_base_rate_brier": failure.report["cv_base_rate_brier"],
        "p_fail_shrunk_to_base_rate": failure.report["shrunk_to_base_rate"],
    }
    summary = {
        "method": "gradient-boosted trees on regime-normalised window means, drift and age; fold-model "
        "mean; cross-conformal intervals (lives as units, conformalised bin quantiles); failure "
        "probability from a censoring-aware classifier calibrated out of fold against the base rate",
        "n_assets": len(prepared.history.assets),
        "n_rows": prepared.history.n_rows,
        "n_failures": len(prepared.failed_lives),
        "n_censored_lives": len(prepared.lives) - len(prepared.failed_lives),
        "n_assets_too_short": prepared.n_too_short,
        "median_life": round(float(np.median(lengths)), 4),
        "train_mean_rul": round(float(table.time_left[table.failed].mean()), 4),
        "rul_cap": cap,
        "rul_cap_reason": prepared.cap_reason,
        "regimes": prepared.normalizer.n_regimes_,
        "regime_criterion": prepared.normalizer.criterion,
        "constant_sensors": [s for s in prepared.sensors if s not in prepared.used_sensors],
        "cv": cv,
        "p_fail": failure.report,
        "fit_s": round(_time.monotonic() - started, 2),
    }
    _say(
        progress,
        "fit: done in %.1f s (cap %g, out-of-fold RMSE %.4g, interval coverage %.3f)",
        summary["fit_s"],
        cap,
        cv["rmse"],
        cv["interval_coverage"],
    )
    return Forecaster(
        sensor_columns=tuple(prepared.sensors),
        condition_columns=tuple(prepared.conditions),
        used_sensors=tuple(prepared.used_sensors),
        time_kind=history.time_kind,
        horizon=config.horizon,
        interval=config.interval,
        rul_cap=cap,
        cap_reason=prepared.cap_reason,
        min_history_rows=config.min_history_rows,
        normalizer=prepared.normalizer,
        regressors=regressors,
        conformal=conformal,
        failure=failure,
        max_life=float(lengths.max()),
        feature_names=feature_names(prepared.used_sensors, reference=False),
        feature_spec=prepared.spec,
        summary=summary,
    )


class FittedColumns(Protocol):
    """What `forecast_table` reads of a fitted model (the forecaster and the reference learner)."""

    @property
    def normalizer(self) -> RegimeNormalizer: ...
    @property
    def sensor_columns(self) -> tuple[str, ...]: ...
    @property
    def used_sensors(self) -> tuple[str, ...]: ...
    @property
    def condition_columns(self) -> tuple[str, ...]: ...
    @property
    def time_kind(self) -> TimeKind: ...
    @property
    def feature_spec(self) -> FeatureSpec: ...


def forecast_table(
    model: FittedColumns, history: History, *, all_times: bool, reference: bool
) -> tuple[History, Table, IntArray]:
    """The (trimmed) history, its table and the rows to forecast, for a fitted model's columns.

    Raises:
        ForecastDataError: if the history lacks a column the model uses, or uses another time kind.
    """
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
    lives = split_lives(history)
    if not all_times:
        history, lives = current_lives(history, lives, model.feature_spec)
    table = build_table(
        history,
        lives,
        model.normalizer,
        sensor_idx=sensor_idx,
        used=np.isin(np.asarray(model.sensor_columns), np.asarray(model.used_sensors)),
        condition_idx=condition_idx,
        spec=model.feature_spec,
        reference=reference,
    )
    rows = np.arange(table.x.shape[0]) if all_times else table.last_row
    return history, table, rows


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
    result: list[PredictionRow] = []
    for chunk in _chunks(history, PREDICT_CHUNK_ASSETS):
        result.extend(_predict_chunk(model, chunk, all_times=all_times))
    is_short = [len(asset) < model.min_history_rows for asset in history.assets]
    _say(
        progress,
        "predict: %d forecasts for %d assets (%d short) in %.2f s",
        len(result),
        len(history.assets),
        sum(is_short),
        _time.monotonic() - started,
    )
    return result


def _chunks(history: History, size: int) -> list[History]:
    """The history in groups of `size` assets with their events (each group's arrays stay small)."""
    by_asset: dict[str, list[Event]] = {}
    for event in history.events:
        by_asset.setdefault(event.asset_id, []).append(event)
    chunks = []
    for first in range(0, len(history.assets), size):
        assets = history.assets[first : first + size]
        events = tuple(event for asset in assets for event in by_asset.get(asset.asset_id, ()))
        chunks.append(History(history.columns, assets, events, history.time_kind, history.source))
    return chunks


def _predict_chunk(model: Forecaster, history: History, *, all_times: bool) -> list[PredictionRow]:
    is_short = np.array([len(asset) < model.min_history_rows for asset in history.assets])
    history, table, rows = forecast_table(model, history, all_times=all_times, reference=False)
    x = table.x[rows]
    rul = np.clip(
        np.mean([regressor.predict(x) for regressor in model.regressors], axis=0), 0.0, model.rul_cap
    )
    low, high = model.conformal.interval(rul, upper_limit=model.max_life)
    p_fail = model.failure.predict(x)
    short = is_short[table.asset[rows]]
    low = np.where(short, 0.0, low)
    high = np.where(short, np.maximum(high, model.max_life), high)
    first_row = np.concatenate([[0], table.last_row[:-1] + 1])
    return [
        PredictionRow(
            asset_id=history.assets[table.asset[row]].asset_id,
            time_label=history.assets[table.asset[row]].label(int(row - first_row[table.asset[row]])),
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
