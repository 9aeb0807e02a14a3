"""The gates of a training run: what a candidate must pass to stay a candidate instead of being rejected.

Each candidate's own gates: int8/float decision agreement on the validation (and fault) rows of at least
`min_agreement`, a one-row int8 latency of at most `max_latency_us`, an int8 artifact of at most
`max_model_bytes`. The best candidate then meets the champion gate: against the model deployed for the
target, on the same rows, no higher validation alarm rate and no lower fault detection rate (each within
`champion_tolerance`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import psycopg

from cloud_service.lifecycle import registry
from cloud_service.lifecycle.records import AlarmRates, ChampionGate, Gate, Gates
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.modeling import onnx_scores

__all__ = ["alarm_rates", "candidate_gates", "champion_gate", "failed_reason", "int8_latency_us"]

F32 = npt.NDArray[np.float32]
Conn = psycopg.Connection[Any]
_LATENCY_RUNS = 200


def int8_latency_us(model: bytes, rows: F32) -> float:
    """Median time (µs) the model takes to score the first of `rows` alone, on one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(rows[:1], dtype=np.float32)}
    session.run(None, feed)
    timings = []
    for _ in range(_LATENCY_RUNS):
        started = time.perf_counter_ns()
        session.run(["score"], feed)
        timings.append(time.perf_counter_ns() - started)
    return float(np.median(timings) / 1e3)


def alarm_rates(model: bytes, threshold: float, *, validation: F32, faults: F32) -> AlarmRates:
    """Share of validation rows and of fault rows (if any) that `model` scores above `threshold`."""
    return AlarmRates(
        validation_alarm_rate=float(np.mean(onnx_scores(model, validation) > threshold)),
        fault_detection_rate=float(np.mean(onnx_scores(model, faults) > threshold)) if len(faults) else None,
    )


def candidate_gates(
    *, agreement: float, latency_us: float, size_bytes: int, settings: LifecycleSettings
) -> Gates:
    """A candidate's own gates from its measurements and the limits in `settings`."""
    return Gates(
        agreement=Gate(
            value=agreement, limit=settings.min_agreement, passed=agreement >= settings.min_agreement
        ),
        latency_us=Gate(
            value=latency_us, limit=settings.max_latency_us, passed=latency_us <= settings.max_latency_us
        ),
        size_bytes=Gate(
            value=size_bytes, limit=settings.max_model_bytes, passed=size_bytes <= settings.max_model_bytes
        ),
    )


def failed_reason(gates: Gates) -> str:
    """`gate failed: ...` naming each failed own gate with its value and limit; empty if all passed."""
    failed = [
        f"{name} {gate.value:.6g} vs limit {gate.limit:.6g}"
        for name, gate in gates.own().items()
        if not gate.passed
    ]
    return "gate failed: " + "; ".join(failed) if failed else ""


def champion_gate(
    conn: Conn,
    settings: LifecycleSettings,
    *,
    target: str,
    feature_names: Sequence[str],
    rates: AlarmRates,
    validation: F32,
    faults: F32,
) -> ChampionGate:
    """The candidate with `rates` (on `validation` and `faults`) against `target`'s deployed model."""
    champion = registry.deployed_model(conn, target, with_artifact=True)
    if champion is None:
        return ChampionGate(passed=True, champion=None, detail="no deployed model")
    if tuple(champion.feature_names) != tuple(feature_names):
        return ChampionGate(passed=True, champion=champion.version, detail="champion uses other features")
    theirs = alarm_rates(champion.artifact, champion.threshold, validation=validation, faults=faults)
    tolerance = settings.champion_tolerance
    worse = rates.validation_alarm_rate > theirs.validation_alarm_rate + tolerance
    if theirs.fault_detection_rate is not None and rates.fault_detection_rate is not None:
        worse |= rates.fault_detection_rate < theirs.fault_detection_rate - tolerance
    return ChampionGate(passed=not worse, champion=champion.version, champion_metrics=theirs)
