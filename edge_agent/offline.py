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
`asset_id,time,time_ns,score,threshold,anomalous,alert,model_version,model_kind`, where `time` is the
window's end (ISO 8601, ns), `score` and `anomalous` are empty for a window that was not scored (a joined
sensor had no data, or the model does not fit the features), and `alert` is `raised` or `cleared` on the
window that changed the alert state.
"""

from __future__ import annotations

import csv
import heapq
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edge_agent.aggregation import ScoredWindows
from edge_agent.model_store import LoadedModel, load_model
from edge_agent.pipeline import Pipeline
from edge_agent.samples_csv import CsvCounts, csv_batches, csv_files
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings, SnapshotSettings
from shared.features import SensorKind
from shared.messages import Alert

__all__ = ["OUTPUT_COLUMNS", "OfflineSummary", "score_csv"]

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = (
    "asset_id",
    "time",
    "time_ns",
    "score",
    "threshold",
    "anomalous",
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

    def on_windows(self, asset_id: str, windows: ScoredWindows) -> None:
        self._pending.append((asset_id, windows))

    def write(self, alerts: Iterable[Alert]) -> None:
        states = {(a.asset_id, a.ts_ns): a.state for a in alerts}
        for asset_id, windows in self._pending:
            times = windows.end_ns.astype("datetime64[ns]").astype(str).tolist()
            threshold = f"{windows.threshold:.6g}"
            for ts_ns, time_text, score in zip(
                windows.end_ns.tolist(), times, windows.scores.tolist(), strict=True
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
    offline = settings.model_copy(
        update={
            "assets": assets,
            "score_max_delay_ms": _NEVER_MS,
            "snapshots": SnapshotSettings(enabled=False),
        }
    )
    rates: dict[tuple[str, str], float | None] = {
        (asset.asset_id, sensor.name): sensor.sample_rate_hz for asset in assets for sensor in asset.sensors
    }
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
        streams = [csv_batches(path, rates, counts) for path in files]
        for batch in heapq.merge(*streams, key=lambda b: b.start_ns):
            out = pipeline.process(batch)
            writer.write(m for m in out if isinstance(m, Alert))
        out = pipeline.flush()
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
    )
    logger.info(
        "scored %d of %d windows from %s into %s", summary.windows_scored, summary.windows, csv_path, out_path
    )
    return summary
