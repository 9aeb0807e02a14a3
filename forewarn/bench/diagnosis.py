"""`forewarn bench diagnosis`: how often the physics-based diagnosis names the right failure mode.

Per asset type, a fleet of one healthy unit and one unit per failure mode the type can have (scripted
onset, exponential wear to failure) is simulated for several seeds. Each unit's diagnosis configuration
comes from its type's datasheet values (nominal speed, the VFD's speed range, the bearing's geometry
derived from its defect orders), never from the simulator's signal constants. Each burst is as long as
the window a gateway with the default scoring window diagnoses for that type
(`shared.diagnosis.diagnosis_window_samples`, `window_samples_by_type`). Each unit's baseline is learned
from its first healthy hours; then every running window is diagnosed.

Figures (windows of a failing unit in the last quarter of its time to failure, where an alert stands;
windows of healthy units after their baseline):

- `accuracy`: share of those windows whose mode is right (`unknown` is right for a healthy unit);
- `per_mode_recall`: per simulated failure mode, the share of its windows named that mode, beside
  `per_mode_recall_by_type` (per `asset_type:mode`);
- `unknown_rate`: share of failing-unit windows diagnosed `unknown`;
- `false_mode_rate_on_healthy`: share of healthy windows that named a machine mode, beside
  `false_mode_rate_on_healthy_by_type` (per asset type) and `false_modes_on_healthy` (window counts per
  `asset_type:mode`, the modes named);
- `lead_time_h_median`: from the first time 3 of 5 consecutive windows named the right mode to the failure;
- `edge_diagnosis_us_per_window`: median time to measure and diagnose one window, beside
  `fft_floor_us_per_window`, the spectra it needs at least (one rFFT, one band-pass, one Hilbert transform
  of the same length; the median over the same windows);
- `pipeline_samples_per_s_with_diagnosis` beside `..._without_diagnosis`: the edge pipeline in process
  (25.6 kHz pump stream, baseline scorer) with and without a diagnosis section, whose healthy baseline
  then learns one window per `baseline_interval_s` (the ceiling is the pipeline without it);
- `reference_*`: the same figures for a plain reference, a k-nearest-neighbour classifier on the
  standard spectral features (`shared.features`) and the slow sensors' means, fitted on the other seeds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.signal
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from edge_agent.pipeline import Pipeline
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings, SnapshotSettings
from shared.asset_config import AssetDiagnosisConfig
from shared.diagnosis import (
    MACHINE_MODES,
    DiagnosisBaseline,
    Measurements,
    WindowSignals,
    diagnose,
    diagnosis_window_samples,
    measure,
)
from shared.features import SensorKind, vibration_features
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S
from simulators import Step, fleet_units, parse_scenario, simulate
from simulators.assets import ASSET_TYPES, FAST_SENSOR, FailureMode, asset_config_for_type
from simulators.scenario import OperationSection, Scenario, SignalsSection

__all__ = ["plant_ambient_c", "run", "window_signals"]

_HEALTHY = "unknown"
_SLOW = ("temperature", "current", "pressure", "flow")
_ONSET_H = 12.0
_TTF_H = 14.0
_BASELINE_H = (0.5, 11.5)  # long enough to see several load and speed regimes
_LATE_FRACTION = 0.75
_DEBOUNCE = (3, 5)
_N_BANDS = 16
_KNN_NEIGHBOURS = 5


def plant_ambient_c(scenario: Scenario, t_ns: int) -> float:
    """The plant's ambient temperature at a time (the scenario's daily cycle, as the engine has it)."""
    hour = (t_ns % (24 * 3600 * NS_PER_S)) / (3600 * NS_PER_S)
    signals = scenario.spec.signals
    return signals.ambient_c + signals.daily_swing_c * math.sin(2.0 * math.pi * (hour - 9.0) / 24.0)


def window_signals(step: Step, index: int, rate_hz: float, ambient_c: float | None = None) -> WindowSignals:
    """One asset's signals of one simulator step, as a diagnosis window (with the plant's ambient reading)."""
    slow = {
        sensor: step.signals[sensor][index].astype(np.float64)
        for sensor in _SLOW
        if step.emitted[sensor][index]
    }
    if ambient_c is not None:
        slow["ambient"] = np.array([ambient_c])
    vibration = (
        step.signals[FAST_SENSOR][index].astype(np.float64) if step.emitted[FAST_SENSOR][index] else None
    )
    return WindowSignals(vibration=vibration, sample_rate_hz=rate_hz, slow=slow)


def _burst_samples(name: str) -> int:
    """The samples one diagnosis of this type reads on a gateway scoring the default windows (the
    simulator's bursts are that long)."""
    config = asset_config_for_type(ASSET_TYPES[name], OperationSection().speed_factors)
    return diagnosis_window_samples(
        config, SignalsSection().vibration_rate_hz, shortest=PipelineSettings().window_len
    )


def _scenario(seed: int, duration_h: float, step_s: float, name: str) -> Scenario:
    """One type's fleet: a healthy unit and a unit per failure mode, bursts as long as one diagnosis."""
    modes = sorted(ASSET_TYPES[name].scriptable_modes)
    prefix = name.replace("_", "-")
    failures = [
        {
            "asset": f"{prefix}-{k + 2:03d}",
            "mode": mode.value,
            "onset_h": _ONSET_H,
            "time_to_failure_h": _TTF_H,
        }
        for k, mode in enumerate(modes)
    ]
    return parse_scenario(
        {
            "name": f"diagnosis-bench-{name}-{seed}",
            "seed": seed,
            "time": {"duration_h": duration_h, "step_s": step_s},
            "signals": {"burst_samples": _burst_samples(name)},
            "assets": [{"type": name, "count": 1 + len(modes), "id_prefix": prefix}],
            "failures": failures,
        },
        source="bench",
    )


@dataclass
class _Unit:
    """What the bench keeps per simulated unit."""

    asset_id: str
    asset_type: str
    config: AssetDiagnosisConfig
    mode: str = _HEALTHY
    onset_ns: int | None = None
    failure_ns: int | None = None
    baseline_windows: list[Measurements] = field(default_factory=list)
    baseline: DiagnosisBaseline | None = None


@dataclass
class _Row:
    """One diagnosed window."""

    seed: int
    asset_id: str
    asset_type: str
    truth: str
    predicted: str
    is_late: bool
    t_ns: int
    features: npt.NDArray[np.float64]


def _reference_features(window: WindowSignals, samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    vibration = vibration_features(samples[None, :], window.sample_rate_hz, _N_BANDS)[0]
    slow = [float(np.mean(window.slow[s])) if s in window.slow else 0.0 for s in _SLOW]
    slow += [float(np.std(window.slow[s])) if s in window.slow else 0.0 for s in ("pressure", "flow")]
    return np.concatenate((vibration.astype(np.float64), np.array(slow)))


def _diagnose_seed(
    seed: int, name: str, *, duration_h: float, step_s: float, timings: list[tuple[int, float]]
) -> Iterator[_Row]:
    scenario = _scenario(seed, duration_h, step_s, name)
    rate_hz = scenario.spec.signals.vibration_rate_hz
    speed_factors = scenario.spec.operation.speed_factors
    units = [
        _Unit(unit.asset_id, unit.type.name, asset_config_for_type(unit.type, speed_factors))
        for unit in fleet_units(scenario)
    ]
    by_id = {u.asset_id: u for u in units}
    for failure in scenario.spec.failures:
        unit = by_id[failure.asset]
        unit.mode = failure.mode
        unit.onset_ns = scenario.start_ns + round(failure.onset_h * 3600 * NS_PER_S)
        unit.failure_ns = unit.onset_ns + round(failure.time_to_failure_h * 3600 * NS_PER_S)
    baseline_from, baseline_to = (scenario.start_ns + round(h * 3600 * NS_PER_S) for h in _BASELINE_H)
    for step in simulate(scenario):
        for i, unit in enumerate(units):
            if not step.running[i]:
                continue
            window = window_signals(step, i, rate_hz, plant_ambient_c(scenario, step.t_ns))
            samples = window.vibration
            if samples is None:
                continue
            if baseline_from <= step.t_ns < baseline_to:
                unit.baseline_windows.append(measure(window, unit.config))
                continue
            if step.t_ns < baseline_to:
                continue
            if unit.baseline is None:
                unit.baseline = DiagnosisBaseline().fit(unit.baseline_windows)
            if unit.failure_ns is not None and step.t_ns >= unit.failure_ns:
                continue
            started = time.perf_counter()
            diagnosis = diagnose(measure(window, unit.config), unit.config, unit.baseline)
            timings.append((samples.size, time.perf_counter() - started))
            is_late = unit.onset_ns is None or (
                unit.failure_ns is not None
                and step.t_ns >= unit.onset_ns + _LATE_FRACTION * (unit.failure_ns - unit.onset_ns)
            )
            truth = unit.mode if unit.onset_ns is not None and step.t_ns >= unit.onset_ns else _HEALTHY
            yield _Row(
                seed,
                unit.asset_id,
                unit.asset_type,
                truth,
                diagnosis.mode,
                is_late,
                step.t_ns,
                _reference_features(window, samples),
            )


def _scores(rows: list[_Row], predicted: list[str]) -> dict[str, Any]:
    pairs = [(r, p) for r, p in zip(rows, predicted, strict=True) if r.is_late]
    failing = [(r, p) for r, p in pairs if r.truth != _HEALTHY]
    healthy = [(r, p) for r, p in pairs if r.truth == _HEALTHY]
    recall = {}
    for mode in sorted({r.truth for r, _ in failing}):
        of_mode = [p == mode for r, p in failing if r.truth == mode]
        recall[mode] = round(sum(of_mode) / len(of_mode), 4)
    by_type: dict[str, list[bool]] = {}
    for r, p in failing:
        by_type.setdefault(f"{r.asset_type}:{r.truth}", []).append(p == r.truth)
    return {
        "accuracy": round(sum(r.truth == p for r, p in pairs) / max(1, len(pairs)), 4),
        "per_mode_recall": recall,
        "per_mode_recall_by_type": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_type.items())},
        "unknown_rate": round(sum(p == _HEALTHY for _, p in failing) / max(1, len(failing)), 4),
        "false_mode_rate_on_healthy": round(
            sum(p in MACHINE_MODES for _, p in healthy) / max(1, len(healthy)), 4
        ),
        **_healthy_breakdown(healthy),
        "windows_failing": len(failing),
        "windows_healthy": len(healthy),
    }


def _healthy_breakdown(healthy: list[tuple[_Row, str]]) -> dict[str, Any]:
    """Where healthy windows' false modes come from: the rate per asset type, the count per type and mode."""
    by_type: dict[str, list[bool]] = {}
    named: dict[str, int] = {}
    for row, mode in healthy:
        is_false = mode in MACHINE_MODES
        by_type.setdefault(row.asset_type, []).append(is_false)
        if is_false:
            key = f"{row.asset_type}:{mode}"
            named[key] = named.get(key, 0) + 1
    return {
        "false_mode_rate_on_healthy_by_type": {
            name: round(sum(flags) / len(flags), 4) for name, flags in sorted(by_type.items())
        },
        "false_modes_on_healthy": dict(sorted(named.items(), key=lambda item: -item[1])),
    }


def _lead_times_h(
    rows: list[_Row], predicted: list[str], failures_ns: dict[tuple[int, str], int]
) -> list[float]:
    need, of = _DEBOUNCE
    leads = []
    for (seed, asset_id), failure_ns in failures_ns.items():
        recent: list[bool] = []
        for row, mode in zip(rows, predicted, strict=True):
            if row.seed != seed or row.asset_id != asset_id or row.truth == _HEALTHY:
                continue
            recent = [*recent[-(of - 1) :], mode == row.truth]
            if sum(recent) >= need:
                leads.append((failure_ns - row.t_ns) / (3600 * NS_PER_S))
                break
    return leads


def _reference_predictions(rows: list[_Row]) -> list[str]:
    """Leave-one-seed-out kNN on the standard features (labels: the truth of every diagnosed window)."""
    predicted = [""] * len(rows)
    seeds = sorted({r.seed for r in rows})
    for seed in seeds:
        train = [r for r in rows if r.seed != seed] if len(seeds) > 1 else rows[::2]
        test_index = [i for i, r in enumerate(rows) if r.seed == seed]
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=_KNN_NEIGHBOURS))
        model.fit(np.stack([r.features for r in train]), [r.truth for r in train])
        labels = model.predict(np.stack([rows[i].features for i in test_index]))
        for i, label in zip(test_index, labels.tolist(), strict=True):
            predicted[i] = str(label)
    return predicted


def _floor_us(rate_hz: float, n_samples: int, repeats: int = 200) -> float:
    """The spectra one diagnosis needs at least: one rFFT, one 4th-order band-pass and one Hilbert."""
    x = np.random.default_rng(0).standard_normal(n_samples)
    sos = scipy.signal.butter(4, (0.1 * rate_hz, 0.4 * rate_hz), btype="bandpass", fs=rate_hz, output="sos")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scipy.fft.rfft(x, workers=1)
        scipy.signal.hilbert(scipy.signal.sosfilt(sos, x))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def _pipeline_samples_per_s(*, with_diagnosis: bool, seconds: float, repeats: int) -> float:
    """The edge pipeline's in-process rate (baseline scorer) on a pump-like stream, median of runs."""
    rate_hz, batch_len = 25_600.0, 16_384
    asset_type = ASSET_TYPES["centrifugal_pump"]
    config = asset_config_for_type(asset_type, (1.0,)) if with_diagnosis else None
    sensor = SensorSettings(name="vibration", kind=SensorKind.VIBRATION, sample_rate_hz=rate_hz)
    asset = AssetSettings(asset_id="pump-1", sensors=(sensor,), diagnosis=config)
    settings = PipelineSettings(assets=(asset,), snapshots=SnapshotSettings(enabled=False))
    rng = np.random.default_rng(0)
    n_batches = int(seconds * rate_hz / batch_len)
    shaft_hz = asset_type.rpm / 60.0
    t = np.arange(n_batches * batch_len) / rate_hz
    signal = (0.08 * np.sin(2 * np.pi * shaft_hz * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    rates = []
    for _ in range(repeats):
        pipeline = Pipeline(settings=settings, gateway_id="bench", models=None, on_reject=lambda *_: None)
        started = time.perf_counter()
        for k in range(n_batches):
            samples = signal[k * batch_len : (k + 1) * batch_len]
            pipeline.process(
                RawBatch(
                    asset_id="pump-1",
                    sensor="vibration",
                    seq=k,
                    start_ns=round(k * batch_len * NS_PER_S / rate_hz),
                    sample_rate_hz=rate_hz,
                    samples=samples,
                )
            )
        pipeline.flush()
        rates.append(n_batches * batch_len / (time.perf_counter() - started))
    return statistics.median(rates)


def run(*, quick: bool = False) -> dict[str, Any]:
    """Simulate, diagnose and score; see the module docstring for the figures."""
    seeds = (11,) if quick else (11, 12, 13)
    duration_h, step_s = (_ONSET_H + _TTF_H, 300.0) if quick else (_ONSET_H + _TTF_H, 120.0)
    timings: list[tuple[int, float]] = []
    rows: list[_Row] = []
    failures_ns: dict[tuple[int, str], int] = {}
    for seed in seeds:
        for name in ASSET_TYPES:
            rows.extend(_diagnose_seed(seed, name, duration_h=duration_h, step_s=step_s, timings=timings))
            scenario = _scenario(seed, duration_h, step_s, name)
            for failure in scenario.spec.failures:
                onset_ns = scenario.start_ns + round(failure.onset_h * 3600 * NS_PER_S)
                failures_ns[(seed, failure.asset)] = onset_ns + round(
                    failure.time_to_failure_h * 3600 * NS_PER_S
                )
    predicted = [r.predicted for r in rows]
    reference = _reference_predictions(rows)
    leads = _lead_times_h(rows, predicted, failures_ns)
    reference_leads = _lead_times_h(rows, reference, failures_ns)
    figures: dict[str, Any] = {"seeds": list(seeds), "asset_types": sorted(ASSET_TYPES), "step_s": step_s}
    figures["window_samples_by_type"] = {name: _burst_samples(name) for name in sorted(ASSET_TYPES)}
    figures |= _scores(rows, predicted)
    figures["lead_time_h_median"] = round(statistics.median(leads), 2) if leads else None
    figures["failures_diagnosed_before_failure"] = f"{len(leads)}/{len(failures_ns)}"
    figures["edge_diagnosis_us_per_window"] = round(statistics.median(t for _, t in timings) * 1e6, 1)
    floors = {n: _floor_us(SignalsSection().vibration_rate_hz, n) for n in {n for n, _ in timings}}
    figures["fft_floor_us_per_window"] = round(statistics.median(floors[n] for n, _ in timings), 1)
    figures["diagnosis_to_floor_ratio"] = round(
        figures["edge_diagnosis_us_per_window"] / figures["fft_floor_us_per_window"], 2
    )
    reference_scores = _scores(rows, reference)
    figures |= {
        f"reference_{key}": value
        for key, value in reference_scores.items()
        if not key.startswith("windows") and key not in ("false_modes_on_healthy", "per_mode_recall_by_type")
    }
    figures["reference_lead_time_h_median"] = (
        round(statistics.median(reference_leads), 2) if reference_leads else None
    )
    figures["reference"] = f"kNN (k={_KNN_NEIGHBOURS}) on shared.features + slow means, leave-one-seed-out"
    figures["modes_simulated"] = sorted(m.value for m in FailureMode)
    seconds, repeats = (60.0, 1) if quick else (600.0, 3)
    without = _pipeline_samples_per_s(with_diagnosis=False, seconds=seconds, repeats=repeats)
    with_diagnosis = _pipeline_samples_per_s(with_diagnosis=True, seconds=seconds, repeats=repeats)
    figures["pipeline_samples_per_s_without_diagnosis"] = round(without)
    figures["pipeline_samples_per_s_with_diagnosis"] = round(with_diagnosis)
    figures["pipeline_with_to_without_diagnosis_ratio"] = round(with_diagnosis / without, 3)
    return figures
