"""Settings of the simulator component (`forewarn config show sim`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import ComponentSettings, MqttSettings

__all__ = ["SimSettings"]


class SimSettings(ComponentSettings):
    """How `forewarn sim run` and `sim replay` reach the plant broker and pace their publishing."""

    model_config = SettingsConfigDict(
        env_prefix="FOREWARN_SIM_", frozen=True, extra="forbid", env_nested_delimiter="__"
    )
    component: ClassVar[str] = "sim"

    mqtt: MqttSettings = Field(
        default=MqttSettings.model_validate({}), description="The plant broker the simulator publishes to."
    )
    max_unpublished: int = Field(
        default=4096,
        ge=16,
        le=60_000,
        description="Messages handed to the MQTT client but not yet written to the socket (backpressure).",
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="How long to wait for the broker."
    )
    progress_interval_s: float = Field(
        default=2.0, gt=0, le=3600, description="Seconds between progress lines."
    )
