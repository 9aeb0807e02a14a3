"""Diagnosis on synthesised signals with a known answer: defect impact trains and tones at frequencies
computed from the bearing geometry, healthy noise, sensor faults and a varying shaft speed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
import scipy.signal

from shared.asset_config import (
    AssetDiagnosisConfig,
    BearingGeometry,
    BearingSettings,
    DefectOrders,
    parse_asset_config,
)
from shared.diagnosis import (
    MACHINE_MODES,
    DiagnosisBaseline,
    WindowSignals,
    diagnose,
    diagnosis_window_samples,
    measure,
)
from shared.errors import ConfigError
from shared.vibration import (
    amplitude_spectrum,
    estimate_shaft_hz,
    iso_zone,
    iso_zone_boundaries,
    velocity_rms_mm_s,
)

F64 = npt.NDArray[np.float64]
RATE_HZ = 12_000.0
N = 8192
SHAFT_HZ = 1797.0 / 60.0
GEOMETRY = BearingGeometry(ball_count=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)  # SKF 6205
ORDERS = GEOMETRY.orders()
CONFIG = AssetDiagnosisConfig(
    shaft_rpm=1797.0,
    speed_range_rpm=(1500.0, 1900.0),
    bearings=(BearingSettings(name="drive-end", geometry=GEOMETRY),),
)


@dataclass(frozen=True)
class Machine:
    """A synthetic machine: shaft tones, broadband noise, optional faults (all amplitudes in g)."""

    shaft_hz: float = SHAFT_HZ
    tones: tuple[float, ...] = (0.05, 0.015, 0.006)  # 1x, 2x, 3x
    half_orders: float = 0.0
    noise_g: float = 0.02
    impact_hz: float = 0.0
    impact_g: float = 0.0
    modulation_hz: float = 0.0
    resonance_hz: float = 3500.0

    def window(self, seed: int, samples: int = N) -> F64:
        rng = np.random.default_rng(seed)
        t = np.arange(samples) / RATE_HZ
        x = self.noise_g * rng.standard_normal(samples)
        for k, amplitude in enumerate(self.tones, start=1):
            x += amplitude * np.sin(2 * np.pi * k * self.shaft_hz * t + rng.uniform(0, 2 * np.pi))
        for order in (0.5, 1.5, 2.5):
            x += self.half_orders * np.sin(2 * np.pi * order * self.shaft_hz * t + rng.uniform(0, 2 * np.pi))
        for k in range(4, 9):
            x += self.half_orders * np.sin(2 * np.pi * k * self.shaft_hz * t + rng.uniform(0, 2 * np.pi))
        if self.impact_g > 0:
            x += self._impacts(t, rng)
        return x

    def _impacts(self, t: F64, rng: np.random.Generator) -> F64:
        """A decaying ring of the resonance at each defect passage (1 % random slip between impacts)."""
        out = np.zeros_like(t)
        period = 1.0 / self.impact_hz
        when = rng.uniform(0, period)
        while when < t[-1]:
            since = t - when
            after = since >= 0
            gain = 1.0
            if self.modulation_hz > 0:
                gain = 1.0 + 0.8 * math.cos(2 * math.pi * self.modulation_hz * when)
            ring = np.exp(-since[after] / 0.0004) * np.sin(2 * np.pi * self.resonance_hz * since[after])
            out[after] += self.impact_g * gain * ring
            when += period * (1.0 + 0.01 * rng.standard_normal())
        return out


def _signals(samples: F64, **slow: F64) -> WindowSignals:
    return WindowSignals(vibration=samples, sample_rate_hz=RATE_HZ, slow=slow)


@pytest.fixture(scope="module")
def baseline() -> DiagnosisBaseline:
    healthy = Machine()
    return DiagnosisBaseline().fit([measure(_signals(healthy.window(seed)), CONFIG) for seed in range(20)])


def _mode(machine: Machine, baseline: DiagnosisBaseline | None, seed: int = 1000) -> str:
    return diagnose(measure(_signals(machine.window(seed)), CONFIG), CONFIG, baseline).mode


def test_defect_orders_of_a_6205_match_the_published_ones() -> None:
    assert ORDERS.bpfo == pytest.approx(3.5848, abs=2e-3)
    assert ORDERS.bpfi == pytest.approx(5.4152, abs=2e-3)
    assert 2 * (ORDERS.bsf or 0) == pytest.approx(4.7135, abs=2e-3)
    assert ORDERS.ftf == pytest.approx(0.3983, abs=2e-3)


def test_contact_angle_narrows_the_defect_orders() -> None:
    angled = BearingGeometry(
        ball_count=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04, contact_angle_deg=40
    )
    assert angled.orders().bpfo > ORDERS.bpfo
    assert angled.orders().bpfi < ORDERS.bpfi


def test_a_bad_asset_config_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"bearings\.0"):
        parse_asset_config({"bearings": [{"name": "de"}]})
    with pytest.raises(ConfigError, match="machine_group"):
        parse_asset_config({"machine_group": 3})


def test_velocity_rms_counts_only_its_band() -> None:
    t = np.arange(N) / RATE_HZ
    in_band = np.sin(2 * np.pi * 100 * t)
    above = 50.0 * np.sin(2 * np.pi * 3000 * t)
    expected = 1000.0 * 9.80665 / (2 * np.pi * 100) / math.sqrt(2)
    assert velocity_rms_mm_s(in_band + above, RATE_HZ) == pytest.approx(expected, rel=0.02)


def test_iso_zones_come_from_the_shipped_table_and_can_be_overridden() -> None:
    assert iso_zone_boundaries(1, "flexible") == (3.5, 7.1, 11.0)
    assert [iso_zone(v, iso_zone_boundaries(2, "rigid")) for v in (1.0, 2.0, 3.0, 5.0)] == [
        "A",
        "B",
        "C",
        "D",
    ]
    config = AssetDiagnosisConfig(zone_boundaries_mm_s=(10.0, 20.0, 30.0))
    loud = Machine(tones=(0.5, 0.0, 0.0))  # 0.5 g at 30 Hz: about 18 mm/s
    assert diagnose(measure(_signals(loud.window(1)), config), config).iso_zone == "B"
    assert diagnose(measure(_signals(loud.window(1)), CONFIG), CONFIG).iso_zone == "D"


def test_healthy_noise_names_no_mode(baseline: DiagnosisBaseline) -> None:
    modes = [_mode(Machine(), baseline, seed) for seed in range(100, 140)]
    assert modes == ["unknown"] * 40


def test_healthy_noise_without_a_baseline_names_no_mode() -> None:
    assert {_mode(Machine(), None, seed) for seed in range(200, 220)} == {"unknown"}


@pytest.mark.parametrize("with_baseline", [True, False])
def test_outer_race_impacts_at_bpfo_are_an_outer_race_defect(
    baseline: DiagnosisBaseline, with_baseline: bool
) -> None:
    machine = Machine(impact_hz=ORDERS.bpfo * SHAFT_HZ, impact_g=0.3)
    diagnosis = diagnose(
        measure(_signals(machine.window(7)), CONFIG), CONFIG, baseline if with_baseline else None
    )
    assert diagnosis.mode == "outer_race"
    first = diagnosis.evidence[0]
    assert first.name == "bpfo x1"
    assert first.freq_hz == pytest.approx(ORDERS.bpfo * SHAFT_HZ, rel=0.02)


def test_inner_race_impacts_modulated_at_shaft_speed_are_an_inner_race_defect(
    baseline: DiagnosisBaseline,
) -> None:
    machine = Machine(impact_hz=ORDERS.bpfi * SHAFT_HZ, impact_g=0.3, modulation_hz=SHAFT_HZ)
    diagnosis = diagnose(measure(_signals(machine.window(8)), CONFIG), CONFIG, baseline)
    assert diagnosis.mode == "inner_race"
    found = {e.name for e in diagnosis.evidence if e.is_found}
    assert "bpfi x1" in found
    assert found & {"bpfi-1x", "bpfi+1x"}


def test_ball_impacts_at_twice_bsf_modulated_at_the_cage_are_a_rolling_element_defect(
    baseline: DiagnosisBaseline,
) -> None:
    spin_hz = 2 * (ORDERS.bsf or 0) * SHAFT_HZ
    machine = Machine(impact_hz=spin_hz, impact_g=0.3, modulation_hz=(ORDERS.ftf or 0) * SHAFT_HZ)
    assert _mode(machine, baseline, seed=9) == "rolling_element"


def _cage_rub(seed: int, rub_g: float, *, duty: float = 0.2) -> F64:
    """A healthy window plus resonance-band noise gated on for a fifth of each cage turn (a broken cage
    rubbing once per turn): the envelope is amplitude-modulated at FTF by a pulse, a row of harmonics."""
    rng = np.random.default_rng(seed + 7)
    t = np.arange(N) / RATE_HZ
    sos = scipy.signal.butter(4, (3000.0, 4000.0), btype="bandpass", fs=RATE_HZ, output="sos")
    noise = np.asarray(scipy.signal.sosfilt(sos, rng.standard_normal(N)), dtype=np.float64)
    gate = ((t * (ORDERS.ftf or 0) * SHAFT_HZ + rng.uniform()) % 1.0) < duty
    rub: F64 = rub_g * gate * noise / float(noise.std())
    return Machine().window(seed) + rub


@pytest.mark.slow
def test_impacts_once_per_cage_turn_are_a_cage_defect(baseline: DiagnosisBaseline) -> None:
    ftf_hz = (ORDERS.ftf or 0) * SHAFT_HZ  # 11.9 Hz, 0.4x: eight impacts per window, no line stands out
    machine = Machine(impact_hz=ftf_hz, impact_g=0.3)
    for seed in (1000, 1002, 1004):
        diagnosis = diagnose(measure(_signals(machine.window(seed)), CONFIG), CONFIG, baseline)
        assert diagnosis.mode == "cage"
        comb = diagnosis.evidence[0]
        assert comb.name == "ftf comb"
        assert comb.is_found
        assert comb.freq_hz == pytest.approx(ftf_hz, rel=0.02)


@pytest.mark.slow
def test_cage_impacts_in_a_long_window_are_neither_a_ball_nor_an_outer_race_defect() -> None:
    # 2 x BSF of the 6205 is 11.84 FTF: within its 2 % tolerance of the cage's 12th harmonic, which a long
    # window resolves into a line; BPFO is exactly 9 FTF. Both lines belong to the cage's comb.
    samples = 32_768
    healthy = [measure(_signals(Machine().window(seed, samples)), CONFIG) for seed in range(8)]
    long_baseline = DiagnosisBaseline().fit(healthy)
    machine = Machine(impact_hz=(ORDERS.ftf or 0) * SHAFT_HZ, impact_g=0.3)
    modes = [
        diagnose(measure(_signals(machine.window(seed, samples)), CONFIG), CONFIG, long_baseline).mode
        for seed in range(1000, 1006)
    ]
    assert modes == ["cage"] * 6


@pytest.mark.slow
def test_a_cage_rub_amplitude_modulated_at_ftf_is_a_cage_defect(baseline: DiagnosisBaseline) -> None:
    modes = [
        diagnose(measure(_signals(_cage_rub(seed, 0.03)), CONFIG), CONFIG, baseline).mode
        for seed in range(1000, 1010)
    ]
    assert modes == ["cage"] * 10


def _cage_tone(seed: int, tone_g: float, order: float) -> F64:
    """A healthy window plus a tone at `order` x shaft speed (a damaged cage, off-centre or rubbing,
    shakes the shaft once per cage turn: a line at FTF in the spectrum itself)."""
    t = np.arange(N) / RATE_HZ
    phase = np.random.default_rng(seed + 11).uniform(0, 2 * np.pi)
    return Machine().window(seed) + tone_g * np.sin(2 * np.pi * order * SHAFT_HZ * t + phase)


def test_a_line_at_ftf_risen_over_the_baseline_is_a_cage_defect(baseline: DiagnosisBaseline) -> None:
    # 3 mg at FTF (0.4x, 11.9 Hz): no impacts, so no envelope comb; the spectrum's line is 2 bins clear of
    # 0.5x (1.46 Hz bins) and stands about 8 times its floor.
    for seed in (1000, 1001, 1002):
        diagnosis = diagnose(
            measure(_signals(_cage_tone(seed, 0.003, ORDERS.ftf or 0)), CONFIG), CONFIG, baseline
        )
        assert diagnosis.mode == "cage"
        assert diagnosis.evidence[0].name == "ftf line"
    # The same tone at 0.5x is not the cage (a half order, looseness's), nor is the line without a baseline.
    half = diagnose(measure(_signals(_cage_tone(1003, 0.003, 0.5)), CONFIG), CONFIG, baseline)
    assert not any(f.mode == "cage" for f in half.findings)
    alone = diagnose(measure(_signals(_cage_tone(1004, 0.003, ORDERS.ftf or 0)), CONFIG), CONFIG, None)
    assert not any(f.mode == "cage" for f in alone.findings)


@pytest.mark.slow
def test_looseness_and_shaft_rate_impacts_are_not_a_cage_defect(baseline: DiagnosisBaseline) -> None:
    # Impacts every second turn put lines at every half order, 0.5x near FTF (0.4x) among them; impacts
    # once per turn put them at the shaft orders; raised half orders are looseness. None is the cage.
    machines = [
        Machine(impact_hz=0.5 * SHAFT_HZ, impact_g=0.3),
        Machine(impact_hz=SHAFT_HZ, impact_g=0.3, modulation_hz=0.5 * SHAFT_HZ),
        Machine(half_orders=0.03),
    ]
    for machine in machines:
        for seed in range(1000, 1006):
            diagnosis = diagnose(measure(_signals(machine.window(seed)), CONFIG), CONFIG, baseline)
            assert not any(f.mode == "cage" for f in diagnosis.findings)
    healthy = [_mode(Machine(), baseline, seed) for seed in range(1100, 1120)]
    assert "cage" not in healthy


def test_impacts_at_no_defect_frequency_are_not_a_bearing_defect(baseline: DiagnosisBaseline) -> None:
    machine = Machine(impact_hz=4.1 * SHAFT_HZ, impact_g=0.3)  # between BPFO (3.58x) and BPFI (5.42x)
    mode = _mode(machine, baseline, seed=10)
    assert mode not in ("outer_race", "inner_race", "rolling_element", "cage")


def test_a_raised_1x_is_imbalance(baseline: DiagnosisBaseline) -> None:
    assert _mode(Machine(tones=(0.15, 0.015, 0.006)), baseline) == "imbalance"


def test_raised_2x_and_3x_are_misalignment(baseline: DiagnosisBaseline) -> None:
    assert _mode(Machine(tones=(0.055, 0.06, 0.02)), baseline) == "misalignment"


def test_half_orders_and_many_harmonics_are_looseness(baseline: DiagnosisBaseline) -> None:
    assert _mode(Machine(half_orders=0.01), baseline) == "looseness"


def test_imbalance_needs_a_baseline_or_a_severe_zone(baseline: DiagnosisBaseline) -> None:
    raised = Machine(tones=(0.07, 0.015, 0.006))  # 1x up by 40 %: about 2.6 mm/s, still zone B
    assert _mode(raised, baseline) == "imbalance"
    assert _mode(raised, None) == "unknown"
    severe = Machine(tones=(0.2, 0.015, 0.006))  # about 7 mm/s, zone D, nearly all of it at 1x
    assert _mode(severe, None) == "imbalance"


def test_a_varying_speed_is_tracked_and_the_defect_still_found(baseline: DiagnosisBaseline) -> None:
    slower_hz = 1560.0 / 60.0
    machine = Machine(shaft_hz=slower_hz, impact_hz=ORDERS.bpfo * slower_hz, impact_g=0.3)
    measured = measure(_signals(machine.window(11)), CONFIG)
    assert measured.shaft_hz == pytest.approx(slower_hz, rel=0.003)
    assert diagnose(measured, CONFIG, baseline).mode == "outer_race"


def test_shaft_speed_estimate_is_within_a_fraction_of_a_bin() -> None:
    for true_hz in (25.3, 28.71, 31.2):
        spectrum = amplitude_spectrum(Machine(shaft_hz=true_hz).window(3), RATE_HZ)
        estimate = estimate_shaft_hz(spectrum, (24.0, 32.0))
        assert estimate == pytest.approx(true_hz, abs=0.25 * spectrum.resolution_hz)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("flat", "flat"), ("clipping", "clipping"), ("spikes", "spikes"), ("nan", "non_finite")],
)
def test_a_sensor_fault_is_reported_as_such_never_as_a_machine_fault(
    baseline: DiagnosisBaseline, fault: str, kind: str
) -> None:
    x = Machine().window(12)
    if fault == "flat":
        x[:] = 0.731
    elif fault == "clipping":
        x = np.clip(3 * x, -0.1, 0.1)
    elif fault == "spikes":
        x[np.random.default_rng(0).choice(N, 8, replace=False)] += 1.5
    else:
        x[100] = np.nan
    diagnosis = diagnose(measure(_signals(x), CONFIG), CONFIG, baseline)
    assert diagnosis.mode == "sensor_fault"
    assert diagnosis.sensor_faults == {"vibration": kind}
    assert not any(f.mode in MACHINE_MODES for f in diagnosis.findings)


def _slow_window(
    machine: Machine, seed: int, *, current_a: float, excess_c: float = 0.0, pressure_noise: float = 0.05
) -> WindowSignals:
    rng = np.random.default_rng(seed)
    ambient = 20.0 + 5.0 * rng.uniform()
    temperature = ambient + 10.0 + 0.004 * current_a**2 + excess_c + 0.2 * rng.standard_normal(10)
    return _signals(
        machine.window(seed),
        temperature=temperature,
        current=current_a + 0.3 * rng.standard_normal(10),
        ambient=np.full(10, ambient),
        pressure=6.0 + pressure_noise * rng.standard_normal(10),
        flow=120.0 + 1.0 * rng.standard_normal(10),
    )


@pytest.fixture(scope="module")
def slow_baseline() -> DiagnosisBaseline:
    windows = [_slow_window(Machine(), seed, current_a=30.0 + 5 * (seed % 5)) for seed in range(30)]
    return DiagnosisBaseline().fit([measure(w, CONFIG) for w in windows])


def test_temperature_above_what_load_and_ambient_explain_is_overheating(
    slow_baseline: DiagnosisBaseline,
) -> None:
    hot = measure(_slow_window(Machine(), 300, current_a=40.0, excess_c=10.0), CONFIG)
    assert diagnose(hot, CONFIG, slow_baseline).mode == "overheating"
    # The same temperature explained by a higher load is not, nor one at a load the baseline never saw.
    loaded = measure(_slow_window(Machine(), 301, current_a=50.0), CONFIG)
    assert diagnose(loaded, CONFIG, slow_baseline).mode == "unknown"
    unseen = measure(_slow_window(Machine(), 302, current_a=70.0, excess_c=8.0), CONFIG)
    assert diagnose(unseen, CONFIG, slow_baseline).mode == "unknown"


def test_a_rise_beyond_the_bound_but_not_by_a_quarter_is_not_overheating(
    slow_baseline: DiagnosisBaseline,
) -> None:
    # 1.5 C over a healthy 16.4 C rise: beyond the t bound of the tight baseline (0.2 C noise), but what a
    # thermal lag behind a falling ambient gives a healthy machine, not a fault (under 25 % of the rise).
    warm = measure(_slow_window(Machine(), 305, current_a=40.0, excess_c=1.5), CONFIG)
    assert diagnose(warm, CONFIG, slow_baseline).mode == "unknown"


def test_a_rise_just_above_the_hottest_healthy_one_is_not_overheating(
    slow_baseline: DiagnosisBaseline,
) -> None:
    # 4.6 C over the healthy 16.4 C at 40 A (28 %, far beyond the t bound) puts the rise about 5 % above the
    # hottest healthy one (20 C at 50 A): what a healthy machine held at a heavy load while ambient falls
    # shows, or one whose few baseline windows at this point were taken while it still warmed up.
    warm = measure(_slow_window(Machine(), 308, current_a=40.0, excess_c=4.6), CONFIG)
    hottest = float(slow_baseline.thermal_.rises.max())  # type: ignore[union-attr]  # fitted with rises
    assert hottest < warm.scalars["temperature_rise"] < 1.1 * hottest
    assert diagnose(warm, CONFIG, slow_baseline).mode == "unknown"


def test_overheating_at_a_lighter_load_than_the_baseline_saw_is_found(
    slow_baseline: DiagnosisBaseline,
) -> None:
    # No baseline window ran near 22 A (30-50 A), but heat grows with load: the healthy rise at 22 A is
    # at most what the heavier points show, so 15 C over the healthy 11.9 C is overheating...
    hot = measure(_slow_window(Machine(), 309, current_a=22.0, excess_c=15.0), CONFIG)
    assert diagnose(hot, CONFIG, slow_baseline).mode == "overheating"
    # ... and the healthy rise at that light load is not.
    healthy = measure(_slow_window(Machine(), 310, current_a=22.0), CONFIG)
    assert diagnose(healthy, CONFIG, slow_baseline).mode == "unknown"


def test_heat_left_over_from_a_heavier_load_is_not_overheating(slow_baseline: DiagnosisBaseline) -> None:
    # Just after the load fell from 45 A to 30 A the bearing is still as warm as at 45 A: a third above the
    # healthy rise at 30 A, but no warmer than the machine runs healthy at a heavier load (thermal lag).
    lagging = measure(
        _slow_window(Machine(), 306, current_a=30.0, excess_c=0.004 * (45.0**2 - 30.0**2)), CONFIG
    )
    assert diagnose(lagging, CONFIG, slow_baseline).mode == "unknown"
    # Hotter than any healthy window at any load is overheating, at a light load too.
    hot = measure(_slow_window(Machine(), 307, current_a=30.0, excess_c=12.0), CONFIG)
    assert diagnose(hot, CONFIG, slow_baseline).mode == "overheating"


def test_broadband_noise_with_pressure_fluctuation_is_cavitation(slow_baseline: DiagnosisBaseline) -> None:
    noisy = Machine(noise_g=0.08)
    window = _slow_window(noisy, 302, current_a=40.0, pressure_noise=0.5)
    assert diagnose(measure(window, CONFIG), CONFIG, slow_baseline).mode == "cavitation"
    # Broadband noise alone, with steady pressure and flow, is not.
    steady = _slow_window(noisy, 303, current_a=40.0)
    assert diagnose(measure(steady, CONFIG), CONFIG, slow_baseline).mode != "cavitation"


def test_a_stuck_slow_sensor_is_a_sensor_fault_when_nothing_else_is_found(
    slow_baseline: DiagnosisBaseline,
) -> None:
    window = _slow_window(Machine(), 304, current_a=40.0)
    stuck = WindowSignals(
        vibration=window.vibration,
        sample_rate_hz=RATE_HZ,
        slow={**window.slow, "temperature": np.full(10, 41.0)},
    )
    diagnosis = diagnose(measure(stuck, CONFIG), CONFIG, slow_baseline)
    assert diagnosis.mode == "sensor_fault"
    assert diagnosis.sensor_faults == {"temperature": "flat"}


def test_the_diagnosis_window_resolves_the_cage_at_the_lowest_speed_searched() -> None:
    samples = diagnosis_window_samples(CONFIG, RATE_HZ, shortest=1024)
    assert samples & (samples - 1) == 0  # a power of two
    assert samples >= 1024
    lowest_hz = CONFIG.speed_search_hz()[0]
    ftf_hz = (ORDERS.ftf or 0.0) * lowest_hz
    t = np.arange(samples) / RATE_HZ
    since = np.mod(t, 1.0 / ftf_hz)
    impacts = 0.3 * np.exp(-since / 0.0004) * np.sin(2 * np.pi * 3500.0 * since)
    signal = 0.05 * np.sin(2 * np.pi * lowest_hz * t) + impacts
    window = WindowSignals(vibration=signal, sample_rate_hz=RATE_HZ, shaft_hz=lowest_hz)
    assert "env:drive-end:ftf comb" in measure(window, CONFIG).scalars
    quarter = WindowSignals(vibration=signal[: samples // 4], sample_rate_hz=RATE_HZ, shaft_hz=lowest_hz)
    assert "env:drive-end:ftf comb" not in measure(quarter, CONFIG).scalars  # too short to resolve it


def test_a_slower_machine_needs_a_longer_diagnosis_window_up_to_the_longest_allowed() -> None:
    fast = diagnosis_window_samples(CONFIG, RATE_HZ, shortest=1024)
    slow_config = CONFIG.model_copy(update={"shaft_rpm": 600.0, "speed_range_rpm": (500.0, 700.0)})
    slow = diagnosis_window_samples(slow_config, RATE_HZ, shortest=1024)
    assert slow > fast
    capped = slow_config.model_copy(update={"max_window_s": 0.5})
    assert diagnosis_window_samples(capped, RATE_HZ, shortest=1024) <= 0.5 * RATE_HZ


def test_a_set_diagnosis_window_or_no_cage_order_keeps_the_given_length() -> None:
    assert (
        diagnosis_window_samples(CONFIG.model_copy(update={"window_s": 0.25}), RATE_HZ, shortest=1024) == 3000
    )
    no_cage = CONFIG.model_copy(
        update={"bearings": (BearingSettings(name="de", orders=DefectOrders(bpfo=3.58, bpfi=5.42)),)}
    )
    assert diagnosis_window_samples(no_cage, RATE_HZ, shortest=2048) == 2048
