"""Edge model figures: int8 vs float ONNX Runtime vs scikit-learn latency, model sizes, decision agreement.

Called by `forewarn bench edge` (E3's suite). Everything is measured in one run on one thread: a model is
trained on the simulator's healthy pump (the smoke scenario with its faults removed) over `SPECTRAL_SPEC`
(145 features: 128 log bands), converted, quantized both ways (dynamic and static QDQ int8), and timed
scoring one window (best of several runs) and a batch of 256 windows (per window). Agreement is float vs
int8 decisions at the model's threshold on the smoke scenario's pump: healthy, wearing, failed, repaired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud_service.modeling import (
    SPECTRAL_SPEC,
    ModelArtifact,
    build_anomaly_model,
    decision_agreement,
    onnx_scores,
    quantize_int8,
)
from edge_agent.scoring import make_session
from forewarn.bench.timing import best_rate
from shared.features import FeatureMatrix, FeatureSpec, SensorKind
from simulators import Scenario, load_scenario, parse_scenario, simulate

__all__ = ["healthy_scenario", "measure", "simulator_features"]

BATCH_WINDOWS = 256


def healthy_scenario(
    name: str = "smoke", *, duration_h: float | None = None, seed: int | None = None
) -> Scenario:
    """A bundled (or file) scenario with every failure, sensor fault and transport fault removed."""
    data = load_scenario(name).spec.model_dump(mode="python")
    data.update(failures=[], sensor_faults=[], transport_faults=[])
    data["random_failures"]["rate_per_asset_year"] = 0.0
    if duration_h is not None:
        data["time"]["duration_h"] = duration_h
    if seed is not None:
        data["seed"] = seed
    return parse_scenario(data, source=f"healthy:{name}")


def simulator_features(
    scenario: Scenario, spec: FeatureSpec, *, max_steps: int | None = None
) -> dict[str, FeatureMatrix]:
    """Per asset, the feature rows of `spec` for every vibration window the simulator produces.

    Each step's vibration burst is cut into `spec.window_len` windows; slow sensors' features of that step
    are repeated on each of its windows. Windows of a stopped asset are kept (stopping is normal), rows with
    a missing sensor or non-finite value are dropped. Use `healthy_scenario` for training data.
    """
    rate_hz = scenario.spec.signals.vibration_rate_hz
    slow_rate_hz = scenario.spec.signals.slow_rate_hz
    rows: dict[str, list[FeatureMatrix]] = {asset: [] for asset in scenario.asset_ids}
    for step in simulate(scenario):
        if max_steps is not None and step.index >= max_steps:
            break
        for i, asset in enumerate(scenario.asset_ids):
            parts = []
            for sensor in spec.sensors:
                signal = step.signals.get(sensor.name)
                if signal is None or not step.emitted[sensor.name][i]:
                    break
                if sensor.kind is SensorKind.VIBRATION:
                    windows = signal[i][: len(signal[i]) // spec.window_len * spec.window_len]
                    parts.append(spec.sensor_features(sensor, windows.reshape(-1, spec.window_len), rate_hz))
                else:
                    parts.append(spec.sensor_features(sensor, signal[i][None, :], slow_rate_hz))
            else:
                n_windows = max(len(part) for part in parts)
                block = np.hstack([np.repeat(part, n_windows // len(part), axis=0) for part in parts])
                rows[asset].append(block[np.isfinite(block).all(axis=1)])
    width = len(spec.feature_names)
    return {
        asset: np.vstack(blocks).astype(np.float32) if blocks else np.empty((0, width), np.float32)
        for asset, blocks in rows.items()
    }


def _latency_us(call: Callable[[], object], *, calls: int, timing: tuple[int, float]) -> float:
    """Microseconds per call, best of `repeats` timed runs."""

    def work() -> int:
        for _ in range(calls):
            call()
        return calls

    repeats, min_time_s = timing
    return 1e6 / best_rate(work, repeats=repeats, min_time_s=min_time_s)


def _ort_call(model: bytes, rows: npt.NDArray[np.float32]) -> Callable[[], object]:
    session = make_session(model, intra_op_threads=1)
    feed = {"features": np.ascontiguousarray(rows, dtype=np.float32)}
    return lambda: session.run(["score"], feed)


BENCH_ASSET = "pump-001"


def _train(healthy: FeatureMatrix) -> ModelArtifact:
    return build_anomaly_model(
        healthy,
        SPECTRAL_SPEC.feature_names,
        feature_spec=SPECTRAL_SPEC.spec_id,
        target="bench",
        version=1,
        seed=1,
    )


def measure(*, quick: bool = False) -> dict[str, Any]:
    """Train the edge model once, then time it as sklearn, ORT float and ORT int8 (dynamic and static)."""
    repeats, min_time_s = (5, 0.1) if quick else (7, 0.3)  # best-of needs a few runs even when quick
    healthy = simulator_features(healthy_scenario("smoke", duration_h=1.0 if quick else 4.0), SPECTRAL_SPEC)
    artifact = _train(healthy[BENCH_ASSET])
    smoke = simulator_features(load_scenario("smoke"), SPECTRAL_SPEC)[BENCH_ASSET]
    one = np.ascontiguousarray(smoke[:1])
    batch = np.ascontiguousarray(smoke[:BATCH_WINDOWS])
    calibration = healthy[BENCH_ASSET][:1024]
    static = artifact.onnx_int8  # the deployed model: static QDQ calibrated on its fitting rows
    dynamic = quantize_int8(artifact.onnx_float, calibration, method="int8-dynamic")
    timing = (repeats, min_time_s)
    single = {
        name: _latency_us(_ort_call(model, one), calls=20, timing=timing)
        for name, model in (("float", artifact.onnx_float), ("dynamic", dynamic), ("static", static))
    }
    per_window_batch = {
        name: _latency_us(_ort_call(model, batch), calls=2, timing=timing) / BATCH_WINDOWS
        for name, model in (("float", artifact.onnx_float), ("dynamic", dynamic), ("static", static))
    }
    sklearn_us = _latency_us(lambda: artifact.sklearn_model.score_samples(one), calls=5, timing=timing)
    validation = smoke  # three simulated hours of the pump: healthy, wearing, failed, repaired
    threshold = artifact.manifest.threshold
    float_scores = onnx_scores(artifact.onnx_float, validation)
    return {
        "model_type": artifact.manifest.model_type,
        "model_quantization": artifact.manifest.quantization,
        "model_n_features": len(artifact.manifest.feature_names),
        "model_n_components": int(artifact.metrics["n_components"]),
        "ort_int8_window_latency_us": round(single["static"], 2),
        "ort_float_window_latency_us": round(single["float"], 2),
        "sklearn_window_latency_us": round(sklearn_us, 2),
        "sklearn_over_ort_int8_speedup": round(sklearn_us / single["static"], 1),
        "ort_int8_dynamic_window_latency_us": round(single["dynamic"], 2),
        "ort_int8_static_qdq_window_latency_us": round(single["static"], 2),
        "ort_float_batch256_per_window_us": round(per_window_batch["float"], 3),
        "ort_int8_dynamic_batch256_per_window_us": round(per_window_batch["dynamic"], 3),
        "ort_int8_static_qdq_batch256_per_window_us": round(per_window_batch["static"], 3),
        "model_bytes_float": len(artifact.onnx_float),
        "model_bytes_int8": len(artifact.onnx_int8),
        "model_bytes_int8_dynamic": len(dynamic),
        "int8_float_decision_agreement": decision_agreement(
            float_scores, onnx_scores(artifact.onnx_int8, validation), threshold
        ),
        "int8_dynamic_float_decision_agreement": decision_agreement(
            float_scores, onnx_scores(dynamic, validation), threshold
        ),
        "agreement_rows": len(validation),
        "smoke_pump_alarm_fraction": round(float(np.mean(float_scores > threshold)), 4),
        "training_rows": len(healthy[BENCH_ASSET]),
    }
