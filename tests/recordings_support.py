"""Synthesised single-accelerometer bearing recordings of known answer, as `forewarn edge score` reads them.

Healthy: a shaft at 29.95 Hz (1797 rpm) with its 2x and 3x harmonics, a broadband structural response and
sensor noise. Fault: an outer-race defect, a train of impacts at the ball-pass frequency (107.4 Hz, 3.585
orders) with a little timing jitter, each ringing a 2.6 kHz resonance that decays in about 1 ms, plus a
raise of the whole level (`level`) as a worn bearing runs rougher. Both follow envelopes over time given by
piecewise-linear knots, so a test states when the fault starts, how fast it grows and when it dips.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import signal, stats

from shared.timebase import NS_PER_S

__all__ = ["T0_NS", "Recording", "auc", "labelled_scores", "read_scores", "write_recording"]

T0_NS = 1_790_000_000 * NS_PER_S
SHAFT_HZ = 29.95
BPFO_HZ = 3.585 * SHAFT_HZ
RESONANCE_HZ = 2600.0
RING_DECAY_S = 0.001
Knots = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Recording:
    """What to synthesise: the rate, the length, and the fault's envelopes as (time s, value) knots.

    Attributes:
        rate_hz: the accelerometer's sample rate.
        duration_s: the recording's length.
        impacts: the impact amplitude over time (0: healthy), in units of the healthy shaft tone.
        level: the factor on the whole healthy signal over time (1: healthy).
        seed: seeds the noise and the impact jitter.
    """

    rate_hz: float
    duration_s: float
    impacts: Knots = ((0.0, 0.0),)
    level: Knots = ((0.0, 1.0),)
    seed: int = 0


def _envelope(knots: Knots, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    times, values = zip(*knots, strict=True)
    return np.interp(t, np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64))


def synthesise(recording: Recording) -> npt.NDArray[np.float64]:
    """The recording's samples."""
    rng = np.random.default_rng(recording.seed)
    n = round(recording.duration_s * recording.rate_hz)
    t = np.arange(n) / recording.rate_hz
    shaft = (
        np.sin(2 * np.pi * SHAFT_HZ * t)
        + 0.4 * np.sin(2 * np.pi * 2 * SHAFT_HZ * t + 0.7)
        + 0.15 * np.sin(2 * np.pi * 3 * SHAFT_HZ * t + 1.9)
    )
    band = signal.butter(2, [800.0, 4000.0], btype="band", fs=recording.rate_hz)
    structure = np.asarray(signal.lfilter(*band, rng.normal(0.0, 0.6, n)), dtype=np.float64)
    healthy = (shaft + structure + rng.normal(0.0, 0.05, n)) * _envelope(recording.level, t)
    period = recording.rate_hz / BPFO_HZ
    starts = np.arange(0.0, n, period) + rng.normal(0.0, 0.01 * period, int(np.ceil(n / period)))
    at = np.clip(np.rint(starts).astype(np.int64), 0, n - 1)
    train = np.zeros(n)
    np.add.at(train, at, _envelope(recording.impacts, t[at]))
    ring_t = np.arange(round(8 * RING_DECAY_S * recording.rate_hz)) / recording.rate_hz
    ring = np.exp(-ring_t / RING_DECAY_S) * np.sin(2 * np.pi * RESONANCE_HZ * ring_t)
    impacts = np.asarray(signal.fftconvolve(train, ring)[:n], dtype=np.float64)
    return healthy + 3.0 * impacts


def write_recording(path: Path, recording: Recording, *, asset_id: str = "bearing-1") -> Path:
    """Write `asset_id,time,vibration` with integer epoch-ns times; return the path."""
    samples = synthesise(recording).astype(np.float32)
    times = T0_NS + np.rint(np.arange(len(samples)) * (NS_PER_S / recording.rate_hz)).astype(np.int64)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("asset_id,time,vibration\n")
        prefix = f"{asset_id},"
        for lo in range(0, len(samples), 100_000):
            chunk = zip(times[lo : lo + 100_000].tolist(), samples[lo : lo + 100_000].tolist(), strict=True)
            handle.write("".join(f"{prefix}{ts},{value:.6g}\n" for ts, value in chunk))
    return path


def read_scores(path: Path) -> list[dict[str, str]]:
    """The rows of a `forewarn edge score` output file."""
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def labelled_scores(
    rows: list[dict[str, str]], *, healthy: tuple[float, float], fault: tuple[float, float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Scores of the scored windows ending in the `healthy` or `fault` span (seconds, [start, end)), and
    whether each is a fault window."""
    times = np.array([(int(r["time_ns"]) - T0_NS) / NS_PER_S for r in rows])
    in_healthy = (times >= healthy[0]) & (times < healthy[1])
    in_fault = (times >= fault[0]) & (times < fault[1])
    scored = np.array([r["score"] != "" for r in rows]) & (in_healthy | in_fault)
    scores = np.array([float(r["score"]) if r["score"] else np.nan for r in rows])
    return scores[scored], in_fault[scored]


def auc(scores: npt.NDArray[np.float64], is_fault: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve: the chance a fault window outscores a healthy one (ties count half)."""
    faults, healthy = scores[is_fault], scores[~is_fault]
    if len(faults) == 0 or len(healthy) == 0:
        return float("nan")
    ranks = stats.rankdata(np.concatenate((healthy, faults)))  # ties get their average rank
    u = ranks[len(healthy) :].sum() - len(faults) * (len(faults) + 1) / 2
    return float(u / (len(faults) * len(healthy)))
