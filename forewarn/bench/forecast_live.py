"""`forewarn bench forecast-live`: the live forecast jobs on a simulated plant, in a throwaway PostgreSQL.

The simulator's `plant` scenario is exported to CSV (as `bench forecast` does), averaged per asset and
hour, shifted so that its last hour ends an hour before now (a running fleet), and stored as one-hour
aggregates with its failure and maintenance events (`import_hourly_history`, what a backfill does). Then
the two scheduled jobs run as the cloud service runs them: `refit` (refresh the hourly input, read the
history, fit, store a versioned forecaster) and `recompute` (forecast every asset at its last stored hour
and store the forecasts). `load,speed_rpm,running` are the condition features; the export carries no
anomaly scores, so scores are left out.

Figures: `import_rows`, `import_s`, `refit_s` (the whole job, wall clock), `refit_fit_s` (the fit alone),
`refit_failures`, `forecaster_version`, `recompute_s`, `forecasts_stored`, `forecasts_consistent` (with
`rul_low_h <= rul_h <= rul_high_h` and `0 <= p_fail <= 1`), `forecasts_p_fail_above_half`, `as_of_lag_h`
(most hours between `computed_at` and an asset's `as_of`). `--quick`: a small synthetic fleet instead.

Then the live p(fail within the horizon) against what happened (`rolling_*`): the same two jobs run as of
earlier times (cutoffs a horizon apart, from the middle of the data to a horizon before its end, each
refit reading only the hours and events before its cutoff), and each stored forecast is scored against
the failure events of the fleet's ground truth in [its asset's last hour, + horizon]:
`rolling_cutoffs`, `rolling_forecasts` (scored), `rolling_failure_rate` (the share that failed),
`rolling_brier` beside `rolling_training_base_rate_brier` (every forecast the base rate of the history
before its cutoff: the fleet's failures per asset-hour as a probability over the horizon, censored hours
handled as the forecaster handles them) and `rolling_hindsight_base_rate_brier` (the scored set's own
failure rate, p (1 - p), known only afterwards); `rolling_p_fail_quantiles` (0, 10, 25, 50, 75, 90,
100 %) over the scored forecasts and `rolling_reliability` (per p_fail bin: forecasts, mean p_fail,
failure rate).
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from cloud_service.forecasting import History
from cloud_service.forecasting import live as forecast_live
from cloud_service.forecasting.csvio import read_events, read_telemetry
from cloud_service.forecasting.data import EventKind, split_lives
from cloud_service.forecasting.failprob import horizon_labels
from cloud_service.forecasting.repository import (
    ForecastRecord,
    forecasts_computed_at,
    import_hourly_history,
    latest_forecasts,
)
from cloud_service.forecasting.settings import ForecastSettings
from cloud_service.forecasting.synthetic import make_fleet
from cloud_service.migrate import migrate
from forewarn.localservices import PostgresServer, running, temporary_directory

__all__ = ["rolling_scores", "run"]

logger = logging.getLogger(__name__)

PLANT_CONDITIONS = ("load", "speed_rpm", "running")
_SECONDS_PER_HOUR = 3600
_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
_RELIABILITY_EDGES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _plant_history() -> tuple[History, tuple[str, ...]]:
    from simulators import export_scenario, load_scenario  # noqa: PLC0415  # heavy; only for this suite

    with tempfile.TemporaryDirectory(prefix="forewarn-bench-fclive-") as workdir:
        out = Path(workdir)
        export_scenario(load_scenario("plant"), out)
        telemetry = read_telemetry(out / "features.csv")
        events = read_events(out / "events.csv", time_kind=telemetry.time_kind)
    return History(telemetry.columns, telemetry.assets, tuple(events), telemetry.time_kind, "plant"), (
        PLANT_CONDITIONS
    )


def _synthetic_history() -> tuple[History, tuple[str, ...]]:
    fleet = make_fleet(24, n_sensors=4, mean_life=80.0, censored_fraction=0.3, seed=3)
    return fleet.history, fleet.condition_columns


def _hourly(times_h: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows averaged per whole hour (NaN-aware): the hours and their means."""
    hours = np.floor(times_h).astype(np.int64)
    unique, first = np.unique(hours, return_index=True)
    sums = np.add.reduceat(np.nan_to_num(values), first, axis=0)
    counts = np.add.reduceat((~np.isnan(values)).astype(np.float64), first, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return unique, np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _store(conninfo: str, history: History, end_hour: int) -> tuple[int, int]:
    """The history as one-hour aggregates ending at `end_hour` (hours since 1970), with its events;
    the rows stored and the shift (hours added to the history's times).

    Each asset is stored with the features it has (the columns not empty for it), as its gateway would
    send them: machine types differ in their sensors.
    """
    shift = end_hour - max(int(np.floor(asset.time[-1])) for asset in history.assets)
    stored = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for asset in history.assets:
            hours, means = _hourly(np.asarray(asset.time, dtype=np.float64), asset.values)
            present = ~np.all(np.isnan(means), axis=0)
            stored += import_hourly_history(
                conn,
                asset_ids=[asset.asset_id] * len(hours),
                hours=hours + shift,
                features=means[:, present],
                feature_names=[name for name, keep in zip(history.columns, present, strict=True) if keep],
                scores=np.zeros(len(hours)),
                events=[
                    (e.asset_id, int(np.floor(e.time)) + shift, e.kind.value)
                    for e in history.events
                    if e.asset_id == asset.asset_id
                ],
                gateway_id=f"import-{asset.asset_id}",
            )
    return stored, shift


def _training_base_rate(conn: psycopg.Connection[Any], settings: ForecastSettings, end: datetime) -> float:
    """The share of the known asset-hours before `end` followed by a failure within the horizon."""
    history = forecast_live.build_history(conn, settings, end=end).history
    asset = np.repeat(np.arange(len(history.assets)), [len(a) for a in history.assets])
    time_h = np.concatenate([a.time for a in history.assets]) if history.assets else np.empty(0)
    known, positive = horizon_labels(asset, time_h, split_lives(history), settings.horizon_h)
    return float(positive[known].mean()) if known.any() else 0.0


def _failed_within(forecast: ForecastRecord, failures: dict[str, np.ndarray], horizon_h: float) -> bool:
    """Did the asset fail within the horizon from its last stored hour (as the labels are defined)?"""
    last_hour = forecast.as_of.timestamp() / _SECONDS_PER_HOUR - 1.0
    times = failures.get(forecast.asset_id, np.empty(0))
    return bool(np.any((times >= np.floor(last_hour)) & (times <= np.floor(last_hour) + horizon_h)))


def _reliability(p_fail: np.ndarray, outcome: np.ndarray) -> list[dict[str, float | int]]:
    edges = np.asarray(_RELIABILITY_EDGES)
    bins = np.clip(np.searchsorted(edges, p_fail, side="right") - 1, 0, edges.size - 2)
    return [
        {
            "p_from": float(edges[b]),
            "p_to": float(edges[b + 1]),
            "forecasts": int((bins == b).sum()),
            "mean_p_fail": round(float(p_fail[bins == b].mean()), 4),
            "failure_rate": round(float(outcome[bins == b].mean()), 4),
        }
        for b in range(edges.size - 1)
        if (bins == b).any()
    ]


def _truth(history: History, shift_h: int) -> dict[str, np.ndarray]:
    """Each asset's failure hours (since 1970, as stored) in the history shifted by `shift_h`."""
    failures: dict[str, list[float]] = {}
    for event in history.events:
        if event.kind is EventKind.FAILURE:
            failures.setdefault(event.asset_id, []).append(float(np.floor(event.time)) + shift_h)
    return {asset_id: np.asarray(times) for asset_id, times in failures.items()}


def rolling_scores(
    conninfo: str,
    settings: ForecastSettings,
    truth: dict[str, np.ndarray],
    *,
    start_hour: int,
    end_hour: int,
    n_cutoffs: int,
) -> dict[str, Any]:
    """Refit and recompute as of cutoffs a horizon apart; score each forecast against the truth.

    Args:
        conninfo: a database holding the history (aggregates and events) from `start_hour` to `end_hour`.
        settings: the forecast settings the jobs run with.
        truth: per asset, its failure hours (since 1970 UTC).
        start_hour, end_hour: the stored history's first and last hour (since 1970 UTC).
        n_cutoffs: at most this many cutoffs, the last a horizon before `end_hour`, none before the
            middle of the history.
    """
    horizon = settings.horizon_h
    step = int(np.ceil(horizon))
    last_cutoff = end_hour - step
    first_cutoff = max((start_hour + end_hour) // 2, last_cutoff - (n_cutoffs - 1) * step)
    cutoffs = list(range(last_cutoff, first_cutoff - 1, -step))[::-1]
    p_fail: list[float] = []
    outcome: list[float] = []
    base: list[float] = []
    used = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for cutoff in cutoffs:
            now = datetime.fromtimestamp(cutoff * _SECONDS_PER_HOUR, tz=UTC)
            refit = forecast_live.refit(conn, settings, now=now)
            recompute = forecast_live.recompute(conn, settings, now=now)
            if refit.version is None or recompute.forecaster_version is None:
                continue  # too few failures before this cutoff: nothing new to score
            used += 1
            rate = _training_base_rate(conn, settings, now)
            for forecast in forecasts_computed_at(conn, now):
                p_fail.append(forecast.p_fail)
                outcome.append(float(_failed_within(forecast, truth, horizon)))
                base.append(rate)
    if not p_fail:
        return {"rolling_cutoffs": used, "rolling_forecasts": 0}
    p, y, b = np.asarray(p_fail), np.asarray(outcome), np.asarray(base)
    rate = float(y.mean())
    return {
        "rolling_cutoffs": used,
        "rolling_forecasts": int(p.size),
        "rolling_failure_rate": round(rate, 4),
        "rolling_brier": round(float(np.mean((p - y) ** 2)), 5),
        "rolling_training_base_rate_brier": round(float(np.mean((b - y) ** 2)), 5),
        "rolling_hindsight_base_rate_brier": round(rate * (1.0 - rate), 5),
        "rolling_training_base_rate_mean": round(float(b.mean()), 4),
        "rolling_p_fail_mean": round(float(p.mean()), 4),
        "rolling_p_fail_quantiles": [round(float(q), 4) for q in np.quantile(p, _QUANTILES)],
        "rolling_reliability": _reliability(p, y),
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    """Store a fleet's history, then run the refit and recompute jobs on it and check what they stored."""
    history, conditions = _synthetic_history() if quick else _plant_history()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    settings = ForecastSettings.model_validate(
        {
            "condition_features": list(conditions),
            "include_scores": False,
            "cv_folds": 2 if quick else 3,
            "horizon_h": 20.0 if quick else 168.0,  # the synthetic lives are about 80 hours
        }
    )
    with temporary_directory("forewarn-bench-pg-") as pg_dir, running(PostgresServer(pg_dir)) as pg:
        pg.create_database("bench")
        conninfo = pg.conninfo("bench")
        migrate(conninfo)
        started = time.perf_counter()
        end_hour = int(now.timestamp()) // _SECONDS_PER_HOUR - 1
        imported, shift_h = _store(conninfo, history, end_hour)
        import_s = time.perf_counter() - started
        with psycopg.connect(conninfo, autocommit=True) as conn:
            started = time.perf_counter()
            refit = forecast_live.refit(conn, settings, now=now)
            refit_s = time.perf_counter() - started
            started = time.perf_counter()
            recompute = forecast_live.recompute(conn, settings, now=now)
            recompute_s = time.perf_counter() - started
            stored = latest_forecasts(conn)
        started = time.perf_counter()
        rolling = rolling_scores(
            conninfo,
            settings,
            _truth(history, shift_h),
            start_hour=min(int(np.floor(asset.time[0])) for asset in history.assets) + shift_h,
            end_hour=end_hour,
            n_cutoffs=2 if quick else 6,
        )
        rolling["rolling_s"] = round(time.perf_counter() - started, 1)
    consistent = [f for f in stored if 0 <= f.rul_low_h <= f.rul_h <= f.rul_high_h and 0 <= f.p_fail <= 1]
    lags = [(f.computed_at - f.as_of).total_seconds() / 3600 for f in stored]
    return {
        "data": "synthetic" if quick else "simulator plant export (60 assets, 90 days) as hourly aggregates",
        "assets": len(history.assets),
        "import_rows": imported,
        "import_s": round(import_s, 1),
        "refit_s": round(refit_s, 1),
        "refit_fit_s": round(refit.fit_s, 1),
        "refit_failures": refit.n_failures,
        "refit_skipped": refit.skipped_reason or None,
        "forecaster_version": refit.version,
        "cv_rmse": refit.cv.get("rmse"),
        "recompute_s": round(recompute_s, 1),
        "forecasts_stored": recompute.n_forecasts,
        "forecasts_consistent": len(consistent),
        "forecasts_p_fail_above_half": sum(1 for f in stored if f.p_fail > 0.5),
        "forecasts_short_history": recompute.n_short_history,
        "dropped_assets": list(recompute.dropped_assets),
        "as_of_lag_h": round(max(lags), 2) if lags else None,
        "p_fail_quantiles": [round(float(q), 4) for q in np.quantile([f.p_fail for f in stored], _QUANTILES)]
        if stored
        else None,
        **rolling,
        "note": "2-core machine: timings are noisy",
    }
