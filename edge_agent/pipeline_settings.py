"""Settings of the edge data pipeline (section `pipeline` of the edge settings).

Every field has a default and a description; `forewarn config show edge` prints them. The pipeline serves
only the assets listed here: a batch from any other asset, or from a sensor an asset does not list, is
rejected and counted.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from shared.features import FeatureSpec, SensorKind, SensorSpec
from shared.raw_batch import MAX_SAMPLE_RATE_HZ
from shared.topics import IDENT_PATTERN

__all__ = [
    "AggregationSettings",
    "AlertSettings",
    "AssetSettings",
    "BaselineSettings",
    "PipelineSettings",
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
    of its windows makes one feature vector; the other sensors join it (see README.md, "Edge pipeline").
    """

    asset_id: str = Field(pattern=IDENT_PATTERN, description="Asset id, as in the raw topics.")
    sensors: tuple[SensorSettings, ...] = Field(
        min_length=1, description="The asset's sensors, in feature-vector order."
    )
    model_target: str = Field(
        default="", description="Model target whose active model scores this asset; empty uses the asset id."
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
        default=200, ge=1, description="Windows learned before the baseline scores (scores are 0 until then)."
    )
    keep_learning: bool = Field(
        default=True,
        description="After warm-up keep learning from windows scored normal (never from anomalous ones).",
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
