"""Seeded synthetic machine signals and their features, for tests and benchmarks of the modeling code.

A stand-in for recorded or simulated fleet data: vibration is shaft harmonics (1x, 2x, 3x) with per-window
jitter of speed, amplitude and phase, plus broadband noise; bearing temperature and motor current wander
slowly around their operating point. `fault="bearing"` adds what an outer-race defect looks like: a train
of impacts at the defect frequency ringing a structural resonance, and its tone; `fault="imbalance"`
raises the 1x harmonic (threefold at severity 1).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from shared.features import FeatureSpec, SensorKind, SensorSpec

__all__ = [
    "SAMPLE_RATE_HZ",
    "SLOW_RATE_HZ",
    "SLOW_WINDOW_LEN",
    "SPECTRAL_SPEC",
    "Fault",
    "synthetic_features",
    "synthetic_vibration",
]

SAMPLE_RATE_HZ = 10_240.0
SLOW_RATE_HZ = 10.0
SLOW_WINDOW_LEN = 32
Fault = Literal["none", "bearing", "imbalance"]

SPECTRAL_SPEC = FeatureSpec(
    name="vib-temp-current-spectral",
    version=1,
    window_len=1024,
    n_bands=128,
    sensors=(
        SensorSpec("vibration", SensorKind.VIBRATION),
        SensorSpec("temperature", SensorKind.SLOW),
        SensorSpec("current", SensorKind.SLOW),
    ),
)
"""The default spec with 128 log-spaced bands: the spectrum a vibration model needs to see."""


def synthetic_vibration(
    n_windows: int,
    *,
    window_len: int = 1024,
    sample_rate_hz: float = SAMPLE_RATE_HZ,
    shaft_hz: float = 24.7,
    fault: Fault = "none",
    severity: float = 1.0,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """Windows (n_windows x window_len) of vibration acceleration in g, healthy unless `fault` is set.

    `severity` scales the fault (1.0 is clearly visible in the spectrum, still small in RMS).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(window_len, dtype=np.float64) / sample_rate_hz
    speed = shaft_hz * (1.0 + 0.01 * rng.standard_normal((n_windows, 1)))
    out = np.zeros((n_windows, window_len), dtype=np.float64)
    for harmonic, amplitude in ((1, 0.30), (2, 0.12), (3, 0.05)):
        amp = amplitude * (1.0 + 0.08 * rng.standard_normal((n_windows, 1)))
        if harmonic == 1 and fault == "imbalance":
            amp = amp * (1.0 + 2.0 * severity)
        phase = rng.uniform(0.0, 2.0 * np.pi, (n_windows, 1))
        out += amp * np.sin(2.0 * np.pi * harmonic * speed * t + phase)
    out += 0.04 * rng.standard_normal((n_windows, window_len))
    if fault == "bearing":
        out += severity * _bearing_impacts(t, speed, rng)
    return out.astype(np.float32)


def _bearing_impacts(
    t: npt.NDArray[np.float64],
    speed: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Outer-race defect: impacts at 3.58x shaft ringing a 3.1 kHz resonance, plus the defect tone."""
    n_windows = speed.shape[0]
    defect_hz = 3.58 * speed
    offset = rng.uniform(0.0, 1.0, (n_windows, 1)) / defect_hz
    since_impact = np.mod(t[None, :] - offset, 1.0 / defect_hz)
    ringing = np.exp(-since_impact / 0.0006) * np.sin(2.0 * np.pi * 3_100.0 * since_impact)
    tone = np.sin(2.0 * np.pi * defect_hz * t + rng.uniform(0.0, 2.0 * np.pi, (n_windows, 1)))
    return 0.25 * ringing + 0.03 * tone


def _slow_windows(
    n_windows: int, level: float, wander: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    drift = level + wander * rng.standard_normal((n_windows, 1))
    slope = 0.002 * rng.standard_normal((n_windows, 1))
    t = np.arange(SLOW_WINDOW_LEN, dtype=np.float64) / SLOW_RATE_HZ
    noise = 0.05 * wander * rng.standard_normal((n_windows, SLOW_WINDOW_LEN))
    return (drift + slope * t + noise).astype(np.float32)


def synthetic_features(
    n_windows: int,
    *,
    spec: FeatureSpec = SPECTRAL_SPEC,
    fault: Fault = "none",
    severity: float = 1.0,
    shaft_hz: float = 24.7,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """Feature rows (n_windows x len(spec.feature_names)) of synthetic windows, through `shared.features`.

    Vibration sensors get `synthetic_vibration`; slow sensors named `temperature` sit near 55 °C, others
    (current) near 40 A; with `fault="bearing"` the temperature runs 4 °C hotter.
    """
    rng = np.random.default_rng(seed)
    columns = []
    for index, sensor in enumerate(spec.sensors):
        if sensor.kind is SensorKind.VIBRATION:
            windows = synthetic_vibration(
                n_windows,
                window_len=spec.window_len,
                shaft_hz=shaft_hz,
                fault=fault,
                severity=severity,
                seed=seed * 1_000 + index,
            )
            columns.append(spec.sensor_features(sensor, windows, SAMPLE_RATE_HZ))
        else:
            is_temperature = sensor.name.startswith("temp")
            level = (55.0 + (4.0 * severity if fault == "bearing" else 0.0)) if is_temperature else 40.0
            windows = _slow_windows(n_windows, level, 0.5 if is_temperature else 1.0, rng)
            columns.append(spec.sensor_features(sensor, windows, SLOW_RATE_HZ))
    return np.ascontiguousarray(np.hstack(columns), dtype=np.float32)
