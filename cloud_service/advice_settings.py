"""Settings of the advice (`cloud.advice`): lead times per asset type and mode, thresholds, refresh."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["AdviceSettings"]


class AdviceSettings(BaseModel, frozen=True, extra="forbid"):
    """How advice is built: lead times per asset type and mode, zone factors, probability thresholds."""

    lead_times_h: dict[str, float] = Field(
        default={
            "outer_race": 168.0,
            "inner_race": 120.0,
            "rolling_element": 120.0,
            "cage": 72.0,
            "imbalance": 336.0,
            "misalignment": 336.0,
            "looseness": 168.0,
            "cavitation": 72.0,
            "overheating": 48.0,
            "sensor_fault": 72.0,
            "*": 168.0,
        },
        description="Hours from now to act, by `asset_type:mode`, `mode` or `*` (first match wins).",
    )
    zone_factors: dict[str, float] = Field(
        default={"A": 1.0, "B": 1.0, "C": 0.5, "D": 0.1},
        description="Lead-time factor per ISO 20816-3 zone of the diagnosed window.",
    )
    safety_h: float = Field(
        default=24.0, ge=0, description="Act this long before the RUL interval's low end."
    )
    urgent_p_fail: float = Field(default=0.5, gt=0, le=1, description="p(fail) from which advice is urgent.")
    plan_p_fail: float = Field(
        default=0.2, gt=0, le=1, description="p(fail) from which a forecast alone is advised."
    )
    diagnosis_max_age_h: float = Field(
        default=72.0,
        gt=0,
        description="Older diagnoses start no advice (one already advised stands until maintenance).",
    )
    refresh_interval_s: float = Field(
        default=900.0,
        gt=0,
        description="Seconds between the scheduler's advice refreshes (0 is not allowed).",
    )
    enabled: bool = Field(default=True, description="Refresh advice from the lifecycle scheduler.")
