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

    scenario: str = Field("plant", description="Bundled scenario name or scenario TOML file to simulate.")
    speed: float = Field(
        0.0,
        ge=0.0,
        description="Simulated seconds per wall-clock second; 0 plays the whole scenario in `play_s`.",
    )
    play_s: float = Field(
        180.0, gt=0.0, description="With speed 0: wall seconds the whole scenario plays in (time-compressed)."
    )
    step_s: float = Field(
        7200.0,
        ge=0.0,
        description=(
            "Simulated seconds between raw bursts (0: the scenario's own step). The physics is continuous, "
            "so a coarser step samples the same degradations less often: 2 h lets the plant's 60 assets x 90 "
            "days play in 3 minutes on 2 cores."
        ),
    )
    gateways: int = Field(2, ge=1, le=16, description="Edge agents (gateways) the assets are dealt to.")
    warmup_windows: int = Field(
        48, ge=1, description="Windows each asset's statistical baseline learns before it scores."
    )
    diagnosis_baseline_interval_s: float = Field(
        21_600.0,
        ge=0.0,
        le=86_400.0,
        description=(
            "Simulated seconds between the healthy windows each asset's diagnosis baseline learns on its "
            "gateway (`baseline_interval_s`, 60 s by default): at the demo's speed 60 s would measure "
            "every burst, and those measurements, not the scoring, would bound what a gateway keeps up with."
        ),
    )
    duration_s: float = Field(
        0.0,
        ge=0.0,
        description=(
            "Stop by itself after this many wall seconds and print the summary; 0: play the scenario, "
            "print the summary and keep serving the dashboard until Ctrl-C or SIGTERM."
        ),
    )
    dashboard: bool = Field(True, description="Serve the dashboard on the demo's data.")
    dashboard_port: int = Field(
        8050, ge=0, le=65535, description="Dashboard port (taken or 0: a free port is chosen)."
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
    gateway_id: str = Field(
        "gw-demo", description="Gateway id prefix: the gateways are PREFIX-1, PREFIX-2, ..."
    )
    drain_timeout_s: float = Field(
        60.0, gt=0, description="How long to wait for the cloud to store everything after the simulation."
    )
