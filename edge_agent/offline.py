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

from edge_agent.aggregation import UNSCORED_REASONS, ScoredWindows
from edge_agent.disk_queue import Outbound
from edge_agent.model_store import LoadedModel, load_model
from edge_agent.pipeline import Pipeline
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings, SnapshotSettings
from shared.errors import ContractError
from shared.features import SensorKind
from shared.messages import Alert
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S, parse_times_ns
from shared.topics import IDENT_PATTERN

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
    files = _csv_files(csv_path)
    model = load_model(model_path, intra_op_threads=intra_op_threads) if model_path is not None else None
    assets = _discover(files, settings, sample_rate_hz)
    baseline = settings.baseline
    if learn_first_s is not None:
        baseline = baseline.model_copy(update={"learn_first_s": learn_first_s})
    offline = _offline_settings(settings.model_copy(update={"baseline": baseline}), assets)
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
    files: list[Path], settings: PipelineSettings, pipeline: Pipeline, counts: _Counts
) -> Iterator[list[Outbound]]:
    """Feed the files' batches, merged by start time, through `pipeline`; yield what each step returns."""
    rates: dict[tuple[str, str], float | None] = {
        (asset.asset_id, sensor.name): sensor.sample_rate_hz
        for asset in settings.assets
        for sensor in asset.sensors
    }
    streams = [_batches(path, rates, counts) for path in files]
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
    files = _csv_files(csv_path)
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
    for _ in _replay(files, offline, pipeline, _Counts()):
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
