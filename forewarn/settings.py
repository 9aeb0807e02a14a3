"""Settings of the command line's own components: `forewarn demo` (`DemoSettings`).

The product parts keep theirs in their own `settings` modules (`edge_agent.settings`,
`cloud_service.settings`, ...); this module holds only what the composition root itself runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.config import ComponentSettings

__all__ = ["DemoSettings"]


class DemoSettings(ComponentSettings):
    """Settings of `forewarn demo`."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_DEMO_")
    component = "demo"

    scenario: str = Field("smoke", description="Bundled scenario name or scenario TOML file to simulate.")
    speed: float = Field(
        0.0, ge=0.0, description="Simulated seconds per wall-clock second; 0 uses the scenario's own speed."
    )
    broker_url: str = Field(
        "", description="mqtt://host:port of the broker; empty starts a throwaway local Mosquitto."
    )
    database: SecretStr = Field(
        SecretStr(""),
        description="libpq connection string of an existing database; empty starts a throwaway PostgreSQL.",
    )
    workdir: Path | None = Field(
        None,
        description="Where configs, queues and logs go; empty uses a temporary directory, removed after.",
    )
    gateway_id: str = Field("gw-demo", description="The demo gateway's id.")
    drain_timeout_s: float = Field(
        60.0, gt=0, description="How long to wait for the cloud to store everything after the simulation."
    )
