"""Features checked against values computed by hand on known signals."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import ContractError
from shared.features import (
    DEFAULT_SPEC,
    SLOW_FEATURES,
    band_edges_hz,
    slow_features,
    vibration_feature_names,
    vibration_features,
)

RATE = 10_000.0
N = 1024
NAMES = vibration_feature_names(8)


def _col(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, NAMES.index(name)]


def _sine(amplitude: float, cycles: int, phase: float = 0.0) -> np.ndarray:
    t = np.arange(N) / N
    return amplitude * np.sin(2 * np.pi * cycles * t + phase)


def test_sine_rms_peak_crest_and_frequency() -> None:
    amplitude = 3.0
    cycles = 100  # exactly 100 cycles per window: 100 * RATE / N Hz, no leakage
    features = vibration_features(_sine(amplitude, cycles, phase=0.3)[None, :], RATE, 8)
    freq = cycles * RATE / N
    assert _col(features, "rms")[0] == pytest.approx(amplitude / np.sqrt(2), rel=1e-4)
    assert _col(features, "std")[0] == pytest.approx(amplitude / np.sqrt(2), rel=1e-4)
    assert _col(features, "peak")[0] == pytest.approx(amplitude, rel=1e-3)
    assert _col(features, "peak_to_peak")[0] == pytest.approx(2 * amplitude, rel=1e-3)
    assert _col(features, "crest_factor")[0] == pytest.approx(np.sqrt(2), rel=1e-3)
    assert _col(features, "kurtosis")[0] == pytest.approx(1.5, abs=1e-3)  # a sine's kurtosis
    assert _col(features, "skewness")[0] == pytest.approx(0.0, abs=1e-3)
    assert _col(features, "dominant_freq_hz")[0] == pytest.approx(freq)
    assert _col(features, "spectral_centroid_hz")[0] == pytest.approx(freq, rel=1e-4)


def test_sine_energy_lands_in_its_band() -> None:
    amplitude = 2.0
    cycles = 100
    freq = cycles * RATE / N
    edges = band_edges_hz(N, RATE, 8)
    band = int(np.searchsorted(edges, freq, side="right") - 1)
    features = vibration_features(_sine(amplitude, cycles)[None, :], RATE, 8)
    bands = features[0, NAMES.index("band_0") : NAMES.index("band_7") + 1]
    assert bands[band] == pytest.approx(amplitude**2 / 2, rel=1e-4)
    assert np.delete(bands, band).sum() == pytest.approx(0.0, abs=1e-5)


def test_band_powers_add_up_to_mean_square() -> None:
    rng = np.random.default_rng(1)
    windows = (rng.standard_normal((16, N)) + 0.5).astype(np.float32)
    features = vibration_features(windows, RATE, 8)
    bands = features[:, NAMES.index("band_0") : NAMES.index("band_7") + 1]
    np.testing.assert_allclose(bands.sum(axis=1), _col(features, "rms") ** 2, rtol=1e-4)


def test_white_noise_kurtosis_near_three() -> None:
    rng = np.random.default_rng(2)
    features = vibration_features(rng.standard_normal((200, N)), RATE, 8)
    assert float(np.mean(_col(features, "kurtosis"))) == pytest.approx(3.0, abs=0.05)
    assert float(np.mean(_col(features, "skewness"))) == pytest.approx(0.0, abs=0.02)


def test_impulses_raise_kurtosis_and_crest_factor() -> None:
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(N)
    impulsive = noise.copy()
    impulsive[::128] += 12.0  # a bearing defect's periodic impacts
    features = vibration_features(np.stack([noise, impulsive]), RATE, 8)
    assert _col(features, "kurtosis")[1] > 2 * _col(features, "kurtosis")[0]
    assert _col(features, "crest_factor")[1] > _col(features, "crest_factor")[0]


def test_constant_window_gives_finite_zeros() -> None:
    features = vibration_features(np.full((1, N), 4.0), RATE, 8)
    assert np.isfinite(features).all()
    assert _col(features, "rms")[0] == pytest.approx(4.0)
    assert _col(features, "kurtosis")[0] == 0.0
    assert _col(features, "dominant_freq_hz")[0] == 0.0


def test_vectorised_rows_equal_single_rows() -> None:
    rng = np.random.default_rng(4)
    windows = rng.standard_normal((8, N)).astype(np.float32)
    batch = vibration_features(windows, RATE, 8)
    for i in range(8):
        np.testing.assert_allclose(batch[i], vibration_features(windows[i : i + 1], RATE, 8)[0], rtol=1e-5)


def test_band_edges_are_log_spaced_to_nyquist() -> None:
    edges = band_edges_hz(N, RATE, 8)
    assert edges[0] == 0.0
    assert edges[-1] == pytest.approx(RATE / 2)
    ratios = edges[2:] / edges[1:-1]
    np.testing.assert_allclose(ratios, ratios[0])


def test_slow_features_mean_slope_min_max() -> None:
    rate = 2.0
    t = np.arange(20) / rate
    windows = np.stack([20.0 + 0.5 * t, np.full(20, 7.0)])
    features = slow_features(windows, rate)
    assert features[0].tolist() == pytest.approx([20.0 + 0.5 * t.mean(), 0.5, 20.0, 20.0 + 0.5 * t[-1]])
    assert features[1].tolist() == pytest.approx([7.0, 0.0, 7.0, 7.0])


@pytest.mark.parametrize(
    ("windows", "rate", "field"),
    [
        (np.zeros(10), RATE, "windows"),
        (np.zeros((2, 1)), RATE, "windows"),
        (np.zeros((2, 16)), 0.0, "sample_rate_hz"),
        (np.zeros((2, 16)), float("nan"), "sample_rate_hz"),
    ],
)
def test_bad_input_is_a_contract_error(windows: np.ndarray, rate: float, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        vibration_features(windows, rate, 8)
    assert caught.value.field == field


def test_default_spec_names_every_column_once() -> None:
    names = DEFAULT_SPEC.feature_names
    assert len(names) == len(set(names)) == len(NAMES) + 2 * len(SLOW_FEATURES)
    assert names[0] == "vibration.rms"
    assert "temperature.slope" in names
    assert DEFAULT_SPEC.spec_id == "vib-temp-current@1"
    sensor = DEFAULT_SPEC.sensors[1]
    columns = DEFAULT_SPEC.sensor_features(sensor, np.ones((3, 10)), 1.0)
    assert columns.shape == (3, len(SLOW_FEATURES))
