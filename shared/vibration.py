"""Vibration physics shared by the edge and the cloud: spectra, envelope analysis, speed, velocity severity.

- `amplitude_spectrum`: Hann-windowed one-sided spectrum scaled so a tone of amplitude A reads A.
- `envelope_spectrum`: band-pass (Butterworth, scipy.signal), Hilbert envelope, spectrum of the envelope:
  the repetition rate of bearing impacts, which ring a structural resonance far above the defect
  frequency. Without a configured band, the band is the most impulsive of a dyadic set of candidate
  bands (highest spectral kurtosis, as in Antoni's kurtogram).
- `estimate_shaft_hz`: the running speed from the spectrum, by harmonic sum within a search range and a
  refinement over the first harmonics.
- `velocity_rms_mm_s`: broadband velocity RMS (ISO 20816: 10-1000 Hz) from the acceleration, integrating
  in the frequency domain (divide by j 2 pi f, Parseval).
- `iso_zone`: the ISO 20816-3 zone A/B/C/D from the boundaries shipped in `iso20816_zones.toml`.
- `peak_near`: a tone's amplitude near a frequency and the local noise floor beside it.
- `harmonic_comb`: the mean power of a row of harmonics over their local floors, searched over a
  fundamental's tolerance: a repetition too slow, or with too few impacts per window, for any one line
  to stand out is still seen in the sum of its harmonics (the cage's FTF).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import tomllib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.signal
import scipy.stats

from shared.errors import ContractError

__all__ = [
    "STANDARD_GRAVITY",
    "Comb",
    "Peak",
    "Spectrum",
    "amplitude_spectrum",
    "envelope_spectrum",
    "estimate_shaft_hz",
    "harmonic_comb",
    "iso_zone",
    "iso_zone_boundaries",
    "peak_near",
    "select_envelope_band",
    "velocity_rms_mm_s",
]

F64 = npt.NDArray[np.float64]
STANDARD_GRAVITY = 9.80665
_FLOOR_BINS = 24  # bins each side of a peak's search zone that estimate its local noise floor
_COMB_GUARD_BINS = 1.5  # a comb's floor leaves out the Hann main lobe (+/- 2 bins) of its lines
_MIN_FLOOR_BINS = 8
_MIN_BAND_HZ_FRACTION = 0.02  # narrowest candidate envelope band, as a fraction of the sample rate


@dataclass(frozen=True, slots=True)
class Spectrum:
    """A one-sided amplitude spectrum (`amplitudes[i]` at `freqs_hz[i]`, a tone reads its amplitude)."""

    freqs_hz: F64
    amplitudes: F64

    @property
    def resolution_hz(self) -> float:
        """Spacing of the frequency bins."""
        return float(self.freqs_hz[1] - self.freqs_hz[0])


@dataclass(frozen=True, slots=True)
class Peak:
    """The largest bin near a frequency, and the median amplitude of the bins beside that zone."""

    freq_hz: float
    amplitude: float
    floor: float
    bins_searched: int

    @property
    def prominence(self) -> float:
        """Amplitude over the local noise floor (1: level with the noise)."""
        return self.amplitude / self.floor if self.floor > 0 else math.inf if self.amplitude > 0 else 0.0


def _as_signal(samples: npt.ArrayLike, name: str = "samples") -> F64:
    array = np.asarray(samples, dtype=np.float64)
    if array.ndim != 1 or array.size < 16:
        raise ContractError(name, array.shape, "a 1-D array of at least 16 samples")
    if not np.all(np.isfinite(array)):
        raise ContractError(name, "non-finite", "finite samples")
    return array


@functools.lru_cache(maxsize=32)
def _hann(n: int) -> F64:
    return np.asarray(scipy.signal.get_window("hann", n), dtype=np.float64)


def amplitude_spectrum(samples: npt.ArrayLike, sample_rate_hz: float) -> Spectrum:
    """Hann-windowed amplitude spectrum of one window, mean removed.

    >>> t = np.arange(4096) / 4096.0
    >>> s = amplitude_spectrum(2.0 * np.sin(2 * np.pi * 100 * t), 4096.0)
    >>> round(float(s.amplitudes[100]), 3)
    2.0
    """
    x = _as_signal(samples)
    window = _hann(x.size)
    coefficients = scipy.fft.rfft((x - x.mean()) * window, workers=1)
    amplitudes = np.abs(coefficients) * (2.0 / window.sum())
    return Spectrum(scipy.fft.rfftfreq(x.size, d=1.0 / sample_rate_hz), amplitudes)


@functools.lru_cache(maxsize=64)
def _bandpass(low_hz: float, high_hz: float, sample_rate_hz: float) -> F64:
    return np.asarray(
        scipy.signal.butter(4, (low_hz, high_hz), btype="bandpass", fs=sample_rate_hz, output="sos"),
        dtype=np.float64,
    )


def select_envelope_band(
    samples: npt.ArrayLike, sample_rate_hz: float, *, lowest_hz: float
) -> tuple[float, float]:
    """The most impulsive band above `lowest_hz`: highest spectral kurtosis of a dyadic set of bands.

    The bands halve [lowest_hz, 0.45 x rate] up to three times (15 candidates); each band's complex
    signal comes from the spectrum, and its kurtosis E|y|^4 / (E|y|^2)^2 - 2 is 0 for Gaussian noise and
    large for repeated impacts ringing a resonance in that band.
    """
    x = _as_signal(samples)
    top = 0.45 * sample_rate_hz
    low = min(max(lowest_hz, 0.0), 0.5 * top)
    coefficients = scipy.fft.fft(x - x.mean(), workers=1)
    freqs = scipy.fft.fftfreq(x.size, d=1.0 / sample_rate_hz)
    best, best_kurtosis = (low, top), -math.inf
    for level in range(4):
        width = (top - low) / 2**level
        if width < _MIN_BAND_HZ_FRACTION * sample_rate_hz:
            break
        for k in range(2**level):
            band = (low + k * width, low + (k + 1) * width)
            mask = (freqs >= band[0]) & (freqs < band[1])
            if np.count_nonzero(mask) < 8:
                continue
            analytic = scipy.fft.ifft(np.where(mask, coefficients, 0.0), workers=1)
            power = np.abs(analytic) ** 2
            kurtosis = float(np.mean(power**2) / max(float(np.mean(power)) ** 2, 1e-300)) - 2.0
            if kurtosis > best_kurtosis:
                best, best_kurtosis = band, kurtosis
    return best


def envelope_spectrum(
    samples: npt.ArrayLike, sample_rate_hz: float, band_hz: tuple[float, float]
) -> Spectrum:
    """Amplitude spectrum of the Hilbert envelope of the signal band-passed to `band_hz`.

    >>> rate = 10_000.0
    >>> t = np.arange(8192) / rate
    >>> carrier = np.sin(2 * np.pi * 3000 * t) * (1 + 0.5 * np.sin(2 * np.pi * 87 * t))
    >>> s = envelope_spectrum(carrier, rate, (2000.0, 4000.0))
    >>> f = float(s.freqs_hz[np.argmax(s.amplitudes)])
    >>> abs(f - 87) < s.resolution_hz
    True
    """
    x = _as_signal(samples)
    low, high = band_hz
    nyquist = 0.5 * sample_rate_hz
    if not 0 < low < high < nyquist:
        raise ContractError("band_hz", band_hz, f"0 < low < high < {nyquist:g} Hz")
    filtered = scipy.signal.sosfilt(_bandpass(low, high, sample_rate_hz), x - x.mean())
    envelope = np.abs(scipy.signal.hilbert(filtered))
    return amplitude_spectrum(envelope, sample_rate_hz)


def peak_near(spectrum: Spectrum, freq_hz: float, tolerance_hz: float) -> Peak | None:
    """The largest bin within `tolerance_hz` of `freq_hz`, with the median of the bins beside it.

    The floor takes `_FLOOR_BINS` bins each side (more from the right near DC). Returns None when the
    zone or its floor is not inside the spectrum.
    """
    resolution = spectrum.resolution_hz
    half = max(1, math.ceil(tolerance_hz / resolution))
    centre = round(freq_hz / resolution)
    low, high = centre - half, centre + half + 1
    amplitudes = spectrum.amplitudes
    if low < 1 or high + _FLOOR_BINS > amplitudes.size:
        return None
    left = amplitudes[max(1, low - _FLOOR_BINS) : low]  # near DC the floor comes from the right side
    right = amplitudes[high : high + 2 * _FLOOR_BINS - left.size]
    beside = np.concatenate((left, right))
    zone = amplitudes[low:high]
    top = int(np.argmax(zone))
    return Peak(
        freq_hz=float(spectrum.freqs_hz[low + top]),
        amplitude=float(zone[top]),
        floor=float(np.median(beside)),
        bins_searched=int(zone.size),
    )


@dataclass(frozen=True, slots=True)
class Comb:
    """A row of harmonics k f of the best fundamental f: their mean normalised power.

    `power` is the mean over the harmonics of ln 2 (A_k / floor_k)^2, where floor_k is the median of the
    bins beside harmonic k: each term is exponentially distributed with mean 1 on noise (a Rayleigh
    amplitude over its median), so on noise `power` is Gamma(K, 1/K) for one fundamental. `candidates`
    fundamentals were searched (the best is kept), so the noise test is Bonferroni over them.
    """

    fundamental_hz: float
    harmonics: tuple[int, ...]
    power: float
    candidates: int

    def noise_limit(self, false_alarm_probability: float) -> float:
        """The `power` noise alone exceeds with the given chance over the candidates searched."""
        k = len(self.harmonics)
        return float(scipy.stats.gamma.isf(false_alarm_probability / self.candidates, k, scale=1.0 / k))


def harmonic_comb(
    spectrum: Spectrum, fundamental_hz: float, harmonics: tuple[int, ...], tolerance: float
) -> Comb | None:
    """The harmonics `harmonics` of the fundamental within `tolerance` (a fraction) of `fundamental_hz`
    whose nearest bins carry the most power over their local floors (see `Comb`).

    The candidates step by a fraction of a bin at the highest harmonic, so every harmonic's nearest bin
    is tried; each harmonic's floor leaves out the bins near any multiple of the candidate. None when a
    harmonic lies outside the spectrum, or the lines are too dense to leave a floor between them.

    >>> rate, n = 10_000.0, 4096
    >>> t = np.arange(n) / rate
    >>> rng = np.random.default_rng(0)
    >>> x = sum(0.08 * np.sin(2 * np.pi * k * 17.3 * t) for k in range(1, 9)) + rng.standard_normal(n)
    >>> comb = harmonic_comb(amplitude_spectrum(x, rate), 17.4, (1, 2, 3, 4, 5, 6, 7, 8), 0.03)
    >>> comb is not None and (round(comb.fundamental_hz, 1), comb.power > comb.noise_limit(1e-4))
    (17.3, True)
    >>> noise = amplitude_spectrum(rng.standard_normal(n), rate)
    >>> comb = harmonic_comb(noise, 17.4, (1, 2, 3, 4, 5, 6, 7, 8), 0.03)
    >>> comb is not None and comb.power < comb.noise_limit(1e-4)
    True
    """
    if not harmonics:
        return None
    resolution = spectrum.resolution_hz
    orders = np.asarray(harmonics, dtype=np.float64)
    amplitudes = spectrum.amplitudes
    top = max(harmonics)
    span = 2.0 * tolerance * fundamental_hz * top / resolution  # bins the highest harmonic sweeps
    count = max(1, math.ceil(2.0 * span) + 1)
    steps = np.linspace(-1.0, 1.0, count) if count > 1 else np.zeros(1)
    fundamentals = fundamental_hz * (1.0 + tolerance * steps)
    bins = np.rint(np.outer(fundamentals, orders) / resolution).astype(np.int64)
    if bins.min() < 1 or bins.max() + 2 * _FLOOR_BINS >= amplitudes.size:
        return None
    # Each harmonic's floor: the median of the bins within 2 `_FLOOR_BINS` of it that lie at least
    # `_COMB_GUARD_BINS` from every multiple of the candidate (the comb's own lines, used or not, would
    # otherwise raise the floor of a fundamental a few bins wide by their own height).
    offsets = np.arange(-2 * _FLOOR_BINS, 2 * _FLOOR_BINS + 1)
    beside = bins[:, :, None] + offsets[None, None, :]  # candidates x harmonics x floor bins
    in_range = (beside >= 1) & (beside < amplitudes.size)
    cycles = beside * resolution / fundamentals[:, None, None]
    is_line = np.abs(cycles - np.rint(cycles)) * fundamentals[:, None, None] < _COMB_GUARD_BINS * resolution
    usable = in_range & ~is_line & (cycles > 0.5)
    if int(usable.sum(axis=2).min()) < _MIN_FLOOR_BINS:
        return None  # the lines are too dense for this resolution: no floor between them
    values = np.sort(np.where(usable, amplitudes[np.clip(beside, 0, amplitudes.size - 1)], np.inf), axis=2)
    count = usable.sum(axis=2, keepdims=True)  # the usable bins sort first: the median of those
    floors = (
        0.5
        * (
            np.take_along_axis(values, (count - 1) // 2, axis=2)
            + np.take_along_axis(values, count // 2, axis=2)
        )[:, :, 0]
    )
    if not np.all(floors > 0):
        return None
    power = math.log(2.0) * np.mean((amplitudes[bins] / floors) ** 2, axis=1)
    best = int(np.argmax(power))
    distinct = len({tuple(row) for row in bins.tolist()})
    return Comb(
        fundamental_hz=float(fundamentals[best]),
        harmonics=tuple(harmonics),
        power=float(power[best]),
        candidates=distinct,
    )


def _refined_peak_hz(spectrum: Spectrum, index: int) -> float:
    """A peak's frequency from a parabola through the log amplitudes of its bin and its neighbours."""
    amplitudes = spectrum.amplitudes
    if not 0 < index < amplitudes.size - 1:
        return float(spectrum.freqs_hz[index])
    left, centre, right = np.log(np.maximum(amplitudes[index - 1 : index + 2], 1e-300))
    curvature = left - 2.0 * centre + right
    offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return float(spectrum.freqs_hz[index] + np.clip(offset, -0.5, 0.5) * spectrum.resolution_hz)


def estimate_shaft_hz(
    spectrum: Spectrum, search_hz: tuple[float, float], *, harmonics: int = 3
) -> float | None:
    """The running speed within `search_hz`: the frequency whose first harmonics carry most amplitude.

    Each candidate bin f scores the sum over k of the largest bin near k f; the best candidate is then
    refined from each harmonic's interpolated peak (k f_k weighted by amplitude). None when the search
    range is not resolved by the spectrum.

    >>> rate, n = 10_000.0, 8192
    >>> t = np.arange(n) / rate
    >>> x = np.sin(2 * np.pi * 49.3 * t) + 0.4 * np.sin(2 * np.pi * 98.6 * t)
    >>> round(estimate_shaft_hz(amplitude_spectrum(x, rate), (45.0, 55.0)) or 0, 1)
    49.3
    """
    resolution = spectrum.resolution_hz
    low_bin = max(1, math.floor(search_hz[0] / resolution))
    high_bin = math.ceil(search_hz[1] / resolution)
    amplitudes = spectrum.amplitudes
    if high_bin * harmonics + 2 >= amplitudes.size or high_bin <= low_bin:
        return None
    candidates = np.arange(low_bin, high_bin + 1)
    score = np.zeros(candidates.size)
    for k in range(1, harmonics + 1):
        lo = candidates * k - (k // 2)
        stacked = np.stack([amplitudes[lo + j] for j in range(k)], axis=0)
        score += stacked.max(axis=0)
    best = int(candidates[int(np.argmax(score))])
    weights, estimates = [], []
    for k in range(1, harmonics + 1):
        zone = np.arange(best * k - k, best * k + k + 1)
        index = int(zone[int(np.argmax(amplitudes[zone]))])
        weights.append(float(amplitudes[index]) * k)
        estimates.append(_refined_peak_hz(spectrum, index) / k)
    return float(np.average(estimates, weights=weights)) if sum(weights) > 0 else None


def velocity_rms_mm_s(
    samples: npt.ArrayLike,
    sample_rate_hz: float,
    *,
    band_hz: tuple[float, float] = (10.0, 1000.0),
    unit: Literal["g", "m/s2"] = "g",
) -> float:
    """Velocity RMS in mm/s over `band_hz`, integrated from acceleration in the frequency domain.

    Parseval over the (unwindowed) spectrum of the window: each bin's acceleration divided by 2 pi f.

    >>> rate = 10_000.0
    >>> t = np.arange(10_000) / rate
    >>> accel = 1.0 * np.sin(2 * np.pi * 50 * t)             # 1 m/s2 peak at 50 Hz
    >>> round(velocity_rms_mm_s(accel, rate, unit="m/s2"), 3)  # 1 / (2 pi 50) / sqrt 2 m/s
    2.251
    """
    x = _as_signal(samples)
    scale = STANDARD_GRAVITY if unit == "g" else 1.0
    coefficients = scipy.fft.rfft((x - x.mean()) * scale, workers=1)
    freqs = scipy.fft.rfftfreq(x.size, d=1.0 / sample_rate_hz)
    band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    velocity = np.abs(coefficients[band]) / (2.0 * np.pi * freqs[band])
    mean_square = 2.0 * float(np.sum(velocity**2)) / x.size**2  # one-sided bins carry twice their power
    return 1000.0 * math.sqrt(mean_square)


@functools.lru_cache(maxsize=1)
def _zone_table() -> dict[str, dict[str, list[float]]]:
    text = importlib.resources.files("shared").joinpath("iso20816_zones.toml").read_text(encoding="utf-8")
    table: dict[str, dict[str, list[float]]] = tomllib.loads(text)
    return table


def iso_zone_boundaries(
    machine_group: Literal[1, 2], foundation: Literal["rigid", "flexible"]
) -> tuple[float, float, float]:
    """The ISO 20816-3 A/B, B/C and C/D boundaries in mm/s for a machine group and foundation.

    >>> iso_zone_boundaries(2, "rigid")
    (1.4, 2.8, 4.5)
    """
    row = _zone_table()[f"group_{machine_group}"][foundation]
    return float(row[0]), float(row[1]), float(row[2])


def iso_zone(velocity_mm_s: float, boundaries: tuple[float, float, float]) -> Literal["A", "B", "C", "D"]:
    """The zone of a velocity RMS given the A/B, B/C and C/D boundaries.

    >>> iso_zone(3.0, (1.4, 2.8, 4.5))
    'C'
    """
    if velocity_mm_s < boundaries[0]:
        return "A"
    if velocity_mm_s < boundaries[1]:
        return "B"
    if velocity_mm_s < boundaries[2]:
        return "C"
    return "D"
