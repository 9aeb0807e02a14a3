"""Offline scoring of a recorded CSV with the edge pipeline (`forewarn edge score`).

Input: a samples CSV with the header `asset_id,time,<sensor...>` (the format is read by
`edge_agent.samples_csv`), or a directory holding several (`raw_*.csv`, e.g. the simulator's
`raw_vibration.csv` and `raw_slow.csv`). Unparsable rows and cells are counted by reason and skipped.

Samples become raw batches per (asset, sensor): consecutive samples whose spacing stays within half a
period of the sensor's period, at most 4096 samples or 1 s per batch; the files are merged by batch start
time, so sensors join as they would live. Each sensor's rate is, in order: its rate in the settings (if
the asset is configured), `sample_rate_hz` (for vibration sensors), or the spacing of its first run of
samples. With no assets in the settings, they are discovered in a first pass over the files: `vibration`
(or any sensor at >= 500 Hz) is a vibration sensor, the others are slow sensors.

Output: one CSV row per window, in the order scored:
`asset_id,time,time_ns,score,threshold,anomalous,unscored,alert,model_version,model_kind`, where `time`
is the window's end (ISO 8601, ns), `score` and `anomalous` are empty for a window that was not scored and
`unscored` then says why (`aggregation.UNSCORED_REASONS`: `warmup` while the baseline learns, `stopped`,
`transient`, `incomplete`, `feature_mismatch`, ...), and `alert` is `raised` or `cleared` on the window
that changed the alert state.

With no model, the baseline learns from the recording itself: by default its first `warmup_windows`
windows at one per `learn_interval_s` (200 s of data), or with `learn_first_s` every window of the first
seconds. A recording too short for its warm-up is reported in the summary (`warmup_advice`).
"""

from __future__ import annotations

import csv
import heapq
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from edge_agent.aggregation import UNSCORED_REASONS, ScoredWindows
from edge_agent.disk_queue import Outbound
from edge_agent.model_store import LoadedModel, load_model
from edge_agent.pipeline import Pipeline
from edge_agent.samples_csv import CsvCounts, csv_batches, csv_files
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings, SnapshotSettings
from shared.features import SensorKind
from shared.messages import Alert
from shared.timebase import NS_PER_S

__all__ = [
    "OUTPUT_COLUMNS",
    "OfflineSummary",
    "RecordedFeatures",
    "recorded_features",
    "score_csv",
    "warmup_advice",
]

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = (
    "asset_id",
    "time",
    "time_ns",
    "score",
    "threshold",
    "anomalous",
    "unscored",
    "alert",
    "model_version",
    "model_kind",
)
VIBRATION_MIN_RATE_HZ = 500.0
_NEVER_MS = 1e12


@dataclass(frozen=True)
class OfflineSummary:
    """What an offline scoring run read, scored and wrote.

    Attributes:
        out_path: the per-window CSV written.
        assets: the assets scored.
        model_version: the model's `target:vN`, or `baseline`.
        rows_read: data rows read from the CSV files.
        bad_rows: rows or cells skipped, per reason (`columns`, `asset_id`, `time`, `value`).
        batches: raw batches given to the pipeline.
        samples: samples in those batches.
        windows: windows cut.
        windows_scored: windows scored (the rest are in `windows_unscored` by reason).
        windows_unscored: windows not scored, per reason.
        alerts_raised: alerts raised.
        alerts_cleared: alerts cleared.
        rejected: batches flagged by the pipeline's stream checks, per reason (gaps between recorded
            bursts are counted as `gap`).
        duration_s: data seconds from the first window's end to the last's (per asset, the longest).
        learn_first_s: the seconds the baseline learned from first (0: warm-up by `warmup_windows`).
        warmup_windows: the windows the baseline's warm-up needs (with `learn_first_s` 0).
        learn_interval_s: data seconds between the windows the baseline learns.
        baseline_learned: windows the baseline learned (warm-up and after).
        baseline_shifts: level shifts that paused the baseline's learning.
    """

    out_path: Path
    assets: tuple[str, ...]
    model_version: str
    rows_read: int
    bad_rows: dict[str, int]
    batches: int
    samples: int
    windows: int
    windows_scored: int
    windows_unscored: dict[str, int]
    alerts_raised: int
    alerts_cleared: int
    rejected: dict[str, int]
    duration_s: float = 0.0
    learn_first_s: float = 0.0
    warmup_windows: int = 0
    learn_interval_s: float = 0.0
    baseline_learned: int = 0
    baseline_shifts: int = 0


def warmup_advice(summary: OfflineSummary) -> str:
    """What to do when the baseline did not finish its warm-up on the recording; empty if it did.

    >>> from dataclasses import replace
    >>> counts = (0, {}, 0, 0, 178, 0, {"warmup": 178}, 0, 0, {})
    >>> base = OfflineSummary(Path("s.csv"), ("a",), "baseline", *counts)
    >>> advice = warmup_advice(replace(base, duration_s=180.0, warmup_windows=200, learn_interval_s=1.0))
    >>> advice[:58], "--learn-first 45" in advice
    ('the baseline did not finish its warm-up: it learns 200 win', True)
    """
    if (
        summary.model_version != "baseline"
        or summary.windows_scored
        or not summary.windows_unscored.get("warmup")
    ):
        return ""
    if summary.learn_first_s:
        needed = f"it learns the first {summary.learn_first_s:g} s and then needs at least 20 windows"
    else:
        needed_s = summary.warmup_windows * summary.learn_interval_s
        needed = (
            f"it learns {summary.warmup_windows} windows at one per {summary.learn_interval_s:g} s of data "
            f"({needed_s:g} s)"
        )
    suggested = max(1, round(summary.duration_s / 4))
    return (
        f"the baseline did not finish its warm-up: {needed}, and the recording holds "
        f"{summary.duration_s:.0f} s, so no window was scored. If its first seconds are healthy, learn from "
        f"them instead: --learn-first {suggested} (a quarter of the recording); or score with a model: "
        "--model DIR (e.g. trained by `forewarn models fit --csv HEALTHY --out DIR`)."
    )


def _discover(
    files: list[Path], settings: PipelineSettings, sample_rate_hz: float | None
) -> tuple[AssetSettings, ...]:
    """Assets, sensors and rates of the files: the configured assets, or what the files hold."""
    if settings.assets:
        return settings.assets
    counts = CsvCounts()
    first_runs: dict[tuple[str, str], float | None] = {}
    for path in files:
        for batch in csv_batches(path, {}, counts):
            first_runs.setdefault((batch.asset_id, batch.sensor), batch.sample_rate_hz)
    sensors: dict[str, list[SensorSettings]] = {}
    for (asset_id, sensor), inferred in first_runs.items():
        rate = inferred or 1.0
        is_vibration = sensor == "vibration" or rate >= VIBRATION_MIN_RATE_HZ
        if is_vibration and sample_rate_hz is not None:
            rate = sample_rate_hz
        kind = SensorKind.VIBRATION if is_vibration else SensorKind.SLOW
        sensors.setdefault(asset_id, []).append(SensorSettings(name=sensor, kind=kind, sample_rate_hz=rate))
    return tuple(
        AssetSettings(
            asset_id=asset_id,
            sensors=tuple(sorted(found, key=lambda s: s.kind is not SensorKind.VIBRATION)),
        )
        for asset_id, found in sensors.items()
    )


class _FixedModel:
    """A model source that offers one loaded model for every target."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model

    def active(self, target: str) -> LoadedModel:
        del target
        return self._model


class _WindowWriter:
    """Buffers each batch of scored windows until its alerts are known, then writes the rows."""

    def __init__(self, handle: IO[str]) -> None:
        self._writer = csv.writer(handle, lineterminator="\n")
        self._writer.writerow(OUTPUT_COLUMNS)
        self._pending: list[tuple[str, ScoredWindows]] = []
        self.first_end_ns: dict[str, int] = {}
        self.last_end_ns: dict[str, int] = {}

    def on_windows(self, asset_id: str, windows: ScoredWindows) -> None:
        self._pending.append((asset_id, windows))
        if len(windows.end_ns):
            self.first_end_ns.setdefault(asset_id, int(windows.end_ns.min()))
            self.last_end_ns[asset_id] = int(windows.end_ns.max())

    @property
    def duration_s(self) -> float:
        """The longest span of window ends of one asset, in seconds."""
        spans = [self.last_end_ns[a] - first for a, first in self.first_end_ns.items()]
        return max(spans, default=0) / NS_PER_S

    def write(self, alerts: Iterable[Alert]) -> None:
        states = {(a.asset_id, a.ts_ns): a.state for a in alerts}
        for asset_id, windows in self._pending:
            times = windows.end_ns.astype("datetime64[ns]").astype(str).tolist()
            threshold = f"{windows.threshold:.6g}"
            codes = (
                windows.unscored.tolist()
                if windows.unscored is not None
                else [0 if not math.isnan(score) else None for score in windows.scores.tolist()]
            )
            for ts_ns, time_text, score, code in zip(
                windows.end_ns.tolist(), times, windows.scores.tolist(), codes, strict=True
            ):
                scored = not math.isnan(score)
                self._writer.writerow(
                    (
                        asset_id,
                        time_text + "Z",
                        ts_ns,
                        f"{score:.6g}" if scored else "",
                        threshold,
                        (1 if score > windows.threshold else 0) if scored else "",
                        "" if scored else UNSCORED_REASONS[code] if code else "unknown",
                        states.get((asset_id, ts_ns), ""),
                        windows.model_version,
                        windows.model_kind,
                    )
                )
        self._pending.clear()


def score_csv(
    *,
    csv_path: Path,
    out_path: Path,
    model_path: Path | None,
    settings: PipelineSettings,
    sample_rate_hz: float | None = None,
    intra_op_threads: int = 1,
    learn_first_s: float | None = None,
) -> OfflineSummary:
    """Score a recorded samples CSV with the edge pipeline and write one row per window.

    Args:
        csv_path: a samples CSV, or a directory of `raw_*.csv` files (the simulator's export).
        out_path: the per-window CSV to write (replaced).
        model_path: a model directory (`model.onnx` + `manifest.json`) or either file; None scores with
            the per-asset statistical baseline (learned from the recording itself, as a new gateway would).
        settings: the pipeline settings (windows, alerts, baseline; assets are discovered if none).
        sample_rate_hz: the rate of vibration sensors not configured in `settings` (default: inferred
            from the time column).
        intra_op_threads: onnxruntime threads for the model.
        learn_first_s: the baseline learns every window of each asset's first this many seconds, then
            scores (overrides `settings.baseline.learn_first_s`; those seconds must be healthy).

    Returns:
        What was read, scored and written.

    Raises:
        FileNotFoundError: if there is no CSV at `csv_path`.
        ContractError: if a CSV's header is not `asset_id,time,<sensor...>`.
        ModelVerificationError: if the model cannot be loaded or fails its checks.
    """
    files = csv_files(csv_path)
    model = load_model(model_path, intra_op_threads=intra_op_threads) if model_path is not None else None
    assets = _discover(files, settings, sample_rate_hz)
    baseline = settings.baseline
    if learn_first_s is not None:
        baseline = baseline.model_copy(update={"learn_first_s": learn_first_s})
    offline = _offline_settings(settings.model_copy(update={"baseline": baseline}), assets)
    counts = CsvCounts()
    with out_path.open("w", newline="", encoding="utf-8") as handle:
        writer = _WindowWriter(handle)
        pipeline = Pipeline(
            settings=offline,
            gateway_id="offline",
            models=_FixedModel(model) if model is not None else None,
            on_reject=lambda reason, batch, detail: None,
            on_windows=writer.on_windows,
        )
        for out in _replay(files, offline, pipeline, counts):
            writer.write(m for m in out if isinstance(m, Alert))
    metrics = pipeline.metrics
    summary = OfflineSummary(
        out_path=out_path,
        assets=tuple(asset.asset_id for asset in assets),
        model_version=model.scorer.version if model is not None else "baseline",
        rows_read=counts.rows,
        bad_rows=dict(counts.bad),
        batches=metrics.batches_in,
        samples=metrics.samples_in,
        windows=metrics.windows_cut,
        windows_scored=metrics.windows_scored,
        windows_unscored=dict(metrics.windows_unscored),
        alerts_raised=metrics.alerts_raised,
        alerts_cleared=metrics.alerts_cleared,
        rejected=dict(metrics.rejected),
        duration_s=writer.duration_s,
        learn_first_s=baseline.learn_first_s,
        warmup_windows=baseline.warmup_windows,
        learn_interval_s=baseline.learn_interval_s,
        baseline_learned=metrics.baseline_learned,
        baseline_shifts=metrics.baseline_shifts,
    )
    logger.info(
        "scored %d of %d windows from %s into %s", summary.windows_scored, summary.windows, csv_path, out_path
    )
    return summary


def _offline_settings(settings: PipelineSettings, assets: tuple[AssetSettings, ...]) -> PipelineSettings:
    """`settings` for a replay: these assets, windows scored in batches as they fill, no snapshots."""
    return settings.model_copy(
        update={
            "assets": assets,
            "score_max_delay_ms": _NEVER_MS,
            "snapshots": SnapshotSettings(enabled=False),
        }
    )


def _replay(
    files: list[Path], settings: PipelineSettings, pipeline: Pipeline, counts: CsvCounts
) -> Iterator[list[Outbound]]:
    """Feed the files' batches, merged by start time, through `pipeline`; yield what each step returns."""
    rates: dict[tuple[str, str], float | None] = {
        (asset.asset_id, sensor.name): sensor.sample_rate_hz
        for asset in settings.assets
        for sensor in asset.sensors
    }
    streams = [csv_batches(path, rates, counts) for path in files]
    for batch in heapq.merge(*streams, key=lambda b: b.start_ns):
        yield pipeline.process(batch)
    yield pipeline.flush()


_TRAINABLE = frozenset({0, UNSCORED_REASONS.index("warmup")})


@dataclass(frozen=True)
class RecordedFeatures:
    """The feature rows of one asset's running windows in a recording, as its edge pipeline computes them.

    Attributes:
        asset_id: the asset.
        spec_id: the feature spec id (`name@version`) a model of these rows must name.
        feature_names: the columns of `rows`.
        rows: (n, F) float32, every complete, finite window of a running machine.
        windows: windows cut.
        excluded: windows left out, per reason (`stopped`, `transient`, `incomplete`, ...).
    """

    asset_id: str
    spec_id: str
    feature_names: tuple[str, ...]
    rows: npt.NDArray[np.float32]
    windows: int
    excluded: dict[str, int]


def recorded_features(
    *, csv_path: Path, settings: PipelineSettings, sample_rate_hz: float | None = None
) -> list[RecordedFeatures]:
    """The feature rows of every asset's running windows in a recording (for training a model offline).

    The recording is replayed through the edge pipeline with its baseline, so the rows are exactly what
    the edge would score, and the windows it would not score (stopped or in a transient, incomplete,
    holding sensor spikes) are left out. Assets and rates are found as `score_csv` finds them.

    Raises:
        FileNotFoundError: if there is no CSV at `csv_path`.
        ContractError: if a CSV's header is not `asset_id,time,<sensor...>`.
    """
    files = csv_files(csv_path)
    assets = _discover(files, settings, sample_rate_hz)
    offline = _offline_settings(settings, assets)
    rows: dict[str, list[npt.NDArray[np.float32]]] = {asset.asset_id: [] for asset in assets}
    windows_cut = dict.fromkeys(rows, 0)
    excluded: dict[str, dict[str, int]] = {asset_id: {} for asset_id in rows}

    def keep(asset_id: str, windows: ScoredWindows) -> None:
        codes = windows.unscored if windows.unscored is not None else np.zeros(len(windows.end_ns), np.uint8)
        trainable = np.isin(codes, list(_TRAINABLE)) & np.isfinite(windows.features).all(axis=1)
        rows[asset_id].append(windows.features[trainable])
        windows_cut[asset_id] += len(codes)
        for code in codes[~trainable].tolist():
            reason = UNSCORED_REASONS[code] or "nonfinite_features"
            excluded[asset_id][reason] = excluded[asset_id].get(reason, 0) + 1

    pipeline = Pipeline(
        settings=offline, gateway_id="offline", models=None, on_reject=lambda *_: None, on_windows=keep
    )
    for _ in _replay(files, offline, pipeline, CsvCounts()):
        pass
    found = []
    for asset in assets:
        names = pipeline.feature_names(asset.asset_id)
        parts = rows[asset.asset_id]
        found.append(
            RecordedFeatures(
                asset_id=asset.asset_id,
                spec_id=offline.feature_spec(asset).spec_id,
                feature_names=names,
                rows=np.concatenate(parts) if parts else np.empty((0, len(names)), np.float32),
                windows=windows_cut[asset.asset_id],
                excluded=excluded[asset.asset_id],
            )
        )
    return found
