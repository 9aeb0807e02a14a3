"""Settings of the cloud service (`forewarn cloud`): broker, database, ingest workers and storage."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from cloud_service.advice_settings import AdviceSettings
from cloud_service.forecasting.settings import ForecastSettings
from cloud_service.lifecycle.settings import LifecycleSettings
from shared.config import ComponentSettings, DatabaseSettings, MqttSettings

__all__ = ["CloudSettings", "IngestSettings", "StorageSettings"]


class IngestSettings(BaseModel, frozen=True, extra="forbid"):
    """How MQTT messages are taken in and written."""

    workers: int = Field(2, ge=1, le=64, description="Ingest worker processes on this machine.")
    group: str = Field(
        "forewarn-ingest",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="MQTT 5 shared-subscription group; every ingest process of one deployment uses the same.",
    )
    shared_subscription: bool = Field(
        True,
        description=(
            "Subscribe through the shared-subscription `group` (several ingest processes split the load); "
            "false: plain subscriptions, for a deployment with exactly one ingest worker. Mosquitto 2.0.11 "
            "(Debian bookworm) does not keep a shared subscription's queued messages across a broker "
            "restart (a plain persistent one it does): see docs/cloud.md."
        ),
    )
    client_id_prefix: str = Field(
        "",
        max_length=100,
        description="Stable MQTT client id prefix (worker index appended); empty uses forewarn-cloud-<host>.",
    )
    queue_size: int = Field(
        4096,
        ge=1,
        le=65535,
        description="Messages a worker holds between paho and the writer (>= receive max).",
    )
    batch_max_rows: int = Field(
        1000,
        ge=1,
        le=100_000,
        description=(
            "Rows (single messages and members of uplink batches) after which a transaction is written; "
            "an uplink batch is never split, so a transaction may exceed it by one batch."
        ),
    )
    batch_max_s: float = Field(0.1, gt=0, le=60, description="Longest wait to fill a batch, in seconds.")
    max_clock_skew_s: float = Field(
        5.0,
        gt=0,
        le=86_400,
        description=(
            "A gateway whose clock is further off the cloud's (measured from its heartbeats) has its "
            "aggregates and alerts stored with `clock_skew_s` set; timestamps are never shifted."
        ),
    )
    db_retry_min_s: float = Field(0.5, gt=0, le=60, description="First delay after a database error.")
    db_retry_max_s: float = Field(10.0, gt=0, le=600, description="Longest delay between database retries.")
    metrics_interval_s: float = Field(
        5.0, gt=0, le=3600, description="How often each worker records its counters in the database."
    )

    @model_validator(mode="after")
    def _plain_needs_one_worker(self) -> IngestSettings:
        if not self.shared_subscription and self.workers != 1:
            # plain subscriptions give every worker every message: N workers would each write it all
            raise ValueError("shared_subscription = false needs workers = 1")
        return self


class StorageSettings(BaseModel, frozen=True, extra="forbid"):
    """How time series are kept: backend, partitions, rollups, compression and retention."""

    timescaledb: Literal["auto", "off"] = Field(
        "auto",
        description="auto: TimescaleDB if installed and preloaded (decided at the first migration); off.",
    )
    retention_days: int = Field(
        365, ge=1, description="Aggregates and heartbeats older than this are dropped."
    )
    compress_after_days: int = Field(
        7, ge=1, description="TimescaleDB only: compress chunks older than this."
    )
    partitions_ahead_days: int = Field(
        14, ge=1, le=366, description="Plain PostgreSQL: weekly partitions created this far ahead."
    )
    rollup_refresh_s: float = Field(
        300.0, gt=0, description="How often `forewarn cloud` refreshes rollups and partitions."
    )
    rollup_lookback_h: int = Field(
        48, ge=1, description="Each refresh recomputes the rollups of this many recent hours."
    )


class SnapshotDiagnosisSettings(BaseModel, frozen=True, extra="forbid"):
    """The cloud's re-diagnosis of alert snapshots (`cloud.diagnosis`, docs/diagnosis.md)."""

    enabled: bool = Field(True, description="Diagnose stored alert snapshots from the lifecycle scheduler.")
    interval_s: float = Field(
        60.0, gt=0, description="Seconds between the scheduler's snapshot diagnosis runs."
    )
    batch_size: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Snapshots diagnosed per transaction (a run repeats while more wait).",
    )
    max_per_run: int = Field(
        500, ge=1, description="Most snapshots one run diagnoses (the rest wait for the next run)."
    )


class CloudSettings(ComponentSettings):
    """Settings of the cloud service."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_CLOUD_")
    component: ClassVar[str] = "cloud"

    mqtt: MqttSettings = Field(
        MqttSettings.model_validate({"receive_maximum": 2048}),
        description="The cloud MQTT broker (receive_maximum about 2x ingest.batch_max_rows keeps it busy).",
    )
    db: DatabaseSettings = Field(DatabaseSettings.model_validate({}), description="The PostgreSQL database.")
    ingest: IngestSettings = Field(IngestSettings.model_validate({}), description="Ingest workers.")
    storage: StorageSettings = Field(
        StorageSettings.model_validate({}), description="Storage layout and upkeep."
    )
    lifecycle: LifecycleSettings = Field(LifecycleSettings.model_validate({}), description="Model lifecycle.")
    forecast: ForecastSettings = Field(ForecastSettings.model_validate({}), description="Failure forecaster.")
    advice: AdviceSettings = Field(AdviceSettings(), description="Maintenance advice (docs/diagnosis.md).")
    diagnosis: SnapshotDiagnosisSettings = Field(
        SnapshotDiagnosisSettings(), description="Re-diagnosis of alert snapshots (docs/diagnosis.md)."
    )

    @model_validator(mode="after")
    def _receive_maximum_fits_queue(self) -> CloudSettings:
        if self.mqtt.receive_maximum > self.ingest.queue_size:
            raise ValueError(
                f"mqtt.receive_maximum ({self.mqtt.receive_maximum}) must be <= ingest.queue_size "
                f"({self.ingest.queue_size}) so the broker never sends more than a worker can hold"
            )
        return self
