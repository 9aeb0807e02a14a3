"""The edge diagnoses the window that raises an alert and the alert carries the result."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.diagnosis_runner import DiagnosisRunner
from edge_agent.pipeline import Pipeline
from shared.asset_config import AssetDiagnosisConfig, BearingGeometry, BearingSettings
from shared.errors import ContractError
from shared.messages import Alert, AlertDiagnosis, decode_uplink, encode
from tests.test_edge_pipeline_support import (
    VIB_RATE,
    Run,
    Signal,
    Stream,
    asset_settings,
    interleave,
    settings,
)

GEOMETRY = BearingGeometry(ball_count=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)
SHAFT_HZ = 30.0
DEFECT_FROM_S = 80.0


def _machine(rng: np.random.Generator, impact_hz: float = GEOMETRY.orders().bpfo * SHAFT_HZ) -> Signal:
    """A 30 Hz shaft with bearing impacts at `impact_hz` (default BPFO: an outer race) from
    `DEFECT_FROM_S` on."""

    def signal(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x = 0.05 * np.sin(2 * np.pi * SHAFT_HZ * t) + 0.015 * np.sin(2 * np.pi * 2 * SHAFT_HZ * t)
        x = x + rng.normal(0.0, 0.02, len(t))
        since = np.mod(t, 1.0 / impact_hz)  # time since the last impact
        ring = np.exp(-since / 0.0004) * np.sin(2 * np.pi * 3000.0 * since)
        defect: npt.NDArray[np.float64] = np.where(t >= DEFECT_FROM_S, 0.3, 0.0) * ring
        return x + defect

    return signal


@pytest.mark.slow
def test_a_raised_alert_carries_the_diagnosis_of_its_window() -> None:
    config = AssetDiagnosisConfig(
        shaft_rpm=60 * SHAFT_HZ, bearings=(BearingSettings(geometry=GEOMETRY),), baseline_interval_s=5.0
    )
    asset = asset_settings(with_temperature=False).model_copy(update={"diagnosis": config})
    pipeline_settings = settings([asset], warmup=40, window_len=8192, hop=4096)
    run = Run()
    pipeline = Pipeline(settings=pipeline_settings, gateway_id="gw-1", models=None, on_reject=run.on_reject)
    stream = Stream("pump-1", "vibration", VIB_RATE, _machine(np.random.default_rng(5)), batch_len=4096)
    run.feed(pipeline, interleave([stream], until_s=110.0))
    raised = [a for a in run.alerts if a.state == "raised"]
    assert raised, "the defect raised no alert"
    diagnosis = raised[0].diagnosis
    assert diagnosis is not None
    assert diagnosis.mode == "outer_race"
    bpfo = next(e for e in diagnosis.evidence if e.name == "bpfo x1")
    assert bpfo.is_found
    assert bpfo.freq_hz == pytest.approx(GEOMETRY.orders().bpfo * SHAFT_HZ, rel=0.02)
    assert diagnosis.iso_zone in ("A", "B", "C", "D")
    runner = pipeline._assets["pump-1"].diagnosis
    assert runner is not None
    assert runner.metrics.learned >= 5
    assert runner.metrics.diagnoses == len(raised) + runner.metrics.rediagnoses


@pytest.mark.slow
def test_a_cage_defect_is_diagnosed_from_a_span_longer_than_the_scoring_window() -> None:
    # A 1,024-sample window at 8,192 Hz holds 1.5 cage turns and resolves no cage harmonic from the shaft's
    # half orders; the diagnosis reads the longer span the cage needs, from the stream the gateway keeps.
    config = AssetDiagnosisConfig(
        shaft_rpm=60 * SHAFT_HZ, bearings=(BearingSettings(geometry=GEOMETRY),), baseline_interval_s=5.0
    )
    asset = asset_settings(with_temperature=False).model_copy(update={"diagnosis": config})
    pipeline_settings = settings([asset], warmup=40, window_len=1024, hop=1024, batch_windows=16)
    run = Run()
    pipeline = Pipeline(settings=pipeline_settings, gateway_id="gw-1", models=None, on_reject=run.on_reject)
    stream = Stream(
        "pump-1",
        "vibration",
        VIB_RATE,
        _machine(np.random.default_rng(6), (GEOMETRY.orders().ftf or 0.0) * SHAFT_HZ),
        batch_len=4096,
    )
    run.feed(pipeline, interleave([stream], until_s=110.0))
    runner = pipeline._assets["pump-1"].diagnosis
    assert runner is not None
    assert runner.window_samples > 1024
    raised = [a for a in run.alerts if a.state == "raised"]
    assert raised, "the defect raised no alert"
    # The raise's span ends 0.4 s into the fault and is mostly healthy; the first re-diagnosis comes once
    # the span holds only samples from the raise on, well before `rediagnose_every_s` (600 s).
    span_ns = round(runner.window_samples / VIB_RATE * 1e9)
    update = run.updates[0]
    assert update.ts_ns - raised[0].ts_ns <= span_ns + 2 * 10**9
    assert update.diagnosis.mode == "cage"
    comb = update.diagnosis.evidence[0]
    assert comb.freq_hz == pytest.approx((GEOMETRY.orders().ftf or 0.0) * SHAFT_HZ, rel=0.02)
    assert runner.metrics.learned >= 5


def test_the_alert_contract_keeps_its_version_and_round_trips_the_diagnosis() -> None:
    diagnosis = AlertDiagnosis(mode="inner_race:drive-end", confidence=0.75, iso_zone="C", shaft_hz=29.9)
    alert = Alert(
        gateway_id="gw-1",
        asset_id="pump-1",
        seq=3,
        alert_id="pump-1:1",
        state="raised",
        severity="warning",
        ts_ns=1_790_000_000_000_000_000,
        score=9.0,
        threshold=6.0,
        model_version="baseline",
        model_kind="baseline",
        diagnosis=diagnosis,
    )
    payload = encode(alert)
    assert b'"kind":"alert/1"' in payload
    assert decode_uplink(payload) == alert
    # An alert from a gateway without diagnosis still decodes, and an old decoder ignores the new field.
    old = msgspec.json.decode(payload)
    del old["diagnosis"]
    assert decode_uplink(msgspec.json.encode(old)).diagnosis is None  # type: ignore[union-attr]


def test_a_diagnosis_confidence_out_of_range_is_rejected() -> None:
    payload = msgspec.json.encode(
        {
            "kind": "alert/1",
            "gateway_id": "gw-1",
            "asset_id": "pump-1",
            "seq": 1,
            "alert_id": "a",
            "state": "raised",
            "severity": "info",
            "ts_ns": 1_790_000_000_000_000_000,
            "score": 1.0,
            "threshold": 1.0,
            "model_version": "b",
            "model_kind": "baseline",
            "diagnosis": {"mode": "outer_race", "confidence": math.pi},
        }
    )
    with pytest.raises(ContractError, match="confidence"):
        decode_uplink(payload)


def test_the_runner_learns_whole_spans_and_counts_short_runs() -> None:
    config = AssetDiagnosisConfig(
        shaft_rpm=60 * SHAFT_HZ, bearings=(BearingSettings(geometry=GEOMETRY),), baseline_interval_s=0.0
    )
    runner = DiagnosisRunner(
        config=config, sample_rate_hz=VIB_RATE, feature_names=(), scoring_window=1024, scoring_lag_samples=0
    )
    span = runner.window_samples
    assert span > 1024
    rng = np.random.default_rng(3)
    start_ns = 1_790_000_000 * 10**9
    ns_per_sample = 10**9 / VIB_RATE

    def window_end(samples_so_far: int) -> npt.NDArray[np.int64]:
        return np.array([start_ns + round(samples_so_far * ns_per_sample)], dtype=np.int64)

    def learn_at(samples_so_far: int) -> None:
        end = window_end(samples_so_far)
        runner.hold(np.zeros((1, 0), dtype=np.float32), end)
        runner.learn(end, np.array([True]))

    runner.append(rng.normal(0.0, 0.02, span // 2).astype(np.float32), start_ns)
    learn_at(span // 2)
    assert runner.metrics.learned == 0  # half a span so far: a later window learns
    runner.append(rng.normal(0.0, 0.02, span).astype(np.float32), int(window_end(span // 2)[0]))
    learn_at(span // 4)  # early in the run: it reads the run's first span, which holds it
    assert runner.metrics.learned == 1
    runner.restart()  # a gap: what came before does not join what follows
    assert runner.metrics.short_runs == 0  # that run held a whole span
    restart_ns = int(window_end(3 * span)[0])
    runner.append(rng.normal(0.0, 0.02, 1024).astype(np.float32), restart_ns)
    end = np.array([restart_ns + round(1024 * ns_per_sample)], dtype=np.int64)
    runner.hold(np.zeros((1, 0), dtype=np.float32), end)
    assert runner.diagnose(int(end[0])) is not None  # diagnosed on the short span, without the baseline
    assert runner.metrics.short_diagnoses == 1
    runner.restart()
    assert runner.metrics.short_runs == 1
