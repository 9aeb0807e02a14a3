"""Offline diagnosis of a recording (`forewarn diagnose`): the samples CSV `forewarn edge score` reads.

The recording is read with the offline scorer's reader (`edge_agent.offline`), one asset's vibration is
cut into half-overlapping windows, and the slow sensors' samples join the window they fall in. The
asset's healthy baseline comes from a healthy recording (`baseline_csv`) or from the recording's own
first seconds (`learn_first_s`); without either, only the noise-floor tests and the ISO zone apply.
Each later window is diagnosed (`shared.diagnosis`); the recording's mode is the one most windows name.
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.offline import VIBRATION_MIN_RATE_HZ
from edge_agent.samples_csv import CsvCounts, csv_batches, csv_files
from shared.asset_config import AssetDiagnosisConfig
from shared.diagnosis import (
    Diagnosis,
    DiagnosisBaseline,
    Measurements,
    WindowSignals,
    diagnose,
    diagnosis_window_samples,
    measure,
)
from shared.errors import ContractError
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S

__all__ = ["RecordingDiagnosis", "WindowDiagnosis", "diagnose_recording", "read_windows"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class WindowDiagnosis:
    """One diagnosed window: where it starts, what was measured, what the rules concluded."""

    start_ns: int
    measurements: Measurements
    diagnosis: Diagnosis


@dataclass(frozen=True, slots=True)
class _Recording:
    asset_id: str
    sample_rate_hz: float
    window_len: int
    windows: list[tuple[int, WindowSignals]]
    bad_rows: dict[str, int]


@dataclass(frozen=True)
class RecordingDiagnosis:
    """The diagnosis of a recording.

    Attributes:
        asset_id: the asset diagnosed.
        sample_rate_hz: its vibration rate.
        window_len: samples per window (windows overlap by half).
        baseline_source: where the baseline came from (`none`, `first 2 s`, a file).
        baseline_windows: windows the baseline learned from.
        windows: every diagnosed window, in time order.
        mode: the mode most windows name (`unknown` if none is named).
        mode_windows: how many windows name it.
        mode_counts: windows per mode.
        representative: the most confident window of that mode (for the evidence and the plot).
        bad_rows: CSV rows or cells skipped, per reason.
    """

    asset_id: str
    sample_rate_hz: float
    window_len: int
    baseline_source: str
    baseline_windows: int
    windows: tuple[WindowDiagnosis, ...]
    mode: str
    mode_windows: int
    mode_counts: dict[str, int]
    representative: WindowDiagnosis | None
    bad_rows: dict[str, int] = field(default_factory=dict)


def _runs(batches: list[RawBatch]) -> list[tuple[int, float, F64]]:
    """Contiguous runs of one sensor's batches as (start_ns, rate, samples)."""
    runs: list[tuple[int, float, list[F64]]] = []
    end_ns = None
    for batch in sorted(batches, key=lambda b: b.start_ns):
        period_ns = NS_PER_S / batch.sample_rate_hz
        samples = batch.samples.astype(np.float64)
        if runs and end_ns is not None and abs(batch.start_ns - end_ns) <= 0.5 * period_ns:
            runs[-1][2].append(samples)
        else:
            runs.append((batch.start_ns, batch.sample_rate_hz, [samples]))
        end_ns = batch.start_ns + round(samples.size * period_ns)
    return [(start, rate, np.concatenate(parts)) for start, rate, parts in runs]


def _default_window_len(rate_hz: float) -> int:
    """About a second of samples, as a power of two (frequency resolution near 1 Hz)."""
    return int(2 ** max(10, round(math.log2(rate_hz))))


def read_windows(
    csv_path: Path,
    *,
    asset_id: str | None = None,
    window_len: int | None = None,
    config: AssetDiagnosisConfig | None = None,
) -> _Recording:
    """One asset's half-overlapping windows of a samples CSV (file or directory of `raw_*.csv`).

    Windows are `window_len` long; empty: the window `config` wants (`diagnosis_window_samples`), at
    least about a second (a power of two).

    Raises:
        FileNotFoundError: if there is no CSV at `csv_path`.
        ContractError: if the header is wrong, or the asset or a vibration sensor is missing.
    """
    counts = CsvCounts()
    by_sensor: dict[tuple[str, str], list[RawBatch]] = collections.defaultdict(list)
    for path in csv_files(csv_path):
        for batch in csv_batches(path, {}, counts):
            by_sensor[(batch.asset_id, batch.sensor)].append(batch)
    assets = list(dict.fromkeys(a for a, _ in by_sensor))
    chosen = asset_id or (assets[0] if assets else None)
    if chosen is None or chosen not in assets:
        raise ContractError("asset_id", chosen, f"one of the recording's assets {assets}")
    sensors = {s: _runs(b) for (a, s), b in by_sensor.items() if a == chosen}
    fast = [s for s, runs in sensors.items() if s == "vibration" or runs[0][1] >= VIBRATION_MIN_RATE_HZ]
    if not fast:
        raise ContractError(
            "sensors", sorted(sensors), f"a vibration sensor (>= {VIBRATION_MIN_RATE_HZ:g} Hz)"
        )
    vibration = "vibration" if "vibration" in fast else fast[0]
    rate = sensors[vibration][0][1]
    length = window_len or _default_window_len(rate)
    if window_len is None and config is not None:
        length = diagnosis_window_samples(config, rate, shortest=length)
    slow = {s: runs for s, runs in sensors.items() if s not in fast}
    windows = []
    for start_ns, run_rate, samples in sensors[vibration]:
        for lo in range(0, samples.size - length + 1, max(1, length // 2)):
            begin = start_ns + round(lo * NS_PER_S / run_rate)
            end = begin + round(length * NS_PER_S / run_rate)
            window_slow = {name: _slice(runs, begin, end) for name, runs in slow.items()}
            windows.append(
                (
                    begin,
                    WindowSignals(
                        vibration=samples[lo : lo + length],
                        sample_rate_hz=run_rate,
                        slow={name: values for name, values in window_slow.items() if values.size},
                    ),
                )
            )
    return _Recording(chosen, rate, length, windows, dict(counts.bad))


def _slice(runs: list[tuple[int, float, F64]], begin_ns: int, end_ns: int) -> F64:
    parts = []
    for start_ns, rate, samples in runs:
        times = start_ns + np.arange(samples.size) * (NS_PER_S / rate)
        parts.append(samples[(times >= begin_ns) & (times < end_ns)])
    return np.concatenate(parts) if parts else np.empty(0)


def diagnose_recording(
    csv_path: Path,
    config: AssetDiagnosisConfig,
    *,
    baseline_csv: Path | None = None,
    learn_first_s: float | None = None,
    asset_id: str | None = None,
    window_len: int | None = None,
) -> RecordingDiagnosis:
    """Diagnose every window of a recording against the asset's baseline; see the module docstring."""
    recording = read_windows(
        csv_path, asset_id=asset_id or config.asset_id or None, window_len=window_len, config=config
    )
    windows = recording.windows
    baseline_measured: list[Measurements] = []
    source = "none"
    if baseline_csv is not None:
        healthy = read_windows(baseline_csv, window_len=recording.window_len)
        baseline_measured = [measure(w, config) for _, w in healthy.windows]
        source = str(baseline_csv)
    elif learn_first_s is not None and windows:
        until_ns = windows[0][0] + round(learn_first_s * NS_PER_S)
        window_ns = round(recording.window_len * NS_PER_S / recording.sample_rate_hz)
        baseline_measured = [measure(w, config) for start, w in windows if start + window_ns <= until_ns]
        windows = [(start, w) for start, w in windows if start >= until_ns]
        source = f"first {learn_first_s:g} s"
    baseline = DiagnosisBaseline().fit(baseline_measured) if baseline_measured else None
    diagnosed = []
    for start_ns, window in windows:
        measured = measure(window, config, keep_spectra=True)
        diagnosed.append(WindowDiagnosis(start_ns, measured, diagnose(measured, config, baseline)))
    counts = collections.Counter(d.diagnosis.mode for d in diagnosed)
    mode, mode_windows = counts.most_common(1)[0] if counts else ("unknown", 0)
    of_mode = [d for d in diagnosed if d.diagnosis.mode == mode]
    representative = max(of_mode, key=lambda d: d.diagnosis.confidence) if of_mode else None
    return RecordingDiagnosis(
        asset_id=recording.asset_id,
        sample_rate_hz=recording.sample_rate_hz,
        window_len=recording.window_len,
        baseline_source=source,
        baseline_windows=len(baseline_measured),
        windows=tuple(diagnosed),
        mode=mode,
        mode_windows=mode_windows,
        mode_counts=dict(counts),
        representative=representative,
        bad_rows=recording.bad_rows,
    )
