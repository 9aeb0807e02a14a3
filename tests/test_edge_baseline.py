"""The edge baseline on the simulator: the degrading asset alerts before it fails, healthy ones stay quiet.

Everything runs through the real `Pipeline` with its default settings (only the wall-clock batching delay
is lifted, so runs are deterministic), fed in-process from `simulators.iter_items`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.aggregation import ScoredWindows
from edge_agent.operating_state import spiky_windows
from edge_agent.pipeline import Pipeline
from edge_agent.scoring import BaselineScorer
from edge_agent.settings import PipelineSettings
from shared.messages import Alert
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S
from simulators import TruthRecord, iter_items, load_scenario
from tests.test_edge_agent_helpers import scenario_assets
from tests.test_edge_pipeline_support import T0_NS, VIB_RATE, Run, Stream, asset_settings, healthy, interleave

NS_PER_H = 3600 * NS_PER_S
DEGRADING = "pump-001"
HEALTHY = ("motor-001", "fan-001")


@dataclass
class SmokeRun:
    """One smoke-scenario run: raised alerts per asset, ground truth, windows, the pipeline's metrics."""

    pipeline: Pipeline
    start_ns: int
    raised: dict[str, list[Alert]] = field(default_factory=dict)
    truth: list[TruthRecord] = field(default_factory=list)
    windows: dict[str, list[ScoredWindows]] = field(default_factory=dict)

    def failure_ns(self, asset_id: str) -> int:
        return min(r.ts_ns for r in self.truth if r.asset_id == asset_id and r.event == "failure")

    def sensor_fault_intervals(self, asset_id: str) -> list[tuple[int, int]]:
        """[start, end] of each injected sensor fault of the asset, from the ground truth."""
        intervals = []
        for record in self.truth:
            if record.asset_id == asset_id and record.event == "sensor_fault":
                until = dict(part.split("=", 1) for part in record.detail.split(";"))["until"]
                intervals.append((record.ts_ns, int(datetime.fromisoformat(until).timestamp() * NS_PER_S)))
        return intervals

    def hours(self, ts_ns: int) -> float:
        return (ts_ns - self.start_ns) / NS_PER_H


def _run_smoke(seed: int | None) -> SmokeRun:
    scenario = load_scenario("smoke")
    if seed is not None:
        scenario = scenario.with_changes(seed=seed)
    settings = PipelineSettings(assets=scenario_assets(scenario), score_max_delay_ms=1e9)
    windows: dict[str, list[ScoredWindows]] = {}
    pipeline = Pipeline(
        settings=settings,
        gateway_id="gw-1",
        models=None,
        on_reject=lambda reason, batch, detail: None,
        on_windows=lambda asset_id, w: windows.setdefault(asset_id, []).append(w),
    )
    run = SmokeRun(pipeline=pipeline, start_ns=scenario.start_ns, windows=windows)
    out = []
    for item in iter_items(scenario, on_truth=run.truth.append):
        if isinstance(item, RawBatch):
            out.extend(pipeline.process(item))
    out.extend(pipeline.flush())
    for message in out:
        if isinstance(message, Alert) and message.state == "raised":
            run.raised.setdefault(message.asset_id, []).append(message)
    return run


@pytest.fixture(scope="module", params=[None, 7], ids=["seed-42", "seed-7"])
def smoke(request: pytest.FixtureRequest) -> SmokeRun:
    """The smoke scenario with its own seed (42) and with another one (other machines, other regimes)."""
    return _run_smoke(request.param)


@pytest.mark.slow
def test_degrading_pump_alerts_well_before_its_failure(smoke: SmokeRun) -> None:
    failure_ns = smoke.failure_ns(DEGRADING)
    alerts = smoke.raised.get(DEGRADING, [])
    assert alerts, "the degrading pump raised no alert"
    first = min(a.ts_ns for a in alerts)
    lead_h = (failure_ns - first) / NS_PER_H
    # Onset 0.25 h, failure 2.25 h; measured leads are 1.2-1.4 h on seeds 42, 1, 3, 7, 11.
    assert 0.5 < lead_h < 2.0, (
        f"first alert {smoke.hours(first):.2f} h, failure {smoke.hours(failure_ns):.2f} h"
    )
    assert alerts[0].model_kind == "baseline"
    assert alerts[0].top_features, "an alert names the features behind it"
    assert all(f.feature.startswith("vibration.") for f in alerts[0].top_features)


@pytest.mark.parametrize("asset_id", HEALTHY)
@pytest.mark.slow
def test_healthy_assets_raise_no_machine_condition_alert(smoke: SmokeRun, asset_id: str) -> None:
    """No alert outside the asset's injected sensor faults (in practice: none at all, see the next test)."""
    faults = smoke.sensor_fault_intervals(asset_id)
    assert faults, "the scenario injects sensor faults on both healthy assets"
    outside = [a for a in smoke.raised.get(asset_id, []) if not any(lo <= a.ts_ns <= hi for lo, hi in faults)]
    assert not outside, [(smoke.hours(a.ts_ns), a.top_features[:1]) for a in outside]


def test_sensor_faults_are_counted_not_alerted(smoke: SmokeRun) -> None:
    """Spikes on motor-001's vibration (1.5-1.6 h) are a sensor fault: those windows are counted as
    `sensor_spikes` and not scored; NaN samples on the fan are dropped by the stream checks; the
    current dropout leaves windows `incomplete`. None of them raises an alert on a healthy asset."""
    unscored = smoke.pipeline.metrics.windows_unscored
    assert unscored.get("sensor_spikes", 0) >= 100  # 36 bursts of 4 windows, ~3 spikes per window
    assert unscored.get("incomplete", 0) > 0
    assert smoke.pipeline.metrics.samples_nonfinite > 0
    assert all(asset_id not in smoke.raised for asset_id in HEALTHY)


def test_stopped_and_transient_windows_are_counted_not_scored(smoke: SmokeRun) -> None:
    """The pump stops at its failure (2.25-2.5 h): those windows are `stopped`, scored NaN, not learned."""
    unscored = smoke.pipeline.metrics.windows_unscored
    assert unscored.get("stopped", 0) >= 80  # 15 min of 4 windows per 10 s
    assert unscored.get("transient", 0) > 0  # its restart after repair, at least
    failure_ns = smoke.failure_ns(DEGRADING)
    down = [
        w.scores[(w.end_ns > failure_ns + 60 * NS_PER_S) & (w.end_ns < failure_ns + 840 * NS_PER_S)]
        for w in smoke.windows[DEGRADING]
    ]
    down_scores = np.concatenate(down)
    assert len(down_scores) >= 80
    assert np.isnan(down_scores).all(), "a stopped machine's windows must not be scored"


# ------------------------------------------------------------------------- the pieces, on known signals


def _stop_and_start(t: npt.NDArray[np.float64], signal: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Running until 60 s, stopped (1 % noise floor) until 90 s, running again."""
    is_stopped = (t >= 60.0) & (t < 90.0)
    return np.where(is_stopped, 0.01 * signal, signal)


def test_a_stop_and_a_start_are_counted_and_raise_nothing() -> None:
    rng = np.random.default_rng(5)
    base = healthy(rng)
    settings = PipelineSettings(
        assets=(asset_settings("pump-1", with_temperature=False),),
        score_max_delay_ms=1e9,
        score_batch_windows=4,
    ).model_copy(
        update={"baseline": PipelineSettings().baseline.model_copy(update={"learn_interval_s": 0.0})}
    )
    scored: list[ScoredWindows] = []
    run = Run()
    pipeline = Pipeline(
        settings=settings,
        gateway_id="gw-1",
        models=None,
        on_reject=run.on_reject,
        on_windows=lambda asset_id, w: scored.append(w),
    )
    stream = Stream("pump-1", "vibration", VIB_RATE, lambda t: _stop_and_start(t, base(t)), 1024)
    run.feed(pipeline, interleave([stream], 240.0))
    run.out.extend(pipeline.flush())
    assert not run.alerts
    end_s = (np.concatenate([w.end_ns for w in scored]) - stream_start_ns(scored)) / NS_PER_S
    scores = np.concatenate([w.scores for w in scored])
    assert np.isnan(scores[(end_s > 61.0) & (end_s < 90.0)]).all()  # stopped
    assert np.isnan(scores[(end_s > 91.0) & (end_s < 150.0)]).all()  # settling after the start (60 s)
    assert np.isfinite(scores[end_s > 151.0]).all()
    unscored = pipeline.metrics.windows_unscored
    assert unscored["stopped"] == pytest.approx(30 * VIB_RATE / 1024, abs=2)
    assert unscored["transient"] == pytest.approx(60 * VIB_RATE / 1024, abs=2)


def stream_start_ns(scored: list[ScoredWindows]) -> int:
    """The start of the stream: the first window's end minus one window."""
    return int(scored[0].end_ns[0]) - round(1024 * NS_PER_S / VIB_RATE)


def test_shape_baseline_ignores_a_load_change_that_scales_every_level() -> None:
    """Twice the load doubles RMS, peaks, band powers and current: levels, not condition."""
    names = ["vibration.rms", "vibration.kurtosis", "vibration.band_0", "vibration.band_1", "current.mean"]
    rng = np.random.default_rng(0)
    n = 400
    rows = np.column_stack(
        [
            rng.normal(1.0, 0.02, n),
            rng.normal(3.0, 0.1, n),
            rng.normal(4.0, 0.1, n),
            rng.normal(1.0, 0.03, n),
            rng.normal(30.0, 0.3, n),
        ]
    ).astype(np.float32)
    loaded = rows[:5] * np.array([2, 1, 2, 2, 2], dtype=np.float32)
    shape = BaselineScorer(feature_names=names, warmup_windows=100, features="shape", combine_top=2)
    every = BaselineScorer(feature_names=names, warmup_windows=100, features="all")
    shape.update(rows)
    every.update(rows)
    assert shape.scored_features == ("vibration.kurtosis", "vibration.band_0", "vibration.band_1")
    assert (shape.score(loaded) < 4.0).all()
    assert (every.score(loaded) > 6.0).all()
    # a fault that moves power from band 0 to band 1 changes the shape, whatever the load
    faulty = loaded.copy()
    faulty[:, 3] *= 3.0
    assert (shape.score(faulty) > 6.0).all()
    assert shape.contributions(faulty[:1], top_k=1)[0].feature.startswith("vibration.band_")


def test_score_is_the_mean_of_the_largest_z() -> None:
    rng = np.random.default_rng(1)
    scorer = BaselineScorer(feature_names=["a", "b", "c", "d"], warmup_windows=500, combine_top=2)
    scorer.update(rng.normal(0.0, 1.0, (2000, 4)).astype(np.float32))
    row = np.array([[0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    center, scale = scorer.center_, scorer.scale_
    assert center is not None
    assert scale is not None
    row[0, 0] = float(center[0] + 10.0 * scale[0])
    z = np.abs(scorer.z_scores(row)[0])
    assert float(scorer.score(row)[0]) == pytest.approx(float(np.sort(z)[-2:].mean()), rel=1e-5)
    assert float(scorer.score(row)[0]) < 6.0 < float(z.max())  # one feature alone no longer alerts


def test_spikes_are_found_and_impacts_are_not() -> None:
    rng = np.random.default_rng(2)
    rate = 10_000.0
    t = np.arange(1024) / rate
    noise = rng.normal(0.0, 1.0, (3, 1024))
    spikes = noise[0].copy()
    spikes[[100, 600, 900]] += 20.0
    ringing = np.zeros(1024)
    for start in (100, 700):  # impacts ringing a 3.5 kHz resonance, peaks far above 8 sigma
        tail = t[: 1024 - start]
        ringing[start:] += 100.0 * np.exp(-tail * 2000.0) * np.sin(2 * np.pi * 3500.0 * tail + 0.3)
    impacts = noise[1] + ringing
    assert np.abs(impacts - impacts.mean()).max() > 8.0 * impacts.std()
    windows = np.stack([spikes, impacts, noise[2]]).astype(np.float32)
    assert spiky_windows(windows).tolist() == [True, False, False]


def test_a_bursty_sensor_teaches_the_baseline_one_window_per_burst() -> None:
    """0.5 s bursts every 10 s (a wireless sensor): one learned window per burst, not one per 10 bursts."""
    rng = np.random.default_rng(4)
    signal = healthy(rng)
    pipeline = Pipeline(
        settings=PipelineSettings(
            assets=(asset_settings("pump-1", with_temperature=False),),
            score_max_delay_ms=1e9,
        ),
        gateway_id="gw-1",
        models=None,
        on_reject=lambda reason, batch, detail: None,
    )
    n_bursts, burst_len = 60, 4096
    for i in range(n_bursts):
        t = 10.0 * i + np.arange(burst_len) / VIB_RATE
        batch = RawBatch(
            "pump-1", "vibration", i, T0_NS + 10 * i * NS_PER_S, VIB_RATE, signal(t).astype(np.float32)
        )
        pipeline.process(batch)
    pipeline.flush()
    assert pipeline.metrics.windows_cut == n_bursts * burst_len // 1024
    baseline = pipeline._assets["pump-1"].baseline  # private: what the baseline learned is not public
    assert baseline is not None
    assert baseline.n_seen == n_bursts
