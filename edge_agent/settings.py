"""Settings of the edge agent (`forewarn edge --config gateway.toml`), component `edge`.

Layered as every component's: defaults < TOML file < `FOREWARN_EDGE_*` environment (nested with `__`, e.g.
`FOREWARN_EDGE_QUEUE__MAX_BYTES=50000000`) < command-line overrides. `forewarn config show edge` prints the
effective values with these descriptions.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from edge_agent.deployment.settings import DeploymentSettings
from edge_agent.model_store import ModelSettings
from edge_agent.pipeline_settings import PipelineSettings
from shared.config import ComponentSettings, MqttSettings
from shared.topics import IDENT_PATTERN

__all__ = ["EdgeSettings", "QuarantineSettings", "QueueSettings"]


class QueueSettings(BaseModel, frozen=True, extra="forbid"):
    """Section `queue`: the store-and-forward disk queue and its uplink."""

    dir: Path = Field(
        default=Path("/var/lib/forewarn/edge/queue"),
        description="Directory of the SQLite store-and-forward queue.",
    )
    max_bytes: int = Field(
        default=200_000_000,
        ge=10_000,
        description="Bound on queued message bytes; when full, oldest aggregates go first, alerts last.",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description=(
            "SQLite synchronous mode: FULL survives power loss; NORMAL survives kill -9 only "
            "(see README.md, section Edge agent)."
        ),
    )
    window: int = Field(
        default=1000,
        ge=1,
        le=32_768,
        description=(
            "Most queued messages (rows) published upstream but not yet acknowledged, batched or not."
        ),
    )
    batch_max_messages: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description=(
            "Most queued messages packed into one uplink batch (topic .../batch) when several are ready; "
            "1 sends every message alone on its own topic."
        ),
    )
    batch_max_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=1 << 20,
        description="Most payload bytes of one uplink batch; a larger message is sent alone.",
    )
    batch_compression_level: int = Field(
        default=6,
        ge=0,
        le=9,
        description=(
            "zlib level of uplink batch payloads (1 fastest .. 9 smallest); 0 sends plain JSON. The cloud "
            "accepts both."
        ),
    )
    batch_max: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Most raw batches scored before their outbound messages are committed.",
    )


class QuarantineSettings(BaseModel, frozen=True, extra="forbid"):
    """Section `quarantine`: the bounded on-disk sample of rejected payloads."""

    dir: Path = Field(
        default=Path("/var/lib/forewarn/edge/quarantine"),
        description="Directory of quarantined payload samples.",
    )
    max_files: int = Field(default=200, ge=0, description="Most samples kept (oldest deleted first).")
    max_bytes: int = Field(default=20_000_000, ge=0, description="Most sample payload bytes kept.")
    max_per_reason_per_min: int = Field(
        default=10,
        ge=0,
        description="Most samples written per rejection reason per minute (all are counted).",
    )


class EdgeSettings(ComponentSettings):
    """Everything the edge agent needs: brokers, pipeline, models, queue, quarantine, heartbeat."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_EDGE_")
    component: ClassVar[str] = "edge"

    gateway_id: str = Field(
        default="gw-01", pattern=IDENT_PATTERN, description="This gateway's id (topics, seq)."
    )
    heartbeat_interval_s: float = Field(
        default=10.0, gt=0.0, le=3600.0, description="Seconds between retained status heartbeats."
    )
    intake_queue_size: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Raw batches buffered between MQTT and the scorer (newest dropped).",
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="How long the brokers keep our sessions (and unacked messages) while we are away.",
    )
    blas_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Threads numpy's BLAS may use (process-wide). 1 keeps the scorer on one core; more threads "
            "were 30x slower on a busy 2-core gateway (threads spinning against each other)."
        ),
    )
    shutdown_ack_wait_s: float = Field(
        default=3.0,
        ge=0.0,
        le=600.0,
        description="On SIGTERM, how long to wait for queued messages to be acknowledged.",
    )
    plant_mqtt: MqttSettings = Field(
        default=MqttSettings.model_validate({}),
        description="The plant broker: raw sensor batches in, local alerts out.",
    )
    upstream_mqtt: MqttSettings = Field(
        default=MqttSettings.model_validate({}),
        description="The upstream (cloud) broker: aggregates, alerts, snapshots, status.",
    )
    pipeline: PipelineSettings = Field(
        default=PipelineSettings(), description="Windows, features, scoring, alerts."
    )
    models: ModelSettings = Field(
        default=ModelSettings.model_validate({}), description="The local model store."
    )
    queue: QueueSettings = Field(default=QueueSettings(), description="The store-and-forward queue.")
    quarantine: QuarantineSettings = Field(
        default=QuarantineSettings(), description="Rejected payload samples."
    )
    deployment: DeploymentSettings = Field(DeploymentSettings.model_validate({}), description="Model push.")
