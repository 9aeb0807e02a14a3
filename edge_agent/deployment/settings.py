"""Section `deployment` of the edge settings: receiving signed models and watching them on probation."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

__all__ = ["DeploymentSettings"]


class DeploymentSettings(BaseModel, frozen=True, extra="forbid"):
    """Section `deployment` of the edge settings: receiving signed models and watching them on probation."""

    public_key: Path | None = Field(
        None,
        description="Ed25519 public key (PEM) deployments must be signed with (the gateway never holds the "
        "private key); not set: this gateway receives no deployments.",
    )
    state_file: Path = Field(
        Path("/var/lib/forewarn/edge/deployments.json"),
        description="Versions rolled back by probation (their retained deployments are not applied again).",
    )
    key_state_file: Path | None = Field(
        None,
        description="The signing key reached through signed key rotations (kept across restarts); "
        "not set: `signing-key.json` next to `state_file`.",
    )
    chunk_timeout_s: float = Field(
        600.0,
        gt=0,
        description="A verified order whose chunks have not all arrived this long after it is refused "
        "(`incomplete`) and acknowledged, so a stalled transfer is reported, not waited for forever.",
    )
    max_artifact_bytes: int = Field(64 << 20, ge=1024, description="Largest model artifact accepted.")
    queue_size: int = Field(
        256, ge=8, le=65535, description="Deployment messages buffered between MQTT and the installer."
    )
    probation_s: float = Field(3600.0, ge=0, description="How long a newly swapped model is on probation.")
    probation_alert_multiple: float = Field(
        10.0, gt=0, description="Roll back when alerts exceed this multiple of the expected rate."
    )
    expected_alerts_per_asset_per_h: float = Field(
        1.0 / 168.0, gt=0, description="Expected alert rate of a healthy asset (the false-alarm budget)."
    )
    probation_min_alerts: int = Field(
        5, ge=1, description="Never roll back for fewer alerts than this within the probation period."
    )
    probation_max_anomalous_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Roll back when more than this share of the windows a new model scored (once there are "
        "`probation_min_windows`) was above its threshold: a model that holds one alert raised on every "
        "window raises too few alerts for the alert count to catch it (1.0: off).",
    )
    probation_min_windows: int = Field(
        1000, ge=1, description="Scored windows needed before their anomalous share is judged."
    )
