"""Fault diagnosis of one window: the probable failure mode, its confidence and the evidence behind it.

The rules read vibration physics and the slow signals (docs/diagnosis.md):

- bearing outer race (BPFO and harmonics), inner race (BPFI with shaft-speed sidebands), rolling element
  (2 x BSF with cage sidebands) and cage (the comb of FTF harmonics the window resolves from the shaft
  orders) in the envelope spectrum, and the cage's own line at FTF in the spectrum;
- imbalance (1x rose, more than 2x), misalignment (2x and 3x rose, more than 1x), looseness (half orders,
  or many harmonics risen) in the spectrum;
- cavitation (broadband high-frequency floor and pressure or flow fluctuation risen), overheating
  (temperature above what load and ambient explain in the healthy baseline);
- a sensor fault (non-finite samples, a flat line, clipping, isolated spikes) is reported as `sensor_fault`
  and no machine mode is read from that sensor; the one exception is spikes that the envelope spectrum
  shows to be periodic at a bearing defect frequency (impacts of a defect, not glitches).

Every test is statistical, set by one false-alarm probability per test (`false_alarm_probability`):
a peak counts when it stands over the local noise floor beyond the Rayleigh quantile for the bins
searched, and, with a baseline, when it rose beyond the baseline's Student-t prediction bound (a comb's
power: its exact F bound) and by at least 25 % (ISO 20816-1's significant change). When nothing passes,
the mode is `unknown`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.stats

from shared.asset_config import AssetDiagnosisConfig, DefectOrders
from shared.messages import AlertDiagnosis, DiagnosisEvidence
from shared.vibration import (
    STANDARD_GRAVITY,
    Comb,
    Peak,
    Spectrum,
    amplitude_spectrum,
    envelope_spectrum,
    estimate_shaft_hz,
    harmonic_comb,
    iso_zone,
    iso_zone_boundaries,
    peak_near,
    select_envelope_band,
    velocity_rms_mm_s,
)

__all__ = [
    "BEARING_MODES",
    "MACHINE_MODES",
    "Diagnosis",
    "DiagnosisBaseline",
    "Evidence",
    "Finding",
    "Measurements",
    "SlowLevel",
    "WindowSignals",
    "diagnose",
    "diagnosis_window_samples",
    "measure",
    "to_alert_diagnosis",
]

F64 = npt.NDArray[np.float64]
BEARING_MODES = ("outer_race", "inner_race", "rolling_element", "cage")
SHAFT_MODES = ("imbalance", "misalignment", "looseness")
SLOW_MODES = ("cavitation", "overheating")
MACHINE_MODES = BEARING_MODES + SHAFT_MODES + SLOW_MODES
SIGNIFICANT_CHANGE = 1.25  # ISO 20816-1: a 25 % change of a steady level is significant
MIN_BASELINE_WINDOWS = 5
_HARMONICS = 10
_HALF_ORDERS = (0.5, 1.5, 2.5, 3.5)
_LOOSENESS_MIN_ITEMS = 3  # looseness shows half orders and a row of harmonics, not one raised tone
_LOOSENESS_MIN_HALVES = 1
_BROADBAND_LOWEST_ORDER = 20.0  # the broadband floor starts above the shaft harmonics and pass tones
_SPIKE_NEIGHBOURS = 3
_SPIKE_NEIGHBOUR_FRACTION = 0.25  # a real impact rings: its neighbours stay above this share of the peak
_FLAT_MIN_SAMPLES = 10
_CLIP_MIN_SAMPLES = 3
_CLIP_MIN_FRACTION = 0.005
_RANK_TOLERANCE = (
    1e-6  # singular values below this share of the largest: a direction the baseline never varied
)
_MIN_TEMPERATURE_STD_C = 0.05  # a sensor's resolution: a few identical readings do not have zero spread
_SPIKES = "spikes"  # the one sensor fault a bearing's periodic impacts can mimic
_BEARING_TOLERANCE = 0.02  # rolling elements and the cage slip: a defect frequency is known to 2 %
_SHAFT_TOLERANCE = 0.005  # shaft orders follow the measured speed to its estimate's error
_CLEARANCE_BINS = 1.0  # a harmonic counts for one comb only this far from every line of the other
_MIN_COMB_HARMONICS = 3
# Cage recall on the simulated motor (bench diagnosis, seed 11): 0.57 with 6 of its 9 resolvable
# harmonics resolved (4,096 samples at 10 kHz), 0.84 with 7 (8,192).
_CAGE_RESOLVED_SHARE = 0.75
_ENVELOPE_RESOLUTION = "envelope resolution_hz"
_COMB = " comb"  # envelope scalars `env:<bearing>:ftf comb` and `env:<bearing>:orders comb`


@dataclass(frozen=True, slots=True)
class SlowLevel:
    """A slow sensor over one window: its mean and its peak-to-peak (the fluctuation cavitation raises)."""

    mean: float
    peak_to_peak: float


@dataclass(frozen=True, slots=True)
class WindowSignals:
    """What one window holds: a vibration window (acceleration) and the slow sensors' samples in it.

    Attributes:
        vibration: acceleration samples (the configured unit), or None.
        sample_rate_hz: the vibration sample rate.
        slow: slow sensor -> samples (`temperature`, `current`, `pressure`, `flow`, `ambient`).
        shaft_hz: the running speed when a tachometer gives it; None: estimated from the spectrum.
        slow_levels: slow sensor -> its window's mean and peak-to-peak, for sensors whose samples are
            not at hand (the edge has them as features); `slow` wins for a sensor in both.
    """

    vibration: F64 | None
    sample_rate_hz: float
    slow: Mapping[str, F64] = field(default_factory=dict)
    shaft_hz: float | None = None
    slow_levels: Mapping[str, SlowLevel] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Measurements:
    """Everything the rules read from one window, before any baseline is applied."""

    shaft_hz: float | None
    velocity_rms_mm_s: float | None
    envelope_band_hz: tuple[float, float] | None
    targets_hz: dict[str, float]
    peaks: dict[str, Peak]
    scalars: dict[str, float]
    sensor_faults: dict[str, str]
    spectrum: Spectrum | None = None
    envelope: Spectrum | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """One tested observation: a peak or a level, against the noise floor and the asset's baseline."""

    name: str
    value: float
    freq_hz: float | None = None
    floor: float | None = None
    baseline: float | None = None
    is_found: bool = False

    def describe(self) -> str:
        """A short line for a report: `bpfo x1 at 176.2 Hz: 0.031 (floor 0.004, baseline 0.005)`."""
        where = f" at {self.freq_hz:.1f} Hz" if self.freq_hz is not None else ""
        extra = [f"floor {self.floor:.3g}"] if self.floor is not None else []
        extra += [f"baseline {self.baseline:.3g}"] if self.baseline is not None else []
        detail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.name}{where}: {self.value:.3g}{detail}{'' if self.is_found else ' (not found)'}"


@dataclass(frozen=True, slots=True)
class Finding:
    """A mode the evidence supports, with the share of its expected evidence that was found."""

    mode: str
    confidence: float
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The diagnosis of a window: the probable mode (or `unknown`, or `sensor_fault`) and why."""

    mode: str
    confidence: float
    evidence: tuple[Evidence, ...]
    findings: tuple[Finding, ...]
    shaft_hz: float | None
    velocity_rms_mm_s: float | None
    iso_zone: Literal["A", "B", "C", "D"] | None
    sensor_faults: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Level:
    """Log-level statistics of one measurement over the baseline windows."""

    mean: float
    std: float
    count: int
    median: float
    linear_mean: float

    def upper_bound(self, false_alarm_probability: float) -> float:
        """The one-sided Student-t prediction bound of one new healthy log value."""
        t = float(scipy.stats.t.isf(false_alarm_probability, self.count - 1))
        return self.mean + t * self.std * math.sqrt(1.0 + 1.0 / self.count)

    def power_bound(self, false_alarm_probability: float, *, terms: int) -> float:
        """The prediction bound of one new healthy comb power (a mean of `terms` normalised line powers).

        On noise a comb's power is Gamma(K, mu / K): 2K power / mu is chi-squared with 2K degrees of
        freedom and 2Kn mean / mu over n baseline windows with 2Kn, so their ratio is F(2K, 2Kn), the
        exact bound where the log-normal one (`upper_bound`) is far too wide for a few terms (the log of
        one line's exponential power spreads over decades).
        """
        ratio = float(scipy.stats.f.isf(false_alarm_probability, 2 * terms, 2 * terms * self.count))
        return self.linear_mean * ratio


class DiagnosisBaseline:
    """The asset's own healthy levels: every measurement's log distribution, and its thermal behaviour.

    Fit it on measurements of healthy windows (`fit` returns self); `levels_` and `thermal_` are the
    learned state.

    Args:
        min_windows: the fewest windows a level (or an operating point) needs to be judged against.
        current_tolerance: two windows share an operating point when their motor currents differ by
            less than this fraction (a fault that adds friction also adds a little current)...
        speed_tolerance: ... and their shaft speeds by less than this one (slip and the estimate's error).
    """

    def __init__(
        self,
        *,
        min_windows: int = MIN_BASELINE_WINDOWS,
        current_tolerance: float = 0.10,
        speed_tolerance: float = 0.02,
    ) -> None:
        self.min_windows = min_windows
        self.current_tolerance = current_tolerance
        self.speed_tolerance = speed_tolerance

    def fit(self, windows: Sequence[Measurements]) -> DiagnosisBaseline:
        """Learn the levels from healthy windows (those with a sensor fault are left out)."""
        clean = [m for m in windows if not m.sensor_faults]
        values: dict[str, list[float]] = {}
        for m in clean:
            for name, level in _levels(m).items():
                if level > 0 and math.isfinite(level):
                    values.setdefault(name, []).append(math.log(level))
        self.levels_ = {
            name: _Level(
                mean=statistics.fmean(logs),
                std=max(statistics.stdev(logs), 1e-6),
                count=len(logs),
                median=math.exp(statistics.median(logs)),
                linear_mean=statistics.fmean(math.exp(v) for v in logs),
            )
            for name, logs in values.items()
            if len(logs) >= self.min_windows
        }
        self.thermal_ = _ThermalModel.fit(clean, (self.current_tolerance, self.speed_tolerance))
        return self

    def level(self, name: str) -> _Level | None:
        """The learned level of a measurement, or None if the baseline has too few windows of it."""
        return self.levels_.get(name)


def _levels(m: Measurements) -> dict[str, float]:
    """The values a baseline learns: spectrum amplitudes, envelope prominences, scalar levels."""
    out = {name: peak.amplitude for name, peak in m.peaks.items() if not name.startswith("env:")}
    out |= {name: peak.prominence for name, peak in m.peaks.items() if name.startswith("env:")}
    out |= {
        name: value
        for name, value in m.scalars.items()
        if name in ("broadband", "pressure_p2p", "flow_p2p") or name.endswith(_COMB)
    }
    return out


@dataclass(frozen=True, slots=True)
class _ThermalModel:
    """The healthy temperature rise over ambient at each operating point (motor current, shaft speed).

    Non-parametric on purpose: heat follows load, which current and speed give only together and not
    linearly (a pump at part load and full speed draws what it draws at full load and lower speed), so a
    window is compared with the baseline windows at the same operating point, and with nothing else.
    """

    points: F64  # baseline windows x (current, shaft_hz), NaN for a regressor the asset lacks
    rises: F64
    tolerances: tuple[float, float]

    @staticmethod
    def _point(m: Measurements) -> tuple[float, float]:
        current = m.scalars.get("current")
        return (math.nan if current is None else current, math.nan if m.shaft_hz is None else m.shaft_hz)

    @staticmethod
    def fit(windows: Sequence[Measurements], tolerances: tuple[float, float]) -> _ThermalModel | None:
        with_rise = [m for m in windows if "temperature_rise" in m.scalars]
        if not with_rise:
            return None
        points = np.array([_ThermalModel._point(m) for m in with_rise])
        rises = np.array([m.scalars["temperature_rise"] for m in with_rise])
        return _ThermalModel(points, rises, tolerances)

    def neighbours(self, m: Measurements, *, is_heavier: bool = False) -> F64:
        """The baseline rises at this window's operating point (current and speed within their
        tolerances), or, `is_heavier`, at every point with at least its current and speed (less those)."""
        point = np.array(self._point(m))
        close = np.ones(self.rises.size, dtype=np.bool_)
        for column in range(2):
            known = self.points[:, column]
            if math.isnan(point[column]) != bool(np.isnan(known).all()):
                return np.empty(0)  # the window and the baseline do not measure the same things
            if math.isnan(point[column]):
                continue
            margin = self.tolerances[column] * abs(point[column])
            if is_heavier:
                close &= known >= point[column] - margin
            else:
                close &= np.abs(known - point[column]) <= margin
        return self.rises[close]


# --- measuring ------------------------------------------------------------------------------------


def _sensor_fault(samples: F64, *, is_fast: bool, false_alarm_probability: float) -> str | None:
    """`non_finite`, `flat`, `clipping` or `spikes` when the samples show a sensor fault, else None."""
    if samples.size == 0:
        return None
    if not np.all(np.isfinite(samples)):
        return "non_finite"
    if samples.size >= _FLAT_MIN_SAMPLES and float(np.ptp(samples)) == 0.0:
        return "flat"
    if not is_fast:
        return None
    if _is_clipped(samples):
        return "clipping"
    return "spikes" if _has_spike(samples, false_alarm_probability) else None


def _is_clipped(samples: F64) -> bool:
    """Several samples sit exactly at the maximum or the minimum: the sensor or its converter saturated."""
    least = max(_CLIP_MIN_SAMPLES, _CLIP_MIN_FRACTION * samples.size)
    return any(np.count_nonzero(samples == extreme) >= least for extreme in (samples.max(), samples.min()))


def _has_spike(samples: F64, false_alarm_probability: float) -> bool:
    """An isolated sample far outside the robust spread (Bonferroni over the window) whose neighbours
    stay small: a real impact rings a resonance over several samples, a glitch does not."""
    centred = samples - float(np.median(samples))
    robust_std = 1.4826 * float(np.median(np.abs(centred)))
    if robust_std <= 0:
        return False
    tail = 1.0 - false_alarm_probability / (2.0 * samples.size)
    limit = statistics.NormalDist().inv_cdf(tail) * robust_std
    for index in np.flatnonzero(np.abs(centred) > limit).tolist():
        lo, hi = max(0, index - _SPIKE_NEIGHBOURS), min(samples.size, index + _SPIKE_NEIGHBOURS + 1)
        neighbours = np.abs(np.delete(centred[lo:hi], index - lo))
        if neighbours.size and float(neighbours.max()) < _SPIKE_NEIGHBOUR_FRACTION * abs(
            float(centred[index])
        ):
            return True
    return False


def _bearing_targets(name: str, orders: DefectOrders, shaft_hz: float) -> dict[str, float]:
    """Envelope-spectrum frequencies each bearing mode's rule looks at (`env:<bearing>:<what>`)."""
    prefix = f"env:{name}:"
    bpfo, bpfi = orders.bpfo * shaft_hz, orders.bpfi * shaft_hz
    targets = {f"{prefix}bpfo x{k}": k * bpfo for k in (1, 2, 3)}
    targets |= {f"{prefix}bpfi x1": bpfi, f"{prefix}bpfi x2": 2 * bpfi}
    targets |= {f"{prefix}bpfi-1x": bpfi - shaft_hz, f"{prefix}bpfi+1x": bpfi + shaft_hz}
    if orders.bsf is not None:
        spin = 2.0 * orders.bsf * shaft_hz  # a ball defect strikes both races once per spin
        targets |= {f"{prefix}2bsf x1": spin, f"{prefix}2bsf x2": 2 * spin}
        if orders.ftf is not None:
            cage = orders.ftf * shaft_hz
            targets |= {f"{prefix}2bsf-ftf": spin - cage, f"{prefix}2bsf+ftf": spin + cage}
    if orders.ftf is not None:
        targets |= {f"{prefix}ftf x{k}": k * orders.ftf * shaft_hz for k in (1, 2, 3)}
    return targets


def _is_clear(
    freq_hz: float, sweep_hz: float, lines: Sequence[tuple[float, float]], resolution: float
) -> bool:
    """A frequency known to +/- `sweep_hz` stays `_CLEARANCE_BINS` from every line (frequency, sweep)."""
    return all(
        abs(freq_hz - line) - sweep_hz - line_sweep >= _CLEARANCE_BINS * resolution
        for line, line_sweep in lines
    )


def _clear_cage_harmonics(orders: DefectOrders, shaft_hz: float, resolution_hz: float) -> tuple[int, ...]:
    """The cage harmonics k (k FTF up to twice BPFO) a spectrum of this resolution resolves from the half
    and integer shaft orders and the multiples of BPFO, BPFI and 2 x BSF (see `_cage_combs`)."""
    if orders.ftf is None:
        return ()
    ftf = orders.ftf * shaft_hz
    top_hz = 2.0 * orders.bpfo * shaft_hz
    half = 0.5 * shaft_hz
    shaft_lines = [(j * half, j * half * _SHAFT_TOLERANCE) for j in range(1, math.ceil(top_hz / half) + 2)]
    defects = [orders.bpfo, orders.bpfi] + ([2.0 * orders.bsf] if orders.bsf is not None else [])
    defect_lines = [
        (m * order * shaft_hz, m * order * shaft_hz * _BEARING_TOLERANCE)
        for order in defects
        for m in range(1, math.ceil(top_hz / (order * shaft_hz)) + 2)
    ]
    return tuple(
        k
        for k in range(1, math.floor(top_hz / ftf) + 1)
        if _is_clear(k * ftf, k * ftf * _BEARING_TOLERANCE, shaft_lines + defect_lines, resolution_hz)
    )


def diagnosis_window_samples(config: AssetDiagnosisConfig, sample_rate_hz: float, *, shortest: int) -> int:
    """Samples of contiguous vibration one diagnosis of this asset reads.

    `config.window_s` when it is set. Otherwise the shortest power of two, at least `shortest`, whose
    spectrum resolves, for every bearing with a cage order, `_CAGE_RESOLVED_SHARE` of the cage (FTF)
    harmonics that any window resolves from the shaft's half orders and the other defect lines (their
    tolerances bound that count), at the lowest speed searched (the lines scale with speed, their spacing
    in bins is least there); at most `config.max_window_s` (a cage the longest window does not resolve is
    not measured). Without a cage order: `shortest`.
    """
    if config.window_s is not None:
        return max(256, round(config.window_s * sample_rate_hz))
    longest = max(shortest, round(config.max_window_s * sample_rate_hz))
    lowest_shaft_hz = config.speed_search_hz()[0]
    needed = {  # a resolution of 0 Hz: the harmonics only the tolerances keep apart
        o: max(
            _MIN_COMB_HARMONICS,
            math.ceil(_CAGE_RESOLVED_SHARE * len(_clear_cage_harmonics(o, lowest_shaft_hz, 0.0))),
        )
        for b in config.bearings
        if (o := b.defect_orders()).ftf is not None
    }
    if not needed:
        return shortest
    samples = 1 << max(0, (shortest - 1).bit_length())
    while any(
        len(_clear_cage_harmonics(o, lowest_shaft_hz, sample_rate_hz / samples)) < count
        for o, count in needed.items()
    ):
        if 2 * samples > longest:
            return max(shortest, min(samples, longest))
        samples *= 2
    return samples


def _cage_combs(
    name: str, orders: DefectOrders, shaft_hz: float, envelope: Spectrum, false_alarm_probability: float
) -> tuple[dict[str, float], dict[str, float]]:
    """The FTF comb and the shaft-order comb of one bearing in the envelope spectrum (scalars, targets).

    A cage defect repeats once per cage turn (FTF, below 0.5x): a window holds too few impacts for one
    line to stand out of the noise, but they make a row of harmonics. A harmonic k FTF counts only where
    this window resolves it from the other lines of the range (up to twice BPFO): the half and integer
    shaft orders (the shaft's faults and looseness) and the multiples of BPFO (= n FTF), BPFI and 2 x BSF,
    each at least `_CLEARANCE_BINS` away from every frequency the tolerances sweep. The shaft-order comb
    (half orders in the same range, clear of the FTF harmonics) is what looseness raises instead, and the
    cage rule needs its comb to rise more than that one. Fewer than `_MIN_COMB_HARMONICS` resolved
    harmonics: no cage comb (the window is too short for this FTF).
    """
    if orders.ftf is None:
        return {}, {}
    resolution = envelope.resolution_hz
    ftf = orders.ftf * shaft_hz
    top_hz = 2.0 * orders.bpfo * shaft_hz
    half = 0.5 * shaft_hz
    cage = _clear_cage_harmonics(orders, shaft_hz, resolution)
    if len(cage) < _MIN_COMB_HARMONICS:
        return {}, {}
    comb = harmonic_comb(envelope, ftf, cage, _BEARING_TOLERANCE)
    if comb is None:
        return {}, {}
    prefix = f"env:{name}:"
    scalars = _comb_scalars(f"{prefix}ftf{_COMB}", comb, false_alarm_probability)
    cage_lines = [(k * ftf, k * ftf * _BEARING_TOLERANCE) for k in cage]
    shaft = tuple(
        j
        for j in range(1, math.floor(top_hz / half) + 1)
        if _is_clear(j * half, j * half * _SHAFT_TOLERANCE, cage_lines, resolution)
    )
    orders_comb = harmonic_comb(envelope, half, shaft, _SHAFT_TOLERANCE) if shaft else None
    if orders_comb is not None:
        scalars[f"{prefix}orders{_COMB}"] = orders_comb.power
    return scalars, {f"{prefix}ftf{_COMB}": comb.fundamental_hz}


def _cage_line(
    name: str, orders: DefectOrders, shaft_hz: float, spectrum: Spectrum, false_alarm_probability: float
) -> tuple[dict[str, float], dict[str, float]]:
    """The FTF line of one bearing in the spectrum (a cage's imbalance or rub turns with the cage), as a
    comb of one harmonic, beside the comb of the half orders 0.5x, 1.5x and 2.5x (what looseness raises).

    Measured only where this window resolves FTF from the half and integer shaft orders below it and
    above it (`_CLEARANCE_BINS` beyond both lines' tolerances).
    """
    if orders.ftf is None:
        return {}, {}
    ftf = orders.ftf * shaft_hz
    shaft_lines = [(j * 0.5 * shaft_hz, j * 0.5 * shaft_hz * _SHAFT_TOLERANCE) for j in (1, 2)]
    if not _is_clear(ftf, ftf * _BEARING_TOLERANCE, shaft_lines, spectrum.resolution_hz):
        return {}, {}
    line = harmonic_comb(spectrum, ftf, (1,), _BEARING_TOLERANCE)
    if line is None:
        return {}, {}
    prefix = f"spec:{name}:"
    scalars = _comb_scalars(f"{prefix}ftf{_COMB}", line, false_alarm_probability)
    halves = harmonic_comb(spectrum, 0.5 * shaft_hz, (1, 3, 5), _SHAFT_TOLERANCE)
    if halves is not None:
        scalars[f"{prefix}orders{_COMB}"] = halves.power
    return scalars, {f"{prefix}ftf{_COMB}": line.fundamental_hz}


def _cage_measurements(
    config: AssetDiagnosisConfig,
    shaft_hz: float,
    envelope: Spectrum,
    spectrum: Spectrum,
    false_alarm_probability: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Every bearing's cage evidence: its envelope's FTF comb and its spectrum's FTF line."""
    scalars: dict[str, float] = {}
    targets: dict[str, float] = {}
    for bearing in config.bearings:
        orders = bearing.defect_orders()
        for combs, comb_targets in (
            _cage_combs(bearing.name, orders, shaft_hz, envelope, false_alarm_probability),
            _cage_line(bearing.name, orders, shaft_hz, spectrum, false_alarm_probability),
        ):
            scalars |= combs
            targets |= comb_targets
    return scalars, targets


def _comb_scalars(name: str, comb: Comb, false_alarm_probability: float) -> dict[str, float]:
    """A comb's power, its noise limit, and what its baseline test needs: its terms and candidates."""
    return {
        name: comb.power,
        f"{name} limit": comb.noise_limit(false_alarm_probability),
        f"{name} terms": float(len(comb.harmonics)),
        f"{name} candidates": float(comb.candidates),
    }


def _shaft_targets(shaft_hz: float) -> dict[str, float]:
    targets = {f"{k}x": k * shaft_hz for k in range(1, _HARMONICS + 1)}
    return targets | {f"{h:g}x": h * shaft_hz for h in _HALF_ORDERS}


def _slow_levels(window: WindowSignals) -> dict[str, SlowLevel]:
    levels = dict(window.slow_levels)
    for name, samples in window.slow.items():
        if samples.size and np.all(np.isfinite(samples)):
            levels[name] = SlowLevel(
                float(np.mean(samples)), float(np.ptp(samples)) if samples.size >= 3 else math.nan
            )
    return levels


def _slow_scalars(
    window: WindowSignals, config: AssetDiagnosisConfig, faults: dict[str, str]
) -> dict[str, float]:
    levels = {name: level for name, level in _slow_levels(window).items() if name not in faults}
    scalars = {name: levels[name].mean for name in ("temperature", "current", "ambient") if name in levels}
    ambient = scalars.get("ambient", config.ambient_c)
    if "temperature" in scalars:
        scalars["temperature_rise"] = scalars["temperature"] - (ambient if ambient is not None else 0.0)
    for name in ("pressure", "flow"):
        if name in levels and math.isfinite(levels[name].peak_to_peak):
            scalars[f"{name}_p2p"] = levels[name].peak_to_peak
    return scalars


def _speed(window: WindowSignals, spectrum: Spectrum, config: AssetDiagnosisConfig) -> float | None:
    if window.shaft_hz is not None:
        return window.shaft_hz
    estimate = estimate_shaft_hz(spectrum, config.speed_search_hz())
    if estimate is None:
        return None
    tolerance = max(spectrum.resolution_hz, 0.005 * estimate)
    peak = peak_near(spectrum, estimate, tolerance)
    k = _prominence_limit(3, config.false_alarm_probability)
    if peak is not None and peak.prominence > k:
        return estimate
    return config.shaft_rpm / 60.0 if config.shaft_rpm is not None else None


def measure(
    window: WindowSignals, config: AssetDiagnosisConfig, *, keep_spectra: bool = False
) -> Measurements:
    """Measure one window: speed, velocity RMS, spectrum peaks, envelope peaks, slow levels, sensor faults."""
    p_fa = config.false_alarm_probability
    faults = {
        name: "flat"
        for name, level in window.slow_levels.items()
        if name != "ambient" and name not in window.slow and level.peak_to_peak == 0.0
    }
    faults |= {
        name: kind
        for name, samples in window.slow.items()
        if name != "ambient"  # a reference that may well read the same for minutes
        and (kind := _sensor_fault(samples, is_fast=False, false_alarm_probability=p_fa)) is not None
    }
    scalars = _slow_scalars(window, config, faults)
    vibration = window.vibration
    if vibration is not None:
        kind = _sensor_fault(vibration, is_fast=True, false_alarm_probability=p_fa)
        if kind is not None:
            faults["vibration"] = kind
    if vibration is None or faults.get("vibration", _SPIKES) != _SPIKES or vibration.size < 256:
        return Measurements(None, None, None, {}, {}, scalars, faults)
    rate = window.sample_rate_hz
    spectrum = amplitude_spectrum(vibration, rate)
    shaft_hz = _speed(window, spectrum, config)
    velocity = velocity_rms_mm_s(vibration, rate, band_hz=config.velocity_band_hz, unit=config.vibration_unit)
    peaks: dict[str, Peak] = {}
    targets: dict[str, float] = {}
    band: tuple[float, float] | None = None
    envelope: Spectrum | None = None
    if shaft_hz is not None:
        shaft = _shaft_targets(shaft_hz)
        targets |= shaft
        for name, freq in shaft.items():
            peak = peak_near(spectrum, freq, max(spectrum.resolution_hz, 0.005 * freq))
            if peak is not None:
                peaks[name] = peak
        broadband_from = _BROADBAND_LOWEST_ORDER * shaft_hz
        upper = spectrum.amplitudes[
            (spectrum.freqs_hz >= broadband_from) & (spectrum.freqs_hz <= 0.45 * rate)
        ]
        if upper.size:
            scalars["broadband"] = float(np.median(upper))
        bearing_targets: dict[str, float] = {}
        for bearing in config.bearings:
            bearing_targets |= _bearing_targets(bearing.name, bearing.defect_orders(), shaft_hz)
        if bearing_targets:
            band = config.envelope_band_hz or select_envelope_band(
                vibration, rate, lowest_hz=3.0 * max(bearing_targets.values())
            )
            envelope = envelope_spectrum(vibration, rate, band)
            scalars[_ENVELOPE_RESOLUTION] = envelope.resolution_hz
            targets |= bearing_targets
            for name, freq in bearing_targets.items():
                peak = peak_near(envelope, freq, max(1.5 * envelope.resolution_hz, _BEARING_TOLERANCE * freq))
                if peak is not None:
                    peaks[name] = peak
            combs, comb_targets = _cage_measurements(config, shaft_hz, envelope, spectrum, p_fa)
            scalars |= combs
            targets |= comb_targets
    return Measurements(
        shaft_hz=shaft_hz,
        velocity_rms_mm_s=velocity,
        envelope_band_hz=band,
        targets_hz=targets,
        peaks=peaks,
        scalars=scalars,
        sensor_faults=faults,
        spectrum=spectrum if keep_spectra else None,
        envelope=envelope if keep_spectra else None,
    )


# --- rules ----------------------------------------------------------------------------------------


def _prominence_limit(bins_searched: int, false_alarm_probability: float) -> float:
    """Amplitude over the median floor that noise alone exceeds with the given chance.

    A noise bin's amplitude is Rayleigh distributed, so P(A > k median) = 2^(-k^2); over m bins the
    largest passes with about m 2^(-k^2).
    """
    return math.sqrt(math.log2(max(bins_searched, 1) / false_alarm_probability))


@dataclass(frozen=True, slots=True)
class _Judge:
    """Applies the noise-floor and baseline tests to a window's measurements."""

    measurements: Measurements
    baseline: DiagnosisBaseline | None
    false_alarm_probability: float

    def rise(
        self, name: str, value: float, *, change: float = SIGNIFICANT_CHANGE
    ) -> tuple[float | None, bool]:
        """The baseline median of a level, and whether `value` rose significantly above it (beyond the
        prediction bound and by `change`: `SIGNIFICANT_CHANGE` for an amplitude, its square for a power)."""
        level = self.baseline.level(name) if self.baseline is not None else None
        if level is None or value <= 0:
            return None, False
        is_risen = math.log(value) > level.upper_bound(self.false_alarm_probability)
        return level.median, is_risen and value >= change * level.median

    def comb_rise(self, name: str, power: float) -> tuple[float | None, bool]:
        """The baseline median of a comb's power, and whether `power` rose significantly above it: beyond
        the comb's F prediction bound (Bonferroni over the fundamentals searched, as its noise limit) and
        by `SIGNIFICANT_CHANGE` squared (a power)."""
        level = self.baseline.level(name) if self.baseline is not None else None
        terms = self.measurements.scalars.get(f"{name} terms")
        candidates = self.measurements.scalars.get(f"{name} candidates")
        if level is None or terms is None or candidates is None:
            return None, False
        bound = level.power_bound(self.false_alarm_probability / candidates, terms=round(terms))
        return level.median, power > bound and power >= SIGNIFICANT_CHANGE**2 * level.median

    def peak(self, name: str, *, needs_baseline: bool = False) -> Evidence | None:
        """A peak's evidence: prominent over the floor and (with a baseline) risen above it."""
        peak = self.measurements.peaks.get(name)
        if peak is None:
            return None
        is_prominent = peak.prominence > _prominence_limit(peak.bins_searched, self.false_alarm_probability)
        is_envelope = name.startswith("env:")
        baseline, is_risen = self.rise(name, peak.prominence if is_envelope else peak.amplitude)
        has_baseline = baseline is not None
        found = is_prominent and (is_risen if has_baseline else not needs_baseline)
        return Evidence(
            name=name.rsplit(":", maxsplit=1)[-1] if is_envelope else name,
            value=peak.amplitude,
            freq_hz=peak.freq_hz,
            floor=peak.floor,
            baseline=baseline * peak.floor if (baseline is not None and is_envelope) else baseline,
            is_found=found,
        )

    def level(self, name: str) -> Evidence | None:
        value = self.measurements.scalars.get(name)
        if value is None:
            return None
        baseline, is_risen = self.rise(name, value)
        return Evidence(name=name, value=value, baseline=baseline, is_found=is_risen)


def _bearing_findings(judge: _Judge, config: AssetDiagnosisConfig) -> list[Finding]:
    """Each bearing mode whose defect frequency stands out with at least one corroborating peak."""
    patterns = {
        "outer_race": ("bpfo x1", ("bpfo x2", "bpfo x3")),
        "inner_race": ("bpfi x1", ("bpfi-1x", "bpfi+1x", "bpfi x2")),
        "rolling_element": ("2bsf x1", ("2bsf-ftf", "2bsf+ftf", "2bsf x2")),
    }
    findings = []
    for bearing in config.bearings:
        cage = _cage(judge, bearing.name)
        if cage is not None:
            label = "cage" if len(config.bearings) == 1 else f"cage:{bearing.name}"
            findings.append(Finding(label, cage.confidence, cage.evidence))
        for mode, (main, support) in patterns.items():
            if mode == "outer_race" and cage is not None:
                # BPFO = n FTF: the cage's comb holds the BPFO lines, while an outer-race defect leaves
                # the clear harmonics the cage comb reads (never multiples of BPFO) at the noise
                continue
            first = judge.peak(f"env:{bearing.name}:{main}")
            others = [e for name in support if (e := judge.peak(f"env:{bearing.name}:{name}")) is not None]
            if first is None or not first.is_found or not any(e.is_found for e in others):
                continue
            evidence = (first, *others)
            found = sum(e.is_found for e in evidence)
            label = mode if len(config.bearings) == 1 else f"{mode}:{bearing.name}"
            findings.append(Finding(label, found / len(evidence), evidence))
    return findings


def _cage(judge: _Judge, bearing: str) -> Finding | None:
    """A cage defect, from the envelope's FTF comb or, with a baseline, from the spectrum's FTF line
    (the more confident of the two; see `_cage_from`)."""
    findings = [
        f
        for source, needs_baseline in (("env", False), ("spec", True))
        if (f := _cage_from(judge, f"{source}:{bearing}:", needs_baseline=needs_baseline)) is not None
    ]
    return max(findings, key=lambda f: f.confidence) if findings else None


def _is_harmonic(freq_hz: float | None, fundamental_hz: float | None, m: Measurements) -> bool:
    """A peak within `_CLEARANCE_BINS` of a harmonic of a comb's fundamental: where 2 x BSF lies within
    its tolerance of a cage harmonic (the pump's 6205: 11.8 FTF), the peak found there is the cage's."""
    resolution = m.scalars.get(_ENVELOPE_RESOLUTION)
    if freq_hz is None or fundamental_hz is None or resolution is None or fundamental_hz <= 0:
        return False
    k = round(freq_hz / fundamental_hz)
    return k >= 1 and abs(freq_hz - k * fundamental_hz) <= _CLEARANCE_BINS * resolution


def _cage_from(judge: _Judge, prefix: str, *, needs_baseline: bool) -> Finding | None:
    """A cage defect: the FTF comb (or line) over the noise's limit, risen above the baseline's bound and
    by `SIGNIFICANT_CHANGE` squared (a power), risen more than the shaft-order comb beside it (else the
    energy is looseness's or the shaft's), and no ball-spin line (2 x BSF found: a ball defect, which the
    cage modulates)."""
    m = judge.measurements
    power, limit = m.scalars.get(f"{prefix}ftf{_COMB}"), m.scalars.get(f"{prefix}ftf{_COMB} limit")
    if power is None or limit is None or power <= limit:
        return None
    baseline, is_risen = judge.comb_rise(f"{prefix}ftf{_COMB}", power)
    if (baseline is None and needs_baseline) or (baseline is not None and not is_risen):
        return None
    orders = m.scalars.get(f"{prefix}orders{_COMB}")
    orders_baseline = judge.rise(f"{prefix}orders{_COMB}", orders)[0] if orders is not None else None
    orders_ratio = 0.0 if orders is None else orders / (orders_baseline or 1.0)  # noise's mean is 1
    if orders_ratio >= power / (baseline or 1.0):
        return None
    bearing_prefix = "env:" + prefix.split(":", maxsplit=1)[1]
    spin = judge.peak(f"{bearing_prefix}2bsf x1")
    fundamental = m.targets_hz.get(f"{prefix}ftf{_COMB}")
    if spin is not None and spin.is_found and not _is_harmonic(spin.freq_hz, fundamental, m):
        return None
    comb = Evidence(
        "ftf comb" if prefix.startswith("env:") else "ftf line",
        power,
        freq_hz=m.targets_hz.get(f"{prefix}ftf{_COMB}"),
        floor=limit,
        baseline=baseline,
        is_found=True,
    )
    lines = tuple(e for k in (1, 2, 3) if (e := judge.peak(f"{bearing_prefix}ftf x{k}")) is not None)
    expected = max(limit, SIGNIFICANT_CHANGE**2 * baseline if baseline is not None else 0.0)
    return Finding("cage", 1.0 - expected / power, (comb, *lines))


def _tone_velocity_mm_s(peak: Peak | None, config: AssetDiagnosisConfig) -> float:
    """A tone's velocity RMS from its acceleration amplitude (A / (2 pi f) / sqrt 2)."""
    if peak is None or peak.freq_hz <= 0:
        return 0.0
    scale = STANDARD_GRAVITY if config.vibration_unit == "g" else 1.0
    return 1000.0 * peak.amplitude * scale / (2.0 * math.pi * peak.freq_hz) / math.sqrt(2.0)


def _ratio(evidence: Evidence | None) -> float:
    if evidence is None or evidence.baseline is None or evidence.baseline <= 0:
        return 1.0
    return evidence.value / evidence.baseline


def _shaft_findings(judge: _Judge, config: AssetDiagnosisConfig, zone: str | None) -> list[Finding]:
    """Imbalance, misalignment and looseness from the shaft harmonics against the baseline."""
    m = judge.measurements
    one, two, three = (judge.peak(f"{k}x", needs_baseline=True) for k in (1, 2, 3))
    findings = []
    if judge.baseline is not None and one is not None and two is not None:
        r1, r2, r3 = _ratio(one), _ratio(two), _ratio(three)
        if one.is_found and r1 > r2:
            findings.append(Finding("imbalance", 1.0 - 1.0 / r1, (one, two)))
        harmonic = [e for e in (two, three) if e is not None and e.is_found]
        if harmonic and max(r2, r3) > r1:
            findings.append(
                Finding("misalignment", 1.0 - 1.0 / max(r2, r3), tuple(e for e in (one, two, three) if e))
            )
    elif judge.baseline is None and zone in ("C", "D") and m.velocity_rms_mm_s:
        total = m.velocity_rms_mm_s**2
        v1 = _tone_velocity_mm_s(m.peaks.get("1x"), config) ** 2
        v23 = sum(_tone_velocity_mm_s(m.peaks.get(f"{k}x"), config) ** 2 for k in (2, 3))
        tones = tuple(e for e in (one, two, three) if e)
        if v1 / total >= 0.5:
            findings.append(Finding("imbalance", v1 / total, tones))
        elif v23 / total >= 0.5:
            findings.append(Finding("misalignment", v23 / total, tones))
    halves = [e for h in _HALF_ORDERS if (e := judge.peak(f"{h:g}x", needs_baseline=True))]
    high = [e for k in range(4, _HARMONICS + 1) if (e := judge.peak(f"{k}x", needs_baseline=True))]
    found_halves = sum(e.is_found for e in halves)
    found_high = sum(e.is_found for e in high)
    if found_halves >= _LOOSENESS_MIN_HALVES and found_halves + found_high >= _LOOSENESS_MIN_ITEMS:
        items = halves + high
        findings.append(Finding("looseness", (found_halves + found_high) / len(items), tuple(items)))
    return findings


def _slow_findings(judge: _Judge) -> list[Finding]:
    """Cavitation and overheating, from the slow signals and the broadband vibration floor."""
    return [f for f in (_cavitation(judge), _overheating(judge)) if f is not None]


def _cavitation(judge: _Judge) -> Finding | None:
    """The broadband high-frequency floor rose and so did the pressure or flow fluctuation."""
    broadband = judge.level("broadband")
    fluid = [e for name in ("pressure_p2p", "flow_p2p") if (e := judge.level(name)) is not None]
    if broadband is None or not broadband.is_found or not any(e.is_found for e in fluid):
        return None
    evidence = (broadband, *fluid)
    return Finding("cavitation", sum(e.is_found for e in evidence) / len(evidence), evidence)


def _overheating(judge: _Judge) -> Finding | None:
    """The temperature rise over ambient exceeds the healthy rise at the same operating point, beyond the
    Student-t prediction bound of those baseline windows and by at least a quarter of it
    (`SIGNIFICANT_CHANGE`), and exceeds the hottest healthy rise of the baseline by a quarter too.

    At an operating point the baseline has not seen, the windows at every heavier one (at least this
    current and this speed) stand in for it: heat grows with load (copper losses with the current,
    friction with the speed), so their rises bound the healthy one from above. At a load beyond every
    one the baseline saw, nothing bounds it, and the mode is left `unknown`."""
    thermal = judge.baseline.thermal_ if judge.baseline is not None else None
    rise = judge.measurements.scalars.get("temperature_rise")
    if thermal is None or rise is None:
        return None
    same_point = thermal.neighbours(judge.measurements)
    if same_point.size < MIN_BASELINE_WINDOWS:
        same_point = thermal.neighbours(judge.measurements, is_heavier=True)
    if same_point.size < MIN_BASELINE_WINDOWS:
        return None  # a load beyond every one the baseline has seen: nothing to compare with
    expected = float(np.mean(same_point))
    error = max(float(np.std(same_point, ddof=1)), _MIN_TEMPERATURE_STD_C) * math.sqrt(
        1.0 + 1.0 / same_point.size
    )
    bound = float(scipy.stats.t.isf(judge.false_alarm_probability, same_point.size - 1)) * error
    excess = rise - expected
    # Significant twice over, as a vibration level must be: beyond the bound, and by a quarter of the
    # healthy rise. The bound alone is too narrow: the baseline's windows are minutes apart (strongly
    # correlated, so far fewer than `size` independent ones), and the rise is taken over the ambient of
    # the moment while the machine follows ambient with a thermal time constant, so an ambient that
    # falls (evening) leaves a healthy machine a degree or so above a baseline learned while it rose.
    if excess <= bound or rise < SIGNIFICANT_CHANGE * expected:
        return None
    # A rise no higher than the hottest healthy one the baseline saw (at any operating point) may be the
    # thermal lag of a heavier load or a warmer hour shortly before: the machine cools with its time
    # constant, so a window just after a load drop is hot for its operating point and healthy. Only a
    # rise significantly beyond what the machine reaches healthy is read as overheating from one window:
    # that hottest rise is one extreme of a baseline that saw a part of the day (a healthy machine held
    # at its heaviest load while ambient falls stays a few per cent above it), and the current alone
    # does not pin the load down (power factor, a drive's speed), nor do a few baseline windows taken
    # while the machine still warmed up after a load change pin down the rise of their operating point.
    if rise < SIGNIFICANT_CHANGE * float(thermal.rises.max()):
        return None
    evidence = Evidence("temperature_rise_c", rise, baseline=expected, is_found=True)
    return Finding("overheating", min(1.0, excess / (2.0 * bound)), (evidence,))


def _rank(finding: Finding) -> tuple[bool, float]:
    """Sort key within a group: looseness first, then the most confident.

    Imbalance and misalignment are synchronous (integer orders only); a risen half order is what neither
    explains, and looseness also raises the integer harmonics, so its finding outranks theirs.
    """
    return finding.mode != "looseness", -finding.confidence


def diagnose(
    measurements: Measurements, config: AssetDiagnosisConfig, baseline: DiagnosisBaseline | None = None
) -> Diagnosis:
    """The probable failure mode of a measured window.

    The primary mode is the first group that has a finding (bearing, then shaft, then slow-signal modes:
    heat and noise often follow a mechanical fault), the most confident within it (looseness before the
    other shaft modes: `_rank`). A fault of the
    vibration sensor gives `sensor_fault`; no finding gives `unknown`.
    """
    m = measurements
    boundaries = config.zone_boundaries_mm_s or iso_zone_boundaries(config.machine_group, config.foundation)
    zone = iso_zone(m.velocity_rms_mm_s, boundaries) if m.velocity_rms_mm_s is not None else None
    judge = _Judge(m, baseline, config.false_alarm_probability)
    vibration_fault = m.sensor_faults.get("vibration")
    bearing = _bearing_findings(judge, config) if vibration_fault in (None, _SPIKES) else []
    groups = [bearing]
    if vibration_fault is None:
        groups.append(_shaft_findings(judge, config, zone))
    if vibration_fault is None or not bearing:
        groups.append(_slow_findings(judge))
    findings = tuple(f for group in groups for f in sorted(group, key=_rank))
    if (vibration_fault is not None and not bearing) or (not findings and m.sensor_faults):
        faults = tuple(
            Evidence(f"{sensor}:{kind}", 1.0, is_found=True) for sensor, kind in m.sensor_faults.items()
        )
        primary = Finding("sensor_fault", 1.0, faults)
        findings = (primary, *findings)
    elif findings:
        primary = findings[0]
    else:
        primary = Finding("unknown", 0.0, ())
    return Diagnosis(
        mode=primary.mode,
        confidence=primary.confidence,
        evidence=primary.evidence,
        findings=findings,
        shaft_hz=m.shaft_hz,
        velocity_rms_mm_s=m.velocity_rms_mm_s,
        iso_zone=zone,
        sensor_faults=dict(m.sensor_faults),
    )


def to_alert_diagnosis(diagnosis: Diagnosis, *, max_evidence: int = 32) -> AlertDiagnosis:
    """The diagnosis as the alert message carries it (the primary finding's evidence, capped)."""

    def finite(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else float(value)

    return AlertDiagnosis(
        mode=diagnosis.mode,
        confidence=min(1.0, max(0.0, diagnosis.confidence)),
        evidence=[
            DiagnosisEvidence(
                name=e.name[:96],
                value=finite(e.value) or 0.0,
                freq_hz=finite(e.freq_hz),
                floor=finite(e.floor),
                baseline=finite(e.baseline),
                is_found=e.is_found,
            )
            for e in diagnosis.evidence[:max_evidence]
        ],
        shaft_hz=finite(diagnosis.shaft_hz),
        velocity_rms_mm_s=finite(diagnosis.velocity_rms_mm_s),
        iso_zone=diagnosis.iso_zone,
    )
