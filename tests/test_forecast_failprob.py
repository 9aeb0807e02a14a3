"""P(failure within the horizon): labels with censoring, calibration against the fleet's base rate, skill."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_service.forecasting import Event, EventKind, ForecastConfig, History, fit, predict
from cloud_service.forecasting.data import split_lives
from cloud_service.forecasting.failprob import horizon_labels, platt
from cloud_service.forecasting.synthetic import make_fleet


def _labels(history: History, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    asset = np.repeat(np.arange(len(history.assets)), [len(a) for a in history.assets])
    time = np.concatenate([a.time for a in history.assets])
    return horizon_labels(asset, time, split_lives(history), horizon)


def test_labels_leave_out_a_censored_assets_last_horizon_and_count_failures_after_maintenance() -> None:
    hours = np.arange(0.0, 20.0)
    history = History.from_arrays(
        ["running"] * 20 + ["repaired"] * 20 + ["run-to-failure"] * 10,
        np.concatenate([hours, hours, hours[:10]]),
        np.zeros((50, 1)),
        columns=["s"],
        events=[
            Event("repaired", 5.0, EventKind.FAILURE),
            Event("repaired", 12.0, EventKind.MAINTENANCE),
            Event("repaired", 14.0, EventKind.FAILURE),
            Event("run-to-failure", 9.0, EventKind.FAILURE),
        ],
    )
    known, positive = _labels(history, horizon=3.0)
    running, repaired, to_failure = slice(0, 20), slice(20, 40), slice(40, 50)
    # Never failed, watched to hour 19: hours 0-16 are known survivals, 17-19 unknown (not negatives).
    assert known[running].tolist() == [True] * 17 + [False] * 3
    assert not positive[running].any()
    # Failures at 5 and 14 (a maintenance at 12 in between is not one): hours 2-5 and 11-14 are positive,
    # across the maintenance; after 14 it runs failure-free to 19, so 15 and 16 are known survivals.
    assert np.flatnonzero(positive[repaired]).tolist() == [2, 3, 4, 5, 11, 12, 13, 14]
    assert known[repaired].tolist() == [True] * 17 + [False] * 3
    # Data that ends at a failure was watched to it: every row is known.
    assert known[to_failure].all()
    assert np.flatnonzero(positive[to_failure]).tolist() == [6, 7, 8, 9]


def test_platt_without_information_is_the_base_rate() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.04).astype(np.float64)
    a, b = platt(rng.normal(size=5000), y)  # a score unrelated to the outcome
    assert abs(b) < 0.1
    assert 1 / (1 + np.exp(-a)) == pytest.approx(y.mean(), rel=0.1)
    a, b = platt(np.full(100, 2.0), np.array([1.0] * 10 + [0.0] * 90))  # a constant score
    assert (round(1 / (1 + np.exp(-a)), 6), b) == (0.1, 0.0)


def _random_failures(n_assets: int, hours: int, hazard: float, seed: int) -> History:
    """A fleet whose sensors say nothing: noise only, failures at random (a constant hazard per hour)."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    times: list[np.ndarray] = []
    events: list[Event] = []
    for number in range(n_assets):
        asset_id = f"a{number:03d}"
        ids.extend([asset_id] * hours)
        times.append(np.arange(hours, dtype=np.float64))
        failures = np.flatnonzero(rng.random(hours) < hazard)
        events.extend(Event(asset_id, float(t) + 0.5, EventKind.FAILURE) for t in failures)
    values = rng.normal(size=(n_assets * hours, 3))
    return History.from_arrays(ids, np.concatenate(times), values, columns=["s0", "s1", "s2"], events=events)


@pytest.mark.slow
def test_without_degradation_evidence_every_asset_gets_about_the_fleets_base_rate() -> None:
    # About 3 % per horizon, as the live demo's plant per week: some 20 failures in 40 assets x 400 hours,
    # none announced by the sensors.
    horizon = 24.0
    history = _random_failures(40, 400, hazard=0.03 / horizon, seed=1)
    known, positive = _labels(history, horizon)
    observed = float(positive[known].mean())
    model = fit(history, ForecastConfig(horizon=horizon))
    report = model.summary["p_fail"]
    assert model.failure.base_rate == pytest.approx(observed)
    assert report["rows_unknown"] == 40 * 24  # each asset's last horizon: its outcome is not known yet
    p_fail = np.array([row.p_fail for row in predict(model, history)])
    # Calibrated to the base rate, not to the mass of a run-to-failure life near its end.
    assert p_fail.max() < 3 * observed
    assert p_fail.mean() == pytest.approx(observed, rel=0.5)
    fresh = _random_failures(40, 400, hazard=0.03 / horizon, seed=2)
    every = np.array([row.p_fail for row in predict(model, fresh, all_times=True)])
    known, positive = _labels(fresh, horizon)
    rate = float(positive[known].mean())
    brier = float(np.mean((every[known] - positive[known]) ** 2))
    assert brier <= rate * (1 - rate) * 1.05  # no worse than the base rate where there is nothing to learn


@pytest.mark.slow
def test_with_degradation_p_fail_is_calibrated_over_censored_and_failed_assets_alike() -> None:
    config = ForecastConfig(condition_columns=("c0", "c1"), horizon=15.0)
    train = make_fleet(60, mean_life=100.0, censored_fraction=0.5, maintained_fraction=0.2, seed=31)
    test = make_fleet(60, mean_life=100.0, censored_fraction=0.5, maintained_fraction=0.2, seed=32)
    model = fit(train.history, config)
    report = model.summary["p_fail"]
    assert not report["shrunk_to_base_rate"]
    assert report["cv_brier"] < 0.6 * report["cv_base_rate_brier"]
    every = np.array([row.p_fail for row in predict(model, test.history, all_times=True)])
    known, positive = _labels(test.history, config.horizon)
    p, y = every[known], positive[known].astype(np.float64)
    rate = float(y.mean())
    assert float(np.mean((p - y) ** 2)) < 0.6 * rate * (1 - rate)
    assert p.mean() == pytest.approx(rate, rel=0.25)  # calibrated in the large: as many failures as forecast
    low = p < 0.5 * rate
    assert low.any()
    assert y[low].mean() < rate  # the assets it calls safe fail less than the fleet
