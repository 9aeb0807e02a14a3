"""While an alert stays raised the edge re-diagnoses it at a bounded rate and sends what changed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.pipeline import Pipeline
from shared.asset_config import AssetDiagnosisConfig, BearingGeometry, BearingSettings
from shared.messages import AlertUpdate, decode_uplink, encode
from tests.test_edge_pipeline_support import (
    VIB_RATE,
    Run,
    Stream,
    asset_settings,
    interleave,
    settings,
)

GEOMETRY = BearingGeometry(ball_count=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)
SHAFT_HZ = 30.0
IMBALANCE_FROM_S = 60.0  # the 1x tone doubles, then grows to eight times its healthy level: imbalance
GROWN_AT_S = 100.0
BEARING_FROM_S = 120.0  # outer-race impacts at BPFO join it: a bearing defect, the mode that outranks
END_S = 170.0
EVERY_S = 10.0
RESEND_EVERY = 3


def _machine(rng: np.random.Generator) -> Stream:
    bpfo_hz = GEOMETRY.orders().bpfo * SHAFT_HZ

    def signal(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        growth = np.clip((t - IMBALANCE_FROM_S) / (GROWN_AT_S - IMBALANCE_FROM_S), 0.0, 1.0)
        one_x = np.where(t >= IMBALANCE_FROM_S, 0.1 + 0.3 * growth, 0.05)
        x = one_x * np.sin(2 * np.pi * SHAFT_HZ * t) + 0.015 * np.sin(2 * np.pi * 2 * SHAFT_HZ * t)
        x = x + rng.normal(0.0, 0.02, len(t))
        since = np.mod(t, 1.0 / bpfo_hz)  # time since the last impact
        ring = np.exp(-since / 0.0004) * np.sin(2 * np.pi * 3000.0 * since)
        defect: npt.NDArray[np.float64] = np.where(t >= BEARING_FROM_S, 0.3, 0.0) * ring
        return x + defect

    return Stream("pump-1", "vibration", VIB_RATE, signal, batch_len=4096)


def _run(rediagnose_every_s: float) -> tuple[Run, Pipeline]:
    config = AssetDiagnosisConfig(
        shaft_rpm=60 * SHAFT_HZ,
        bearings=(BearingSettings(geometry=GEOMETRY),),
        baseline_interval_s=4.0,
        rediagnose_every_s=rediagnose_every_s,
        rediagnose_resend_every=RESEND_EVERY,
    )
    asset = asset_settings(with_temperature=False).model_copy(update={"diagnosis": config})
    run = Run()
    pipeline = Pipeline(
        settings=settings([asset], warmup=40, window_len=8192, hop=4096),
        gateway_id="gw-1",
        models=None,
        on_reject=run.on_reject,
    )
    run.feed(pipeline, interleave([_machine(np.random.default_rng(5))], until_s=END_S))
    return run, pipeline


@pytest.mark.slow
def test_a_sustained_alert_is_rediagnosed_and_the_change_of_mode_is_sent() -> None:
    run, pipeline = _run(EVERY_S)
    raised = [a for a in run.alerts if a.state == "raised"]
    assert len(raised) == 1, [(a.state, a.ts_ns) for a in run.alerts]
    alert = raised[0]
    assert alert.diagnosis is not None
    assert alert.diagnosis.mode == "imbalance"
    updates = run.updates
    assert updates, "the sustained alert was never re-diagnosed"
    assert {u.alert_id for u in updates} == {alert.alert_id}
    assert all(u.ts_ns > alert.ts_ns for u in updates)
    # the change of mode is sent as `changed`, naming what it was
    changed = next(u for u in updates if u.diagnosis.mode == "outer_race")
    assert changed.reason == "changed"
    assert "was imbalance" in changed.message
    assert (changed.ts_ns - alert.ts_ns) / 1e9 >= BEARING_FROM_S - IMBALANCE_FROM_S - 5
    # before it, the growing imbalance is sent when its confidence moved by more than the setting, and an
    # unchanged one only every RESEND_EVERY re-diagnoses
    before = [u for u in updates if u.ts_ns < changed.ts_ns]
    assert {u.diagnosis.mode for u in before} == {"imbalance"}
    assert before[0].reason == "changed"
    assert before[0].diagnosis.confidence - alert.diagnosis.confidence > 0.2
    assert "unchanged" in {u.reason for u in before}
    sent_ns = [alert.ts_ns] + [u.ts_ns for u in updates]
    for previous_ns, update in zip(sent_ns, updates, strict=False):
        if update.reason == "unchanged":
            assert update.ts_ns - previous_ns >= RESEND_EVERY * EVERY_S * 1e9
    # the rate is bounded: at most one re-diagnosis per EVERY_S of signal time
    runner = pipeline.diagnosis_metrics("pump-1")
    assert runner is not None
    span_s = (END_S - IMBALANCE_FROM_S) + 1
    assert 0.5 * span_s / EVERY_S <= runner.rediagnoses <= span_s / EVERY_S + 1
    assert runner.updates == len(updates) < runner.rediagnoses
    assert np.all(np.diff([u.ts_ns for u in updates]) >= EVERY_S * 1e9)
    assert pipeline.metrics.alert_updates == len(updates)
    # the message round-trips its contract
    assert decode_uplink(encode(changed)) == changed


@pytest.mark.slow
def test_rediagnosis_off_sends_no_update_and_keeps_the_alert() -> None:
    run, pipeline = _run(0.0)
    assert [a.state for a in run.alerts] == ["raised"]
    assert run.updates == []
    runner = pipeline.diagnosis_metrics("pump-1")
    assert runner is not None
    assert runner.rediagnoses == 0
    assert not any(isinstance(m, AlertUpdate) for m in run.out)
