"""The simulated physics: defect frequencies, failure modes, non-faults, failures and maintenance, faults."""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from shared.errors import ContractError
from shared.messages import MaintenanceEvent, decode_event
from shared.raw_batch import RawBatch, decode_raw_batch, encode_raw_batch
from shared.vibration import amplitude_spectrum, envelope_spectrum, peak_near
from simulators import (
    fleet_units,
    iter_batches,
    iter_items,
    iter_messages,
    load_scenario,
    parse_scenario,
    simulate,
)
from simulators.assets import ASSET_TYPES as TYPES
from simulators.assets import SCRIPTED_ONLY_MODES
from simulators.engine import Step
from simulators.stream import burst_offset_ns

HOUR_NS = 3600 * 10**9

STEADY: dict[str, Any] = {
    "name": "steady",
    "seed": 11,
    "time": {"duration_h": 10.0, "step_s": 600.0},
    "operation": {"loads": [1.0], "speed_factors": [1.0], "stop_probability": 0.0},
    "signals": {"burst_samples": 8192, "batch_samples": 4096},
    "assets": [{"type": "centrifugal_pump", "count": 4, "id_prefix": "p"}],
}


def _scenario(**changes: Any) -> Any:
    data = copy.deepcopy(STEADY)
    data.update(changes)
    return parse_scenario(data)


def _line_amplitude(x: npt.NDArray[np.float32], rate_hz: float, freq_hz: float) -> float:
    """Amplitude of the spectral line nearest `freq_hz` (Hann window, +-2 bins)."""
    samples = x.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) * 4.0 / samples.size
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate_hz)
    k = int(np.argmin(np.abs(freqs - freq_hz)))
    return float(spectrum[max(k - 2, 0) : k + 3].max())


def _kurtosis(x: npt.NDArray[np.float32]) -> float:
    centred = x.astype(np.float64) - x.mean()
    return float((centred**4).mean() / (centred**2).mean() ** 2)


def _rms(x: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def _steps(scenario: Any) -> list[Step]:
    return list(simulate(scenario))


def test_outer_race_wear_raises_bpfo_on_the_worn_asset_only() -> None:
    failure = {"asset": "p-001", "mode": "outer_race", "onset_h": 1.0, "time_to_failure_h": 9.5}
    scenario = _scenario(failures=[failure])
    units = fleet_units(scenario)
    steps = _steps(scenario)
    early, late = steps[3], steps[-1]  # before onset; near the threshold
    rate = scenario.spec.signals.vibration_rate_hz
    ratios = []
    for i, unit in enumerate(units):
        bpfo_hz = unit.type.bpfo_order * unit.rpm / 60.0
        before = _line_amplitude(early.signals["vibration"][i], rate, bpfo_hz)
        after = _line_amplitude(late.signals["vibration"][i], rate, bpfo_hz)
        ratios.append(after / before)
    assert ratios[0] > 5.0, ratios
    assert all(0.2 < r < 3.0 for r in ratios[1:]), ratios


def test_inner_race_wear_shows_bpfi_with_shaft_sidebands() -> None:
    failure = {"asset": "p-002", "mode": "inner_race", "onset_h": 0.5, "time_to_failure_h": 9.8}
    scenario = _scenario(failures=[failure])
    unit = fleet_units(scenario)[1]
    steps = _steps(scenario)
    rate = scenario.spec.signals.vibration_rate_hz
    shaft = unit.rpm / 60.0
    bpfi = unit.type.bpfi_order * shaft
    for freq in (bpfi, bpfi - shaft, bpfi + shaft):
        before = _line_amplitude(steps[2].signals["vibration"][1], rate, freq)
        after = _line_amplitude(steps[-1].signals["vibration"][1], rate, freq)
        assert after > 4.0 * before, (freq, before, after)


def test_bearing_wear_raises_kurtosis_before_rms() -> None:
    failure = {"asset": "p-001", "mode": "outer_race", "onset_h": 0.0, "time_to_failure_h": 12.0}
    steps = _steps(_scenario(failures=[failure]))
    healthy = steps[0].signals["vibration"][0]
    mid = steps[len(steps) * 3 // 4].signals["vibration"][0]  # severity about a third of the threshold
    assert _kurtosis(mid) > 1.3 * _kurtosis(healthy)
    assert _rms(mid) < 1.25 * _rms(healthy)


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("imbalance", "1x"),
        ("misalignment", "2x"),
        ("overheating", "temperature"),
        ("cavitation", "high_band"),
    ],
)
def test_each_failure_mode_moves_its_own_signature(mode: str, check: str) -> None:
    failure = {"asset": "p-001", "mode": mode, "onset_h": 1.0, "time_to_failure_h": 9.5}
    scenario = _scenario(failures=[failure])
    unit = fleet_units(scenario)[0]
    steps = _steps(scenario)
    rate = scenario.spec.signals.vibration_rate_hz
    early, late = steps[4], steps[-1]
    shaft = unit.rpm / 60.0

    def measure(step: Step) -> float:
        x = step.signals["vibration"][0]
        if check == "1x":
            return _line_amplitude(x, rate, shaft)
        if check == "2x":
            return _line_amplitude(x, rate, 2 * shaft)
        if check == "temperature":
            return float(step.signals["temperature"][0].mean())
        spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
        return float(spectrum[(freqs > 2000) & (freqs < 4500)].sum())

    if check == "temperature":
        assert measure(late) > measure(early) + 20.0
    else:
        assert measure(late) > 3.0 * measure(early)


def test_failure_stops_the_asset_until_maintenance() -> None:
    failure = {"asset": "p-003", "mode": "imbalance", "onset_h": 0.0, "time_to_failure_h": 3.0}
    scenario = _scenario(failures=[failure], maintenance={"repair_h": 2.0})
    steps = _steps(scenario)
    events = [e for s in steps for e in s.events]
    assert [(e.asset_id, e.event, e.mode) for e in events] == [
        ("p-003", "failure", "imbalance"),
        ("p-003", "maintenance", "imbalance"),
    ]
    failed_at, repaired_at = events[0].ts_ns, events[1].ts_ns
    assert repaired_at - failed_at == 2 * HOUR_NS
    for step in steps:
        down = failed_at <= step.t_ns < repaired_at
        assert bool(step.running[2]) is not down
        if down:
            assert float(step.signals["current"][2].mean()) < 1.0
            assert _rms(step.signals["vibration"][2]) < 0.02
    truth = [r for s in steps for r in s.truth]
    assert [r.event for r in truth] == ["onset", "failure", "maintenance"]
    after = [s for s in steps if s.t_ns > repaired_at]
    assert after
    assert all(s.running[2] for s in after)


def test_regime_changes_and_stops_are_not_failures() -> None:
    scenario = _scenario(
        operation={
            "loads": [0.5, 1.0],
            "speed_factors": [0.8, 1.0],
            "stop_probability": 0.3,
            "regime_mean_h": 1,
        },
        time={"duration_h": 24.0, "step_s": 600.0},
    )
    steps = _steps(scenario)
    assert not [e for s in steps for e in s.events]
    loads = {float(v) for s in steps for v in s.load}
    speeds = {round(float(v)) for s in steps for v in s.speed_rpm}
    assert {0.0, 0.5, 1.0} <= loads
    assert len(speeds) >= 3  # two setpoints per unit, and stopped
    temps = np.array([float(s.signals["temperature"][0].mean()) for s in steps])
    assert temps.max() - temps.min() > 3.0  # load and the daily cycle move temperature, with lag
    assert np.abs(np.diff(temps)).max() < 10.0  # thermal lag: no jumps


def test_units_of_one_type_differ_a_little() -> None:
    units = fleet_units(_scenario())
    noise = [u.noise_scale for u in units]
    assert len(set(noise)) == len(noise)
    assert max(abs(u.rpm / units[0].type.rpm - 1.0) for u in units) < 0.01


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    scenario = load_scenario("smoke").with_changes(n_steps=20)
    first = list(iter_batches(scenario))
    again = list(iter_batches(scenario))
    other = list(iter_batches(scenario.with_changes(seed=43)))
    assert first == again
    assert len(first) == len(other)
    assert first != other


def test_batches_are_in_time_order_with_consecutive_seq_per_sensor() -> None:
    scenario = load_scenario("smoke").with_changes(n_steps=60)
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    last_step_start = 0
    for batch in iter_batches(scenario):
        seqs[(batch.asset_id, batch.sensor)].append(batch.seq)
        step_start = batch.start_ns - (batch.start_ns - scenario.start_ns) % scenario.step_ns
        assert step_start >= last_step_start
        last_step_start = step_start
    assert {sensor for _asset, sensor in seqs} == {"vibration", "temperature", "current", "pressure", "flow"}
    for key, values in seqs.items():
        assert values == list(range(len(values))), key
    assert len(seqs[("pump-001", "vibration")]) == 60  # 4096-sample bursts, one batch each
    assert len(seqs[("motor-001", "temperature")]) == 60


def _window(scenario: Any, start_h: float, duration_h: float) -> tuple[int, int]:
    start = scenario.start_ns + round(start_h * HOUR_NS)
    return start, start + round(duration_h * HOUR_NS)


def test_injected_sensor_faults_appear_where_the_smoke_scenario_says() -> None:
    scenario = load_scenario("smoke")
    faults = {
        (f.asset, f.sensor, f.kind): _window(scenario, f.start_h, f.duration_h)
        for f in scenario.spec.sensor_faults
    }
    stuck = faults[("motor-001", "temperature", "stuck")]
    spikes = faults[("motor-001", "vibration", "spikes")]
    dropout = faults[("fan-001", "current", "dropout")]
    nan = faults[("fan-001", "vibration", "nan")]
    stuck_values: set[float] = set()
    fan_current_times: list[int] = []
    peaks: list[tuple[bool, float]] = []
    for batch in iter_batches(scenario):
        key = (batch.asset_id, batch.sensor)
        inside = {
            name: lo <= batch.start_ns < hi
            for name, (lo, hi) in {"stuck": stuck, "spikes": spikes, "dropout": dropout, "nan": nan}.items()
        }
        if key == ("motor-001", "temperature"):
            if inside["stuck"]:
                stuck_values.update(np.unique(batch.samples).tolist())
            else:
                assert np.unique(batch.samples).size > 1
        if key == ("motor-001", "vibration"):
            peaks.append((inside["spikes"], float(np.abs(batch.samples).max())))
        if key == ("fan-001", "current"):
            fan_current_times.append(batch.start_ns)
        if key == ("fan-001", "vibration"):
            assert bool(np.isnan(batch.samples).any()) == inside["nan"]
            if inside["nan"]:
                with pytest.raises(ContractError, match="samples"):
                    decode_raw_batch(encode_raw_batch(batch), reference_ns=batch.start_ns)
    assert len(stuck_values) == 1
    assert max(p for inside, p in peaks if not inside) < 0.5
    assert min(p for inside, p in peaks if inside) > 0.5  # 20-sigma spikes at 0.1 % of samples
    assert not [t for t in fan_current_times if dropout[0] <= t < dropout[1]]
    assert [t for t in fan_current_times if t < dropout[0]]
    assert [t for t in fan_current_times if t >= dropout[1]]


def test_clock_skew_and_inf_samples_are_injected_in_their_window() -> None:
    faults = [
        {
            "asset": "p-001",
            "sensor": "vibration",
            "kind": "clock_skew",
            "start_h": 2,
            "duration_h": 1,
            "magnitude": 7.5,
        },
        {"asset": "p-002", "sensor": "flow", "kind": "inf", "start_h": 4, "duration_h": 1, "rate": 0.5},
    ]
    scenario = _scenario(sensor_faults=faults)
    skew_window = _window(scenario, 2, 1)
    inf_window = _window(scenario, 4, 1)
    for step in simulate(scenario):
        in_skew = skew_window[0] <= step.t_ns < skew_window[1]
        assert step.skew_ns["vibration"][0] == (7_500_000_000 if in_skew else 0)
        assert step.skew_ns["vibration"][1] == 0
        in_inf = inf_window[0] <= step.t_ns < inf_window[1]
        assert bool(np.isinf(step.signals["flow"][1]).any()) == in_inf
    skewed = [b for b in iter_batches(scenario) if b.asset_id == "p-001" and b.sensor == "vibration"]
    burst_start = burst_offset_ns(scenario)
    offsets = {(b.start_ns - scenario.start_ns - burst_start) % scenario.step_ns for b in skewed}
    assert {0, 7_500_000_000} <= offsets  # bursts start on their step, or 7.5 s late while skewed


def test_transport_faults_duplicate_reorder_and_corrupt_only_in_their_window() -> None:
    faults = [
        {"kind": "duplicate", "start_h": 1, "duration_h": 1, "probability": 0.5},
        {
            "kind": "reorder",
            "asset": "p-002",
            "sensor": "vibration",
            "start_h": 3,
            "duration_h": 2,
            "probability": 0.5,
        },
        {"kind": "malformed", "asset": "p-003", "start_h": 6, "duration_h": 1, "probability": 0.5},
    ]
    scenario = _scenario(transport_faults=faults)
    messages = list(iter_messages(scenario))
    kinds = defaultdict(list)
    for message in messages:
        if message.fault:
            kinds[message.fault].append(message)
    assert set(kinds) == {"duplicate", "reorder", "malformed"}
    for kind, (lo_h, hi_h) in {"duplicate": (1, 2), "reorder": (3, 5), "malformed": (6, 7)}.items():
        lo, hi = _window(scenario, lo_h, hi_h - lo_h)
        assert all(lo <= m.ts_ns < hi for m in kinds[kind]), kind
    for message in kinds["malformed"]:
        with pytest.raises(ContractError):
            decode_raw_batch(message.payload, reference_ns=message.ts_ns)
    by_topic: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        if message.qos == 0 and message.fault != "malformed":
            by_topic[message.topic].append(decode_raw_batch(message.payload, reference_ns=message.ts_ns).seq)
    reordered = [t for t, seqs in by_topic.items() if seqs != sorted(seqs)]
    assert reordered
    assert all("/p-002/vibration" in t for t in reordered)
    missing = 0
    for seqs in by_topic.values():
        missing += max(seqs) + 1 - len(set(seqs))
    assert missing == len(kinds["malformed"])  # only the corrupted batches are lost


def test_events_go_out_as_maintenance_event_messages() -> None:
    failure = {"asset": "p-001", "mode": "overheating", "onset_h": 0.0, "time_to_failure_h": 2.0}
    scenario = _scenario(failures=[failure], maintenance={"repair_h": 1.0})
    items = list(iter_items(scenario))
    events = [i for i in items if isinstance(i, MaintenanceEvent)]
    assert [e.event for e in events] == ["failure", "maintenance"]
    assert all(isinstance(i, (RawBatch, MaintenanceEvent)) for i in items)
    messages = [m for m in iter_messages(scenario) if m.qos == 1]
    decoded = [decode_event(m.payload, reference_ns=m.ts_ns) for m in messages]
    assert decoded == events
    assert all(m.topic == f"forewarn/v1/events/{e.asset_id}" for m, e in zip(messages, events, strict=True))


@pytest.mark.slow
def test_random_failures_and_planned_maintenance_over_a_year() -> None:
    scenario = parse_scenario(
        {
            "name": "year",
            "seed": 5,
            "time": {"duration_h": 24 * 365, "step_s": 6 * 3600},
            "maintenance": {"repair_h": 24, "preventive_interval_h": 24 * 90},
            "random_failures": {
                "rate_per_asset_year": 3.0,
                "modes": ["cavitation", "imbalance", "outer_race"],
                "time_to_failure_h": [48, 480],
            },
            "assets": [
                {"type": "electric_motor", "count": 4, "id_prefix": "m"},
                {"type": "centrifugal_pump", "count": 4, "id_prefix": "p"},
            ],
        }
    )
    truth = [record for step in simulate(scenario) for record in step.truth]
    onsets = [r for r in truth if r.event == "onset"]
    assert len(onsets) > 8
    assert all(r.detail.endswith("random") for r in onsets)
    assert not [r for r in onsets if r.asset_id.startswith("m-") and r.mode == "cavitation"]
    assert {r.mode for r in onsets} == {"cavitation", "imbalance", "outer_race"}
    failures = [r for r in truth if r.event == "failure"]
    assert failures
    repairs = {
        (r.asset_id, r.ts_ns)
        for r in truth
        if r.event == "maintenance" and r.detail == "repair after failure"
    }
    for failure in failures:
        assert (
            failure.asset_id,
            failure.ts_ns + 24 * HOUR_NS,
        ) in repairs or failure.ts_ns + 24 * HOUR_NS >= scenario.end_ns
    planned = {r.ts_ns for r in truth if r.detail == "planned maintenance"}
    assert {(t - scenario.start_ns) // HOUR_NS for t in planned} == {24 * 90, 24 * 180, 24 * 270, 24 * 360}


@pytest.mark.slow
def test_scripted_only_modes_simulate_their_physics_and_are_never_drawn_at_random() -> None:

    pump = TYPES["centrifugal_pump"]
    assert not SCRIPTED_ONLY_MODES & pump.modes  # random draws pick among `modes` only
    failures = [
        {"asset": f"p-{k + 2:03d}", "mode": mode, "onset_h": 0.0, "time_to_failure_h": 0.5}
        for k, mode in enumerate(("looseness", "rolling_element"))
    ]
    scenario = parse_scenario(
        {
            "name": "scripted-modes",
            "seed": 3,
            "time": {"duration_h": 0.45, "step_s": 300.0},
            "assets": [{"type": "centrifugal_pump", "count": 3, "id_prefix": "p"}],
            "failures": failures,
        },
        source="test",
    )
    *_, step = list(simulate(scenario))
    rate = scenario.spec.signals.vibration_rate_hz
    healthy, loose, ball = (step.signals["vibration"][i].astype(np.float64) for i in range(3))
    shaft_hz = pump.rpm / 60.0

    def half_order(x: np.ndarray) -> float:
        peak = peak_near(amplitude_spectrum(x, rate), 1.5 * shaft_hz, 0.02 * shaft_hz)
        assert peak is not None
        return peak.amplitude

    assert half_order(loose) > 5 * half_order(healthy)

    def spin_line(x: np.ndarray) -> float:
        spin_hz = 2 * pump.bsf_order * shaft_hz
        peak = peak_near(envelope_spectrum(x, rate, (2500.0, 4500.0)), spin_hz, 0.03 * spin_hz)
        assert peak is not None
        return peak.prominence

    assert spin_line(ball) > 3 * spin_line(healthy)
