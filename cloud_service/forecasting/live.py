"""The live forecaster: refit from the stored history, recompute every asset's forecast, store both.

History comes from the database in **hours**: per asset and hour (since 1970-01-01 UTC; the table
`forecast_hourly`, brought up to date from `aggregates` at the start of each job), the mean of each
aggregate feature mean and, with `include_scores`, the mean and max anomaly score (columns `score.mean`,
`score.max`), plus the failure and maintenance events of `maintenance_events`. A refit fits the offline
forecaster (`fit`) on the last `history_days` and stores it as a new version in `forecasters` (the model
directory's two files in the database, so any cloud process can predict); with too few run-to-failure
histories it is skipped and the previous forecaster stays. A recompute forecasts every asset at its last
hour with the active forecaster and stores the rows in `forecasts`. All SQL is in `repository`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cloud_service.forecasting.data import Event, EventKind, History, split_lives
from cloud_service.forecasting.errors import ForecastDataError
from cloud_service.forecasting.model import ForecastConfig, Forecaster, fit, predict
from cloud_service.forecasting.repository import (
    ForecasterRecord,
    ForecastRecord,
    HourlyRow,
    StoredForecaster,
    active_forecaster,
    delete_forecasts_before,
    delete_hourly_before,
    hourly_history,
    hourly_refreshed_through,
    insert_forecaster,
    insert_forecasts,
    refresh_hourly,
)
from cloud_service.forecasting.settings import ForecastSettings
from cloud_service.forecasting.store import load_model, save_model
from cloud_service.queries import maintenance_events

__all__ = [
    "SCORE_COLUMNS",
    "ForecastSettings",
    "LiveHistory",
    "RecomputeReport",
    "RefitReport",
    "build_history",
    "load_stored",
    "recompute",
    "refit",
    "refresh_input",
]

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("score.mean", "score.max")
_SECONDS_PER_HOUR = 3600.0
_REFRESH_CHUNK = timedelta(days=1)  # hours of aggregates summarised per transaction
# The model directory's files (see docs/forecasting.md, "Model directory").
_METADATA_FILE = "metadata.json"
_ESTIMATORS_FILE = "model.joblib"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LiveHistory:
    """A `History` read from the database (time in hours since 1970 UTC) and what it came from."""

    history: History
    start: datetime
    end: datetime
    as_of: dict[str, datetime]
    dropped_assets: tuple[str, ...] = ()


@dataclass
class RefitReport:
    """What a refit did: the new version, or why it was skipped (and the version kept)."""

    version: int | None = None
    skipped_reason: str = ""
    kept_version: int | None = None
    n_assets: int = 0
    n_rows: int = 0
    n_failures: int = 0
    fit_s: float = 0.0
    cv: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The report as plain JSON-able values."""
        return {
            "version": self.version,
            "skipped_reason": self.skipped_reason,
            "kept_version": self.kept_version,
            "n_assets": self.n_assets,
            "n_rows": self.n_rows,
            "n_failures": self.n_failures,
            "fit_s": self.fit_s,
        }


@dataclass
class RecomputeReport:
    """What a recompute did."""

    forecaster_version: int | None = None
    computed_at: datetime | None = None
    n_forecasts: int = 0
    n_short_history: int = 0
    dropped_assets: tuple[str, ...] = ()
    n_deleted_old: int = 0

    def as_dict(self) -> dict[str, object]:
        """The report as plain JSON-able values."""
        return {
            "forecaster_version": self.forecaster_version,
            "computed_at": self.computed_at.isoformat() if self.computed_at else None,
            "n_forecasts": self.n_forecasts,
            "n_short_history": self.n_short_history,
            "dropped_assets": list(self.dropped_assets),
            "n_deleted_old": self.n_deleted_old,
        }


# --- history from the database ----------------------------------------------------------------------------


def refresh_input(conn: psycopg.Connection[Any], settings: ForecastSettings, *, end: datetime) -> int:
    """Bring `forecast_hourly` up to the whole hours before `end`; asset-hours written.

    Recomputes from `settings.late_data_h` before the previous refresh (late aggregates, e.g. a gateway's
    backlog) or, the first time, from the start of the history window, one day per transaction; hours
    older than the window are dropped.
    """
    window_start = end - timedelta(days=settings.history_days)
    through = hourly_refreshed_through(conn)
    start = (
        window_start
        if through is None
        else max(window_start, through - timedelta(hours=settings.late_data_h))
    )
    written = 0
    chunk = start
    while chunk < end:
        stop = min(chunk + _REFRESH_CHUNK, end)
        written += refresh_hourly(conn, start=chunk, end=stop)
        chunk = stop
    dropped = delete_hourly_before(conn, window_start - _REFRESH_CHUNK)
    logger.info(
        "forecast: hourly input refreshed from %s (%d asset-hours written, %d old dropped)",
        start.isoformat(timespec="minutes"),
        written,
        dropped,
    )
    return written


def build_history(
    conn: psycopg.Connection[Any],
    settings: ForecastSettings,
    *,
    end: datetime,
    columns: Sequence[str] | None = None,
) -> LiveHistory:
    """The stored history of the last `settings.history_days` before `end`, hourly, as a `History`.

    Reads `forecast_hourly` (see `refresh_input`) and `maintenance_events`.

    Args:
        columns: the value columns wanted (a stored forecaster's); None: `settings.features` (or every
            feature every asset has) plus the score columns when `settings.include_scores`.
            Assets lacking a wanted feature entirely are dropped (listed in `dropped_assets`).
    """
    start = end - timedelta(days=settings.history_days)
    wanted_features = _wanted_features(settings, columns)
    rows = hourly_history(conn, start=start, end=end, names=wanted_features)
    by_asset: dict[str, list[HourlyRow]] = {}
    for row in rows:
        by_asset.setdefault(row.asset_id, []).append(row)
    if columns is None:
        feature_columns = _common_features(by_asset, settings)
        columns = (*feature_columns, *(SCORE_COLUMNS if settings.include_scores else ()))
    else:
        feature_columns = [c for c in columns if c not in SCORE_COLUMNS]
    ids: list[str] = []
    times: list[FloatArray] = []
    blocks: list[FloatArray] = []
    as_of: dict[str, datetime] = {}
    dropped: list[str] = []
    for asset_id, asset_rows in by_asset.items():
        block = _asset_block(asset_rows, feature_columns, columns)
        if block is None:
            dropped.append(asset_id)
            continue
        ids.extend([asset_id] * len(asset_rows))
        times.append(np.array([row.hour for row in asset_rows], dtype=np.float64))
        blocks.append(block)
        as_of[asset_id] = asset_rows[-1].last_end
    if dropped:
        logger.warning(
            "forecast: %d assets lack a feature the forecaster uses and are left out (first: %s)",
            len(dropped),
            dropped[0],
        )
    events = [
        Event(event.asset_id, event.ts.timestamp() / _SECONDS_PER_HOUR, EventKind(event.event))
        for event in maintenance_events(conn, start=start, end=end)
        if event.asset_id in as_of
    ]
    values = np.vstack(blocks) if blocks else np.empty((0, len(columns)))
    flat_times = np.concatenate(times) if times else np.empty(0)
    history = History.from_arrays(ids, flat_times, values, columns=list(columns), events=events)
    return LiveHistory(history, start, end, as_of, tuple(dropped))


def _wanted_features(settings: ForecastSettings, columns: Sequence[str] | None) -> list[str] | None:
    if columns is not None:
        return [c for c in columns if c not in SCORE_COLUMNS]
    if settings.features:
        return list(dict.fromkeys((*settings.features, *settings.condition_features)))
    return None


def _common_features(by_asset: dict[str, list[HourlyRow]], settings: ForecastSettings) -> list[str]:
    """The features every asset has (the configured ones if set), in name order."""
    present: set[str] | None = None
    for asset_rows in by_asset.values():
        names = {name for row in asset_rows for name in row.names}
        present = names if present is None else present & names
    present = present or set()
    if settings.features:
        missing = [n for n in (*settings.features, *settings.condition_features) if n not in present]
        if missing:
            logger.warning("forecast: configured features not stored for every asset: %s", ", ".join(missing))
        return [n for n in dict.fromkeys((*settings.features, *settings.condition_features)) if n in present]
    return sorted(present)


def _asset_block(
    asset_rows: list[HourlyRow], feature_columns: Sequence[str], columns: Sequence[str]
) -> FloatArray | None:
    """One asset's values (hours by `columns`), gaps carried forward then back; None if a column is empty."""
    index = {name: j for j, name in enumerate(columns)}
    block = np.full((len(asset_rows), len(columns)), np.nan)
    for i, row in enumerate(asset_rows):
        for name, value in zip(row.names, row.values, strict=True):
            j = index.get(name)
            if j is not None:
                block[i, j] = value
        if SCORE_COLUMNS[0] in index:
            block[i, index[SCORE_COLUMNS[0]]] = row.score_mean
        if SCORE_COLUMNS[1] in index:
            block[i, index[SCORE_COLUMNS[1]]] = row.score_max
    if len(feature_columns) and np.isnan(block).all(axis=0).any():
        return None
    return _fill_gaps(block)


def _fill_gaps(block: FloatArray) -> FloatArray:
    """Carry each column's last value forward over missing hours, and the first value back."""
    for j in range(block.shape[1]):
        column = block[:, j]
        valid = ~np.isnan(column)
        if valid.all():
            continue
        positions = np.where(valid, np.arange(column.size), 0)
        np.maximum.accumulate(positions, out=positions)
        filled = column[positions]
        first = int(np.argmax(valid))
        filled[:first] = column[first]
        block[:, j] = filled
    return block


def count_failure_histories(history: History) -> int:
    """Run-to-failure lives in `history` (failure events that end some telemetry)."""
    return sum(1 for life in split_lives(history) if life.failed)


# --- refit ------------------------------------------------------------------------------------------------


def refit(
    conn: psycopg.Connection[Any], settings: ForecastSettings, *, now: datetime | None = None
) -> RefitReport:
    """Fit a forecaster on the stored history and store it as the active version.

    With fewer than `settings.min_failures` run-to-failure histories (or data the forecaster refuses) the
    refit is skipped with a warning and the previous forecaster stays active.
    """
    end = now or datetime.now(UTC)
    refresh_input(conn, settings, end=end)
    live = build_history(conn, settings, end=end)
    history = live.history
    current = active_forecaster(conn)
    kept = current.version if current else None
    report = RefitReport(n_assets=len(history.assets), n_rows=history.n_rows, kept_version=kept)
    report.n_failures = count_failure_histories(history)
    if report.n_failures < settings.min_failures:
        report.skipped_reason = (
            f"{report.n_failures} run-to-failure histories in the last {settings.history_days:g} days "
            f"(at least {settings.min_failures} needed)"
        )
        logger.warning("forecast refit skipped: %s; keeping forecaster %s", report.skipped_reason, _v(kept))
        return report
    try:
        model = fit(history, _config(settings))
    except ForecastDataError as exc:
        report.skipped_reason = str(exc)
        logger.warning("forecast refit skipped: %s; keeping forecaster %s", exc, _v(kept))
        return report
    record = _record(model, live)
    report.version = insert_forecaster(conn, record)
    report.fit_s, report.cv = record.fit_s, record.cv_metrics
    logger.info(
        "forecast refit: forecaster v%d from %d assets, %d hours, %d failures in %.1f s",
        report.version,
        record.n_assets,
        record.n_rows,
        record.n_failures,
        record.fit_s,
    )
    return report


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "(none yet)"


def _config(settings: ForecastSettings) -> ForecastConfig:
    return ForecastConfig(
        condition_columns=tuple(settings.condition_features),
        horizon=settings.horizon_h,
        interval=(settings.interval_low, settings.interval_high),
        min_history_rows=settings.min_history_h,
        n_regimes=settings.regimes,
        cv_folds=settings.cv_folds,
        seed=settings.seed,
    )


def _record(model: Forecaster, live: LiveHistory) -> ForecasterRecord:
    with tempfile.TemporaryDirectory(prefix="forewarn-forecaster-") as tmp:
        save_model(model, tmp)
        metadata = (Path(tmp) / _METADATA_FILE).read_text(encoding="utf-8")
        estimators = (Path(tmp) / _ESTIMATORS_FILE).read_bytes()
    summary = model.summary
    return ForecasterRecord(
        train_start=live.start,
        train_end=live.end,
        n_assets=int(summary.get("n_assets", len(live.history.assets))),
        n_rows=int(summary.get("n_rows", live.history.n_rows)),
        n_failures=int(summary.get("n_failures", 0)),
        horizon_h=model.horizon,
        columns=[*model.sensor_columns, *model.condition_columns],
        cv_metrics=dict(summary.get("cv", {})),
        fit_s=float(summary.get("fit_s", 0.0)),
        metadata_json=metadata,
        estimators=estimators,
    )


def load_stored(stored: StoredForecaster) -> Forecaster:
    """The forecaster from its stored files (the estimators' digest is checked before unpickling).

    Raises:
        ModelFormatError: the stored files are damaged or of another format version.
    """
    with tempfile.TemporaryDirectory(prefix="forewarn-forecaster-") as tmp:
        (Path(tmp) / _METADATA_FILE).write_text(stored.metadata_json, encoding="utf-8")
        (Path(tmp) / _ESTIMATORS_FILE).write_bytes(stored.estimators)
        return load_model(tmp)


# --- recompute --------------------------------------------------------------------------------------------


def recompute(
    conn: psycopg.Connection[Any], settings: ForecastSettings, *, now: datetime | None = None
) -> RecomputeReport:
    """Forecast every asset at its last stored hour with the active forecaster and store the forecasts.

    Without a forecaster yet, nothing is stored and a warning says to refit. Forecasts older than
    `settings.keep_forecasts_days` are deleted.
    """
    computed_at = now or datetime.now(UTC)
    report = RecomputeReport(computed_at=computed_at)
    stored = active_forecaster(conn)
    if stored is None:
        logger.warning("forecast recompute: no forecaster yet (run `forewarn forecast live refit`)")
        return report
    model = load_stored(stored)
    refresh_input(conn, settings, end=computed_at)
    live = build_history(
        conn, settings, end=computed_at, columns=(*model.sensor_columns, *model.condition_columns)
    )
    rows = predict(model, live.history)
    records = [
        ForecastRecord(
            asset_id=row.asset_id,
            computed_at=computed_at,
            as_of=live.as_of[row.asset_id],
            rul_h=row.rul,
            rul_low_h=row.rul_low,
            rul_high_h=row.rul_high,
            p_fail=min(max(row.p_fail, 0.0), 1.0),
            horizon_h=row.horizon,
            short_history=row.short_history,
            forecaster_version=stored.version,
        )
        for row in rows
    ]
    report.forecaster_version = stored.version
    report.n_forecasts = insert_forecasts(conn, records)
    report.n_short_history = sum(1 for r in records if r.short_history)
    report.dropped_assets = live.dropped_assets
    report.n_deleted_old = delete_forecasts_before(
        conn, computed_at - timedelta(days=settings.keep_forecasts_days)
    )
    logger.info(
        "forecast recompute: %d assets forecast with forecaster v%d (%d short history, %d left out)",
        report.n_forecasts,
        stored.version,
        report.n_short_history,
        len(report.dropped_assets),
    )
    return report
