"""Edge pipeline: windows, features, scoring, alerts, aggregates, stream checks and hot swap."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.alerts import AlertDebouncer, Transition
from edge_agent.pipeline import REJECT_REASONS, Pipeline
from edge_agent.settings import AssetSettings, SensorSettings, SnapshotSettings
from edge_agent.windowing import StreamChecker, Verdict, Windower
from shared.features import SensorKind, slow_features, vibration_features
from shared.messages import ModelManifest, decode_uplink, encode
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S
from tests.test_edge_pipeline_support import (
    T0_NS,
    TEMP_RATE,
    VIB_RATE,
    RecordingScorer,
    Run,
    Stream,
    asset_settings,
    healthy,
    interleave,
    processed,
    settings,
    temperature,
    with_defect,
)

F32 = npt.NDArray[np.float32]


@dataclass
class _Model:
    manifest: ModelManifest
    scorer: RecordingScorer


class SwitchableModels:
    """A model source whose active model a test (or another thread) replaces by one assignment."""

    def __init__(self) -> None:
        self.current: _Model | None = None

    def active(self, target: str) -> _Model | None:
        del target
        return self.current

    def activate(self, scorer: RecordingScorer, *, spec: str = "vib-temp-current@1") -> None:
        manifest = ModelManifest(
            target="pump-1",
            version=int(scorer.version.rsplit("v", 1)[-1]) if "v" in scorer.version else 1,
            model_type="test",
            artifact_sha256="0" * 64,
            feature_spec=spec,
            feature_names=list(scorer.feature_names),
            threshold=scorer.threshold,
        )
        self.current = _Model(manifest, scorer)


def _vibration_only() -> AssetSettings:
    return asset_settings(with_temperature=False)


def _noisy_temperature(rng: np.random.Generator) -> Stream:
    """A steady temperature with sensor noise (a drifting one is, rightly, an anomaly to the baseline)."""

    def signal(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 40.0 + rng.normal(0.0, 0.05, len(t))

    return Stream("pump-1", "temperature", TEMP_RATE, signal, 10)


def _all_windows(samples: F32, window_len: int, hop: int) -> F32:
    count = (len(samples) - window_len) // hop + 1
    return np.stack([samples[i * hop : i * hop + window_len] for i in range(count)])


# ------------------------------------------------------------------------------------------ windowing


@pytest.mark.parametrize(("window_len", "hop"), [(256, 100), (256, 256), (50, 120)])
def test_windows_and_hop_are_exact_across_batch_boundaries(window_len: int, hop: int) -> None:
    rate = 1000.0  # 1 ms per sample: every end time is an exact integer of ns
    windower = Windower(window_len=window_len, hop=hop, sample_rate_hz=rate)
    ramp = np.arange(5000, dtype=np.float32)
    got, ends = [], []
    position = 0
    for size in (100, 1, 2000, 37, 999, 1863):
        start_ns = T0_NS + position * 1_000_000
        windows = windower.push(ramp[position : position + size], start_ns)
        got.extend(windows.samples.tolist())
        ends.extend(windows.end_ns.tolist())
        position += size
    starts = range(0, 5000 - window_len + 1, hop)
    assert got == [list(range(s, s + window_len)) for s in starts]
    assert ends == [T0_NS + (s + window_len) * 1_000_000 for s in starts]


def test_a_restart_drops_the_partial_window() -> None:
    windower = Windower(window_len=100, hop=100, sample_rate_hz=1000.0)
    assert len(windower.push(np.zeros(150, dtype=np.float32), T0_NS)) == 1
    windower.restart()
    windows = windower.push(np.arange(120, dtype=np.float32), T0_NS + 10 * NS_PER_S)
    assert windows.samples.tolist() == [list(range(100))]
    assert windows.end_ns.tolist() == [T0_NS + 10 * NS_PER_S + 100_000_000]


def _batch(seq: int, start_s: float, n: int = 100, rate: float = 100.0) -> RawBatch:
    return RawBatch(
        "pump-1", "vibration", seq, T0_NS + round(start_s * NS_PER_S), rate, np.zeros(n, np.float32)
    )


@pytest.mark.parametrize(
    ("seq", "start_s", "verdict"),
    [
        (2, 2.0, Verdict.CONTIGUOUS),
        (5, 2.0, Verdict.CONTIGUOUS),  # skipped seq numbers but no missing time
        (2, 3.5, Verdict.GAP),
        (2, 1.5, Verdict.CLOCK_BACKWARDS),
        (1, 1.0, Verdict.DUPLICATE),
        (0, 0.0, Verdict.OUT_OF_ORDER),
        (0, 2.0, Verdict.SEQ_RESET),
    ],
)
def test_stream_checker_classifies_batches(seq: int, start_s: float, verdict: Verdict) -> None:
    checker = StreamChecker(sample_rate_hz=100.0, tolerance_s=0.001)
    assert checker.check(_batch(0, 0.0))[0] is Verdict.FIRST
    assert checker.check(_batch(1, 1.0))[0] is Verdict.CONTIGUOUS
    assert checker.check(_batch(seq, start_s))[0] is verdict


# ------------------------------------------------------------------------------------------- features


def test_features_per_window_equal_shared_features_with_the_slow_sensor_joined() -> None:
    rng = np.random.default_rng(1)
    models = SwitchableModels()
    run = Run()
    pipeline = Pipeline(
        settings=settings(window_len=1024, hop=512), gateway_id="gw-1", models=models, on_reject=run.on_reject
    )
    scorer = RecordingScorer(pipeline.feature_names("pump-1"), version="pump-1:v1")
    models.activate(scorer)
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    temp = Stream("pump-1", "temperature", TEMP_RATE, temperature, 10)
    sent = list(interleave([temp, vib], 6.0))
    run.feed(pipeline, sent)
    run.out.extend(pipeline.flush())

    vib_samples = np.concatenate([b.samples for b in sent if b.sensor == "vibration"])
    temp_samples = np.concatenate([b.samples for b in sent if b.sensor == "temperature"])
    windows = _all_windows(vib_samples, 1024, 512)
    end_s = (np.arange(len(windows)) * 512 + 1024) / VIB_RATE
    span = 20  # slow_window_s = 2 s at 10 Hz
    temp_end = np.ceil(end_s * TEMP_RATE - 1e-6).astype(int)
    joined = temp_end >= span  # earlier windows lack 2 s of temperature: not scored
    expected = np.hstack(
        [
            vibration_features(windows[joined], VIB_RATE, 8),
            slow_features(np.stack([temp_samples[e - span : e] for e in temp_end[joined]]), TEMP_RATE),
        ]
    )
    got = np.concatenate(scorer.rows)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    metrics = pipeline.metrics
    assert metrics.windows_cut == len(windows)
    assert metrics.windows_scored == int(joined.sum())
    assert metrics.windows_unscored == {"incomplete": int((~joined).sum())}
    assert not run.rejects


def test_aggregates_hold_mean_min_max_per_period_by_data_time() -> None:
    rng = np.random.default_rng(2)
    models = SwitchableModels()
    run = Run()
    config = settings([_vibration_only()], batch_windows=5).model_copy(
        update={"aggregation": settings().aggregation.model_copy(update={"period_s": 1.0})}
    )
    pipeline = Pipeline(settings=config, gateway_id="gw-1", models=models, on_reject=run.on_reject)
    scorer = RecordingScorer(pipeline.feature_names("pump-1"), version="pump-1:v3", threshold=0.75)
    models.activate(scorer)
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 3000)
    sent = [vib.next() for _ in range(14)]  # 42,000 samples: 5.1 s
    run.feed(pipeline, sent)
    run.out.extend(pipeline.flush())

    windows = _all_windows(np.concatenate([b.samples for b in sent]), 1024, 1024)
    features = vibration_features(windows, VIB_RATE, 8)
    end_ns = T0_NS + np.rint((np.arange(len(windows)) + 1) * 1024 * NS_PER_S / VIB_RATE).astype(np.int64)
    periods = (end_ns - 1) // NS_PER_S
    aggregates = run.aggregates
    assert [a.period_start_ns for a in aggregates] == sorted({int(p) * NS_PER_S for p in periods})
    names = pipeline.feature_names("pump-1")
    for aggregate in aggregates:
        rows = features[periods == aggregate.period_start_ns // NS_PER_S]
        assert aggregate.period_end_ns - aggregate.period_start_ns == NS_PER_S
        assert aggregate.model_version == "pump-1:v3"
        assert aggregate.model_kind == "onnx"
        assert aggregate.feature_spec == "vib-temp-current@1"
        stats = np.array([(s.mean, s.min, s.max) for s in (aggregate.features[n] for n in names)])
        np.testing.assert_allclose(stats[:, 0], rows.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(stats[:, 1], rows.min(axis=0), rtol=1e-6)
        np.testing.assert_allclose(stats[:, 2], rows.max(axis=0), rtol=1e-6)
        score = aggregate.score
        assert score.n_windows == len(rows)
        assert score.mean == pytest.approx(float(rows[:, 0].mean()), rel=1e-5)
        assert score.max == pytest.approx(float(rows[:, 0].max()), rel=1e-6)
        assert score.threshold == pytest.approx(0.75)
        assert score.n_above_threshold == int((rows[:, 0] > 0.75).sum())
    assert pipeline.metrics.aggregates == len(aggregates)


# --------------------------------------------------------------------------------------------- alerts


def test_debouncer_raises_at_the_kth_of_n_and_clears_after_a_normal_run() -> None:
    debouncer = AlertDebouncer(k=3, n=5, clear_after=4)
    flags = [1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    transitions = debouncer.update(np.array(flags, dtype=bool))
    # windows 2..6 hold the first 3 anomalous flags (2, 5, 6); 15..18 are the first 4 normal ones in a row
    assert transitions == [Transition(6, "raised"), Transition(18, "cleared")]
    # the same flags one at a time give the same transitions
    one_by_one = AlertDebouncer(k=3, n=5, clear_after=4)
    seen = [(i, t.state) for i, f in enumerate(flags) for t in one_by_one.update(np.array([f], dtype=bool))]
    assert seen == [(6, "raised"), (18, "cleared")]


def test_degrading_asset_raises_and_clears_while_a_healthy_asset_raises_nothing() -> None:
    rng = np.random.default_rng(3)
    assets = [asset_settings("pump-1"), asset_settings("pump-2")]
    run = Run()
    pipeline = Pipeline(
        settings=settings(assets, warmup=60, batch_windows=4),
        gateway_id="gw-1",
        models=None,
        on_reject=run.on_reject,
    )

    def defect(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # 0 until 20 s, 1.5 at 25-35 s, then 0
        return np.where(t < 35.0, np.clip((t - 20.0) / 5.0, 0.0, 1.0) * 1.5, 0.0)

    streams = [
        _noisy_temperature(rng),
        Stream("pump-1", "vibration", VIB_RATE, with_defect(healthy(rng), defect), 1024),
        Stream("pump-2", "temperature", TEMP_RATE, _noisy_temperature(rng).signal, 10),
        Stream("pump-2", "vibration", VIB_RATE, healthy(rng), 1024),
    ]
    run.feed(pipeline, interleave(streams, 50.0))
    run.out.extend(pipeline.flush())

    alerts = run.alerts
    assert [a.asset_id for a in alerts] == ["pump-1", "pump-1"]
    raised, cleared = alerts
    assert raised.state == "raised"
    assert cleared.state == "cleared"
    assert cleared.alert_id == raised.alert_id
    assert 20.0 < (raised.ts_ns - T0_NS) / NS_PER_S < 25.0
    assert 35.0 < (cleared.ts_ns - T0_NS) / NS_PER_S < 37.0
    assert raised.model_kind == "baseline"
    assert raised.model_version == "baseline"
    assert raised.score > raised.threshold == 6.0
    assert raised.severity in {"warning", "critical"}
    assert len(raised.top_features) == 3
    assert raised.top_features[0].feature.startswith("vibration.")
    assert all(a.model_kind == "baseline" for a in run.aggregates)
    assert pipeline.metrics.alerts_raised == 1
    assert pipeline.metrics.alerts_cleared == 1
    snapshot = run.snapshots[0]
    assert snapshot.alert_id == raised.alert_id
    for message in run.out:  # every message honours its contract, as the cloud will decode it
        assert decode_uplink(encode(message)) == message
    assert len(snapshot.samples) == round(0.75 * VIB_RATE)  # 0.5 s before and 0.25 s after
    assert snapshot.start_ns == raised.ts_ns - round(0.5 * VIB_RATE) * NS_PER_S // round(VIB_RATE)


def test_snapshot_is_bounded_and_holds_the_raw_samples() -> None:
    rng = np.random.default_rng(4)
    models = SwitchableModels()
    run = Run()
    config = settings([_vibration_only()]).model_copy(
        update={"snapshots": SnapshotSettings(before_s=1.0, after_s=1.0, max_samples=4096)}
    )
    pipeline = Pipeline(settings=config, gateway_id="gw-1", models=models, on_reject=run.on_reject)
    models.activate(RecordingScorer(pipeline.feature_names("pump-1"), version="pump-1:v1", threshold=1.5))

    def step(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # rms jumps from ~0.77 to ~2.3 at 4 s
        return healthy(rng)(t) * np.where(t < 4.0, 1.0, 3.0)

    vib = Stream("pump-1", "vibration", VIB_RATE, step, 1024)
    sent = [vib.next() for _ in range(48)]
    run.feed(pipeline, sent)
    (alert,) = run.alerts
    assert (alert.ts_ns - T0_NS) / NS_PER_S == pytest.approx(4.0 + 3 * 1024 / VIB_RATE)  # the 3rd loud window
    (snapshot,) = run.snapshots
    assert len(snapshot.samples) == 4096
    everything = np.concatenate([b.samples for b in sent])
    first = round((snapshot.start_ns - T0_NS) * VIB_RATE / NS_PER_S)
    assert first == round((alert.ts_ns - T0_NS) * VIB_RATE / NS_PER_S) - 2048
    np.testing.assert_array_equal(
        np.array(snapshot.samples, dtype=np.float32), everything[first : first + 4096]
    )


# ------------------------------------------------------------------------------------- stream checks


def test_every_reject_reason_is_counted_and_reported_while_good_data_is_scored() -> None:
    rng = np.random.default_rng(5)
    run = Run()
    config = settings([_vibration_only()], window_len=256, hop=256)
    pipeline = Pipeline(settings=config, gateway_id="gw-1", models=None, on_reject=run.on_reject)
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    scored = [0]

    def feed(*batches: RawBatch) -> None:
        run.feed(pipeline, batches)
        assert processed(pipeline) > scored[0], "good data must keep being scored (or learned)"
        scored[0] = processed(pipeline)

    good = vib.next()
    feed(good)
    bad = [
        RawBatch("pump-9", "vibration", 0, good.start_ns, VIB_RATE, good.samples),  # unknown_asset
        RawBatch("pump-1", "pressure", 0, good.start_ns, VIB_RATE, good.samples),  # unknown_sensor
        RawBatch("pump-1", "vibration", 99, good.start_ns, 1000.0, good.samples),  # sample_rate
        good,  # duplicate
    ]
    feed(*bad, vib.next())
    older = vib.next()
    feed(older, vib.next(), older)  # out_of_order
    nan = vib.next()
    samples = nan.samples.copy()
    samples[300:310] = np.nan
    samples[500] = np.inf
    feed(RawBatch(nan.asset_id, nan.sensor, nan.seq, nan.start_ns, nan.sample_rate_hz, samples))  # nonfinite
    vib.next()
    feed(vib.next())  # gap: one batch never arrived
    step_back = vib.next()
    feed(
        RawBatch(
            "pump-1", "vibration", step_back.seq, step_back.start_ns - NS_PER_S, VIB_RATE, step_back.samples
        )
    )
    after = vib.next()
    feed(RawBatch("pump-1", "vibration", 0, after.start_ns + NS_PER_S, VIB_RATE, after.samples))  # seq_reset

    assert sorted(reason for reason, _, _ in run.rejects) == sorted(REJECT_REASONS)
    assert pipeline.metrics.rejected == dict.fromkeys(REJECT_REASONS, 1)
    assert pipeline.metrics.stream_rejected == {
        "pump-1/vibration": {r: 1 for r in REJECT_REASONS if not r.startswith("unknown")}
    }
    assert pipeline.metrics.samples_nonfinite == 11
    detail = {reason: text for reason, _, text in run.rejects}
    assert "11 of 1024" in detail["nonfinite"]
    assert "1000 Hz" in detail["sample_rate"]
    assert pipeline.metrics.as_dict()["pipeline.rejected.gap"] == 1.0


def test_non_finite_samples_are_dropped_as_a_gap() -> None:
    run = Run()
    config = settings([_vibration_only()], window_len=256, hop=256)
    pipeline = Pipeline(settings=config, gateway_id="gw-1", models=None, on_reject=run.on_reject)
    samples = np.ones(1024, dtype=np.float32)
    samples[300] = np.nan
    run.feed(pipeline, [RawBatch("pump-1", "vibration", 0, T0_NS, VIB_RATE, samples)])
    # [0, 256) then, after the NaN, [301, 557) and [557, 813); 211 samples wait for the next batch
    assert pipeline.metrics.windows_cut == 3
    run.feed(
        pipeline,
        [
            RawBatch(
                "pump-1",
                "vibration",
                1,
                T0_NS + round(1024 / VIB_RATE * NS_PER_S),
                VIB_RATE,
                np.ones(45, np.float32),
            )
        ],
    )
    assert pipeline.metrics.windows_cut == 4
    assert pipeline.metrics.samples_used == 1023 + 45


def test_a_model_for_another_feature_spec_scores_nothing_and_is_reported() -> None:
    rng = np.random.default_rng(6)
    models = SwitchableModels()
    run = Run()
    pipeline = Pipeline(
        settings=settings([_vibration_only()]), gateway_id="gw-1", models=models, on_reject=run.on_reject
    )
    scorer = RecordingScorer(pipeline.feature_names("pump-1"), version="pump-1:v2", threshold=0.0)
    models.activate(scorer, spec="other-spec@3")
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    run.feed(pipeline, [vib.next() for _ in range(20)])
    run.out.extend(pipeline.flush())
    assert scorer.n_rows == 0
    assert pipeline.metrics.windows_unscored == {"feature_mismatch": 20}
    assert not run.alerts
    (aggregate,) = run.aggregates
    assert aggregate.score.n_windows == 0
    assert aggregate.model_version == "pump-1:v2"
    assert len(aggregate.features) == len(pipeline.feature_names("pump-1"))


def test_windows_wait_for_a_batch_and_flush_scores_them() -> None:
    rng = np.random.default_rng(7)
    run = Run()
    pipeline = Pipeline(
        settings=settings([_vibration_only()], batch_windows=8),
        gateway_id="gw-1",
        models=None,
        on_reject=run.on_reject,
    )
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    run.feed(pipeline, [vib.next() for _ in range(7)])
    assert (pipeline.metrics.windows_cut, processed(pipeline)) == (7, 0)
    assert pipeline.poll() == []  # the 1e9 ms delay has not passed
    run.feed(pipeline, [vib.next()])
    assert processed(pipeline) == 8
    run.feed(pipeline, [vib.next()])
    run.out.extend(pipeline.flush())
    assert processed(pipeline) == 9
    assert len(run.aggregates) == 1


# ------------------------------------------------------------------------------------------ hot swap


def _expected_rows(sent: list[RawBatch]) -> F32:
    windows = _all_windows(np.concatenate([b.samples for b in sent]), 1024, 1024)
    return vibration_features(windows, VIB_RATE, 8)


def test_a_swap_between_two_process_calls_drops_and_double_scores_no_window() -> None:
    rng = np.random.default_rng(8)
    models = SwitchableModels()
    run = Run()
    pipeline = Pipeline(
        settings=settings([_vibration_only()], batch_windows=3),
        gateway_id="gw-1",
        models=models,
        on_reject=run.on_reject,
    )
    names = pipeline.feature_names("pump-1")
    first, second = RecordingScorer(names, version="pump-1:v1"), RecordingScorer(names, version="pump-1:v2")
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1536)
    sent = [vib.next() for _ in range(20)]
    models.activate(first)
    run.feed(pipeline, sent[:11])
    models.activate(second)
    run.feed(pipeline, sent[11:])
    run.out.extend(pipeline.flush())
    got = np.concatenate(first.rows + second.rows)
    np.testing.assert_allclose(got, _expected_rows(sent), rtol=1e-6)
    assert first.n_rows > 0
    assert second.n_rows > 0
    assert pipeline.metrics.windows_scored == pipeline.metrics.windows_cut == 30
    assert pipeline.metrics.model_versions == {"pump-1": "pump-1:v2"}


def test_a_swap_from_another_thread_during_a_stream_drops_and_double_scores_no_window() -> None:
    rng = np.random.default_rng(9)
    models = SwitchableModels()
    run = Run()
    pipeline = Pipeline(
        settings=settings([_vibration_only()], batch_windows=2),
        gateway_id="gw-1",
        models=models,
        on_reject=run.on_reject,
    )
    names = pipeline.feature_names("pump-1")
    order: list[F32] = []

    class Ordered(RecordingScorer):
        def score(self, features: F32) -> F32:
            order.append(features.copy())
            return super().score(features)

    scorers = [Ordered(names, version=f"pump-1:v{i}") for i in range(1, 5)]
    models.activate(scorers[0])
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    sent = [vib.next() for _ in range(400)]
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        while not stop.is_set():
            models.activate(scorers[swaps[0] % len(scorers)])
            swaps[0] += 1
            stop.wait(0.0005)

    thread = threading.Thread(target=swapper, name="test-swapper")
    thread.start()
    try:
        run.feed(pipeline, sent)
        run.out.extend(pipeline.flush())
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert swaps[0] > 1
    np.testing.assert_allclose(np.concatenate(order), _expected_rows(sent), rtol=1e-6)
    assert (
        sum(s.n_rows for s in scorers)
        == pipeline.metrics.windows_scored
        == pipeline.metrics.windows_cut
        == 400
    )
    assert sum(1 for s in scorers if s.n_rows) >= 2


def test_settings_reject_duplicate_sensors_and_k_above_n() -> None:
    with pytest.raises(ValueError, match="unique"):
        AssetSettings(
            asset_id="pump-1",
            sensors=(
                SensorSettings(name="vibration", kind=SensorKind.VIBRATION),
                SensorSettings(name="vibration", kind=SensorKind.SLOW),
            ),
        )
    with pytest.raises(ValueError, match="k"):
        settings().alerts.model_validate({"k": 6, "n": 5})


def test_a_silent_assets_period_is_closed_once_other_data_is_a_period_past_it() -> None:
    rng = np.random.default_rng(10)
    assets = [
        asset_settings("pump-1", with_temperature=False),
        asset_settings("pump-2", with_temperature=False),
    ]
    run = Run()
    config = settings(assets, warmup=1)
    pipeline = Pipeline(settings=config, gateway_id="gw-1", models=None, on_reject=run.on_reject)
    pump1 = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 8192)
    pump2 = Stream("pump-2", "vibration", VIB_RATE, healthy(rng), 8192)
    run.feed(pipeline, [pump1.next(), pump2.next()])  # both send 1 s, then pump-1 falls silent
    run.feed(pipeline, [pump2.next() for _ in range(19)])  # pump-2 goes on to 20 s
    assert [(a.asset_id, a.period_start_ns - T0_NS) for a in run.aggregates] == [
        ("pump-2", 0),
        ("pump-1", 0),  # closed once pump-2's data reached 20 s, a whole period after it ended
    ]
    assert run.aggregates[1].score.n_windows == 7  # the first window is the baseline's warm-up


def test_a_model_that_raises_leaves_its_windows_unscored_and_the_pipeline_running() -> None:
    rng = np.random.default_rng(12)
    models = SwitchableModels()
    run = Run()
    pipeline = Pipeline(
        settings=settings([_vibration_only()]), gateway_id="gw-1", models=models, on_reject=run.on_reject
    )

    class Broken(RecordingScorer):
        def score(self, features: F32) -> F32:
            raise RuntimeError("onnxruntime says no")

    models.activate(Broken(pipeline.feature_names("pump-1"), version="pump-1:v9"))
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    run.feed(pipeline, [vib.next() for _ in range(5)])
    assert pipeline.metrics.windows_unscored == {"scorer_error": 5}
    working = RecordingScorer(pipeline.feature_names("pump-1"), version="pump-1:v10")
    models.activate(working)
    run.feed(pipeline, [vib.next() for _ in range(5)])
    assert working.n_rows == pipeline.metrics.windows_scored == 5


def test_an_asset_with_only_slow_sensors_is_driven_by_its_first_one() -> None:
    asset = AssetSettings(
        asset_id="tank-1",
        sensors=(
            SensorSettings(name="temperature", kind=SensorKind.SLOW, sample_rate_hz=TEMP_RATE),
            SensorSettings(name="pressure", kind=SensorKind.SLOW, sample_rate_hz=TEMP_RATE),
        ),
    )
    models = SwitchableModels()
    run = Run()
    pipeline = Pipeline(settings=settings([asset]), gateway_id="gw-1", models=models, on_reject=run.on_reject)
    scorer = RecordingScorer(pipeline.feature_names("tank-1"), version="tank-1:v1")
    models.activate(scorer)
    temp = Stream("tank-1", "temperature", TEMP_RATE, temperature, 10)
    pressure = Stream("tank-1", "pressure", TEMP_RATE, lambda t: 2.0 + 0.01 * t, 10)
    sent = list(interleave([pressure, temp], 10.0))
    run.feed(pipeline, sent)
    # slow_window_s = 2 s: 20-sample windows of temperature, every 20 samples; pressure joins each one
    assert pipeline.feature_names("tank-1")[:4] == tuple(
        f"temperature.{f}" for f in ("mean", "slope", "min", "max")
    )
    temps = np.concatenate([b.samples for b in sent if b.sensor == "temperature"])
    pressures = np.concatenate([b.samples for b in sent if b.sensor == "pressure"])
    expected = np.hstack(
        [slow_features(temps.reshape(5, 20), TEMP_RATE), slow_features(pressures.reshape(5, 20), TEMP_RATE)]
    )
    np.testing.assert_allclose(np.concatenate(scorer.rows), expected, rtol=1e-6)


def test_a_window_past_its_delay_is_scored_on_the_next_process_or_poll() -> None:
    rng = np.random.default_rng(13)
    run = Run()
    config = settings([_vibration_only()], batch_windows=100).model_copy(update={"score_max_delay_ms": 0.0})
    pipeline = Pipeline(settings=config, gateway_id="gw-1", models=None, on_reject=run.on_reject)
    vib = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    for _ in range(3):
        run.feed(pipeline, [vib.next()])
        assert processed(pipeline) == pipeline.metrics.windows_cut  # due at once: no waiting
    assert pipeline.poll() == []
    assert processed(pipeline) == 3


def test_a_second_vibration_sensor_joins_with_its_window_ending_at_the_same_time() -> None:
    rng = np.random.default_rng(14)
    asset = AssetSettings(
        asset_id="pump-1",
        sensors=(
            SensorSettings(name="vibration", kind=SensorKind.VIBRATION, sample_rate_hz=VIB_RATE),
            SensorSettings(name="vibration_y", kind=SensorKind.VIBRATION, sample_rate_hz=VIB_RATE),
        ),
    )
    models = SwitchableModels()
    run = Run()
    pipeline = Pipeline(
        settings=settings([asset], batch_windows=4), gateway_id="gw-1", models=models, on_reject=run.on_reject
    )
    scorer = RecordingScorer(pipeline.feature_names("pump-1"), version="pump-1:v1")
    models.activate(scorer)
    y = Stream("pump-1", "vibration_y", VIB_RATE, healthy(rng), 1024)
    x = Stream("pump-1", "vibration", VIB_RATE, healthy(rng), 1024)
    sent = list(interleave([y, x], 4.0))  # y first at equal times: it has reached each x window's end
    run.feed(pipeline, sent)
    run.out.extend(pipeline.flush())
    xs = np.concatenate([b.samples for b in sent if b.sensor == "vibration"])
    ys = np.concatenate([b.samples for b in sent if b.sensor == "vibration_y"])
    expected = np.hstack(
        [
            vibration_features(_all_windows(xs, 1024, 1024), VIB_RATE, 8),
            vibration_features(_all_windows(ys, 1024, 1024), VIB_RATE, 8),
        ]
    )
    np.testing.assert_allclose(np.concatenate(scorer.rows), expected, rtol=1e-6)
    assert pipeline.metrics.windows_scored == 32
