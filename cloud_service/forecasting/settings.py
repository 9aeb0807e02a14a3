"""Settings of the live failure forecaster (`[forecast]` in cloud.toml).

Every cloud process (ingest workers included) loads `CloudSettings` and so this module: importing
`cloud_service.forecasting` stays cheap (scikit-learn loads only when a model is fitted or used).
"""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, Field, field_validator, model_validator

__all__ = ["ForecastSettings"]


class ForecastSettings(BaseModel, frozen=True, extra="forbid"):
    """The scheduled refit of the forecaster and the recompute of every asset's forecast."""

    enabled: bool = Field(
        True,
        description="Run the refit and recompute jobs with the cloud's scheduler (a refit without enough "
        "failure histories is skipped and logged).",
    )
    refit_cron: str = Field(
        "30 3 * * *", description="Crontab (UTC) of the scheduled refit: nightly at 03:30 by default."
    )
    recompute_interval_s: float = Field(
        3600.0, gt=0, description="Seconds between recomputes of every asset's forecast."
    )
    horizon_h: float = Field(168.0, gt=0, description="Horizon of the failure probability, in hours.")
    interval_low: float = Field(0.1, gt=0, lt=1, description="Lower quantile of the RUL interval.")
    interval_high: float = Field(0.9, gt=0, lt=1, description="Upper quantile of the RUL interval.")
    min_failures: int = Field(
        3,
        ge=3,
        description="Fewest run-to-failure histories a refit needs; fewer keeps the previous forecaster.",
    )
    history_days: float = Field(
        180.0, gt=0, description="Days of stored history a refit learns from and a recompute reads."
    )
    late_data_h: float = Field(
        48.0,
        ge=0,
        description="Each job re-summarises this many hours before its last run (late aggregates).",
    )
    features: tuple[str, ...] = Field(
        (), description="Feature names (e.g. vibration.rms) to use; empty: every feature every asset has."
    )
    condition_features: tuple[str, ...] = Field(
        (), description="Features describing the operating condition (load, speed): regimes, not sensors."
    )
    include_scores: bool = Field(
        True,
        description="Use the hourly mean and max anomaly score as sensors (columns score.mean, score.max).",
    )
    min_history_h: int = Field(
        5,
        ge=1,
        description="Assets with fewer hours of data are left out of a refit and flagged when forecast.",
    )
    cv_folds: int = Field(
        3, ge=2, le=10, description="Folds (whole assets) of a refit's cross-conformal calibration."
    )
    regimes: int | None = Field(
        None, ge=1, le=20, description="Operating regimes to use; unset: chosen by BIC from the data."
    )
    keep_forecasts_days: float = Field(
        90.0, gt=0, description="Forecasts older than this are deleted by each recompute."
    )
    seed: int = Field(0, description="Seed of every random choice of a refit.")

    @field_validator("refit_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression ({exc})") from exc
        return value

    @model_validator(mode="after")
    def _ordered_interval(self) -> ForecastSettings:
        if self.interval_low >= self.interval_high:
            raise ValueError(
                f"interval_low ({self.interval_low}) must be below interval_high ({self.interval_high})"
            )
        return self
