"""Signal synthesis: one burst of vibration and of each slow sensor per asset, vectorised over the fleet.

Vibration (acceleration, g) is the sum of what an analyst reads in a spectrum:

- shaft harmonics 1x, 2x, 3x (imbalance grows 1x with the square of speed, misalignment grows 2x and 3x);
- a type tone: vane/blade/lobe pass (`pass_order` x shaft) scaled by load, or a motor's 2x line frequency;
- bearing defects: a tone at the defect frequency (BPFO, or BPFI with 1x sidebands) plus a train of
  impacts at that frequency ringing a structural resonance (what raises kurtosis and crest factor early);
- broadband noise, per unit, rising late in bearing wear (RMS grows last);
- cavitation: band-limited high-frequency noise (2-4.5 kHz) scaled by load;
- scripted only (`simulators.assets.SCRIPTED_ONLY_MODES`): a rolling-element defect (impacts at 2 x BSF,
  a ball strikes both races once per spin, amplitude-modulated at FTF as the ball travels with the cage
  through the load zone), a cage defect (impacts once per cage revolution, FTF, and a tone at FTF), and
  looseness (the structure's response truncated once per revolution: the acceleration is the 1x motion
  gated to the part of the turn where the loose part is in contact, a row of harmonics, and the gate
  alternating in height every other turn, period doubling, which adds the half orders).

Slow sensors: bearing temperature (first-order thermal lag, integrated by the engine), motor current
(load and speed dependent), and for pumps and compressors discharge pressure and flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

__all__ = ["FleetSignals", "Severity", "bearing_wear", "vibration_burst"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_TWO_PI = np.float32(2.0 * np.pi)
_LINE_HZ = 50.0
_RING_TAU_S = 0.00025
_CONTACT_COS = (
    0.5  # looseness: the loose part is in contact while cos(shaft angle) > this (a third of a turn)
)
_PERIOD_DOUBLING = 0.6  # looseness: how much the contact differs between odd and even turns


@dataclass(frozen=True, slots=True)
class FleetSignals:
    """Per-asset constants the synthesis needs (arrays over the fleet, fleet order)."""

    base_1x_g: F64
    noise_g: F64
    bpfo_order: F64
    bpfi_order: F64
    pass_order: F64
    is_motor: npt.NDArray[np.bool_]
    resonance_hz: F64
    bsf_order: F64
    ftf_order: F64


@dataclass(frozen=True, slots=True)
class Severity:
    """Severity of each failure mode per asset (0 healthy, the threshold at failure)."""

    outer_race: F64
    inner_race: F64
    imbalance: F64
    misalignment: F64
    overheating: F64
    cavitation: F64
    rolling_element: F64
    cage: F64
    looseness: F64


_BLOCK = 64


def _add_tones(out: F32, rate_hz: float, freq_hz: F64, amp: F64, phase: F64) -> None:
    """Add `sum_k amp[:, k] * sin(2 pi freq[:, k] t + phase[:, k])` to every row (args: assets x tones).

    With t = block start + offset, sin(a + b) = sin a cos b + cos a sin b turns the sum over tones into
    one batched matrix product, (blocks x 2K) @ (2K x block length) per asset, so only
    2K (n / _BLOCK + _BLOCK) sines are evaluated per asset (angles in float64: exact phases).
    """
    n = out.shape[1]
    n_blocks = -(-n // _BLOCK)
    omega = 2.0 * np.pi * freq_hz / rate_hz  # assets x K
    coarse = omega[:, :, None] * (np.arange(n_blocks) * _BLOCK)[None, None, :] + phase[:, :, None]
    fine = omega[:, :, None] * np.arange(_BLOCK)[None, None, :]
    a = amp[:, :, None]
    left = np.concatenate([a * np.sin(coarse), a * np.cos(coarse)], axis=1).astype(np.float32)
    right = np.concatenate([np.cos(fine), np.sin(fine)], axis=1).astype(np.float32)
    waves = np.matmul(left.transpose(0, 2, 1), right)  # assets x blocks x _BLOCK
    out += waves.reshape(out.shape[0], n_blocks * _BLOCK)[:, :n]


def _add_impacts(
    out: F32, t: F32, *, rate_hz: F64, amp: F64, phase: F64, modulation_hz: F64, resonance_hz: F64
) -> None:
    """Decaying rings of a resonance, one per defect passage; amplitude-modulated at `modulation_hz`."""
    rows = np.flatnonzero(amp > 0)
    if rows.size == 0:
        return
    rate = rate_hz[rows].astype(np.float32)[:, None]
    cycles = t[None, :] * rate + phase[rows].astype(np.float32)[:, None]
    since = (cycles - np.floor(cycles)) / rate  # seconds since the last impact
    ring = np.exp(since * np.float32(-1.0 / _RING_TAU_S)) * np.sin(
        since * (_TWO_PI * resonance_hz[rows].astype(np.float32))[:, None]
    )
    envelope = amp[rows].astype(np.float32)[:, None] * (
        np.float32(1.0)
        + np.float32(0.6) * np.cos(t[None, :] * (_TWO_PI * modulation_hz[rows].astype(np.float32))[:, None])
    )
    out[rows] += envelope * ring


def _add_band_noise(
    out: F32, *, rate_hz: float, amp: F64, rng: np.random.Generator, low_hz: float, high_hz: float
) -> None:
    rows = np.flatnonzero(amp > 0)
    if rows.size == 0:
        return
    n = out.shape[1]
    freqs = scipy.fft.rfftfreq(n, d=1.0 / rate_hz)
    band = (freqs >= low_hz) & (freqs <= min(high_hz, 0.45 * rate_hz))
    spectrum = np.zeros((rows.size, freqs.size), dtype=np.complex64)
    count = int(band.sum())
    spectrum[:, band] = rng.standard_normal((rows.size, count), dtype=np.float32) + 1j * rng.standard_normal(
        (rows.size, count), dtype=np.float32
    )
    noise = scipy.fft.irfft(spectrum, n=n, axis=1, workers=1).astype(np.float32)
    scale = np.sqrt(np.mean(noise * noise, axis=1, keepdims=True)) + np.float32(1e-12)
    out[rows] += amp[rows].astype(np.float32)[:, None] * noise / scale


def bearing_wear(severity: Severity) -> F64:
    """The worst bearing damage of each asset (what raises broadband noise, friction and heat)."""
    races = np.maximum(severity.outer_race, severity.inner_race)
    return np.maximum(races, np.maximum(severity.rolling_element, severity.cage))


def _add_looseness(out: F32, t: F32, *, shaft_hz: F64, amp: F64, phase: F64) -> None:
    """The 1x motion gated to the contact part of each turn, the gate's height alternating every turn."""
    rows = np.flatnonzero(amp > 0)
    if rows.size == 0:
        return
    angle = t[None, :].astype(np.float64) * (2.0 * np.pi * shaft_hz[rows])[:, None] + phase[rows][:, None]
    motion = np.cos(angle)
    alternating = 1.0 + _PERIOD_DOUBLING * np.cos(0.5 * angle)
    response = np.where(motion > _CONTACT_COS, motion, 0.0) * alternating
    response -= response.mean(axis=1, keepdims=True)
    out[rows] += (amp[rows][:, None] * response).astype(np.float32)


def _add_scripted_modes(
    out: F32,
    t: F32,
    *,
    rate_hz: float,
    fleet: FleetSignals,
    nominal: F64,
    base: F64,
    severity: Severity,
    phases: F64,
) -> None:
    """Rolling-element, cage and looseness signals. They draw no random numbers (they reuse the burst's
    phases), so a scenario without these modes consumes its generator exactly as before."""
    if not (severity.rolling_element.any() or severity.cage.any() or severity.looseness.any()):
        return
    impact = 12.0 * base
    spin_hz = 2.0 * fleet.bsf_order * nominal  # a ball defect strikes the inner and the outer race per spin
    cage_hz = fleet.ftf_order * nominal
    _add_tones(
        out,
        rate_hz,
        np.stack([spin_hz, cage_hz], axis=1),
        np.stack([0.3 * base * severity.rolling_element, 0.3 * base * severity.cage], axis=1),
        np.stack([phases[4], phases[5]], axis=1),
    )
    _add_impacts(
        out,
        t,
        rate_hz=spin_hz,
        amp=impact * severity.rolling_element**0.8,
        phase=phases[7],
        modulation_hz=cage_hz,  # the ball travels with the cage through the load zone
        resonance_hz=fleet.resonance_hz,
    )
    _add_impacts(
        out,
        t,
        rate_hz=cage_hz,
        amp=impact * severity.cage**0.8,
        phase=phases[8],
        modulation_hz=np.zeros_like(nominal),
        resonance_hz=fleet.resonance_hz,
    )
    _add_looseness(out, t, shaft_hz=nominal, amp=3.0 * base * severity.looseness, phase=phases[0])


def vibration_burst(
    fleet: FleetSignals,
    *,
    shaft_hz: F64,
    load: F64,
    severity: Severity,
    n_samples: int,
    rate_hz: float,
    rng: np.random.Generator,
) -> F32:
    """One burst of vibration per asset (assets x samples, float32, in g).

    Args:
        fleet: per-asset constants.
        shaft_hz: shaft frequency per asset (0 for a stopped asset: only sensor noise remains).
        load: load per asset (0-1.2).
        severity: per-mode severity per asset.
        n_samples: burst length.
        rate_hz: sample rate.
        rng: the noise source (consumed in a fixed order: deterministic for a seed).
    """
    n_assets = shaft_hz.size
    t = (np.arange(n_samples, dtype=np.float64) / rate_hz).astype(np.float32)
    running = shaft_hz > 0
    wear = bearing_wear(severity)
    noise_g = fleet.noise_g * np.where(running, (1.0 + 0.3 * load) * (1.0 + 3.0 * wear**3), 0.25)
    out = rng.standard_normal((n_assets, n_samples), dtype=np.float32)
    out *= noise_g.astype(np.float32)[:, None]
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(9, n_assets))
    speed_ratio = np.where(running, shaft_hz, 0.0)
    base = np.where(running, fleet.base_1x_g, 0.0)
    nominal = np.maximum(speed_ratio, 1e-9)
    a1 = base * (1.0 + 6.0 * severity.imbalance) + 0.3 * base * severity.misalignment
    pass_hz = np.where(fleet.is_motor, 2.0 * _LINE_HZ, fleet.pass_order * nominal)
    bpfo = fleet.bpfo_order * nominal
    bpfi = fleet.bpfi_order * nominal
    mis = severity.misalignment
    tones = [  # (frequency, amplitude, phase) per asset
        (nominal, a1, phases[0]),
        (2.0 * nominal, 0.35 * base * (1.0 + 5.0 * mis), phases[1]),
        (3.0 * nominal, 0.12 * base * (1.0 + 2.5 * mis), phases[2]),
        (pass_hz, base * (0.2 + 0.4 * load), phases[3]),
        (bpfo, 0.6 * base * severity.outer_race, phases[4]),
        (bpfi, 0.5 * base * severity.inner_race, phases[5]),
        (bpfi - nominal, 0.2 * base * severity.inner_race, phases[6]),
        (bpfi + nominal, 0.2 * base * severity.inner_race, phases[6]),
    ]
    _add_tones(
        out,
        rate_hz,
        np.stack([f for f, _a, _p in tones], axis=1),
        np.stack([a for _f, a, _p in tones], axis=1),
        np.stack([p for _f, _a, p in tones], axis=1),
    )
    impact = 12.0 * fleet.base_1x_g * np.where(running, 1.0, 0.0)
    _add_impacts(
        out,
        t,
        rate_hz=bpfo,
        amp=impact * severity.outer_race**0.8,
        phase=phases[7],
        modulation_hz=np.zeros_like(nominal),  # outer race: fixed in the load zone
        resonance_hz=fleet.resonance_hz,
    )
    _add_impacts(
        out,
        t,
        rate_hz=bpfi,
        amp=impact * severity.inner_race**0.8,
        phase=phases[8],
        modulation_hz=nominal,
        resonance_hz=fleet.resonance_hz,
    )
    _add_scripted_modes(
        out, t, rate_hz=rate_hz, fleet=fleet, nominal=nominal, base=base, severity=severity, phases=phases
    )
    cavitation = np.where(running, 2.0 * fleet.base_1x_g * severity.cavitation * (0.5 + load), 0.0)
    _add_band_noise(out, rate_hz=rate_hz, amp=cavitation, rng=rng, low_hz=2000.0, high_hz=4500.0)
    return out


def slow_burst(level: F64, noise: F64, n_samples: int, rng: np.random.Generator) -> F32:
    """A short burst of a slow signal: its level plus Gaussian sensor noise (assets x samples)."""
    out = rng.standard_normal((level.size, n_samples), dtype=np.float32)
    out *= noise.astype(np.float32)[:, None]
    out += level.astype(np.float32)[:, None]
    return out
