"""Offline scoring of a recorded CSV with the edge pipeline (`forewarn edge score`).

Input: a samples CSV with the header `asset_id,time,<sensor...>`, one row per sample instant and one column
per sensor (an empty cell: that sensor has no sample then), or a directory holding several (`raw_*.csv`,
e.g. the simulator's `raw_vibration.csv` and `raw_slow.csv`). `time` is ISO 8601 with a time zone
(`2026-01-01T00:00:00.0001Z`, up to ns digits), integer UTC epoch ns (>= 1e15) or epoch seconds. Rows of
one asset must rise in time. Unparsable rows and cells are counted by reason and skipped.

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
import itertools
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from edge_agent.aggregation import ScoredWindows
from edge_agent.model_store import LoadedModel, load_model
from edge_agent.pipeline import Pipeline
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings, SnapshotSettings
from shared.errors import ContractError
from shared.features import SensorKind
from shared.messages import Alert
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S, parse_times_ns
from shared.topics import IDENT_PATTERN

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
MAX_BATCH_SAMPLES = 4096
MAX_BATCH_NS = NS_PER_S
VIBRATION_MIN_RATE_HZ = 500.0
_CHUNK_ROWS = 65_536
_NEVER_MS = 1e12
_IDENT = re.compile(IDENT_PATTERN)


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


@dataclass
class _Counts:
    rows: int = 0
    bad: dict[str, int] = field(default_factory=dict)

    def bad_row(self, reason: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1


def _csv_files(csv_path: Path) -> list[Path]:
    if csv_path.is_dir():
        files = sorted(csv_path.glob("raw_*.csv"))
        if not files:
            raise FileNotFoundError(f"no raw_*.csv file in {csv_path}")
        return files
    if not csv_path.is_file():
        raise FileNotFoundError(f"no CSV file at {csv_path}")
    return [csv_path]


@dataclass
class _Chunk:
    """Up to `_CHUNK_ROWS` good rows of one samples file, column by column."""

    asset_ids: npt.NDArray[np.str_]
    times_ns: npt.NDArray[np.int64]
    sensors: list[str]
    values: list[npt.NDArray[np.float64]]  # NaN where the cell was empty (see `present`)
    present: list[npt.NDArray[np.bool_]]


def _parse_times(
    column: tuple[str, ...], counts: _Counts
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Times of a column (exact to the ns, see `shared.timebase.parse_times_ns`) and which parsed."""
    times, good = parse_times_ns(column)
    bad = int(np.count_nonzero(~good))
    if bad:
        counts.bad["time"] = counts.bad.get("time", 0) + bad
    return times, good


def _parse_values(
    column: tuple[str, ...], counts: _Counts
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Values of a sensor column (NaN for empty cells) and which cells held a number."""
    cells = np.array(column)
    present = cells != ""
    cells[~present] = "nan"
    try:
        return cells.astype(np.float64), present
    except ValueError:
        pass
    values = np.full(len(column), np.nan)
    for i, text in enumerate(column):
        if present[i]:
            try:
                values[i] = float(text)
            except ValueError:
                present[i] = False
                counts.bad_row("value")
    return values, present


def _chunks(path: Path, counts: _Counts) -> Iterator[_Chunk]:
    """The good rows of one samples file, `_CHUNK_ROWS` at a time."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or header[:2] != ["asset_id", "time"] or len(header) < 3:
            raise ContractError("header", header, "asset_id,time,<sensor...>")
        sensors = [name.strip() for name in header[2:]]
        width = len(header)
        while rows := list(itertools.islice(reader, _CHUNK_ROWS)):
            counts.rows += len(rows)
            good_rows = [row for row in rows if len(row) == width]
            if len(good_rows) < len(rows):
                counts.bad["columns"] = counts.bad.get("columns", 0) + len(rows) - len(good_rows)
            if not good_rows:
                continue
            columns = list(zip(*good_rows, strict=True))
            asset_ids = np.array(columns[0])
            good = np.ones(len(asset_ids), dtype=np.bool_)
            for asset_id in np.unique(asset_ids).tolist():
                if not _IDENT.match(asset_id):
                    bad = asset_ids == asset_id
                    counts.bad["asset_id"] = counts.bad.get("asset_id", 0) + int(np.count_nonzero(bad))
                    good &= ~bad
            times, parsed = _parse_times(columns[1], counts)
            good &= parsed
            parsed_values = [_parse_values(column, counts) for column in columns[2:]]
            yield _Chunk(
                asset_ids=asset_ids[good],
                times_ns=times[good],
                sensors=sensors,
                values=[values[good] for values, _ in parsed_values],
                present=[present[good] for _, present in parsed_values],
            )


class _Splitter:
    """Cuts the samples of one (asset, sensor) into batches of evenly spaced samples.

    A batch ends where the spacing leaves half a period of the sensor's period (or, with no known rate,
    of the first spacing seen), and after `MAX_BATCH_SAMPLES` samples or `MAX_BATCH_NS`. The last,
    possibly unfinished, batch is carried over to the next chunk.
    """

    def __init__(self, asset_id: str, sensor: str, rate_hz: float | None) -> None:
        self.asset_id = asset_id
        self.sensor = sensor
        self.rate_hz = rate_hz
        self.seq = 0
        self._times = np.empty(0, dtype=np.int64)
        self._values = np.empty(0, dtype=np.float64)

    def add(
        self, times: npt.NDArray[np.int64], values: npt.NDArray[np.float64], *, is_last: bool
    ) -> list[RawBatch]:
        """Add the next samples; return the batches that are complete (all of them if `is_last`)."""
        times = np.concatenate((self._times, times))
        values = np.concatenate((self._values, values))
        if len(times) == 0:
            return []
        steps = np.diff(times)
        period = NS_PER_S / self.rate_hz if self.rate_hz else float(steps[0]) if len(steps) else 0.0
        breaks = (steps <= 0) | (np.abs(steps - period) > 0.5 * period)
        starts = np.concatenate(([0], np.flatnonzero(breaks) + 1))
        ends = np.concatenate((starts[1:], [len(times)]))
        per_batch = (
            MAX_BATCH_SAMPLES if period <= 0 else max(1, min(MAX_BATCH_SAMPLES, int(MAX_BATCH_NS // period)))
        )
        batches: list[RawBatch] = []
        cuts: list[tuple[int, int]] = []
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            cuts.extend((lo, min(lo + per_batch, end)) for lo in range(start, end, per_batch))
        if not is_last:
            lo, hi = cuts.pop()
            self._times, self._values = times[lo:hi], values[lo:hi]
        for lo, hi in cuts:
            batch = self._batch(times[lo:hi], values[lo:hi])
            if batch is not None:
                batches.append(batch)
        return batches

    def _batch(self, times: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> RawBatch | None:
        rate = self.rate_hz or _inferred_rate(times)
        if rate is None:
            return None
        self.seq += 1
        return RawBatch(
            asset_id=self.asset_id,
            sensor=self.sensor,
            seq=self.seq - 1,
            start_ns=int(times[0]),
            sample_rate_hz=rate,
            samples=values.astype(np.float32),
        )


def _inferred_rate(times: npt.NDArray[np.int64]) -> float | None:
    """The rate of evenly spaced times (6 significant digits), or None for fewer than 2."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    rate = (len(times) - 1) * NS_PER_S / float(times[-1] - times[0])
    return float(f"{rate:.6g}")


def _batches(path: Path, rates: dict[tuple[str, str], float | None], counts: _Counts) -> Iterator[RawBatch]:
    """Raw batches of one samples file, roughly in time order (sorted within each chunk)."""
    splitters: dict[tuple[str, str], _Splitter] = {}
    for chunk in _chunks(path, counts):
        ready: list[RawBatch] = []
        for asset_id in dict.fromkeys(chunk.asset_ids.tolist()):
            rows = chunk.asset_ids == asset_id
            for sensor, values, present in zip(chunk.sensors, chunk.values, chunk.present, strict=True):
                mask = rows & present
                if not mask.any():
                    continue
                key = (asset_id, sensor)
                splitter = splitters.get(key)
                if splitter is None:
                    splitter = splitters[key] = _Splitter(asset_id, sensor, rates.get(key))
                ready.extend(splitter.add(chunk.times_ns[mask], values[mask], is_last=False))
        ready.sort(key=lambda b: b.start_ns)
        yield from ready
    empty_t, empty_v = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    rest = [b for s in splitters.values() for b in s.add(empty_t, empty_v, is_last=True)]
    yield from sorted(rest, key=lambda b: b.start_ns)


def _discover(
    files: list[Path], settings: PipelineSettings, sample_rate_hz: float | None
) -> tuple[AssetSettings, ...]:
    """Assets, sensors and rates of the files: the configured assets, or what the files hold."""
    if settings.assets:
        return settings.assets
    counts = _Counts()
    first_runs: dict[tuple[str, str], float | None] = {}
    for path in files:
        for batch in _batches(path, {}, counts):
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
    files = _csv_files(csv_path)
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
    counts = _Counts()
    with out_path.open("w", newline="", encoding="utf-8") as handle:
        writer = _WindowWriter(handle)
        pipeline = Pipeline(
            settings=offline,
            gateway_id="offline",
            models=_FixedModel(model) if model is not None else None,
            on_reject=lambda reason, batch, detail: None,
            on_windows=writer.on_windows,
        )
        streams = [_batches(path, rates, counts) for path in files]
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
