"""`forewarn bench forecast`: the failure forecaster beside the plain reference learner, on three data sets.

Data sets (`D` in the keys):

- `plant`: the simulator's `plant` scenario exported to CSV (as a user would) and read back; every third
  asset (in id order) is held out with all its rows and events, the rest trains, and this is done three
  times, each third held out once (`D_splits`): every run-to-failure life is scored once, which steadies
  figures that a third of the lives alone leaves noisy (coverage, Brier). Fit times are per split.
- `synthetic`: the synthetic fleet (`synthetic.make_fleet`), held out the same way.
- `cmapss_fd001`: NASA C-MAPSS FD001 from `FOREWARN_CMAPSS_FD001`, else the first
  `shared/data/cmapss-fd001` beside the repository or one of its parents (skipped, with the reason in
  `cmapss_fd001_skipped`, when absent): trained on `train_FD001.txt`, scored at the last cycle of each
  test engine (`test_FD001.txt`, truth `RUL_FD001.txt`).

On every data set both learners are fitted on the same rows: the forecaster (`fit`) and the reference
(`reference.fit_reference`: default gradient boosting on regime-normalised current values and window
means, the same data-derived cap, no search). Scores, at ten evenly spaced rows of each held-out
run-to-failure life (plant, synthetic) or at the test engines' last cycles (C-MAPSS):

- `D_rmse`, `D_reference_rmse`: RMSE against the true RUL capped: for C-MAPSS at 125 cycles, the cap of the
  published protocol (a scoring rule of that benchmark, not used by the method); elsewhere at the cap the
  method derived from the training lives (`D_rul_cap`). `D_rmse_uncapped`, `D_reference_rmse_uncapped`:
  against the true RUL.
- `D_coverage`: share of true (uncapped) RULs inside the 10-90 % interval.
- `D_brier` of P(failure within the horizon) against `D_base_rate_brier` (always predicting the scored
  set's own failure rate), and `D_reliability`: per bin of p_fail, the rows, mean p_fail and failure rate.
- `D_fit_s`, `D_reference_fit_s`, `D_predict_s_per_1000_assets` (one `predict` call at the last row of
  1,000 assets: the test assets in turn, renamed), `D_model_bytes` (the saved model directory).

With `--quick` the plant is left out (the simulator export is the slow part).
"""

from __future__ import annotations

import itertools
import logging
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloud_service.forecasting import (
    AssetSeries,
    Event,
    EventKind,
    ForecastConfig,
    Forecaster,
    History,
    fit,
    predict,
    save_model,
)
from cloud_service.forecasting.csvio import read_events, read_telemetry
from cloud_service.forecasting.data import Life, split_lives
from cloud_service.forecasting.metrics import brier, coverage, rmse
from cloud_service.forecasting.reference import fit_reference, predict_reference
from cloud_service.forecasting.synthetic import make_fleet

__all__ = ["CMAPSS_COLUMNS", "cmapss_dir", "read_cmapss", "run"]

logger = logging.getLogger(__name__)

HOLD_OUT_EVERY = 3
POINTS_PER_LIFE = 10
PLANT_CONDITIONS = ("load", "speed_rpm", "running")
CMAPSS_CONDITIONS = ("op1", "op2", "op3")
CMAPSS_COLUMNS = (*CMAPSS_CONDITIONS, *(f"s{i}" for i in range(1, 22)))
CMAPSS_PROTOCOL_CAP = 125.0  # the published protocol's scoring cap (README of the data); never a method input
RELIABILITY_BINS = 5
PREDICT_ASSETS = 1000


def cmapss_dir() -> Path:
    """Where the C-MAPSS FD001 files are looked for (the first existing candidate, else the nearest)."""
    configured = os.environ.get("FOREWARN_CMAPSS_FD001")
    if configured:
        return Path(configured)
    candidates = [
        parent / "shared" / "data" / "cmapss-fd001" for parent in Path(__file__).resolve().parents[3:]
    ]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def read_cmapss(path: Path, *, failed: bool) -> History:
    """One C-MAPSS file as a history (engine ids `e001`..., time = cycle); with `failed`, a failure
    event at each engine's last cycle (the training files run to failure)."""
    data = np.loadtxt(path, ndmin=2)
    ids = [f"e{int(unit):03d}" for unit in data[:, 0]]
    events = []
    if failed:
        for unit in np.unique(data[:, 0]):
            last = float(data[data[:, 0] == unit, 1].max())
            events.append(Event(f"e{int(unit):03d}", last, EventKind.FAILURE))
    history = History.from_arrays(ids, data[:, 1], data[:, 2:], columns=CMAPSS_COLUMNS, events=events)
    return History(history.columns, history.assets, history.events, history.time_kind, path.name)


def _plant(out_dir: Path) -> History:
    from simulators import export_scenario, load_scenario  # noqa: PLC0415  # heavy; only for this data set

    export_scenario(load_scenario("plant"), out_dir)
    telemetry = read_telemetry(out_dir / "features.csv")
    events = read_events(out_dir / "events.csv", time_kind=telemetry.time_kind)
    return History(telemetry.columns, telemetry.assets, tuple(events), telemetry.time_kind, "plant")


def _subset(history: History, asset_ids: set[str]) -> History:
    return History(
        history.columns,
        tuple(asset for asset in history.assets if asset.asset_id in asset_ids),
        tuple(event for event in history.events if event.asset_id in asset_ids),
        history.time_kind,
        history.source,
    )


def _hold_out(history: History) -> list[_Split]:
    """Three splits: every third asset (in id order) held out, each third in turn."""
    ids = sorted(asset.asset_id for asset in history.assets)
    splits = []
    for first in range(HOLD_OUT_EVERY):
        test_ids = set(ids[first::HOLD_OUT_EVERY])
        splits.append(_Split(_subset(history, set(ids) - test_ids), _subset(history, test_ids)))
    return splits


def _thousand_assets(test: History) -> History:
    """1,000 assets made of the test assets in turn (renamed), to time a fleet-sized prediction."""
    assets = tuple(
        AssetSeries(f"{asset.asset_id}-{n}", asset.time, asset.values)
        for n, asset in zip(range(PREDICT_ASSETS), itertools.cycle(test.assets), strict=False)
    )
    return History(test.columns, assets, (), test.time_kind, test.source)


def _points(life: Life) -> list[int]:
    n = len(life)
    return sorted(
        {life.start + min(n - 1, int((k + 0.5) / POINTS_PER_LIFE * n)) for k in range(POINTS_PER_LIFE)}
    )


def _reliability(p_fail: np.ndarray, outcome: np.ndarray) -> list[dict[str, float | int]]:
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    bins = np.clip(np.searchsorted(edges, p_fail, side="right") - 1, 0, RELIABILITY_BINS - 1)
    table = []
    for number in range(RELIABILITY_BINS):
        mask = bins == number
        if mask.any():
            table.append(
                {
                    "p_from": round(float(edges[number]), 2),
                    "p_to": round(float(edges[number + 1]), 2),
                    "rows": int(mask.sum()),
                    "mean_p_fail": round(float(p_fail[mask].mean()), 4),
                    "failure_rate": round(float(outcome[mask].mean()), 4),
                }
            )
    return table


@dataclass
class _Split:
    """One train/test split and what to score on the test part."""

    train: History
    test: History
    truth_rows: list[tuple[str, int, float]] | None = None  # None: ten points of each failed life


@dataclass
class _Scored:
    true: list[float] = field(default_factory=list)
    rul: list[float] = field(default_factory=list)
    reference_rul: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    p_fail: list[float] = field(default_factory=list)
    fit_s: list[float] = field(default_factory=list)
    reference_fit_s: list[float] = field(default_factory=list)
    predict_s_per_asset: list[float] = field(default_factory=list)
    test_lives: int = 0


def _run_split(split: _Split, config: ForecastConfig, scored: _Scored) -> Forecaster:
    """Fit both learners on the split's training part and collect their forecasts at the scored rows."""
    train, test = split.train, split.test
    started = time.perf_counter()
    model = fit(train, config)
    scored.fit_s.append(time.perf_counter() - started)
    started = time.perf_counter()
    reference = fit_reference(train, config)
    scored.reference_fit_s.append(time.perf_counter() - started)
    fleet = _thousand_assets(test)
    started = time.perf_counter()
    predict(model, fleet)
    scored.predict_s_per_asset.append((time.perf_counter() - started) / len(fleet.assets))
    truth_rows = split.truth_rows
    if truth_rows is None:
        failed = [life for life in split_lives(test) if life.failed]
        scored.test_lives += len(failed)
        truth_rows = [
            (life.asset_id, row, life.end_time - float(test.assets[life.asset_index].time[row]))
            for life in failed
            for row in _points(life)
        ]
    else:
        scored.test_lives += len(truth_rows)
    every = predict(model, test, all_times=True)
    _, reference_rul = predict_reference(reference, test, all_times=True)
    starts = np.cumsum([0] + [len(asset) for asset in test.assets])
    offsets = {asset.asset_id: int(start) for asset, start in zip(test.assets, starts, strict=False)}
    for asset_id, row, true in truth_rows:
        forecast = every[offsets[asset_id] + row]
        scored.true.append(true)
        scored.rul.append(forecast.rul)
        scored.reference_rul.append(float(reference_rul[offsets[asset_id] + row]))
        scored.low.append(forecast.rul_low)
        scored.high.append(forecast.rul_high)
        scored.p_fail.append(forecast.p_fail)
    return model


def _score(
    name: str,
    splits: list[_Split],
    *,
    config: ForecastConfig,
    truth_cap: float | None,
    workdir: Path,
) -> dict[str, Any]:
    """Fit both learners on each split and score the pooled held-out forecasts.

    Args:
        name: the data set's key prefix.
        splits: the train/test splits (scores are pooled over them).
        config: the forecaster's (and the reference's) configuration.
        truth_cap: the cap of the capped truth (None: each split's own data-derived cap).
        workdir: where the first split's model is saved (for its size).
    """
    scored = _Scored()
    caps, regimes = [], []
    for number, split in enumerate(splits):
        before = len(scored.true)
        model = _run_split(split, config, scored)
        caps.extend([truth_cap if truth_cap is not None else model.rul_cap] * (len(scored.true) - before))
        regimes.append(model.normalizer.n_regimes_)
        if number == 0:
            save_model(model, workdir / name)
            model_bytes = sum(path.stat().st_size for path in (workdir / name).iterdir())
            rul_cap = model.rul_cap
    true = np.asarray(scored.true)
    capped = np.minimum(true, np.asarray(caps))
    rul, reference_rul, p_fail = (np.asarray(v) for v in (scored.rul, scored.reference_rul, scored.p_fail))
    outcome = (true <= config.horizon).astype(np.float64)
    rate = float(outcome.mean())
    return {
        f"{name}_splits": len(splits),
        f"{name}_train_assets": len(splits[0].train.assets),
        f"{name}_test_lives": scored.test_lives,
        f"{name}_test_points": int(true.size),
        f"{name}_regimes": regimes,
        f"{name}_rul_cap": rul_cap,
        f"{name}_truth_cap": truth_cap if truth_cap is not None else "each split's own rul_cap",
        f"{name}_horizon": config.horizon,
        f"{name}_rmse": round(rmse(rul, capped), 3),
        f"{name}_reference_rmse": round(rmse(reference_rul, capped), 3),
        f"{name}_rmse_uncapped": round(rmse(rul, true), 3),
        f"{name}_reference_rmse_uncapped": round(rmse(reference_rul, true), 3),
        f"{name}_coverage": round(coverage(scored.low, scored.high, true), 3),
        f"{name}_brier": round(brier(p_fail, outcome), 5),
        f"{name}_base_rate_brier": round(rate * (1.0 - rate), 5),
        f"{name}_reliability": _reliability(p_fail, outcome),
        f"{name}_fit_s": round(float(np.mean(scored.fit_s)), 2),
        f"{name}_reference_fit_s": round(float(np.mean(scored.reference_fit_s)), 2),
        f"{name}_predict_s_per_1000_assets": round(float(np.mean(scored.predict_s_per_asset)) * 1000, 3),
        f"{name}_model_bytes": model_bytes,
    }


def _cmapss(workdir: Path) -> dict[str, Any]:
    folder = cmapss_dir()
    files = [folder / name for name in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt")]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        return {"cmapss_fd001_skipped": f"{folder}: {', '.join(missing)} not found"}
    train = read_cmapss(files[0], failed=True)
    test = read_cmapss(files[1], failed=False)
    true = np.loadtxt(files[2], ndmin=1)
    truth_rows = [
        (asset.asset_id, len(asset) - 1, float(rul)) for asset, rul in zip(test.assets, true, strict=True)
    ]
    config = ForecastConfig(condition_columns=CMAPSS_CONDITIONS, horizon=30.0)
    split = _Split(train, test, truth_rows)
    return _score("cmapss_fd001", [split], config=config, truth_cap=CMAPSS_PROTOCOL_CAP, workdir=workdir)


def run(*, quick: bool = False) -> dict[str, Any]:
    """Fit the forecaster and the reference on each data set; score both on held-out data."""
    result: dict[str, Any] = {"note": "2-core machine shared with other work: timings are noisy"}
    with tempfile.TemporaryDirectory(prefix="forewarn-bench-forecast-") as tmp:
        workdir = Path(tmp)
        if not quick:
            splits = _hold_out(_plant(workdir / "plant-export"))
            config = ForecastConfig(condition_columns=PLANT_CONDITIONS, horizon=168.0)
            result |= _score("plant", splits, config=config, truth_cap=None, workdir=workdir)
        fleet = make_fleet(90, mean_life=150.0, censored_fraction=0.1, maintained_fraction=0.2, seed=11)
        config = ForecastConfig(condition_columns=fleet.condition_columns, horizon=20.0)
        result |= _score(
            "synthetic", _hold_out(fleet.history), config=config, truth_cap=None, workdir=workdir
        )
        result |= _cmapss(workdir)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result
