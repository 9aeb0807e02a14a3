"""Signal and batch builders shared by the edge pipeline and offline-scoring tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge_agent.disk_queue import Outbound
from edge_agent.pipeline import Pipeline
from edge_agent.settings import (
    AlertSettings,
    AssetSettings,
    BaselineSettings,
    PipelineSettings,
    SensorSettings,
)
from shared.features import SensorKind
from shared.messages import Aggregate, Alert, AlertUpdate, Contribution, Snapshot
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S

T0_NS = 1_790_000_000 * NS_PER_S  # 2026-09-21T14:13:20Z, in the past and a multiple of 10 s
VIB_RATE = 8192.0
TEMP_RATE = 10.0
Signal = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]


def asset_settings(asset_id: str = "pump-1", *, with_temperature: bool = True) -> AssetSettings:
    """An asset with a vibration sensor at 8192 Hz and (optionally) a temperature sensor at 10 Hz."""
    sensors = [SensorSettings(name="vibration", kind=SensorKind.VIBRATION, sample_rate_hz=VIB_RATE)]
    if with_temperature:
        sensors.append(SensorSettings(name="temperature", kind=SensorKind.SLOW, sample_rate_hz=TEMP_RATE))
    return AssetSettings(asset_id=asset_id, sensors=tuple(sensors))


def settings(
    assets: Sequence[AssetSettings] = (),
    *,
    warmup: int = 40,
    batch_windows: int = 1,
    **changes: object,
) -> PipelineSettings:
    """Pipeline settings for tests: small warm-up, every window scored at once by default."""
    base = PipelineSettings(
        assets=tuple(assets) or (asset_settings(),),
        score_batch_windows=batch_windows,
        score_max_delay_ms=1e9,
        slow_window_s=2.0,
        alerts=AlertSettings(k=3, n=5, clear_after=6),
        baseline=BaselineSettings(warmup_windows=warmup, learn_interval_s=0.25),
    )
    return base.model_copy(update=changes)


def healthy(rng: np.random.Generator) -> Signal:
    """Shaft tone at 30 Hz plus its harmonic and broadband noise."""

    def signal(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        noise = rng.normal(0.0, 0.2, len(t))
        return np.sin(2 * np.pi * 30 * t) + 0.3 * np.sin(2 * np.pi * 60 * t) + noise

    return signal


def with_defect(
    base: Signal, amplitude: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]
) -> Signal:
    """`base` plus a bearing-defect tone at 1234 Hz whose amplitude follows `amplitude(t)`."""

    def signal(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return base(t) + amplitude(t) * np.sin(2 * np.pi * 1234 * t)

    return signal


def temperature(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A slowly rising temperature with a little noise-free ripple."""
    return 40.0 + 0.01 * t + 0.1 * np.sin(2 * np.pi * 0.05 * t)


@dataclass
class Stream:
    """Builds consecutive batches of one sensor from a signal of time in seconds since T0."""

    asset_id: str
    sensor: str
    rate: float
    signal: Signal
    batch_len: int
    seq: int = 0
    index: int = 0

    def next(self) -> RawBatch:
        """The next batch."""
        t = (self.index + np.arange(self.batch_len)) / self.rate
        batch = RawBatch(
            asset_id=self.asset_id,
            sensor=self.sensor,
            seq=self.seq,
            start_ns=T0_NS + round(self.index * NS_PER_S / self.rate),
            sample_rate_hz=self.rate,
            samples=self.signal(t).astype(np.float32),
        )
        self.seq += 1
        self.index += self.batch_len
        return batch

    @property
    def time_s(self) -> float:
        """Time of the next sample, in seconds since T0."""
        return self.index / self.rate


def interleave(streams: Sequence[Stream], until_s: float) -> Iterator[RawBatch]:
    """Batches of all streams in order of start time (slow sensors first on ties) until `until_s`."""
    while True:
        stream = min(streams, key=lambda s: s.time_s)
        if stream.time_s >= until_s:
            return
        yield stream.next()


@dataclass
class Run:
    """What a pipeline produced: every outbound message, split by type, and every rejection."""

    out: list[Outbound] = field(default_factory=list)
    rejects: list[tuple[str, RawBatch, str]] = field(default_factory=list)

    def on_reject(self, reason: str, batch: RawBatch, detail: str) -> None:
        self.rejects.append((reason, batch, detail))

    @property
    def alerts(self) -> list[Alert]:
        return [m for m in self.out if isinstance(m, Alert)]

    @property
    def updates(self) -> list[AlertUpdate]:
        return [m for m in self.out if isinstance(m, AlertUpdate)]

    @property
    def aggregates(self) -> list[Aggregate]:
        return [m for m in self.out if isinstance(m, Aggregate)]

    @property
    def snapshots(self) -> list[Snapshot]:
        return [m for m in self.out if isinstance(m, Snapshot)]

    def feed(self, pipeline: Pipeline, batches: Iterator[RawBatch] | Sequence[RawBatch]) -> None:
        for batch in batches:
            self.out.extend(pipeline.process(batch))


class RecordingScorer:
    """A Scorer test double: score = first feature column; records every row it scores."""

    kind: Literal["onnx"] = "onnx"

    def __init__(self, feature_names: Sequence[str], *, version: str, threshold: float = 1e9) -> None:
        self.feature_names = tuple(feature_names)
        self.version = version
        self.threshold = threshold
        self.rows: list[npt.NDArray[np.float32]] = []

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.rows.append(features.copy())
        return features[:, 0].astype(np.float32)

    def contributions(self, row: npt.NDArray[np.float32], top_k: int = 3) -> list[Contribution]:
        return [Contribution(feature=self.feature_names[0], value=float(row[0, 0]), contribution=1.0)][:top_k]

    @property
    def n_rows(self) -> int:
        return sum(len(r) for r in self.rows)


def processed(pipeline: Pipeline) -> int:
    """Windows scored, or learned as the baseline's warm-up (which leaves them unscored, as `warmup`)."""
    metrics = pipeline.metrics
    return metrics.windows_scored + metrics.windows_unscored.get("warmup", 0)
