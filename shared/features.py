"""Feature extraction shared by the edge agent, the cloud and the simulators.

Functions take a batch of equal-length windows as a 2-D array (windows x samples) and return one row of
features per window, vectorised over the batch. A `FeatureSpec` names and versions the exact feature vector a
model expects; a model states its spec id (`name@version`) and feature names in its manifest.

Vibration features (per window of a fast signal, e.g. acceleration at kHz rates):
    rms, peak (max |x|), peak_to_peak, crest_factor (peak / rms), kurtosis (Pearson, 3 for a Gaussian),
    skewness, std, band_0 ... band_{n-1} (mean-square power per log-spaced frequency band; they add up to
    the mean square of the window, by Parseval), dominant_freq_hz and spectral_centroid_hz (DC excluded).
Slow features (per window of temperature, current, pressure, flow): mean, slope (units per second, least
squares), min, max.

Degenerate windows (constant signal) give 0 for crest factor, kurtosis, skewness, dominant frequency and
centroid, so that every feature is always finite.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from shared.errors import ContractError

__all__ = [
    "DEFAULT_SPEC",
    "SLOW_FEATURES",
    "FeatureSpec",
    "SensorKind",
    "SensorSpec",
    "band_edges_hz",
    "slow_features",
    "vibration_feature_names",
    "vibration_features",
]

Windows = npt.NDArray[np.float32]
FeatureMatrix = npt.NDArray[np.float32]

_TIME_FEATURES = ("rms", "peak", "peak_to_peak", "crest_factor", "kurtosis", "skewness", "std")
_SPECTRAL_FEATURES = ("dominant_freq_hz", "spectral_centroid_hz")
SLOW_FEATURES = ("mean", "slope", "min", "max")
_EPS = 1e-12


class SensorKind(enum.StrEnum):
    """How a sensor's windows are turned into features."""

    VIBRATION = "vibration"
    SLOW = "slow"


@functools.lru_cache(maxsize=64)
def vibration_feature_names(n_bands: int) -> tuple[str, ...]:
    """Names of the vibration features, in column order, for `n_bands` spectral bands."""
    bands = tuple(f"band_{i}" for i in range(n_bands))
    return _TIME_FEATURES + bands + _SPECTRAL_FEATURES


@functools.lru_cache(maxsize=64)
def band_edges_hz(window_len: int, sample_rate_hz: float, n_bands: int) -> npt.NDArray[np.float64]:
    """Edges of `n_bands` log-spaced bands from the first FFT bin to Nyquist (`n_bands + 1` values).

    The first band also holds the DC bin: machinery faults show as tones spread over decades of frequency,
    so equal ratios, not equal widths, keep shaft harmonics and bearing tones in separate bands.
    """
    if n_bands < 1:
        raise ContractError("n_bands", n_bands, ">= 1")
    first_bin_hz = sample_rate_hz / window_len
    nyquist_hz = sample_rate_hz / 2.0
    edges = np.geomspace(first_bin_hz, nyquist_hz, n_bands + 1)
    edges[0] = 0.0
    return edges


@dataclass(frozen=True, slots=True)
class _BandPlan:
    """How one-sided power bins add up into bands: bins are contiguous per band, so a `reduceat` does it."""

    weights: npt.NDArray[np.float32]  # Parseval weight of each bin, 1/N^2 scaled
    starts: npt.NDArray[np.intp]  # first bin of each band (clipped for empty bands)
    empty: npt.NDArray[np.bool_]  # bands with no bin (narrow low bands when there are many)


@functools.lru_cache(maxsize=64)
def _band_plan(window_len: int, sample_rate_hz: float, n_bands: int) -> _BandPlan:
    freqs = scipy.fft.rfftfreq(window_len, d=1.0 / sample_rate_hz)
    edges = band_edges_hz(window_len, sample_rate_hz, n_bands)
    band_of_bin = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, n_bands - 1)
    weights = np.full(len(freqs), 2.0)
    weights[0] = 1.0
    if window_len % 2 == 0:
        weights[-1] = 1.0
    starts = np.searchsorted(band_of_bin, np.arange(n_bands))
    empty = np.bincount(band_of_bin, minlength=n_bands) == 0
    return _BandPlan(
        weights=(weights / float(window_len) ** 2).astype(np.float32),
        starts=np.minimum(starts, len(freqs) - 1),
        empty=empty,
    )


def _band_powers(power: npt.NDArray[np.float32], plan: _BandPlan) -> npt.NDArray[np.float32]:
    bands = np.add.reduceat(power * plan.weights, plan.starts, axis=1)
    bands[:, plan.empty] = 0.0
    return bands


def _as_windows(windows: npt.ArrayLike, name: str) -> Windows:
    array = np.asarray(windows, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ContractError(name, array.shape, "a 2-D array of windows x samples with >= 2 samples")
    return array


def _check_rate(sample_rate_hz: float) -> None:
    if not (np.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise ContractError("sample_rate_hz", sample_rate_hz, "a finite rate > 0")


def _moments(windows: Windows) -> tuple[Windows, Windows, Windows, Windows]:
    """Mean, std, skewness and kurtosis per window, with 0 for the shape moments of a constant window."""
    mean = windows.mean(axis=1, keepdims=True)
    centred = windows - mean
    sq = centred * centred
    var = sq.mean(axis=1)
    m3 = (sq * centred).mean(axis=1)
    m4 = (sq * sq).mean(axis=1)
    flat = var <= _EPS * np.maximum(1.0, (mean[:, 0] * mean[:, 0]))
    safe_var = np.where(flat, 1.0, var)
    skew = np.where(flat, 0.0, m3 / safe_var**1.5)
    kurt = np.where(flat, 0.0, m4 / (safe_var * safe_var))
    return mean[:, 0], np.sqrt(var), skew.astype(np.float32), kurt.astype(np.float32)


def vibration_features(windows: npt.ArrayLike, sample_rate_hz: float, n_bands: int) -> FeatureMatrix:
    """Vibration features for each window, columns as `vibration_feature_names(n_bands)`.

    Args:
        windows: windows x samples, any real dtype (computed in float32).
        sample_rate_hz: the sample rate of every window.
        n_bands: how many log-spaced spectral bands.

    Returns:
        A float32 array of windows x features, all finite for finite input.

    >>> t = np.arange(1024) / 1024.0
    >>> f = vibration_features(np.sin(2 * np.pi * 64 * t)[None, :], 1024.0, 8)
    >>> round(float(f[0, 0]), 4), float(f[0, -2])  # rms of a unit sine, its frequency
    (0.7071, 64.0)
    """
    x = _as_windows(windows, "windows")
    _check_rate(sample_rate_hz)
    n, length = x.shape
    out = np.empty((n, len(vibration_feature_names(n_bands))), dtype=np.float32)
    _mean, std, skew, kurt = _moments(x)
    rms = np.sqrt(np.mean(x * x, axis=1))
    peak = np.max(np.abs(x), axis=1)
    out[:, 0] = rms
    out[:, 1] = peak
    out[:, 2] = x.max(axis=1) - x.min(axis=1)
    out[:, 3] = np.where(rms > _EPS, peak / np.maximum(rms, _EPS), 0.0)
    out[:, 4] = kurt
    out[:, 5] = skew
    out[:, 6] = std
    spectrum = scipy.fft.rfft(x, axis=1, workers=1)
    power = (spectrum.real * spectrum.real + spectrum.imag * spectrum.imag).astype(np.float32)
    n_time = len(_TIME_FEATURES)
    out[:, n_time : n_time + n_bands] = _band_powers(
        power, _band_plan(length, float(sample_rate_hz), n_bands)
    )
    freqs = scipy.fft.rfftfreq(length, d=1.0 / sample_rate_hz).astype(np.float32)
    ac_power = power[:, 1:]
    total = ac_power.sum(axis=1)
    has_ac = total > _EPS
    out[:, -2] = np.where(has_ac, freqs[1:][np.argmax(ac_power, axis=1)], 0.0)
    out[:, -1] = np.where(has_ac, (ac_power @ freqs[1:]) / np.maximum(total, _EPS), 0.0)
    return out


def slow_features(windows: npt.ArrayLike, sample_rate_hz: float) -> FeatureMatrix:
    """Slow-signal features for each window: mean, slope (units per second), min, max.

    >>> slow_features(np.array([[1.0, 2.0, 3.0, 4.0]]), 2.0).tolist()  # rises 1 per sample = 2 per second
    [[2.5, 2.0, 1.0, 4.0]]
    """
    x = _as_windows(windows, "windows")
    _check_rate(sample_rate_hz)
    length = x.shape[1]
    t = (np.arange(length, dtype=np.float64) - (length - 1) / 2.0) / sample_rate_hz
    slope = (x.astype(np.float64) @ t) / float(t @ t)
    out = np.empty((x.shape[0], len(SLOW_FEATURES)), dtype=np.float32)
    out[:, 0] = x.mean(axis=1)
    out[:, 1] = slope
    out[:, 2] = x.min(axis=1)
    out[:, 3] = x.max(axis=1)
    return out


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One sensor of an asset, as a feature specification sees it."""

    name: str
    kind: SensorKind

    def feature_names(self, n_bands: int) -> tuple[str, ...]:
        """`sensor.feature` names of this sensor's features, in column order."""
        names = vibration_feature_names(n_bands) if self.kind is SensorKind.VIBRATION else SLOW_FEATURES
        return tuple(f"{self.name}.{feature}" for feature in names)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """A named, versioned feature vector: which sensors, in which order, with which features.

    A model is trained on, and only scores, vectors of exactly this spec. Change anything that alters the
    vector, and you must bump `version`.
    """

    name: str
    version: int
    window_len: int
    n_bands: int
    sensors: tuple[SensorSpec, ...]

    @property
    def spec_id(self) -> str:
        """`name@version`, the identifier a model manifest carries."""
        return f"{self.name}@{self.version}"

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every `sensor.feature` name, in vector order."""
        return tuple(name for sensor in self.sensors for name in sensor.feature_names(self.n_bands))

    def sensor_features(
        self, sensor: SensorSpec, windows: npt.ArrayLike, sample_rate_hz: float
    ) -> FeatureMatrix:
        """The features of one of this spec's sensors for a batch of windows."""
        if sensor.kind is SensorKind.VIBRATION:
            return vibration_features(windows, sample_rate_hz, self.n_bands)
        return slow_features(windows, sample_rate_hz)


DEFAULT_SPEC = FeatureSpec(
    name="vib-temp-current",
    version=1,
    window_len=1024,
    n_bands=8,
    sensors=(
        SensorSpec("vibration", SensorKind.VIBRATION),
        SensorSpec("temperature", SensorKind.SLOW),
        SensorSpec("current", SensorKind.SLOW),
    ),
)
