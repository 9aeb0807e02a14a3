"""Asset types and their physics constants, and the unit-to-unit differences of one fleet.

Each type has a nominal shaft speed, a rolling bearing (defect frequencies as multiples of shaft speed), a
type-specific tone (vane, blade or lobe pass, or twice line frequency for a motor), a thermal time constant
and the sensors it carries. Units of one type differ a little (noise level, balance, temperature offset),
drawn once from the scenario seed, so that "a different unit" is never mistaken for "a fault".

`asset_config_for_type` is what a plant engineer would copy from a type's datasheet into its diagnosis
configuration (nominal speed, the drive's speed range, the bearing's geometry, ISO group, foundation):
the bench and the demo's gateways diagnose with it, never with the simulator's signal constants.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from shared.asset_config import AssetDiagnosisConfig, BearingGeometry, BearingSettings

__all__ = [
    "ASSET_TYPES",
    "FAST_SENSOR",
    "SCRIPTED_ONLY_MODES",
    "AssetType",
    "FailureMode",
    "Unit",
    "asset_config_for_type",
    "draw_unit",
]

FAST_SENSOR = "vibration"
SLOW_SENSORS_ALL = ("temperature", "current", "pressure", "flow")


class FailureMode(enum.StrEnum):
    """Degradation modes that end in a failure when their severity reaches the threshold."""

    OUTER_RACE = "outer_race"
    INNER_RACE = "inner_race"
    IMBALANCE = "imbalance"
    MISALIGNMENT = "misalignment"
    OVERHEATING = "overheating"
    CAVITATION = "cavitation"
    # Appended after the original six (the engine's severity columns follow this order). Only a scripted
    # `[[failures]]` entry names them (`SCRIPTED_ONLY_MODES`): random draws keep the six, so existing
    # scenarios draw and simulate exactly as before.
    ROLLING_ELEMENT = "rolling_element"
    CAGE = "cage"
    LOOSENESS = "looseness"


SCRIPTED_ONLY_MODES = frozenset({FailureMode.ROLLING_ELEMENT, FailureMode.CAGE, FailureMode.LOOSENESS})
"""Modes every type can have, but only when a scenario scripts them: never drawn at random."""

_COMMON_MODES = frozenset(
    {
        FailureMode.OUTER_RACE,
        FailureMode.INNER_RACE,
        FailureMode.IMBALANCE,
        FailureMode.MISALIGNMENT,
        FailureMode.OVERHEATING,
    }
)


@dataclass(frozen=True, slots=True)
class AssetType:
    """Physics constants of one kind of machine.

    Attributes:
        name: the type's key in scenario files.
        rpm: nominal shaft speed.
        has_vfd: driven by a variable-frequency drive (speed setpoints apply).
        bpfo_order: outer-race defect frequency as a multiple of shaft speed.
        bpfi_order: inner-race defect frequency as a multiple of shaft speed.
        pass_order: vane/blade/lobe count (tone at `pass_order` x shaft), or 0 for a motor's 2x line tone.
        base_1x_g: healthy 1x vibration amplitude at nominal speed, in g.
        rated_current_a: motor current at full load.
        temp_rise_c: bearing temperature rise over ambient at full load.
        thermal_tau_s: time constant of the bearing temperature.
        pressure_bar: nominal discharge pressure (0 when the type has no pressure sensor).
        flow_m3h: nominal flow (0 when the type has no flow sensor).
        modes: failure modes this type can have (random draws pick among these); `SCRIPTED_ONLY_MODES`
            may also be scripted.
    """

    name: str
    rpm: float
    has_vfd: bool
    bpfo_order: float
    bpfi_order: float
    pass_order: int
    base_1x_g: float
    rated_current_a: float
    temp_rise_c: float
    thermal_tau_s: float
    pressure_bar: float
    flow_m3h: float
    modes: frozenset[FailureMode]

    @property
    def sensors(self) -> tuple[str, ...]:
        """Sensor names on this type, the fast one first."""
        slow = ("temperature", "current") + (("pressure", "flow") if self.pressure_bar > 0 else ())
        return (FAST_SENSOR, *slow)

    @property
    def scriptable_modes(self) -> frozenset[FailureMode]:
        """The modes a scripted failure may name: the type's own and the scripted-only ones."""
        return self.modes | SCRIPTED_ONLY_MODES

    @property
    def bsf_order(self) -> float:
        """Ball spin frequency as a multiple of shaft speed, from the bearing's BPFO and BPFI.

        With zero contact angle, BPFO + BPFI = n (the ball count) and (BPFI - BPFO) / n = r = d / D, so
        BSF = D / (2 d) (1 - r^2) = (1 - r^2) / (2 r).
        """
        r = (self.bpfi_order - self.bpfo_order) / (self.bpfi_order + self.bpfo_order)
        return (1.0 - r * r) / (2.0 * r)

    @property
    def ftf_order(self) -> float:
        """Cage (fundamental train) frequency as a multiple of shaft speed: BPFO / n = (1 - r) / 2."""
        return self.bpfo_order / (self.bpfo_order + self.bpfi_order)


ASSET_TYPES: dict[str, AssetType] = {
    t.name: t
    for t in (
        AssetType(
            name="centrifugal_pump",
            rpm=2960.0,
            has_vfd=True,
            bpfo_order=3.585,  # 6205 deep-groove ball bearing
            bpfi_order=5.415,
            pass_order=6,
            base_1x_g=0.08,
            rated_current_a=55.0,
            temp_rise_c=28.0,
            thermal_tau_s=1500.0,
            pressure_bar=6.0,
            flow_m3h=120.0,
            modes=_COMMON_MODES | {FailureMode.CAVITATION},
        ),
        AssetType(
            name="electric_motor",
            rpm=1485.0,
            has_vfd=False,
            bpfo_order=3.066,  # 6309
            bpfi_order=4.934,
            pass_order=0,
            base_1x_g=0.05,
            rated_current_a=90.0,
            temp_rise_c=32.0,
            thermal_tau_s=2400.0,
            pressure_bar=0.0,
            flow_m3h=0.0,
            modes=_COMMON_MODES,
        ),
        AssetType(
            name="fan",
            rpm=985.0,
            has_vfd=True,
            bpfo_order=3.28,  # 22213 spherical roller
            bpfi_order=4.72,
            pass_order=8,
            base_1x_g=0.10,
            rated_current_a=40.0,
            temp_rise_c=20.0,
            thermal_tau_s=1800.0,
            pressure_bar=0.0,
            flow_m3h=0.0,
            modes=_COMMON_MODES,
        ),
        AssetType(
            name="compressor",
            rpm=2975.0,
            has_vfd=False,
            bpfo_order=4.09,  # 7310 angular contact
            bpfi_order=5.91,
            pass_order=4,
            base_1x_g=0.07,
            rated_current_a=120.0,
            temp_rise_c=38.0,
            thermal_tau_s=1200.0,
            pressure_bar=7.5,
            flow_m3h=600.0,
            modes=_COMMON_MODES,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Unit:
    """One physical asset: its type and the small ways it differs from its siblings."""

    asset_id: str
    type: AssetType
    rpm: float
    noise_scale: float
    balance_scale: float
    temp_offset_c: float
    current_scale: float


def draw_unit(asset_id: str, asset_type: AssetType, rng: np.random.Generator) -> Unit:
    """Draw a unit's individual differences (a few percent around its type's nominal values)."""
    return Unit(
        asset_id=asset_id,
        type=asset_type,
        rpm=asset_type.rpm * float(rng.uniform(0.995, 1.005)),
        noise_scale=float(rng.lognormal(0.0, 0.25)),
        balance_scale=float(rng.lognormal(0.0, 0.2)),
        temp_offset_c=float(rng.normal(0.0, 1.5)),
        current_scale=float(rng.normal(1.0, 0.03)),
    )


_SPEED_MARGIN = 0.03  # a drive's range is quoted around its setpoints: 3 % for slip and setpoint tolerance
_PITCH_MM = 50.0  # any pitch diameter: the defect orders depend only on the ratio d / D and the ball count


def _bearing_geometry(asset_type: AssetType) -> BearingGeometry:
    """The bearing geometry behind a type's defect orders (ball count bpfo + bpfi, zero contact angle)."""
    ball_count = round(asset_type.bpfo_order + asset_type.bpfi_order)
    ratio = (asset_type.bpfi_order - asset_type.bpfo_order) / (asset_type.bpfi_order + asset_type.bpfo_order)
    return BearingGeometry(
        ball_count=ball_count, ball_diameter_mm=ratio * _PITCH_MM, pitch_diameter_mm=_PITCH_MM
    )


def asset_config_for_type(asset_type: AssetType, speed_factors: tuple[float, ...]) -> AssetDiagnosisConfig:
    """A unit's diagnosis configuration from its type's datasheet: speed (range), bearing, ISO group 2.

    `speed_factors` are the drive's setpoints as fractions of nominal speed (the scenario's
    `operation.speed_factors`); a type without a variable-speed drive keeps the default search range,
    5 % around its nominal speed.

    >>> config = asset_config_for_type(ASSET_TYPES["fan"], (0.8, 1.0))
    >>> config.shaft_rpm, [round(v) for v in config.speed_range_rpm or ()]
    (985.0, [764, 1015])
    >>> round(config.bearings[0].defect_orders().bpfo, 3)
    3.28
    """
    speed_range = None
    if asset_type.has_vfd:
        low, high = min(speed_factors) * (1 - _SPEED_MARGIN), max(speed_factors) * (1 + _SPEED_MARGIN)
        speed_range = (asset_type.rpm * low, asset_type.rpm * high)
    return AssetDiagnosisConfig(
        shaft_rpm=asset_type.rpm,
        speed_range_rpm=speed_range,
        bearings=(BearingSettings(name="drive-end", geometry=_bearing_geometry(asset_type)),),
        machine_group=2,
        foundation="rigid",
    )
