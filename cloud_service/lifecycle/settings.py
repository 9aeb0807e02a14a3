"""Section `lifecycle` of the cloud settings: training, gates, approval, signing, push, scheduling, drift."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

__all__ = ["LifecycleSettings"]


class LifecycleSettings(BaseModel, frozen=True, extra="forbid"):
    """How models are trained, gated, approved, signed, pushed to gateways and watched for drift."""

    signing_key: Path = Field(
        Path("/etc/forewarn/keys/forewarn-signing.key"),
        description="Ed25519 private key (PEM, mode 0600) that signs deployments; see `forewarn keys init`.",
    )
    approval: Literal["auto", "manual"] = Field(
        "manual",
        description="auto: candidates passing every gate are deployed at once; manual: `models approve`.",
    )
    targets: tuple[str, ...] = Field(
        (), description="Model targets retrained on schedule (an asset id or an asset type); empty: none."
    )
    shard: str = Field(
        "1/1",
        pattern=r"^[1-9][0-9]{0,3}/[1-9][0-9]{0,3}$",
        description=(
            "i/n: this process's share of `targets` for the scheduled retraining and drift jobs, the "
            "targets whose CRC-32 modulo n is i-1 (1/1: every target); give each of n processes the same "
            "`targets` and its own i."
        ),
    )
    model_types: tuple[str, ...] = Field(
        ("mlp_autoencoder", "pca"), description="Candidate model types trained and compared per run."
    )
    training_days: float = Field(14.0, gt=0, description="Train on the features of this many recent days.")
    min_training_rows: int = Field(200, ge=16, description="Fewer healthy rows than this: no training.")
    max_training_rows: int = Field(50_000, ge=100, description="Rows kept (evenly subsampled) for training.")
    exclude_before_event_h: float = Field(
        72.0, ge=0, description="Hours before a failure or maintenance event excluded from training."
    )
    exclude_after_event_h: float = Field(
        24.0, ge=0, description="Hours after a failure or maintenance event excluded from training."
    )
    validation_fraction: float = Field(
        0.25, gt=0, lt=0.9, description="Share of healthy rows held out (the most recent) for validation."
    )
    false_alarms_per_asset_per_week: float = Field(
        1.0, gt=0, description="Alert budget on healthy data that sets the threshold."
    )
    windows_per_asset_per_week: float = Field(
        60_480.0,
        gt=0,
        description="Rows per asset per week the alert budget is spread over (default: one per 10 s period).",
    )
    threshold_margin: float = Field(
        1.1, ge=1.0, le=10.0, description="Threshold multiplier above the healthy budget quantile."
    )
    min_agreement: float = Field(
        0.995, ge=0.5, le=1.0, description="Gate: int8 and float decisions agree on this share of rows."
    )
    champion_tolerance: float = Field(
        0.0, ge=0, le=1, description="Gate: a challenger may be this much worse (absolute) than the champion."
    )
    max_latency_us: float = Field(
        2_000.0, gt=0, description="Gate: most int8 onnxruntime microseconds per single window."
    )
    max_model_bytes: int = Field(8 << 20, ge=1024, description="Gate: largest int8 artifact in bytes.")
    chunk_bytes: int = Field(
        256 * 1024, ge=1024, le=1 << 20, description="Artifact bytes per retained MQTT chunk message."
    )
    retrain_cron: str = Field(
        "0 2 * * *", description="Crontab (UTC) of the scheduled retraining: nightly at 02:00 by default."
    )
    push_timeout_s: float = Field(
        30.0, gt=0, description="Bound on connecting to the broker and on each acknowledgement of a push."
    )
    push_retry_interval_s: float = Field(
        300.0,
        gt=0,
        description=(
            "Seconds between retries of pushes that failed (auto approval: an approved model newer than the "
            "deployed one, e.g. after the broker was down, is pushed again)."
        ),
    )
    drift_interval_s: float = Field(3600.0, gt=0, description="Seconds between drift checks.")
    drift_recent_h: float = Field(24.0, gt=0, description="Hours of recent features a drift check compares.")
    drift_psi_threshold: float = Field(
        0.25, gt=0, description="Population stability index above which a feature has drifted."
    )
    drift_triggers_retraining: bool = Field(
        True, description="Retrain a target at once when one of its assets drifted."
    )
    rollup_refresh: bool = Field(
        True,
        description="Storage upkeep on schedule: partitions ahead, retention, plain-PostgreSQL rollups.",
    )
    scheduler: bool = Field(
        True,
        description="Run the scheduled jobs inside `forewarn cloud` (each runs once across cloud processes).",
    )
    seed: int = Field(0, description="Seed of every stochastic training step.")
    reference_time: Literal["wall", "latest_data"] = Field(
        "wall",
        description=(
            "What the scheduled jobs take as now when they pick recent data (training days, drift, forecast "
            "history): wall, the clock; latest_data, the newest stored aggregate, for replayed or "
            "time-compressed data whose timestamps do not follow the clock (the demo)."
        ),
    )

    @model_validator(mode="after")
    def _shard_in_range(self) -> LifecycleSettings:
        if self.shard_index > self.shard_count:
            raise ValueError(f"shard={self.shard!r}: expected i/n with 1 <= i <= n")
        return self

    @property
    def shard_index(self) -> int:
        """i of `shard` (1-based)."""
        return int(self.shard.partition("/")[0])

    @property
    def shard_count(self) -> int:
        """n of `shard`."""
        return int(self.shard.partition("/")[2])

    @property
    def shard_targets(self) -> tuple[str, ...]:
        """The `targets` this process's scheduled jobs handle: those whose CRC-32 modulo n is i-1."""
        n = self.shard_count
        return tuple(t for t in self.targets if n == 1 or zlib.crc32(t.encode()) % n == self.shard_index - 1)

    @property
    def shard_job_suffix(self) -> str:
        """Appended to the per-target job ids, so each shard's run is claimed apart ("" for 1/1)."""
        return "" if self.shard_count == 1 else f"@{self.shard_index}of{self.shard_count}"
