"""The cost of re-diagnosing sustained alerts on the edge (`forewarn bench edge`, `rediagnosis_*` keys).

The edge pipeline runs in process (no broker: only the pipeline's own cost) on one 25.6 kHz pump-like
stream in 16,384-sample batches and 1,024-sample windows, with the baseline scorer. After a healthy
stretch (untimed: the scorer's warm-up and the diagnosis baseline) a strong bearing-band tone with
impacts starts and stays, so one alert is raised and stays raised for the whole timed stretch. The same
signal is run, in the same process, with:

* `ceiling`: no diagnosis section (nothing is diagnosed: the most the pipeline can do on this stream);
* `off`: a diagnosis section with `rediagnose_every_s = 0` (only the raise is diagnosed);
* `default`: the default `rediagnose_every_s` (600 s of data time);
* `every_1s`, `every_0_1s`: a re-diagnosis per 1 s and per 0.1 s of data time (stress rates).

The diagnosis settings are the defaults otherwise (its healthy baseline learns one window per 60 s of data
time). A re-diagnosis runs at most once per scored batch (16 windows here, 0.64 s of data), so the
stress rates give about one per batch. Each figure is windows per second of wall time over the timed
stretch, the median of `repeats` runs (run round-robin over the variants).
`rediagnosis_us_each` is the added time per re-diagnosis (of a `rediagnosis_window_samples` span), from
the `every_0_1s` and `off` runs;
`rediagnosis_min_every_s_at_target` is the shortest interval per alerting asset that keeps the edge's
throughput target (5 M samples/s, docs/edge.md) with every asset in alert, from that cost and the `off`
rate.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.pipeline import Pipeline
from edge_agent.settings import (
    AssetSettings,
    BaselineSettings,
    PipelineSettings,
    SensorSettings,
    SnapshotSettings,
)
from shared.asset_config import AssetDiagnosisConfig
from shared.diagnosis import diagnosis_window_samples
from shared.features import SensorKind
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S
from simulators.assets import ASSET_TYPES, asset_config_for_type

__all__ = ["TARGET_SAMPLES_PER_S", "run"]

TARGET_SAMPLES_PER_S = 5_000_000.0  # the edge throughput target (docs/edge.md, `samples_per_s`)
_RATE_HZ = 25_600.0
_BATCH = 16_384
_WINDOW = 1024
_HEALTHY_S = 40.0
_VARIANTS: dict[str, float | None] = {
    "ceiling": None,
    "off": 0.0,
    "default": AssetDiagnosisConfig().rediagnose_every_s,
    "every_1s": 1.0,
    "every_0_1s": 0.1,
}


def _signal(seconds: float) -> npt.NDArray[np.float32]:
    asset_type = ASSET_TYPES["centrifugal_pump"]
    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * _RATE_HZ / _BATCH) * _BATCH) / _RATE_HZ
    shaft_hz = asset_type.rpm / 60.0
    x = 0.08 * np.sin(2 * np.pi * shaft_hz * t) + 0.02 * rng.standard_normal(t.size)
    faulty = t >= _HEALTHY_S
    bpfo_hz = asset_type.bpfo_order * shaft_hz
    since = np.mod(t, 1.0 / bpfo_hz)
    impacts = np.exp(-since / 0.0004) * np.sin(2 * np.pi * 3000.0 * since)
    x = x + faulty * (0.3 * impacts + 0.1 * np.sin(2 * np.pi * 3217.0 * t))
    return x.astype(np.float32)


def _settings(rediagnose_every_s: float | None) -> PipelineSettings:
    config = None
    if rediagnose_every_s is not None:
        config = asset_config_for_type(ASSET_TYPES["centrifugal_pump"], (1.0,)).model_copy(
            update={"rediagnose_every_s": rediagnose_every_s}
        )
    sensor = SensorSettings(name="vibration", kind=SensorKind.VIBRATION, sample_rate_hz=_RATE_HZ)
    asset = AssetSettings(asset_id="pump-1", sensors=(sensor,), diagnosis=config)
    return PipelineSettings(
        assets=(asset,),
        window_len=_WINDOW,
        hop=_WINDOW,
        snapshots=SnapshotSettings(enabled=False),
        baseline=BaselineSettings(warmup_windows=40, learn_interval_s=0.25),  # warm within the healthy part
    )


def _batch(signal: npt.NDArray[np.float32], k: int) -> RawBatch:
    return RawBatch(
        asset_id="pump-1",
        sensor="vibration",
        seq=k,
        start_ns=1_790_000_000 * NS_PER_S + round(k * _BATCH * NS_PER_S / _RATE_HZ),
        sample_rate_hz=_RATE_HZ,
        samples=signal[k * _BATCH : (k + 1) * _BATCH],
    )


def _one_run(settings: PipelineSettings, signal: npt.NDArray[np.float32]) -> tuple[float, int, int]:
    """Windows per second over the faulty stretch, re-diagnoses run, alerts raised."""
    pipeline = Pipeline(settings=settings, gateway_id="bench", models=None, on_reject=lambda *_: None)
    n_batches = signal.size // _BATCH
    first_faulty = int(_HEALTHY_S * _RATE_HZ) // _BATCH
    for k in range(first_faulty):
        pipeline.process(_batch(signal, k))
    windows_before = pipeline.metrics.windows_cut
    started = time.perf_counter()
    for k in range(first_faulty, n_batches):
        pipeline.process(_batch(signal, k))
    pipeline.flush()
    elapsed = time.perf_counter() - started
    diagnosis = pipeline.diagnosis_metrics("pump-1")
    rediagnoses = diagnosis.rediagnoses if diagnosis is not None else 0
    windows_per_s = (pipeline.metrics.windows_cut - windows_before) / elapsed
    return windows_per_s, rediagnoses, pipeline.metrics.alerts_raised


def run(*, quick: bool = False) -> dict[str, Any]:
    """Windows per second with and without re-diagnosis of a sustained alert; see the module docstring."""
    faulty_s, repeats = (120.0, 1) if quick else (660.0, 3)
    signal = _signal(_HEALTHY_S + faulty_s)
    figures: dict[str, Any] = {}
    rediagnoses: dict[str, int] = {}
    runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in _VARIANTS}
    for _ in range(repeats):  # round-robin, so a change of the machine's load hits every variant alike
        for name, every_s in _VARIANTS.items():
            runs[name].append(_one_run(_settings(every_s), signal))
    for name, measured in runs.items():
        figures[f"rediagnosis_windows_per_s_{name}"] = round(statistics.median(r[0] for r in measured))
        rediagnoses[name] = measured[0][1]
        figures[f"rediagnosis_count_{name}"] = measured[0][1]
        figures[f"rediagnosis_alerts_raised_{name}"] = measured[0][2]
    off, stressed = figures["rediagnosis_windows_per_s_off"], figures["rediagnosis_windows_per_s_every_0_1s"]
    n_windows = round(faulty_s * _RATE_HZ / _WINDOW)
    added_s = n_windows / stressed - n_windows / off
    each_s = max(added_s, 0.0) / max(rediagnoses["every_0_1s"], 1)
    target_wps = TARGET_SAMPLES_PER_S / _WINDOW
    spare_s_per_window = 1.0 / target_wps - 1.0 / off  # what a window may still cost at the target
    windows_per_data_s = _RATE_HZ / _WINDOW
    figures["rediagnosis_target_windows_per_s"] = round(target_wps)
    figures["rediagnosis_us_each"] = round(each_s * 1e6, 1)
    figures["rediagnosis_min_every_s_at_target"] = (
        round(each_s / (windows_per_data_s * spare_s_per_window), 4) if spare_s_per_window > 0 else None
    )
    config = _settings(0.0).assets[0].diagnosis
    if config is not None:  # the span one (re-)diagnosis reads, longer than a scoring window for the cage
        figures["rediagnosis_window_samples"] = diagnosis_window_samples(config, _RATE_HZ, shortest=_WINDOW)
    figures["rediagnosis_repeats"] = repeats
    figures["rediagnosis_faulty_s"] = faulty_s
    return figures
