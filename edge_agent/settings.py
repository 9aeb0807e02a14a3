"""Settings of the edge agent (`forewarn edge --config gateway.toml`), component `edge`.

Layered as every component's: defaults < TOML file < `FOREWARN_EDGE_*` environment (nested with `__`, e.g.
`FOREWARN_EDGE_QUEUE__MAX_BYTES=50000000`) < command-line overrides. `forewarn config show edge` prints the
effective values with these descriptions.

Every section of the edge settings lives here: `pipeline` (`PipelineSettings` and its nested sections:
assets and their sensors, alerts, snapshots, aggregation, baseline), `models`, `queue` and `quarantine`.
The pipeline serves only the assets listed in `pipeline.assets`: a batch from any other asset, or from a
sensor an asset does not list, is rejected and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from edge_agent.deployment.settings import DeploymentSettings
from shared.asset_config import AssetDiagnosisConfig
from shared.config import ComponentSettings, MqttSettings
from shared.features import FeatureSpec, SensorKind, SensorSpec
from shared.raw_batch import MAX_SAMPLE_RATE_HZ
from shared.topics import IDENT_PATTERN

__all__ = [
    "AggregationSettings",
    "AlertSettings",
    "AssetSettings",
    "BaselineSettings",
    "EdgeSettings",
    "ModelSettings",
    "PipelineSettings",
    "QuarantineSettings",
    "QueueSettings",
    "SensorSettings",
    "SnapshotSettings",
]


class SensorSettings(BaseModel, frozen=True, extra="forbid"):
    """One sensor of an asset."""

    name: str = Field(pattern=IDENT_PATTERN, description="Sensor name, as in the raw topic and batches.")
    kind: SensorKind = Field(
        default=SensorKind.VIBRATION,
        description="`vibration` (spectral and shape features) or `slow` (mean, slope, min, max).",
    )
    sample_rate_hz: float = Field(
        default=25_600.0,
        gt=0.0,
        le=MAX_SAMPLE_RATE_HZ,
        description="Expected sample rate; other rates are rejected.",
    )
    window_len: int | None = Field(
        default=None,
        ge=2,
        le=1 << 20,
        description=(
            "Samples per window of this sensor; empty: `pipeline.window_len` for vibration, "
            "`pipeline.slow_window_s` x rate for slow sensors."
        ),
    )
    hop: int | None = Field(
        default=None,
        ge=1,
        le=1 << 20,
        description="Samples between window starts when this sensor drives the asset; empty: `pipeline.hop`.",
    )


class AssetSettings(BaseModel, frozen=True, extra="forbid"):
    """One asset the gateway serves and its sensors.

    The first vibration sensor (or the first sensor, if none is a vibration sensor) drives the asset: each
    of its windows makes one feature vector; the other sensors join it (see docs/edge.md, "Edge pipeline").
    """

    asset_id: str = Field(pattern=IDENT_PATTERN, description="Asset id, as in the raw topics.")
    sensors: tuple[SensorSettings, ...] = Field(
        min_length=1, description="The asset's sensors, in feature-vector order."
    )
    model_target: str = Field(
        default="", description="Model target whose active model scores this asset; empty uses the asset id."
    )
    diagnosis: AssetDiagnosisConfig | None = Field(
        default=None,
        description="Bearings, speed, ISO group to diagnose alert windows (docs/diagnosis.md); empty: none.",
    )

    @model_validator(mode="after")
    def _unique_sensors(self) -> Self:
        names = [sensor.name for sensor in self.sensors]
        if len(set(names)) != len(names):
            raise ValueError(f"sensor names must be unique, got {names}")
        return self

    @property
    def target(self) -> str:
        """The model target of this asset."""
        return self.model_target or self.asset_id


class AlertSettings(BaseModel, frozen=True, extra="forbid"):
    """Debouncing and severity of alerts."""

    k: int = Field(
        default=3, ge=1, description="Raise when at least k of the last n scored windows are anomalous."
    )
    n: int = Field(
        default=5, ge=1, le=10_000, description="Length of the k-of-n debounce history, in windows."
    )
    clear_after: int = Field(
        default=10, ge=1, description="Clear a raised alert after this many consecutive normal windows."
    )
    critical_ratio: float = Field(
        default=2.0, gt=0.0, description="Severity `critical` when score / threshold is at least this."
    )
    warning_ratio: float = Field(
        default=1.0,
        gt=0.0,
        description="Severity `warning` when score / threshold is at least this, else `info`.",
    )
    top_features: int = Field(default=3, ge=0, le=32, description="Contributing features listed in an alert.")

    @model_validator(mode="after")
    def _k_le_n(self) -> Self:
        if self.k > self.n:
            raise ValueError(f"alert k ({self.k}) must be <= n ({self.n})")
        return self


class SnapshotSettings(BaseModel, frozen=True, extra="forbid"):
    """Optional raw waveform of the driving sensor around a raised alert."""

    enabled: bool = Field(default=True, description="Send a raw snapshot with each raised alert.")
    before_s: float = Field(
        default=0.5, ge=0.0, le=60.0, description="Seconds of samples before the alert's window end."
    )
    after_s: float = Field(
        default=0.25, ge=0.0, le=60.0, description="Seconds of samples after the alert's window end."
    )
    max_samples: int = Field(
        default=16_384,
        ge=1,
        le=65_536,
        description="At most this many samples per snapshot (before and after shrink in proportion).",
    )


class AggregationSettings(BaseModel, frozen=True, extra="forbid"):
    """Aggregates sent upstream."""

    period_s: float = Field(
        default=10.0,
        gt=0.0,
        le=86_400.0,
        description="Aggregation period per asset, by data time (epoch aligned).",
    )


class BaselineSettings(BaseModel, frozen=True, extra="forbid"):
    """The per-asset statistical baseline used until a model is active for the asset."""

    threshold: float = Field(
        default=6.0, gt=0.0, description="A window is anomalous above this robust z-score."
    )
    warmup_windows: int = Field(
        default=200,
        ge=1,
        description="Windows learned before the baseline scores (until then: unscored, as `warmup`).",
    )
    keep_learning: bool = Field(
        default=True,
        description=(
            "After warm-up keep learning from windows scored normal (never from anomalous ones, nor from an "
            "unconfirmed level shift: see `shift_confirm_s`)."
        ),
    )
    learn_interval_s: float = Field(
        default=1.0,
        ge=0.0,
        description=(
            "Learn one window per this much data time (the first ending a random 0.5-1.5 intervals after "
            "the last one learned; one per burst for a sensor sending short bursts), so warm-up spans "
            "minutes of slow-sensor behaviour, not a few overlapping windows (0: every window)."
        ),
    )
    learn_first_s: float = Field(
        default=0.0,
        ge=0.0,
        le=86_400.0,
        description=(
            "Learn every window of the asset's first this many data seconds, then score (the warm-up "
            "ends by time, not by `warmup_windows`; those seconds must be healthy). 0: off."
        ),
    )
    shift_confirm_s: float = Field(
        default=600.0,
        gt=0.0,
        le=7 * 86_400.0,
        description=(
            "After warm-up, a sustained rise of the scores (a level shift, one-sided CUSUM) pauses "
            "learning; the shifted windows are learned only once the shift is confirmed as a new "
            "operating state: this many data seconds with no window scored anomalous and no rising "
            "trend (see docs/edge-recordings.md)."
        ),
    )
    seed: int = Field(default=0, description="Seed of the baseline's reservoir sampling.")
    features: Literal["all", "shape"] = Field(
        default="shape",
        description=(
            "`shape`: score only load-invariant features (crest factor, kurtosis, skewness, spectral "
            "centroid, each band's share of the band power), not levels that move with load and ambient "
            "temperature (RMS, peaks, slow sensors' mean/min/max/slope); `all`: every feature."
        ),
    )
    combine_top: int = Field(
        default=3,
        ge=1,
        le=64,
        description="A window's score is the mean of its this many largest |z| (1: the largest alone).",
    )
    stopped_ratio: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description=(
            "A window is `stopped` (counted, not scored, not learned) when the driving sensor's RMS or a "
            "`current` sensor's mean is below this fraction of its running level (0: never)."
        ),
    )
    change_ratio: float = Field(
        default=0.2,
        gt=0.0,
        description=(
            "A start, or a relative change of the RMS or current level by more than this from the recent "
            "windows' median, begins a `transient` (counted, not scored, not learned)."
        ),
    )
    spike_check: bool = Field(
        default=True,
        description=(
            "Windows of the driving vibration sensor holding isolated single-sample spikes (a sensor or "
            "wiring fault) are counted as `sensor_spikes`, not scored and not learned by the baseline."
        ),
    )
    settle_s: float = Field(
        default=60.0,
        ge=0.0,
        le=86_400.0,
        description="Data seconds after a start or a level change during which windows are `transient`.",
    )


class PipelineSettings(BaseModel, frozen=True, extra="forbid"):
    """Section `pipeline`: windows, features, scoring, alerts, aggregates and stream checks."""

    assets: tuple[AssetSettings, ...] = Field(
        default=(), description="Assets served by this gateway; batches of any other asset are rejected."
    )
    window_len: int = Field(default=1024, ge=2, le=1 << 20, description="Samples per vibration window.")
    hop: int = Field(
        default=1024, ge=1, le=1 << 20, description="Samples between the starts of consecutive windows."
    )
    n_bands: int = Field(
        default=8, ge=1, le=512, description="Log-spaced spectral bands per vibration window."
    )
    feature_spec_name: str = Field(
        default="vib-temp-current",
        min_length=1,
        description="Name of the feature spec (a model must name the same).",
    )
    feature_spec_version: int = Field(default=1, ge=1, description="Version of the feature spec.")
    slow_window_s: float = Field(
        default=10.0,
        gt=0.0,
        le=86_400.0,
        description="Seconds of a slow sensor joined to each driving window.",
    )
    join_max_lag_s: float = Field(
        default=5.0,
        ge=0.0,
        description="A joined sensor lagging a window's end by more than this leaves the window unscored.",
    )
    gap_tolerance_s: float = Field(
        default=0.0,
        ge=0.0,
        description="Timestamp jitter tolerated between batches; never less than half a sample period.",
    )
    rate_tolerance: float = Field(
        default=1e-3, ge=0.0, lt=1.0, description="Relative sample-rate difference accepted from a batch."
    )
    score_batch_windows: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Windows collected per asset before features and scores are computed in one batch.",
    )
    score_max_delay_ms: float = Field(
        default=5.0,
        ge=0.0,
        description="A window waits at most this long (wall clock) for its batch; checked on process/poll.",
    )
    alerts: AlertSettings = Field(default=AlertSettings(), description="Alert debouncing and severity.")
    snapshots: SnapshotSettings = Field(
        default=SnapshotSettings(), description="Raw snapshots around alerts."
    )
    aggregation: AggregationSettings = Field(
        default=AggregationSettings(), description="Upstream aggregates."
    )
    baseline: BaselineSettings = Field(default=BaselineSettings(), description="Statistical baseline scorer.")

    @model_validator(mode="after")
    def _unique_assets(self) -> Self:
        ids = [asset.asset_id for asset in self.assets]
        if len(set(ids)) != len(ids):
            raise ValueError(f"asset ids must be unique, got {ids}")
        return self

    @property
    def feature_spec_id(self) -> str:
        """`name@version` of the feature spec every asset's vectors follow."""
        return f"{self.feature_spec_name}@{self.feature_spec_version}"

    def feature_spec(self, asset: AssetSettings) -> FeatureSpec:
        """The feature spec of one asset: its sensors, in order, with this pipeline's window and bands."""
        return FeatureSpec(
            name=self.feature_spec_name,
            version=self.feature_spec_version,
            window_len=self.window_len,
            n_bands=self.n_bands,
            sensors=tuple(SensorSpec(sensor.name, sensor.kind) for sensor in asset.sensors),
        )

    def sensor_window_len(self, sensor: SensorSettings) -> int:
        """Samples per window of `sensor` (its own setting, or the pipeline's default for its kind)."""
        if sensor.window_len is not None:
            return sensor.window_len
        if sensor.kind is SensorKind.VIBRATION:
            return self.window_len
        return max(2, round(self.slow_window_s * sensor.sample_rate_hz))

    def sensor_hop(self, sensor: SensorSettings) -> int:
        """Samples between window starts of `sensor` when it drives its asset."""
        if sensor.hop is not None:
            return sensor.hop
        if sensor.kind is SensorKind.VIBRATION:
            return self.hop
        return self.sensor_window_len(sensor)


class ModelSettings(BaseModel, frozen=True, extra="forbid"):
    """Section `models` of the edge settings: the local model store."""

    store_dir: Path = Field(
        default=Path("/var/lib/forewarn/edge/models"),
        description="Directory of the versioned local model store.",
    )
    intra_op_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="onnxruntime intra-op threads per scoring call (1 keeps a core free).",
    )
    keep_versions: int = Field(
        3,
        ge=2,
        le=100,
        description="Versions kept per target; older ones are pruned (never active/previous).",
    )


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
            "(see docs/edge.md, Store-and-forward)."
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
    hold_max_messages: int = Field(
        default=5000,
        ge=0,
        le=1_000_000,
        description=(
            "Most outbound messages kept in memory while the disk queue cannot write (disk full, I/O "
            "error); written first once it can. Beyond it the oldest aggregates go first, alerts last, "
            "counted as queue.hold_dropped.<kind>."
        ),
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
    shutdown_drain_s: float = Field(
        default=30.0,
        ge=0.0,
        le=3600.0,
        description=(
            "On SIGTERM, how long the scorer may take to score the raw batches already received; those "
            "left after it are counted (`intake_dropped_at_shutdown`) and logged. Keep it, with "
            "`shutdown_ack_wait_s`, below the service manager's stop timeout."
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
