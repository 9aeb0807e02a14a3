"""What the diagnosis needs to know about one machine: bearings, shaft speed, ISO machine group, foundation.

An asset's diagnosis configuration is a TOML file (see `examples/asset-pump.toml` and docs/diagnosis.md):

    asset_id = "pump-001"
    shaft_rpm = 2960            # nominal; the speed is refined from the spectrum in `speed_range_rpm`
    machine_group = 2           # ISO 20816-3: 1 above 300 kW, 2 from 15 to 300 kW
    foundation = "rigid"

    [[bearings]]
    name = "drive-end"
    geometry = { ball_count = 9, ball_diameter_mm = 7.94, pitch_diameter_mm = 39.04, contact_angle_deg = 0 }

A bearing gives either its geometry (the defect frequencies are computed from it) or the defect
frequencies as orders (multiples of shaft speed) from the bearing maker's tables.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Literal, Self

import pydantic
from pydantic import BaseModel, Field, model_validator

from shared.errors import ConfigError

__all__ = [
    "AssetDiagnosisConfig",
    "BearingGeometry",
    "BearingSettings",
    "DefectOrders",
    "decode_asset_config",
    "encode_asset_config",
    "load_asset_config",
    "parse_asset_config",
]

_Model = pydantic.ConfigDict(frozen=True, extra="forbid")


class DefectOrders(BaseModel):
    """Bearing defect frequencies as multiples of shaft speed (orders); `bsf` and `ftf` may be unknown."""

    model_config = _Model
    bpfo: float = Field(gt=0, le=100, description="Ball pass frequency, outer race.")
    bpfi: float = Field(gt=0, le=100, description="Ball pass frequency, inner race.")
    bsf: float | None = Field(default=None, gt=0, le=100, description="Ball (roller) spin frequency.")
    ftf: float | None = Field(default=None, gt=0, lt=1, description="Fundamental train (cage) frequency.")


class BearingGeometry(BaseModel):
    """A rolling bearing's geometry, as in the maker's catalogue."""

    model_config = _Model
    ball_count: int = Field(ge=3, le=200, description="Number of balls or rollers per row.")
    ball_diameter_mm: float = Field(gt=0, description="Ball or roller diameter.")
    pitch_diameter_mm: float = Field(gt=0, description="Pitch (cage) diameter.")
    contact_angle_deg: float = Field(default=0.0, ge=0, lt=90, description="Contact angle.")

    @model_validator(mode="after")
    def _ball_fits(self) -> Self:
        if self.ball_diameter_mm >= self.pitch_diameter_mm:
            raise ValueError("ball_diameter_mm must be smaller than pitch_diameter_mm")
        return self

    def orders(self) -> DefectOrders:
        """The defect frequencies as orders of shaft speed (outer race fixed, inner race turning).

        >>> o = BearingGeometry(ball_count=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04).orders()
        >>> round(o.bpfo, 3), round(o.bpfi, 3), round(o.bsf or 0, 3), round(o.ftf or 0, 3)
        (3.585, 5.415, 2.357, 0.398)
        """
        ratio = (
            self.ball_diameter_mm / self.pitch_diameter_mm * math.cos(math.radians(self.contact_angle_deg))
        )
        half_count = self.ball_count / 2.0
        return DefectOrders(
            bpfo=half_count * (1.0 - ratio),
            bpfi=half_count * (1.0 + ratio),
            bsf=self.pitch_diameter_mm / (2.0 * self.ball_diameter_mm) * (1.0 - ratio**2),
            ftf=0.5 * (1.0 - ratio),
        )


class BearingSettings(BaseModel):
    """One monitored bearing: its geometry or its defect orders (exactly one of them)."""

    model_config = _Model
    name: str = Field(default="bearing", min_length=1, max_length=64, description="E.g. drive-end.")
    geometry: BearingGeometry | None = Field(default=None, description="Catalogue geometry.")
    orders: DefectOrders | None = Field(default=None, description="Defect frequencies as orders.")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.geometry is None) == (self.orders is None):
            raise ValueError("give exactly one of geometry or orders")
        return self

    def defect_orders(self) -> DefectOrders:
        """The bearing's defect orders, computed from the geometry when that is what was given."""
        if self.geometry is not None:
            return self.geometry.orders()
        if self.orders is None:  # unreachable after validation; kept for the type checker
            raise ConfigError(f"bearings.{self.name}", None, "geometry or orders")
        return self.orders


class AssetDiagnosisConfig(BaseModel):
    """The diagnosis settings of one asset (every field has a default; an empty file is valid)."""

    model_config = _Model
    asset_id: str = Field(default="", max_length=63, description="The asset these settings describe.")
    shaft_rpm: float | None = Field(
        default=None, gt=0, le=200_000, description="Nominal shaft speed; empty: estimated from the spectrum."
    )
    speed_range_rpm: tuple[float, float] | None = Field(
        default=None,
        description=(
            "Where to search the spectrum for the running speed (a variable-speed drive's range); empty: "
            "5 % around `shaft_rpm` (induction-motor slip), or 300-6000 rpm without `shaft_rpm`."
        ),
    )
    bearings: tuple[BearingSettings, ...] = Field(default=(), description="The monitored bearings.")
    machine_group: Literal[1, 2] = Field(
        default=2, description="ISO 20816-3 machine group: 1 above 300 kW, 2 from 15 kW to 300 kW."
    )
    foundation: Literal["rigid", "flexible"] = Field(default="rigid", description="ISO 20816-3 support.")
    zone_boundaries_mm_s: tuple[float, float, float] | None = Field(
        default=None, description="A/B, B/C, C/D velocity RMS boundaries overriding the standard's."
    )
    velocity_band_hz: tuple[float, float] = Field(
        default=(10.0, 1000.0), description="Band of the velocity RMS (ISO 20816-3: 10-1000 Hz)."
    )
    envelope_band_hz: tuple[float, float] | None = Field(
        default=None,
        description="Band-pass of the envelope analysis; empty: the most impulsive of candidate bands.",
    )
    vibration_unit: Literal["g", "m/s2"] = Field(default="g", description="Unit of the acceleration.")
    ambient_c: float | None = Field(
        default=None, ge=-60, le=80, description="Ambient temperature when no `ambient` sensor is recorded."
    )
    window_s: float | None = Field(
        default=None,
        gt=0,
        le=600,
        description=(
            "Seconds of contiguous vibration one diagnosis reads; empty: the shortest power-of-two window "
            "that resolves each bearing's cage (FTF) harmonics from the shaft's half orders at the lowest "
            "speed searched (without a cage order: the scoring window)."
        ),
    )
    max_window_s: float = Field(
        default=8.0,
        gt=0,
        le=600,
        description="The longest window the empty `window_s` chooses (a slower cage is not measured).",
    )
    baseline_interval_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="On the gateway, one window scored normal per this much data time joins the baseline.",
    )
    baseline_windows: int = Field(
        default=256, ge=5, le=100_000, description="The most recent healthy windows the baseline keeps."
    )
    false_alarm_probability: float = Field(
        default=1e-4,
        gt=0,
        lt=0.1,
        description="Chance that one evidence test passes on a healthy machine (sets every threshold).",
    )
    rediagnose_every_s: float = Field(
        default=600.0,
        ge=0,
        le=86_400,
        description="On the gateway, re-diagnose a raised alert once per this much data time; 0: never.",
    )
    rediagnose_confidence_change: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="A re-diagnosis of the same mode is sent when its confidence moved by more than this.",
    )
    rediagnose_resend_every: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description="An unchanged re-diagnosis is still sent every this many re-diagnoses (it still holds).",
    )

    @model_validator(mode="after")
    def _ranges_ordered(self) -> Self:
        for name in ("speed_range_rpm", "velocity_band_hz", "envelope_band_hz"):
            pair = getattr(self, name)
            if pair is not None and not 0 < pair[0] < pair[1]:
                raise ValueError(f"{name} must be (low, high) with 0 < low < high")
        zones = self.zone_boundaries_mm_s
        if zones is not None and not 0 < zones[0] < zones[1] < zones[2]:
            raise ValueError("zone_boundaries_mm_s must rise: A/B < B/C < C/D")
        return self

    def speed_search_hz(self) -> tuple[float, float]:
        """The frequency range in which the running speed is looked for."""
        if self.speed_range_rpm is not None:
            low, high = self.speed_range_rpm
        elif self.shaft_rpm is not None:
            low, high = 0.95 * self.shaft_rpm, 1.05 * self.shaft_rpm
        else:
            low, high = 300.0, 6000.0
        return low / 60.0, high / 60.0


def parse_asset_config(data: dict[str, object], *, source: str = "<memory>") -> AssetDiagnosisConfig:
    """Validate a parsed TOML table; a bad value raises `ConfigError` naming its key."""
    try:
        return AssetDiagnosisConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "asset"
        raise ConfigError(key, error.get("input"), error["msg"], source) from exc


def load_asset_config(path: Path) -> AssetDiagnosisConfig:
    """Read an asset's diagnosis configuration from a TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("asset_config", str(path), "an existing TOML file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("asset_config", str(path), f"valid TOML ({exc})") from exc
    return parse_asset_config(data, source=str(path))


def encode_asset_config(config: AssetDiagnosisConfig) -> str:
    """The configuration as compact JSON: what a snapshot carries so the cloud can re-diagnose it."""
    return config.model_dump_json(exclude_defaults=True)


def decode_asset_config(text: str, *, source: str = "<json>") -> AssetDiagnosisConfig:
    """The configuration from `encode_asset_config`'s JSON; a bad value raises `ConfigError` naming its key.

    >>> decode_asset_config(encode_asset_config(AssetDiagnosisConfig(shaft_rpm=2960))).shaft_rpm
    2960.0
    """
    try:
        return AssetDiagnosisConfig.model_validate_json(text)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "asset"
        raise ConfigError(key, error.get("input"), error["msg"], source) from exc
