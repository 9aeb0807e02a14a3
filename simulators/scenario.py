"""Scenario files: what fleet to simulate, for how long, with which failures and faults.

A scenario is a TOML file (docs/simulators.md lists every key). Bundled scenarios (`smoke`, `plant`,
`stress`) ship as package data under `simulators/scenarios/`. `load_scenario` accepts a bundled name or a
path and returns a validated, immutable `Scenario`; a bad file raises `ConfigError` naming the key, e.g.
``scenario.failures[0].mode = 'cavitation': not a failure mode of electric_motor (from plant.toml)``.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, Field

from shared.errors import ConfigError
from shared.features import DEFAULT_SPEC
from shared.raw_batch import MAX_SAMPLES_PER_BATCH
from shared.timebase import MAX_FUTURE_SKEW_NS, NS_PER_S, check_time_ns, datetime_to_ns, iso_time, now_ns
from shared.topics import IDENT_PATTERN, check_ident
from simulators.assets import ASSET_TYPES, FailureMode

__all__ = [
    "AssetGroup",
    "FailureSpec",
    "Scenario",
    "SensorFaultSpec",
    "TransportFaultSpec",
    "bundled_scenarios",
    "load_scenario",
    "parse_scenario",
]

SensorFaultKind = Literal["dropout", "stuck", "spikes", "nan", "inf", "clock_skew"]
TransportFaultKind = Literal["duplicate", "reorder", "malformed"]
Progression = Literal["exponential", "linear", "piecewise"]
_Model = pydantic.ConfigDict(frozen=True, extra="forbid")
_BUNDLED_DIR = Path(__file__).resolve().parent / "scenarios"


class TimeSection(BaseModel):
    """`[time]`: when the simulated plant runs and how fast."""

    model_config = _Model
    start: str = Field(
        default="2026-01-01T00:00:00Z", description="Simulated start, ISO 8601 with a time zone."
    )
    duration_h: float = Field(default=3.0, gt=0, le=24 * 3660, description="Simulated duration in hours.")
    step_s: float = Field(default=10.0, gt=0, le=86400, description="Simulated seconds between bursts.")
    speed: float = Field(
        default=0.0,
        ge=0,
        description="Simulated seconds per wall second for `sim run`; 0: as fast as possible.",
    )


class SignalsSection(BaseModel):
    """`[signals]`: sample rates and burst sizes."""

    model_config = _Model
    vibration_rate_hz: float = Field(default=10_000.0, gt=0, le=200_000, description="Vibration sample rate.")
    burst_samples: int = Field(default=4096, ge=1024, description="Vibration samples per asset per step.")
    batch_samples: int = Field(
        default=4096, ge=64, le=MAX_SAMPLES_PER_BATCH, description="Samples per batch."
    )
    slow_rate_hz: float = Field(default=1.0, gt=0, le=1000, description="Rate of the slow sensors.")
    slow_samples: int = Field(
        default=10, ge=2, le=100_000, description="Slow-sensor samples per asset per step."
    )
    ambient_c: float = Field(default=22.0, ge=-40, le=60, description="Mean ambient temperature.")
    daily_swing_c: float = Field(
        default=5.0, ge=0, le=30, description="Amplitude of the daily temperature cycle."
    )


class OperationSection(BaseModel):
    """`[operation]`: regime changes and start/stop cycles (not faults)."""

    model_config = _Model
    regime_mean_h: float = Field(
        default=2.0, gt=0, description="Mean time between load/speed setpoint changes."
    )
    loads: tuple[float, ...] = Field(
        default=(0.6, 0.8, 1.0), min_length=1, description="Load setpoints (0-1.2)."
    )
    speed_factors: tuple[float, ...] = Field(
        default=(0.85, 1.0), min_length=1, description="VFD speed setpoints."
    )
    stop_probability: float = Field(default=0.1, ge=0, le=1, description="Chance a regime change is a stop.")
    stop_mean_h: float = Field(default=0.5, gt=0, description="Mean length of a stop.")


class MaintenanceSection(BaseModel):
    """`[maintenance]`: repairs after failures and planned maintenance."""

    model_config = _Model
    repair_h: float = Field(
        default=4.0, gt=0, description="Time from a failure to the maintenance that restores."
    )
    preventive_interval_h: float = Field(
        default=0.0, ge=0, description="Planned maintenance interval; 0: none."
    )


class AssetGroup(BaseModel):
    """`[[assets]]`: `count` assets of one type, named `{id_prefix}-001`..."""

    model_config = _Model
    type: str = Field(description="centrifugal_pump, electric_motor, fan or compressor.")
    count: int = Field(default=1, ge=1, le=10_000)
    id_prefix: str = Field(default="", description="Id prefix; default: the type name with - instead of _.")


class FailureSpec(BaseModel):
    """`[[failures]]`: a degradation of one asset that starts at `onset_h`."""

    model_config = _Model
    asset: str
    mode: str
    onset_h: float = Field(ge=0)
    time_to_failure_h: float = Field(gt=0, description="From onset to the failure threshold.")
    progression: Progression = "exponential"
    threshold: float = Field(default=1.0, gt=0, le=10)


class RandomFailuresSection(BaseModel):
    """`[random_failures]`: onsets drawn from the seed (a Poisson process per asset)."""

    model_config = _Model
    rate_per_asset_year: float = Field(default=0.0, ge=0, le=1000)
    modes: tuple[str, ...] = ()
    time_to_failure_h: tuple[float, float] = (48.0, 480.0)
    progression: Progression = "exponential"


class SensorFaultSpec(BaseModel):
    """`[[sensor_faults]]`: a sensor misbehaving for a while."""

    model_config = _Model
    asset: str
    sensor: str
    kind: SensorFaultKind
    start_h: float = Field(ge=0)
    duration_h: float = Field(gt=0)
    rate: float = Field(default=0.01, gt=0, le=1, description="spikes/nan/inf: fraction of samples hit.")
    magnitude: float = Field(
        default=10.0, description="spikes: size in units of the signal's std; clock_skew: s."
    )


class TransportFaultSpec(BaseModel):
    """`[[transport_faults]]`: the network misbehaving for a while (live runs only)."""

    model_config = _Model
    kind: TransportFaultKind
    asset: str = "*"
    sensor: str = "*"
    start_h: float = Field(default=0.0, ge=0)
    duration_h: float = Field(gt=0)
    probability: float = Field(default=0.05, gt=0, le=1, description="Fraction of matching batches hit.")


class ExportSection(BaseModel):
    """`[export]`: what `sim export` writes besides features and ground truth."""

    model_config = _Model
    raw_assets: tuple[str, ...] = Field(default=(), description="Assets whose raw samples are written.")
    raw_every: int = Field(default=1, ge=1, description="Write raw samples of every n-th step.")


class ScenarioFile(BaseModel):
    """The whole file."""

    model_config = _Model
    name: str = Field(pattern=IDENT_PATTERN)
    description: str = ""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    time: TimeSection = Field(default_factory=TimeSection)
    signals: SignalsSection = Field(default_factory=SignalsSection)
    operation: OperationSection = Field(default_factory=OperationSection)
    maintenance: MaintenanceSection = Field(default_factory=MaintenanceSection)
    assets: list[AssetGroup] = Field(min_length=1)
    failures: list[FailureSpec] = Field(default_factory=list)
    random_failures: RandomFailuresSection = Field(default_factory=RandomFailuresSection)
    sensor_faults: list[SensorFaultSpec] = Field(default_factory=list)
    transport_faults: list[TransportFaultSpec] = Field(default_factory=list)
    export: ExportSection = Field(default_factory=ExportSection)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario plus the values derived from it.

    Attributes:
        spec: the file's content, validated.
        source: where it came from (a path, or `bundled:NAME`).
        asset_ids: every asset id, in fleet order.
        asset_types: the type name of each asset, same order.
        start_ns: simulated start (UTC epoch ns).
        step_ns: simulated time between steps.
        n_steps: how many steps the scenario runs.
    """

    spec: ScenarioFile
    source: str
    asset_ids: tuple[str, ...]
    asset_types: tuple[str, ...]
    start_ns: int
    step_ns: int
    n_steps: int

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.spec.name

    @property
    def seed(self) -> int:
        """The seed everything is drawn from."""
        return self.spec.seed

    @property
    def end_ns(self) -> int:
        """Simulated end (exclusive)."""
        return self.start_ns + self.n_steps * self.step_ns

    def with_changes(
        self, *, seed: int | None = None, start_ns: int | None = None, n_steps: int | None = None
    ) -> Scenario:
        """A copy with another seed, start time (e.g. `sim run --start now`) or number of steps."""
        spec = self.spec if seed is None else self.spec.model_copy(update={"seed": seed})
        return replace(
            self,
            spec=spec,
            start_ns=self.start_ns if start_ns is None else start_ns,
            n_steps=self.n_steps if n_steps is None else max(1, n_steps),
        )

    def check_not_future(self, *, reference_ns: int | None = None) -> None:
        """Raise `ConfigError` if the scenario's timestamps would be rejected as too far in the future."""
        latest = (now_ns() if reference_ns is None else reference_ns) + MAX_FUTURE_SKEW_NS
        if self.end_ns > latest:
            raise ConfigError(
                "scenario.time.start",
                self.spec.time.start,
                f"the scenario would end at {iso_time(self.end_ns)}, more than 24 h after now;"
                " start it earlier (decoders reject far-future timestamps)",
                self.source,
            )


def parse_time(key: str, text: str, source: str) -> int:
    """Parse an ISO 8601 timestamp with a time zone into UTC epoch ns, or raise `ConfigError` naming `key`."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(key, text, "an ISO 8601 timestamp like 2026-01-01T00:00:00Z", source) from exc
    if moment.tzinfo is None:
        raise ConfigError(key, text, "a timestamp with a time zone (e.g. a trailing Z)", source)
    ts_ns = datetime_to_ns(moment)
    if ts_ns < 0:
        raise ConfigError(key, text, "a time after 1990-01-01", source)
    return ts_ns


def bundled_scenarios() -> tuple[str, ...]:
    """Names of the scenarios shipped with the package."""
    return tuple(sorted(path.stem for path in _BUNDLED_DIR.glob("*.toml")))


def _read(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    text_name = str(name_or_path)
    if isinstance(name_or_path, str) and text_name in bundled_scenarios():
        path = _BUNDLED_DIR / f"{text_name}.toml"
        return tomllib.loads(path.read_text(encoding="utf-8")), f"bundled:{text_name}"
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(
            "scenario", text_name, f"a bundled scenario ({', '.join(bundled_scenarios())}) or a TOML file"
        )
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), str(path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("scenario", str(path), f"invalid TOML: {exc}", str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("scenario", str(path), f"cannot be read: {exc}", str(path)) from exc


def _key(loc: tuple[int | str, ...]) -> str:
    text = "scenario"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a bundled scenario by name, or a scenario file by path.

    Raises:
        ConfigError: naming the first bad key, its value and the rule it breaks.
    """
    data, source = _read(name_or_path)
    return parse_scenario(data, source=source)


def parse_scenario(data: dict[str, Any], *, source: str = "<memory>") -> Scenario:
    """Validate a scenario's parsed TOML content.

    Raises:
        ConfigError: naming the first bad key, its value and the rule it breaks.
    """
    try:
        spec = ScenarioFile.model_validate(data)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        message = "unknown key" if error["type"] == "extra_forbidden" else str(error["msg"])
        raise ConfigError(_key(tuple(error["loc"])), error.get("input"), message, source) from None
    return _derive(spec, source)


def _derive(spec: ScenarioFile, source: str) -> Scenario:
    start_ns = parse_time("scenario.time.start", spec.time.start, source)
    try:
        check_time_ns("start", start_ns, reference_ns=start_ns)
    except ValueError as exc:
        raise ConfigError("scenario.time.start", spec.time.start, "a time after 1990-01-01", source) from exc
    step_ns = round(spec.time.step_s * NS_PER_S)
    n_steps = max(1, int(spec.time.duration_h * 3600 / spec.time.step_s))
    ids: list[str] = []
    types: list[str] = []
    for i, group in enumerate(spec.assets):
        if group.type not in ASSET_TYPES:
            raise ConfigError(
                f"scenario.assets[{i}].type", group.type, f"one of {', '.join(ASSET_TYPES)}", source
            )
        prefix = group.id_prefix or group.type.replace("_", "-")
        for n in range(group.count):
            ids.append(f"{prefix}-{n + 1:03d}")
            types.append(group.type)
    scenario = Scenario(
        spec=spec,
        source=source,
        asset_ids=tuple(ids),
        asset_types=tuple(types),
        start_ns=start_ns,
        step_ns=step_ns,
        n_steps=n_steps,
    )
    _check_assets(scenario)
    _check_signals(scenario)
    _check_failures(scenario)
    _check_faults(scenario)
    return scenario


def _fail(scenario: Scenario, key: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"scenario.{key}", value, expected, scenario.source)


def _check_assets(scenario: Scenario) -> None:
    seen: set[str] = set()
    for asset_id in scenario.asset_ids:
        if asset_id in seen:
            raise _fail(scenario, "assets", asset_id, "unique asset ids (use different id_prefix values)")
        seen.add(asset_id)
        try:
            check_ident("asset_id", asset_id)
        except ValueError as exc:
            raise _fail(scenario, "assets", asset_id, f"an id matching {IDENT_PATTERN}") from exc
    for i, asset_id in enumerate(scenario.spec.export.raw_assets):
        if asset_id not in seen:
            raise _fail(scenario, f"export.raw_assets[{i}]", asset_id, "an asset of this scenario")


def _check_signals(scenario: Scenario) -> None:
    signals, time = scenario.spec.signals, scenario.spec.time
    window = DEFAULT_SPEC.window_len
    if signals.burst_samples % window:
        raise _fail(scenario, "signals.burst_samples", signals.burst_samples, f"a multiple of {window}")
    if signals.burst_samples / signals.vibration_rate_hz > time.step_s + 1e-9:
        raise _fail(
            scenario, "signals.burst_samples", signals.burst_samples, "a burst no longer than time.step_s"
        )
    if signals.slow_samples / signals.slow_rate_hz > time.step_s + 1e-9:
        raise _fail(
            scenario, "signals.slow_samples", signals.slow_samples, "slow samples spanning <= time.step_s"
        )
    for i, load in enumerate(scenario.spec.operation.loads):
        if not 0.0 <= load <= 1.2:
            raise _fail(scenario, f"operation.loads[{i}]", load, "a load between 0 and 1.2")
    for i, factor in enumerate(scenario.spec.operation.speed_factors):
        if not 0.3 <= factor <= 1.2:
            raise _fail(scenario, f"operation.speed_factors[{i}]", factor, "a speed factor in 0.3-1.2")


def _check_mode(scenario: Scenario, key: str, asset_type: str | None, mode: str) -> None:
    if mode not in FailureMode.__members__.values():
        raise _fail(scenario, key, mode, f"one of {', '.join(m.value for m in FailureMode)}")
    if asset_type is not None and FailureMode(mode) not in ASSET_TYPES[asset_type].scriptable_modes:
        raise _fail(scenario, key, mode, f"not a failure mode of {asset_type}")


def _check_failures(scenario: Scenario) -> None:
    types = dict(zip(scenario.asset_ids, scenario.asset_types, strict=True))
    duration_h = scenario.spec.time.duration_h
    for i, failure in enumerate(scenario.spec.failures):
        if failure.asset not in types:
            raise _fail(scenario, f"failures[{i}].asset", failure.asset, "an asset of this scenario")
        _check_mode(scenario, f"failures[{i}].mode", types[failure.asset], failure.mode)
        if failure.onset_h >= duration_h:
            raise _fail(
                scenario, f"failures[{i}].onset_h", failure.onset_h, f"< time.duration_h ({duration_h})"
            )
    random = scenario.spec.random_failures
    for i, mode in enumerate(random.modes):
        _check_mode(scenario, f"random_failures.modes[{i}]", None, mode)
    low, high = random.time_to_failure_h
    if not 0 < low <= high:
        raise _fail(scenario, "random_failures.time_to_failure_h", [low, high], "0 < min <= max")
    if random.rate_per_asset_year > 0 and not random.modes:
        raise _fail(scenario, "random_failures.modes", [], "at least one mode when rate_per_asset_year > 0")


def _check_faults(scenario: Scenario) -> None:
    types = dict(zip(scenario.asset_ids, scenario.asset_types, strict=True))
    for i, fault in enumerate(scenario.spec.sensor_faults):
        if fault.asset not in types:
            raise _fail(scenario, f"sensor_faults[{i}].asset", fault.asset, "an asset of this scenario")
        sensors = ASSET_TYPES[types[fault.asset]].sensors
        if fault.sensor not in sensors:
            raise _fail(scenario, f"sensor_faults[{i}].sensor", fault.sensor, f"one of {', '.join(sensors)}")
    for i, transport in enumerate(scenario.spec.transport_faults):
        if transport.asset != "*" and transport.asset not in types:
            raise _fail(scenario, f"transport_faults[{i}].asset", transport.asset, "an asset id or *")
        if transport.sensor != "*" and transport.sensor not in ("vibration", *_slow_names()):
            raise _fail(scenario, f"transport_faults[{i}].sensor", transport.sensor, "a sensor name or *")


def _slow_names() -> tuple[str, ...]:
    return ("temperature", "current", "pressure", "flow")
