"""`forewarn bench forecast`: the failure forecaster on a simulated plant, whole assets held out.

The simulator's `plant` scenario is exported to CSV (as a user would), read back, and split by asset: every
third asset (in id order) is held out, with all its rows and events. The forecaster is fitted on the rest.
On the held-out assets:

- RUL figures (`rmse`, `mae`, `prognostic_score` summed and per point, `coverage` of the 10-90 % interval,
  `rmse_constant_baseline` = always predicting the training mean RUL) are taken at ten evenly spaced points
  of the degradation phase of each held-out run-to-failure life: from the fault's onset (the simulator's
  `ground_truth.csv`) to the failure; before the onset the RUL is not observable from any sensor. The same
  figures over ten points of the whole life (`whole_life_*`) are reported too. Synthetic data has no
  onsets: there both are over the whole life. The onset is that of the fault mode that failed the asset
  (a second fault may start later and not be the one that fails it);
- `brier` is over every held-out row whose label is known (run-to-failure lives, and censored rows with at
  least a horizon left), against `brier_base_rate`, the Brier score of the held-out set's own failure rate;
- lead time: from the start of the final unbroken alarm (p_fail >= 0.5) to each held-out failure.

With `--quick` (or if the simulators cannot run) a synthetic fleet is used instead; `data` says which.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cloud_service.forecasting import ForecastConfig, History, fit, predict
from cloud_service.forecasting.csvio import parse_time, read_events, read_telemetry
from cloud_service.forecasting.data import Life, PredictionRow, TimeKind, split_lives
from cloud_service.forecasting.metrics import brier, coverage, mae, prognostic_score, rmse
from cloud_service.forecasting.synthetic import make_fleet

__all__ = ["run"]

logger = logging.getLogger(__name__)

HOLD_OUT_EVERY = 3
POINTS_PER_LIFE = 10
HORIZON_H = 168.0
PLANT_CONDITIONS = ("load", "speed_rpm", "running")


Onsets = dict[str, list[float]]


def _read_onsets(path: Path) -> Onsets:
    """Per asset, the onset times (hours) of the faults that caused its failures, from the simulator's
    `ground_truth.csv`: for each failure, the latest earlier onset of the failing mode. An asset can have
    a fault develop that does not fail it first; the degradation phase of a failure starts at the onset of
    its own mode."""
    onsets: dict[str, list[tuple[float, str]]] = {}
    caused: Onsets = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            parsed = parse_time(record["time"], TimeKind.ISO)
            if parsed is None:
                continue
            seen = onsets.setdefault(record["asset_id"], [])
            if record["event"] == "onset":
                seen.append((parsed[0], record["mode"]))
            elif record["event"] == "failure":
                own = [t for t, mode in seen if mode == record["mode"]]
                if own:
                    caused.setdefault(record["asset_id"], []).append(max(own))
    return caused


def _plant(out_dir: Path) -> tuple[History, tuple[str, ...], str, Onsets]:
    from simulators import export_scenario, load_scenario  # noqa: PLC0415  # heavy; only for this suite

    started = time.monotonic()
    export_scenario(load_scenario("plant"), out_dir)
    logger.info("plant export in %.1f s", time.monotonic() - started)
    telemetry = read_telemetry(out_dir / "features.csv")
    events = read_events(out_dir / "events.csv", time_kind=telemetry.time_kind)
    history = History(telemetry.columns, telemetry.assets, tuple(events), telemetry.time_kind, "plant")
    onsets = _read_onsets(out_dir / "ground_truth.csv")
    return history, PLANT_CONDITIONS, "simulator plant export (60 assets, 90 days, ISO time in hours)", onsets


def _synthetic() -> tuple[History, tuple[str, ...], str, Onsets]:
    fleet = make_fleet(90, mean_life=150.0, censored_fraction=0.1, maintained_fraction=0.2, seed=11)
    return fleet.history, fleet.condition_columns, "synthetic", {}


def _subset(history: History, asset_ids: set[str]) -> History:
    return History(
        history.columns,
        tuple(asset for asset in history.assets if asset.asset_id in asset_ids),
        tuple(event for event in history.events if event.asset_id in asset_ids),
        history.time_kind,
        history.source,
    )


def _points(history: History, life: Life, onsets: Onsets | None) -> list[int]:
    """Ten evenly spaced rows of a life, from its fault onset if `onsets` is given (none if no onset)."""
    first = life.start
    if onsets is not None:
        times = history.assets[life.asset_index].time
        inside = [t for t in onsets.get(life.asset_id, []) if life.start_time <= t < life.end_time]
        if not inside:
            return []
        first = max(first, int(np.searchsorted(times, max(inside))))
        first = min(first, life.stop - 1)
    n = life.stop - first
    return sorted({first + min(n - 1, int((k + 0.5) / POINTS_PER_LIFE * n)) for k in range(POINTS_PER_LIFE)})


def _rul_figures(
    history: History,
    failed: list[Life],
    by_row: dict[tuple[str, int], PredictionRow],
    train_mean_rul: float,
    onsets: Onsets | None,
) -> dict[str, Any]:
    chosen = [(life, row) for life in failed for row in _points(history, life, onsets)]
    if not chosen:
        return {}
    true = np.array(
        [life.end_time - float(history.assets[life.asset_index].time[row]) for life, row in chosen]
    )
    picked = [by_row[(life.asset_id, row)] for life, row in chosen]
    rul = np.array([item.rul for item in picked])
    return {
        "points": len(chosen),
        "rmse": round(rmse(rul, true), 3),
        "mae": round(mae(rul, true), 3),
        "prognostic_score": float(f"{prognostic_score(rul, true):.4g}"),
        "prognostic_score_per_point": float(f"{prognostic_score(rul, true) / len(chosen):.4g}"),
        "coverage": round(coverage([i.rul_low for i in picked], [i.rul_high for i in picked], true), 3),
        "rmse_constant_baseline": round(rmse(np.full_like(true, train_mean_rul), true), 3),
    }


def _lead_times(
    history: History, lives: list[Life], forecasts: dict[tuple[str, int], PredictionRow]
) -> list[float]:
    leads = []
    for life in lives:
        first_alarm = None
        for row in range(life.stop - 1, life.start - 1, -1):
            if forecasts[(life.asset_id, row)].p_fail < 0.5:
                break
            first_alarm = row
        if first_alarm is not None:
            leads.append(life.end_time - float(history.assets[life.asset_index].time[first_alarm]))
    return leads


def _evaluate(
    model: Any, test: History, train_mean_rul: float, horizon: float, onsets: Onsets
) -> dict[str, Any]:
    every = predict(model, test, all_times=True)
    offsets = np.cumsum([0] + [len(asset) for asset in test.assets])
    by_row: dict[tuple[str, int], PredictionRow] = {}
    asset_index = {asset.asset_id: i for i, asset in enumerate(test.assets)}
    for position, item in enumerate(every):
        i = asset_index[item.asset_id]
        by_row[(item.asset_id, position - int(offsets[i]))] = item
    lives = split_lives(test)
    failed = [life for life in lives if life.failed]
    phase = _rul_figures(test, failed, by_row, train_mean_rul, onsets if onsets else None)
    whole = _rul_figures(test, failed, by_row, train_mean_rul, None)
    labels, probabilities = [], []
    for life in lives:
        for row in range(life.start, life.stop):
            left = life.end_time - float(test.assets[life.asset_index].time[row])
            if life.failed or left > horizon:
                labels.append(float(life.failed and left <= horizon))
                probabilities.append(by_row[(life.asset_id, row)].p_fail)
    rate = float(np.mean(labels))
    leads = _lead_times(test, failed, by_row)
    return {
        "test_failures": len(failed),
        "rul_points": "degradation phase (onset to failure)" if onsets else "whole life",
        **phase,
        **{f"whole_life_{key}": value for key, value in whole.items()},
        "brier": round(brier(probabilities, labels), 5),
        "brier_base_rate": round(rate * (1 - rate), 5),
        "brier_rows": len(labels),
        "warned_failures": len(leads),
        "lead_time_median": round(float(np.median(leads)), 2) if leads else None,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    """Fit on two thirds of the assets, evaluate on the held-out third."""
    with tempfile.TemporaryDirectory(prefix="forewarn-bench-forecast-") as workdir:
        if quick:
            history, conditions, data, onsets = _synthetic()
        else:
            history, conditions, data, onsets = _plant(Path(workdir))
    horizon = HORIZON_H if not quick else 20.0
    ids = sorted(asset.asset_id for asset in history.assets)
    test_ids = set(ids[HOLD_OUT_EVERY - 1 :: HOLD_OUT_EVERY])
    train = _subset(history, set(ids) - test_ids)
    test = _subset(history, test_ids)
    started = time.perf_counter()
    model = fit(train, ForecastConfig(condition_columns=conditions, horizon=horizon))
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    predict(model, test)
    predict_s = time.perf_counter() - started
    figures = _evaluate(model, test, float(model.summary["train_mean_rul"]), horizon, onsets)
    return {
        "data": data,
        "time_unit": "hours" if history.time_kind.value == "iso" else "cycles",
        "train_assets": len(train.assets),
        "test_assets": len(test.assets),
        "train_rows": train.n_rows,
        "train_failures": model.summary["n_failures"],
        "horizon": horizon,
        "regimes": model.normalizer.n_regimes_,
        "rul_cap": model.rul_cap,
        "cv_rmse": model.summary["cv"]["rmse"],
        "cv_whole_life_rmse": model.summary["cv"]["whole_life_rmse"],
        "cv_interval_coverage": model.summary["cv"]["interval_coverage"],
        **figures,
        "rmse_to_baseline": round(figures["rmse"] / figures["rmse_constant_baseline"], 3),
        "brier_to_base_rate": round(figures["brier"] / figures["brier_base_rate"], 3)
        if figures["brier_base_rate"]
        else None,
        "fit_s": round(fit_s, 1),
        "predict_s_per_1000_assets": round(predict_s / len(test.assets) * 1000, 2),
        "prognostic_score_unit": "the data's time unit (hours for the plant; the PHM08 constants 13/10 were "
        "made for cycles, so errors of hundreds of hours make it explode)",
        "note": "2-core machine shared with other work: timings are noisy",
    }
