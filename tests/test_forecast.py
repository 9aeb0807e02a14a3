"""The failure forecaster: metrics on hand-computed cases, regime normalisation, lives, the in-memory API."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cloud_service.forecasting import (
    FORMAT_VERSION,
    Event,
    EventKind,
    ForecastConfig,
    ForecastDataError,
    History,
    ModelFormatError,
    fit,
    predict,
)
from cloud_service.forecasting.conformal import calibrate, corrected_level
from cloud_service.forecasting.csvio import parse_time, read_telemetry
from cloud_service.forecasting.data import TimeKind, split_lives
from cloud_service.forecasting.features import FeatureSpec, feature_matrix, feature_names
from cloud_service.forecasting.metrics import (
    brier,
    coverage,
    evaluate_predictions,
    mae,
    prognostic_score,
    rmse,
)
from cloud_service.forecasting.reference import fit_reference, predict_reference
from cloud_service.forecasting.regimes import RegimeNormalizer
from cloud_service.forecasting.store import load_model, save_model
from cloud_service.forecasting.synthetic import make_fleet
from cloud_service.forecasting.target import choose_cap
from forewarn.bench.forecast import cmapss_dir, read_cmapss

# --- metrics, on hand-computed examples -------------------------------------------------------------------


def test_prognostic_score_penalises_late_more_than_early() -> None:
    assert prognostic_score([110.0], [100.0]) == pytest.approx(math.e - 1)  # 10 late: exp(10/10) - 1
    assert prognostic_score([87.0], [100.0]) == pytest.approx(math.e - 1)  # 13 early: exp(13/13) - 1
    assert prognostic_score([100.0, 110.0, 87.0], [100.0, 100.0, 100.0]) == pytest.approx(2 * (math.e - 1))
    assert prognostic_score([90.0], [100.0]) < prognostic_score([110.0], [100.0])


def test_rmse_mae_coverage_brier_on_hand_computed_cases() -> None:
    assert rmse([3.0, -4.0], [0.0, 0.0]) == pytest.approx(math.sqrt(12.5))
    assert mae([3.0, -4.0], [0.0, 0.0]) == pytest.approx(3.5)
    assert coverage([0.0, 5.0, 1.0], [10.0, 6.0, 2.0], [10.0, 7.0, 1.5]) == pytest.approx(2 / 3)
    assert brier([0.8, 0.1], [1, 0]) == pytest.approx((0.04 + 0.01) / 2)


def test_evaluate_uses_each_assets_last_forecast_and_lead_time() -> None:
    from cloud_service.forecasting.data import PredictionRow  # noqa: PLC0415

    def row(asset: str, t: float, rul: float, p: float) -> PredictionRow:
        return PredictionRow(asset, str(t), t, rul, rul - 5, rul + 5, p, 10.0, False)

    rows = [row("a", 1, 50, 0.1), row("a", 2, 8, 0.7), row("a", 3, 7, 0.9), row("b", 5, 30, 0.2)]
    figures = evaluate_predictions(rows, {"a": 7.0, "b": 20.0})
    assert figures["n_assets"] == 2
    assert figures["rmse"] == pytest.approx(math.sqrt((0 + 100) / 2), rel=1e-4)
    assert figures["coverage"] == pytest.approx(0.5)
    assert figures["brier"] == pytest.approx((0.01 + 0.04) / 2, rel=1e-4)  # a fails within 10, b does not
    assert figures["brier_base_rate"] == pytest.approx(0.25)
    # a: alarm (p >= 0.5) since t=2, fails at 3 + 7 = 10, so the warning came 8 time units ahead.
    assert figures["lead_time_mean"] == pytest.approx(8.0)
    assert figures["warned_fraction"] == pytest.approx(1.0)


# --- regimes, features, lives ----------------------------------------------------------------------------


def test_regime_normalisation_removes_a_condition_driven_offset() -> None:
    rng = np.random.default_rng(3)
    regime = rng.integers(0, 3, size=3000)
    conditions = np.stack([regime * 10.0, 100.0 - regime * 20.0], axis=1) + rng.normal(0, 0.1, (3000, 2))
    offset = np.array([0.0, 50.0, -30.0])[regime]
    sensors = np.stack([offset + rng.normal(0, 1, 3000), 2 * offset + rng.normal(0, 2, 3000)], axis=1)
    normalizer = RegimeNormalizer(seed=0).fit(conditions, sensors)
    z = normalizer.transform(conditions, sensors)
    assert normalizer.n_regimes_ == 3
    for r in range(3):
        assert np.abs(z[regime == r].mean(axis=0)).max() < 0.1
    assert z.std(axis=0) == pytest.approx(
        [1.0, 1.0], abs=0.05
    )  # without regimes it would be ~35 and ~70 / std


def test_constant_conditions_mean_one_regime() -> None:
    sensors = np.random.default_rng(0).normal(5.0, 2.0, size=(500, 1))
    normalizer = RegimeNormalizer().fit(np.ones((500, 2)), sensors)
    assert normalizer.n_regimes_ == 1
    assert normalizer.transform(np.ones((500, 2)), sensors).mean() == pytest.approx(0.0, abs=1e-9)


def test_a_sensor_constant_in_training_reads_zero_later() -> None:
    sensors = np.column_stack([np.full(200, 100.0), np.random.default_rng(1).normal(size=200)])
    normalizer = RegimeNormalizer().fit(np.zeros((200, 0)), sensors)
    z = normalizer.transform(np.zeros((2, 0)), np.array([[100.01, 0.0], [100.0, 1e12]]))
    assert z[0, 0] == 0.0
    assert z[1, 1] == 100.0  # clipped: one broken reading cannot dominate the pooled drift


def test_iso_telemetry_is_read_in_hours_and_labels_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "time,machine,s\n2026-01-01T00:00:00Z,m1,1\n2026-01-01T00:30:00Z,m1,\n2026-01-01T02:00:00Z,m1,3\n"
    )
    history = read_telemetry(path, id_column="machine")
    asset = history.assets[0]
    assert history.time_kind is TimeKind.ISO
    assert (asset.time - asset.time[0]).tolist() == [0.0, 0.5, 2.0]
    assert np.isnan(asset.values[1, 0])  # an empty cell is a missing value
    assert asset.label(2) == "2026-01-01T02:00:00Z"


def test_window_features_are_causal_and_restart_with_each_life() -> None:
    z = np.arange(8, dtype=np.float64)[:, None]
    life_start = np.array([0, 0, 0, 0, 4, 4, 4, 4])
    age = np.array([0, 1, 2, 3, 0, 1, 2, 3], dtype=np.float64)
    spec = FeatureSpec(short_rows=2, long_rows=3, baseline_rows=2)
    x = feature_matrix(z, life_start=life_start, age=age, spec=spec, reference=False)
    column = {name: x[:, i] for i, name in enumerate(feature_names(["s"], reference=False))}
    assert column["s:mean_short"][3] == pytest.approx(2.5)  # rows 2..3
    assert column["s:mean_long"][3] == pytest.approx(2.0)  # rows 1..3
    assert column["s:mean_long"][4] == pytest.approx(4.0)  # a new life: only row 4
    assert column["s:drift"][3] == pytest.approx(2.0 - 0.5)  # long mean minus baseline rows 0..1
    assert column["s:drift"][4] == pytest.approx(0.0)
    assert column["age"].tolist() == age.tolist()
    reference = feature_matrix(z, life_start=life_start, age=age, spec=spec, reference=True)
    assert reference.shape[1] == len(feature_names(["s"], reference=True)) == 3
    assert reference[:, 0].tolist() == z[:, 0].tolist()  # the current value


def test_feature_windows_scale_with_the_typical_life() -> None:
    short = FeatureSpec.for_life_rows(200)
    long = FeatureSpec.for_life_rows(2000)
    assert (short.short_rows, short.long_rows, short.baseline_rows) == (10, 30, 20)
    assert (long.short_rows, long.long_rows, long.baseline_rows) == (100, 300, 200)
    tiny = FeatureSpec.for_life_rows(10)  # floors keep the windows ordered and useful
    assert tiny.short_rows < tiny.long_rows


def test_lives_are_cut_at_maintenance_and_failure() -> None:
    history = History.from_arrays(
        ["a"] * 6,
        [1, 2, 3, 4, 5, 6],
        np.zeros((6, 1)),
        columns=["s"],
        events=[Event("a", 2.5, EventKind.MAINTENANCE), Event("a", 5.0, EventKind.FAILURE)],
    )
    lives = split_lives(history)
    assert [(life.start, life.stop, life.failed) for life in lives] == [
        (0, 2, False),
        (2, 5, True),
        (5, 6, False),
    ]
    assert lives[1].start_time == 2.5
    assert lives[1].end_time == 5.0


def test_iso_time_is_hours_since_the_epoch_and_naive_means_utc() -> None:
    one, kind = parse_time("2026-01-01T01:00:00Z", None) or (0.0, TimeKind.NUMERIC)
    zero, _ = parse_time("2026-01-01T00:00:00", None) or (0.0, TimeKind.NUMERIC)
    assert kind is TimeKind.ISO
    assert one - zero == pytest.approx(1.0)
    assert parse_time("12.5", None) == (12.5, TimeKind.NUMERIC)
    assert parse_time("2026-01-01", TimeKind.NUMERIC) is None


# --- the in-memory API a scheduled job uses ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model() -> tuple[object, History]:
    fleet = make_fleet(16, mean_life=80.0, censored_fraction=0.2, maintained_fraction=0.2, seed=5)
    model = fit(fleet.history, ForecastConfig(condition_columns=fleet.condition_columns, horizon=15.0))
    return model, fleet.history


def test_fit_and_predict_on_in_memory_history(small_model: tuple[object, History]) -> None:
    model, history = small_model
    forecasts = predict(model, history)  # type: ignore[arg-type]
    assert len(forecasts) == len(history.assets)
    for item in forecasts:
        assert 0.0 <= item.rul_low <= item.rul <= item.rul_high
        assert 0.0 <= item.p_fail <= 1.0
    every = predict(model, history, all_times=True)  # type: ignore[arg-type]
    assert len(every) == history.n_rows
    # The last-time path reads only the current life's head and tail: it must agree with the full path.
    last_of_every = {item.asset_id: item for item in every}
    assert max(len(asset) for asset in history.assets) > 100
    for item in forecasts:
        assert item.rul == pytest.approx(last_of_every[item.asset_id].rul, rel=1e-5, abs=1e-6)
        assert item.p_fail == pytest.approx(last_of_every[item.asset_id].p_fail, rel=1e-5, abs=1e-6)
        assert item.time_label == last_of_every[item.asset_id].time_label


def test_model_directory_round_trip_and_version_check(
    small_model: tuple[object, History], tmp_path: Path
) -> None:
    model, history = small_model
    metadata = save_model(model, tmp_path / "m")  # type: ignore[arg-type]
    loaded = load_model(tmp_path / "m")
    assert [f.rul for f in predict(loaded, history)] == [f.rul for f in predict(model, history)]  # type: ignore[arg-type]
    assert [f.p_fail for f in predict(loaded, history)] == [f.p_fail for f in predict(model, history)]  # type: ignore[arg-type]
    assert f'"format_version": {FORMAT_VERSION}' in metadata.read_text()
    metadata.write_text(
        metadata.read_text().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 1')
    )
    old_format = f"format version 1; this Forewarn reads version {FORMAT_VERSION}"
    with pytest.raises(ModelFormatError, match=old_format):
        load_model(tmp_path / "m")  # a model of an old format
    metadata.write_text(metadata.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ModelFormatError, match="format version 99"):
        load_model(tmp_path / "m")


def test_too_few_failures_is_a_clear_error() -> None:
    fleet = make_fleet(5, mean_life=40.0, censored_fraction=1.0, seed=1)
    with pytest.raises(ForecastDataError, match="run-to-failure"):
        fit(fleet.history)


# --- regimes, cap, conformal intervals: the method's choices ------------------------------------------------


@pytest.mark.parametrize("n_regimes", [1, 3, 6])
def test_the_number_of_regimes_is_found_from_the_conditions(n_regimes: int) -> None:
    fleet = make_fleet(12, n_regimes=n_regimes, mean_life=60.0, seed=n_regimes, machine_seed=n_regimes)
    history = fleet.history
    raw = np.concatenate([asset.values for asset in history.assets])
    conditions = raw[:, history.column_index(fleet.condition_columns)]
    normalizer = RegimeNormalizer(seed=0).fit(conditions, raw[:, :6])
    assert normalizer.n_regimes_ == n_regimes
    assert "BIC" in normalizer.criterion
    assert normalizer.describe(fleet.condition_columns)["n_regimes"] == n_regimes


def test_a_forced_regime_count_is_used() -> None:
    fleet = make_fleet(12, n_regimes=3, mean_life=60.0, seed=2)
    model = fit(fleet.history, ForecastConfig(condition_columns=fleet.condition_columns, n_regimes=2))
    assert model.normalizer.n_regimes_ == 2
    assert model.summary["regime_criterion"] == "forced by the user"


def test_the_cap_comes_from_the_training_lives_and_bounds_every_forecast() -> None:
    cap, reason = choose_cap([10.0, 100.0, 120.0, 150.0])  # 10 is under half the median (110)
    assert cap == 100.0
    assert "1 shorter early failures left out" in reason
    fleet = make_fleet(24, mean_life=80.0, censored_fraction=0.2, seed=7)
    model = fit(fleet.history, ForecastConfig(condition_columns=fleet.condition_columns, horizon=15.0))
    lengths = [life.end_time - life.start_time for life in split_lives(fleet.history) if life.failed]
    assert model.rul_cap == choose_cap(lengths)[0]
    assert "run-to-failure lives" in model.summary["rul_cap_reason"]
    every = predict(model, fleet.history, all_times=True)
    assert max(item.rul for item in every) <= model.rul_cap
    assert max(item.rul_high for item in every) <= model.max_life


def test_conformal_bounds_carry_one_finite_sample_correction_over_lives() -> None:
    # 9 lives, residuals 1..9, life 0 with 50 rows (each life weighs 1, not each row). Shape: the
    # life-weighted 10 % and 90 % residuals, 1 and 9. Scores max(1 - r, r - 9) <= 0; corrected level
    # 0.8 x 10 / 9 = 0.889: the 8th of the 9 lives' scores, 0, so the interval is the shape itself.
    life = np.concatenate([np.zeros(50, dtype=np.int64), np.arange(1, 9)])
    residual = np.concatenate([np.full(50, 1.0), np.arange(2, 10, dtype=np.float64)])
    prediction = np.full(life.size, 50.0)
    bins = calibrate(prediction, prediction + residual, life, (0.1, 0.9))
    assert bins.lives == (9,)
    assert (bins.low, bins.high) == ((1.0,), (9.0,))
    # P(fail within h) is the predictive distribution's mass at or below h: RUL 50 + residual <= 54.
    assert bins.p_fail(np.array([50.0]), 54.0)[0] == pytest.approx(4 / 9, abs=0.02)
    # With 3 lives the corrected level is 1: the interval spans the smallest to the largest residual.
    assert corrected_level(0.8, 3) == 1.0
    bins = calibrate(np.full(3, 10.0), np.array([11.0, 15.0, 40.0]), np.arange(3), (0.1, 0.9))
    assert (bins.low, bins.high) == ((1.0,), (30.0,))


def test_conformal_bounds_approach_the_residual_quantiles_with_many_lives() -> None:
    residual = np.random.default_rng(3).normal(0.0, 10.0, size=4000)
    prediction = np.full(residual.size, 50.0)
    bins = calibrate(prediction, prediction + residual, np.arange(residual.size), (0.1, 0.9))
    assert bins.low[0] == pytest.approx(-12.8, abs=1.0)  # the normal's 10 % quantile, -1.28 sd
    assert bins.high[0] == pytest.approx(12.8, abs=1.0)


def _held_out_coverage(config: ForecastConfig, pairs: int) -> float:
    """Mean coverage over failed lives of fresh fleets (known RUL), each fit on its own training fleet."""
    per_pair = []
    for number in range(pairs):
        train = make_fleet(90, mean_life=100.0, seed=21 + 10 * number)
        test = make_fleet(200, mean_life=100.0, seed=22 + 10 * number)
        model = fit(train.history, replace(config, condition_columns=train.condition_columns))
        every = predict(model, test.history, all_times=True)
        inside, position = [], 0
        for life in split_lives(test.history):
            rows = every[position : position + len(life)]
            position += len(life)
            true = np.array([life.end_time - item.time for item in rows])  # every test life fails
            low, high = np.array([r.rul_low for r in rows]), np.array([r.rul_high for r in rows])
            inside.append(float(np.mean((true >= low) & (true <= high))))
        per_pair.append(float(np.mean(inside)))  # each life weighs 1, as calibration weighs it
    return float(np.mean(per_pair))


@pytest.mark.slow
def test_interval_coverage_of_held_out_lives_follows_the_requested_level() -> None:
    # Four training fleets of 90 lives: one calibration's coverage varies by about +-0.04 (n ~ 90 lives),
    # the mean of four by about +-0.02. The band is the target for the 10-90 % interval; the
    # 25-75 % interval must follow (0.5), which a too-wide interval would not.
    assert 0.75 <= _held_out_coverage(ForecastConfig(horizon=15.0), pairs=4) <= 0.85
    assert 0.4 <= _held_out_coverage(ForecastConfig(horizon=15.0, interval=(0.25, 0.75)), pairs=4) <= 0.6


def test_failure_probability_beats_the_base_rate_on_held_out_assets() -> None:
    train = make_fleet(60, mean_life=100.0, seed=21)
    test = make_fleet(30, mean_life=100.0, seed=22)
    config = ForecastConfig(condition_columns=train.condition_columns, horizon=15.0)
    model = fit(train.history, config)
    every = predict(model, test.history, all_times=True)
    squared, base = [], []
    position = 0
    for life in split_lives(test.history):
        rows = every[position : position + len(life)]
        position += len(life)
        true = np.array([life.end_time - item.time for item in rows])
        outcome = (true <= config.horizon).astype(np.float64)
        squared.append(np.mean((np.array([r.p_fail for r in rows]) - outcome) ** 2))
        base.append(outcome.mean())
    rate = float(np.mean(base))
    assert float(np.mean(squared)) < 0.5 * rate * (1 - rate)  # far better than the base rate


def test_importing_the_package_does_not_load_scikit_learn() -> None:
    code = (
        "import sys, cloud_service.forecasting, cloud_service.settings; "
        "print(sorted(m for m in sys.modules if m == 'sklearn' or m.startswith('sklearn.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- NASA C-MAPSS FD001, the published protocol (quick form of the bench case) -----------------------------


@pytest.mark.slow
def test_cmapss_fd001_beats_the_reference_under_the_published_protocol() -> None:
    folder = cmapss_dir()
    if not (folder / "train_FD001.txt").is_file():
        pytest.skip(f"C-MAPSS FD001 not found at {folder} (set FOREWARN_CMAPSS_FD001 to its folder)")
    train = read_cmapss(folder / "train_FD001.txt", failed=True)
    test = read_cmapss(folder / "test_FD001.txt", failed=False)
    true = np.loadtxt(folder / "RUL_FD001.txt")
    config = ForecastConfig(condition_columns=("op1", "op2", "op3"), horizon=30.0)
    model = fit(train, config)
    forecasts = predict(model, test)
    rul = np.array([item.rul for item in forecasts])
    _, reference_rul = predict_reference(fit_reference(train, config), test)
    capped = np.minimum(true, 125.0)  # the published protocol's scoring cap
    assert model.normalizer.n_regimes_ == 1
    assert rmse(rul, capped) <= 12.5
    assert rmse(rul, capped) < rmse(reference_rul, capped)
    assert 0.7 <= coverage([f.rul_low for f in forecasts], [f.rul_high for f in forecasts], true) <= 0.92
