"""The fleet simulation: steps through simulated time and yields, per step, every asset's signals.

Time advances in steps of `time.step_s`. At each step every asset emits one burst: `burst_samples` of
vibration and `slow_samples` of each slow sensor (when `step_s` equals the burst length, the signal is
continuous). Between bursts the engine integrates what changes slowly: operating regime (load, speed,
start/stop), degradation, the thermal state, failures and maintenance.

Everything is drawn from the scenario seed through independent streams (units, signal noise, regimes,
random failures, sensor faults), so enabling a sensor fault never changes the physics.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from shared.messages import MaintenanceEvent
from shared.timebase import NS_PER_S, iso_time
from simulators.assets import ASSET_TYPES, FAST_SENSOR, FailureMode, Unit, draw_unit
from simulators.scenario import FailureSpec, Scenario, SensorFaultSpec
from simulators.signals import F32, F64, FleetSignals, Severity, bearing_wear, slow_burst, vibration_burst

__all__ = ["SENSORS", "Step", "TruthRecord", "fleet_units", "simulate"]

SENSORS = (FAST_SENSOR, "temperature", "current", "pressure", "flow")
_MODES = tuple(FailureMode)
_NS_PER_H = 3600 * NS_PER_S
_SOURCE = "simulator"
EventKind = Literal["failure", "maintenance"]


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One ground-truth fact: a fault onset, a failure, a maintenance, or an injected sensor/network fault."""

    asset_id: str
    ts_ns: int
    event: str  # onset | failure | maintenance | sensor_fault | transport_fault
    mode: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    """What every asset's sensors report during one step.

    Attributes:
        index: step number from 0.
        t_ns: simulated time of the burst start (UTC epoch ns), before any clock skew.
        running: per asset, whether it turns.
        load: per asset load (0 when stopped).
        speed_rpm: per asset shaft speed (0 when stopped).
        signals: sensor -> assets x samples (float32, sensor faults applied; NaN rows where absent).
        emitted: sensor -> per asset, whether a batch is sent (the asset has the sensor, no dropout).
        skew_ns: sensor -> per asset clock offset added to the batch timestamps.
        events: failures and maintenance that happened at this step.
        truth: ground-truth records that start at this step.
    """

    index: int
    t_ns: int
    running: npt.NDArray[np.bool_]
    load: F64
    speed_rpm: F64
    signals: dict[str, F32]
    emitted: dict[str, npt.NDArray[np.bool_]]
    skew_ns: dict[str, npt.NDArray[np.int64]]
    events: tuple[MaintenanceEvent, ...]
    truth: tuple[TruthRecord, ...]


@dataclass(slots=True)
class _ActiveMode:
    mode: FailureMode
    onset_ns: int
    ttf_ns: int
    progression: str
    threshold: float

    def severity(self, t_ns: int) -> float:
        x = max(0.0, (t_ns - self.onset_ns) / self.ttf_ns)
        if self.progression == "linear":
            s = x
        elif self.progression == "piecewise":  # a long quiet stage, then fast
            s = 0.3 * x / 0.7 if x < 0.7 else 0.3 + 0.7 * (x - 0.7) / 0.3
        else:
            s = math.expm1(4.0 * min(x, 2.0)) / math.expm1(4.0)
        return self.threshold * s


@dataclass(slots=True)
class _AssetState:
    pending: list[FailureSpec] = field(default_factory=list)
    active: list[_ActiveMode] = field(default_factory=list)
    failed: bool = False
    repair_at_ns: int = 0
    stopped_until_ns: int = 0
    next_regime_ns: int = 0


@dataclass(slots=True)
class _Stuck:
    values: dict[int, float] = field(default_factory=dict)


def fleet_units(scenario: Scenario) -> tuple[Unit, ...]:
    """The scenario's units, with their individual differences drawn from the seed."""
    return tuple(
        draw_unit(asset_id, ASSET_TYPES[type_name], np.random.default_rng([scenario.seed, 0, i]))
        for i, (asset_id, type_name) in enumerate(zip(scenario.asset_ids, scenario.asset_types, strict=True))
    )


def _fleet_signals(units: tuple[Unit, ...], rate_hz: float) -> FleetSignals:
    return FleetSignals(
        base_1x_g=np.array([u.type.base_1x_g * u.balance_scale for u in units]),
        noise_g=np.array([0.02 * u.noise_scale for u in units]),
        bpfo_order=np.array([u.type.bpfo_order for u in units]),
        bpfi_order=np.array([u.type.bpfi_order for u in units]),
        pass_order=np.array([float(u.type.pass_order) for u in units]),
        is_motor=np.array([u.type.pass_order == 0 for u in units]),
        resonance_hz=np.array([min(3200.0 + 150.0 * (i % 5), 0.35 * rate_hz) for i in range(len(units))]),
        bsf_order=np.array([u.type.bsf_order for u in units]),
        ftf_order=np.array([u.type.ftf_order for u in units]),
    )


class _Fleet:
    """The mutable state of a running simulation; `simulate` drives it."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.spec = scenario.spec
        self.units = fleet_units(scenario)
        self.n = len(self.units)
        self.index = {u.asset_id: i for i, u in enumerate(self.units)}
        self.fleet = _fleet_signals(self.units, self.spec.signals.vibration_rate_hz)
        seed = scenario.seed
        self.noise_rng = np.random.default_rng([seed, 1])
        self.regime_rng = np.random.default_rng([seed, 2])
        self.failure_rng = np.random.default_rng([seed, 3])
        self.fault_rng = np.random.default_rng([seed, 4])
        self.states = [_AssetState() for _ in self.units]
        for failure in sorted(self.spec.failures, key=lambda f: f.onset_h):
            self.states[self.index[failure.asset]].pending.append(failure)
        self.load = np.full(self.n, max(self.spec.operation.loads))
        self.speed_factor = np.ones(self.n)
        self.has_vfd = np.array([u.type.has_vfd for u in self.units])
        self.rpm = np.array([u.rpm for u in self.units])
        self.running = np.ones(self.n, dtype=bool)
        ambient = self._ambient(scenario.start_ns)
        self.temperature = np.array(
            [ambient + u.temp_offset_c + 0.7 * u.type.temp_rise_c for u in self.units]
        )
        self.tau_s = np.array([u.type.thermal_tau_s for u in self.units])
        self.has = {s: np.array([s in u.type.sensors for u in self.units]) for s in SENSORS}
        self.stuck: dict[int, _Stuck] = {}
        for state in self.states:
            state.next_regime_ns = scenario.start_ns + self._exp_ns(self.spec.operation.regime_mean_h)

    def _exp_ns(self, mean_h: float) -> int:
        return max(1, round(float(self.regime_rng.exponential(mean_h)) * _NS_PER_H))

    def _ambient(self, t_ns: int) -> float:
        hour = (t_ns % (24 * _NS_PER_H)) / _NS_PER_H
        signals = self.spec.signals
        return signals.ambient_c + signals.daily_swing_c * math.sin(2.0 * math.pi * (hour - 9.0) / 24.0)

    # --- events ---------------------------------------------------------------------------------------

    def _event(self, i: int, t_ns: int, kind: EventKind, mode: str, note: str) -> MaintenanceEvent:
        return MaintenanceEvent(
            asset_id=self.units[i].asset_id, ts_ns=t_ns, event=kind, mode=mode, source=_SOURCE, note=note
        )

    def _maintain(self, i: int, t_ns: int, note: str) -> tuple[MaintenanceEvent, TruthRecord]:
        state = self.states[i]
        modes = ",".join(sorted({m.mode.value for m in state.active}))
        state.active.clear()
        state.failed = False
        self.running[i] = state.stopped_until_ns <= t_ns
        truth = TruthRecord(self.units[i].asset_id, t_ns, "maintenance", modes, note)
        return self._event(i, t_ns, "maintenance", modes, note), truth

    def maintenance(self, t_ns: int, events: list[MaintenanceEvent], truth: list[TruthRecord]) -> None:
        interval_ns = round(self.spec.maintenance.preventive_interval_h * _NS_PER_H)
        elapsed_ns = t_ns - self.scenario.start_ns
        preventive = (  # the first step at or after each multiple of the interval
            interval_ns > 0
            and elapsed_ns > 0
            and elapsed_ns // interval_ns != (elapsed_ns - self.scenario.step_ns) // interval_ns
        )
        for i, state in enumerate(self.states):
            if state.failed and t_ns >= state.repair_at_ns:
                event, record = self._maintain(i, t_ns, "repair after failure")
            elif preventive and not state.failed:
                event, record = self._maintain(i, t_ns, "planned maintenance")
            else:
                continue
            events.append(event)
            truth.append(record)

    def onsets(self, t_ns: int, truth: list[TruthRecord]) -> None:
        step_h = self.spec.time.step_s / 3600.0
        random = self.spec.random_failures
        draws = self.failure_rng.uniform(size=(self.n, 3))
        p_onset = random.rate_per_asset_year * step_h / 8766.0
        for i, state in enumerate(self.states):
            if state.failed:
                continue
            start = self.scenario.start_ns
            while state.pending and start + round(state.pending[0].onset_h * _NS_PER_H) <= t_ns:
                spec = state.pending.pop(0)
                self._activate(
                    i,
                    t_ns=t_ns,
                    mode=FailureMode(spec.mode),
                    ttf_h=spec.time_to_failure_h,
                    spec=spec,
                    truth=truth,
                )
            if p_onset > 0 and draws[i, 0] < p_onset:
                allowed = [m for m in random.modes if FailureMode(m) in self.units[i].type.modes]
                if allowed:
                    mode = FailureMode(allowed[int(draws[i, 1] * len(allowed)) % len(allowed)])
                    low, high = random.time_to_failure_h
                    ttf_h = low + (high - low) * float(draws[i, 2])
                    self._activate(i, t_ns=t_ns, mode=mode, ttf_h=ttf_h, spec=None, truth=truth)

    def _activate(
        self,
        i: int,
        *,
        t_ns: int,
        mode: FailureMode,
        ttf_h: float,
        spec: FailureSpec | None,
        truth: list[TruthRecord],
    ) -> None:
        progression = spec.progression if spec else self.spec.random_failures.progression
        threshold = spec.threshold if spec else 1.0
        active = _ActiveMode(mode, t_ns, max(1, round(ttf_h * _NS_PER_H)), progression, threshold)
        self.states[i].active.append(active)
        origin = "scripted" if spec else "random"
        detail = f"time_to_failure_h={ttf_h:g};progression={progression};{origin}"
        truth.append(TruthRecord(self.units[i].asset_id, t_ns, "onset", mode.value, detail))

    def regimes(self, t_ns: int) -> None:
        operation = self.spec.operation
        for i in np.flatnonzero([s.next_regime_ns <= t_ns for s in self.states]):
            state = self.states[int(i)]
            if float(self.regime_rng.uniform()) < operation.stop_probability:
                state.stopped_until_ns = t_ns + self._exp_ns(operation.stop_mean_h)
                state.next_regime_ns = state.stopped_until_ns
                continue
            self.load[i] = operation.loads[int(self.regime_rng.integers(len(operation.loads)))]
            factors = operation.speed_factors
            self.speed_factor[i] = factors[int(self.regime_rng.integers(len(factors)))]
            state.next_regime_ns = t_ns + self._exp_ns(operation.regime_mean_h)
        self.running = np.array([not s.failed and s.stopped_until_ns <= t_ns for s in self.states])

    def severities(self, t_ns: int, events: list[MaintenanceEvent], truth: list[TruthRecord]) -> F64:
        sev = np.zeros((self.n, len(_MODES)))
        for i, state in enumerate(self.states):
            for active in state.active:
                column = _MODES.index(active.mode)
                value = active.severity(t_ns)
                sev[i, column] = max(sev[i, column], min(value, active.threshold))
                if not state.failed and value >= active.threshold:
                    state.failed = True
                    state.repair_at_ns = t_ns + round(self.spec.maintenance.repair_h * _NS_PER_H)
                    note = f"{active.mode.value} reached its threshold"
                    events.append(self._event(i, t_ns, "failure", active.mode.value, note))
                    truth.append(
                        TruthRecord(self.units[i].asset_id, t_ns, "failure", active.mode.value, note)
                    )
            if state.failed:
                self.running[i] = False
        return sev

    # --- signals --------------------------------------------------------------------------------------

    def thermal(self, t_ns: int, load: F64, sev: Severity) -> None:
        ambient = self._ambient(t_ns)
        rise = np.array([u.type.temp_rise_c for u in self.units])
        offset = np.array([u.temp_offset_c for u in self.units])
        wear = bearing_wear(sev)
        heat = (
            rise * (0.4 + 0.6 * load**2) + 15.0 * sev.misalignment + 45.0 * sev.overheating + 12.0 * wear**2
        )
        target = ambient + offset + np.where(self.running, heat, 0.0)
        alpha = 1.0 - np.exp(-self.spec.time.step_s / self.tau_s)
        self.temperature += alpha * (target - self.temperature)

    def slow_signals(self, load: F64, sev: Severity) -> dict[str, F32]:
        n_samples = self.spec.signals.slow_samples
        rated = np.array([u.type.rated_current_a * u.current_scale for u in self.units])
        noise_scale = np.array([u.noise_scale for u in self.units])
        sf = self.speed_factor
        run = self.running
        wear = bearing_wear(sev)
        current = np.where(
            run,
            rated
            * (0.3 + 0.7 * load * sf**3)
            * (1.0 + 0.15 * sev.overheating + 0.06 * sev.misalignment + 0.04 * wear),
            0.0,
        )
        p_nom = np.array([u.type.pressure_bar for u in self.units])
        q_nom = np.array([u.type.flow_m3h for u in self.units])
        is_pump = np.array([u.type.name == "centrifugal_pump" for u in self.units])
        cav = sev.cavitation
        pressure = np.where(
            is_pump, p_nom * (1.2 * sf**2 - 0.2 * load**2) * (1.0 - 0.25 * cav), p_nom * (0.8 + 0.2 * load)
        )
        flow = np.where(is_pump, q_nom * load * sf * (1.0 - 0.3 * cav), q_nom * load)
        levels = {
            "temperature": (self.temperature, 0.08 * noise_scale),
            "current": (current, np.where(run, 0.005 * rated * noise_scale, 0.05)),
            "pressure": (np.where(run, pressure, 0.1), 0.01 * p_nom * noise_scale * (1.0 + 20.0 * cav)),
            "flow": (np.where(run, flow, 0.0), 0.01 * q_nom * noise_scale * (1.0 + 10.0 * cav)),
        }
        out: dict[str, F32] = {}
        for sensor, (level, noise) in levels.items():
            burst = slow_burst(level, noise, n_samples, self.noise_rng)
            burst[~self.has[sensor]] = np.nan
            out[sensor] = burst
        return out

    def shaft_rpm(self) -> F64:
        """Shaft speed per asset (0 when stopped).

        The unit's rpm at full load, times the VFD setpoint, with less induction-motor slip at lower load
        (about 1 % faster at no load).
        """
        setpoint = np.where(self.has_vfd, self.speed_factor, 1.0)
        slip = 1.0 + 0.01 * (1.0 - self.load)
        return np.where(self.running, self.rpm * setpoint * slip, 0.0)

    def vibration(self, load: F64, sev: Severity) -> F32:
        signals = self.spec.signals
        shaft_hz = self.shaft_rpm() / 60.0
        return vibration_burst(
            self.fleet,
            shaft_hz=shaft_hz,
            load=load,
            severity=sev,
            n_samples=signals.burst_samples,
            rate_hz=signals.vibration_rate_hz,
            rng=self.noise_rng,
        )

    # --- sensor faults --------------------------------------------------------------------------------

    def sensor_faults(
        self, t_ns: int, signals: dict[str, F32], emitted: dict[str, npt.NDArray[np.bool_]]
    ) -> dict[str, npt.NDArray[np.int64]]:
        skew = {s: np.zeros(self.n, dtype=np.int64) for s in SENSORS}
        for number, fault in enumerate(self.spec.sensor_faults):
            start = self.scenario.start_ns + round(fault.start_h * _NS_PER_H)
            if not start <= t_ns < start + round(fault.duration_h * _NS_PER_H):
                self.stuck.pop(number, None)
                continue
            i = self.index[fault.asset]
            row = signals[fault.sensor][i]
            self._apply_fault(number, fault=fault, row=row, i=i, emitted=emitted, skew=skew)
        return skew

    def _apply_fault(
        self,
        number: int,
        *,
        fault: SensorFaultSpec,
        row: F32,
        i: int,
        emitted: dict[str, npt.NDArray[np.bool_]],
        skew: dict[str, npt.NDArray[np.int64]],
    ) -> None:
        kind = fault.kind
        if kind == "dropout":
            emitted[fault.sensor][i] = False
        elif kind == "stuck":
            stuck = self.stuck.setdefault(number, _Stuck())
            row[:] = stuck.values.setdefault(i, float(row[0]))
        elif kind == "clock_skew":
            skew[fault.sensor][i] += round(fault.magnitude * NS_PER_S)
        else:
            hit = self.fault_rng.uniform(size=row.size) < fault.rate
            if kind == "spikes":
                scale = max(float(np.std(row)), 0.05 * abs(float(np.mean(row))), 1e-3)
                signs = np.where(self.fault_rng.uniform(size=row.size) < 0.5, -1.0, 1.0)
                row[hit] += (fault.magnitude * scale * signs[hit]).astype(np.float32)
            elif kind == "nan":
                row[hit] = np.nan
            else:
                row[hit] = np.inf


def _static_truth(scenario: Scenario) -> list[tuple[int, TruthRecord]]:
    records: list[tuple[int, TruthRecord]] = []
    for fault in scenario.spec.sensor_faults:
        start = scenario.start_ns + round(fault.start_h * _NS_PER_H)
        until = iso_time(start + round(fault.duration_h * _NS_PER_H))
        detail = f"sensor={fault.sensor};until={until}"
        records.append((start, TruthRecord(fault.asset, start, "sensor_fault", fault.kind, detail)))
    for transport in scenario.spec.transport_faults:
        start = scenario.start_ns + round(transport.start_h * _NS_PER_H)
        until = iso_time(start + round(transport.duration_h * _NS_PER_H))
        detail = f"sensor={transport.sensor};until={until};probability={transport.probability:g}"
        records.append(
            (start, TruthRecord(transport.asset, start, "transport_fault", transport.kind, detail))
        )
    return sorted(records, key=lambda item: item[0])


def simulate(scenario: Scenario) -> Iterator[Step]:
    """Run the scenario and yield one `Step` per simulated step, in time order.

    Deterministic: the same scenario and seed give identical steps.
    """
    fleet = _Fleet(scenario)
    static = _static_truth(scenario)
    for k in range(scenario.n_steps):
        t_ns = scenario.start_ns + k * scenario.step_ns
        events: list[MaintenanceEvent] = []
        truth: list[TruthRecord] = []
        while static and static[0][0] < t_ns + scenario.step_ns:
            truth.append(static.pop(0)[1])
        fleet.maintenance(t_ns, events, truth)
        fleet.onsets(t_ns, truth)
        fleet.regimes(t_ns)
        sev = Severity(*fleet.severities(t_ns, events, truth).T)
        load = np.where(fleet.running, fleet.load, 0.0)
        fleet.thermal(t_ns, load, sev)
        signals = fleet.slow_signals(load, sev)
        signals[FAST_SENSOR] = fleet.vibration(load, sev)
        emitted = {sensor: fleet.has[sensor].copy() for sensor in SENSORS}
        skew = fleet.sensor_faults(t_ns, signals, emitted)
        yield Step(
            index=k,
            t_ns=t_ns,
            running=fleet.running.copy(),
            load=load,
            speed_rpm=fleet.shaft_rpm(),
            signals=signals,
            emitted=emitted,
            skew_ns=skew,
            events=tuple(events),
            truth=tuple(truth),
        )
