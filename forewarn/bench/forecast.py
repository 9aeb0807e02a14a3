"""`forewarn bench forecast`: the failure forecaster beside the plain reference learner, on three data sets.

Data sets (`D` in the keys):

- `plant`: the simulator's `plant` scenario exported to CSV (as a user would) and read back; every third
  asset (in id order) is held out with all its rows and events, the rest trains.
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
- `D_fit_s`, `D_reference_fit_s`, `D_predict_s_per_1000_assets` (forecast at each test asset's last row,
  scaled to 1,000 assets), `D_model_bytes` (the saved model directory).

With `--quick` the plant is left out (the simulator export is the slow part).
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cloud_service.forecasting import Event, EventKind, ForecastConfig, History, fit, predict, save_model
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


def _hold_out(history: History) -> tuple[History, History]:
    ids = sorted(asset.asset_id for asset in history.assets)
    test_ids = set(ids[HOLD_OUT_EVERY - 1 :: HOLD_OUT_EVERY])
    return _subset(history, set(ids) - test_ids), _subset(history, test_ids)


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


def _score(
    name: str,
    *,
    train: History,
    test: History,
    config: ForecastConfig,
    truth_rows: list[tuple[str, int, float]] | None,
    truth_cap: float | None,
    workdir: Path,
) -> dict[str, Any]:
    """Fit both learners on `train` and score them on `test`.

    `truth_rows` are (asset id, row, true RUL) to score at; None: ten points of each run-to-failure life.
    """
    started = time.perf_counter()
    model = fit(train, config)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    reference = fit_reference(train, config)
    reference_fit_s = time.perf_counter() - started
    started = time.perf_counter()
    predict(model, test)
    predict_s = time.perf_counter() - started
    if truth_rows is None:
        truth_rows = [
            (life.asset_id, row, life.end_time - float(test.assets[life.asset_index].time[row]))
            for life in split_lives(test)
            if life.failed
            for row in _points(life)
        ]
    every = predict(model, test, all_times=True)
    ref_ids, ref_rul = predict_reference(reference, test, all_times=True)
    offsets = {
        asset.asset_id: start
        for asset, start in zip(test.assets, np.cumsum([0] + [len(a) for a in test.assets])[:-1], strict=True)
    }
    index = [offsets[asset_id] + row for asset_id, row, _ in truth_rows]
    del ref_ids
    true = np.array([rul for _, _, rul in truth_rows])
    cap = truth_cap if truth_cap is not None else model.rul_cap
    capped = np.minimum(true, cap)
    picked = [every[i] for i in index]
    rul = np.array([item.rul for item in picked])
    p_fail = np.array([item.p_fail for item in picked])
    outcome = (true <= config.horizon).astype(np.float64)
    rate = float(outcome.mean())
    save_model(model, workdir / name)
    return {
        f"{name}_train_assets": len(train.assets),
        f"{name}_test_points": len(truth_rows),
        f"{name}_regimes": model.normalizer.n_regimes_,
        f"{name}_rul_cap": model.rul_cap,
        f"{name}_truth_cap": cap,
        f"{name}_horizon": config.horizon,
        f"{name}_rmse": round(rmse(rul, capped), 3),
        f"{name}_reference_rmse": round(rmse(ref_rul[index], capped), 3),
        f"{name}_rmse_uncapped": round(rmse(rul, true), 3),
        f"{name}_reference_rmse_uncapped": round(rmse(ref_rul[index], true), 3),
        f"{name}_coverage": round(
            coverage([i.rul_low for i in picked], [i.rul_high for i in picked], true), 3
        ),
        f"{name}_brier": round(brier(p_fail, outcome), 5),
        f"{name}_base_rate_brier": round(rate * (1.0 - rate), 5),
        f"{name}_reliability": _reliability(p_fail, outcome),
        f"{name}_fit_s": round(fit_s, 2),
        f"{name}_reference_fit_s": round(reference_fit_s, 2),
        f"{name}_predict_s_per_1000_assets": round(predict_s / len(test.assets) * 1000, 3),
        f"{name}_model_bytes": sum(p.stat().st_size for p in (workdir / name).iterdir()),
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
    return _score(
        "cmapss_fd001",
        train=train,
        test=test,
        config=config,
        truth_rows=truth_rows,
        truth_cap=CMAPSS_PROTOCOL_CAP,
        workdir=workdir,
    )


def run(*, quick: bool = False) -> dict[str, Any]:
    """Fit the forecaster and the reference on each data set; score both on held-out data."""
    result: dict[str, Any] = {"note": "2-core machine shared with other work: timings are noisy"}
    with tempfile.TemporaryDirectory(prefix="forewarn-bench-forecast-") as tmp:
        workdir = Path(tmp)
        if not quick:
            train, test = _hold_out(_plant(workdir / "plant-export"))
            config = ForecastConfig(condition_columns=PLANT_CONDITIONS, horizon=168.0)
            result |= _score(
                "plant",
                train=train,
                test=test,
                config=config,
                truth_rows=None,
                truth_cap=None,
                workdir=workdir,
            )
        fleet = make_fleet(90, mean_life=150.0, censored_fraction=0.1, maintained_fraction=0.2, seed=11)
        train, test = _hold_out(fleet.history)
        config = ForecastConfig(condition_columns=fleet.condition_columns, horizon=20.0)
        result |= _score(
            "synthetic",
            train=train,
            test=test,
            config=config,
            truth_rows=None,
            truth_cap=None,
            workdir=workdir,
        )
        result |= _cmapss(workdir)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result
