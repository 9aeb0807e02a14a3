"""The samples CSV format `forewarn edge score` and the files connector read, cut into raw batches.

A samples CSV has the header `asset_id,time,<sensor...>`, one row per sample instant and one column per
sensor (an empty cell: that sensor has no sample then). `time` is ISO 8601 with a time zone
(`2026-01-01T00:00:00.0001Z`, up to ns digits), integer UTC epoch ns (>= 1e15) or epoch seconds. Rows of
one asset must rise in time. Unparsable rows and cells are counted by reason (`CsvCounts`) and skipped.

`csv_batches` cuts the samples of each (asset, sensor) into raw batches: consecutive samples whose spacing
stays within half a period of the sensor's period, at most `MAX_BATCH_SAMPLES` samples or 1 s per batch.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shared.errors import ContractError
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S, parse_times_ns
from shared.topics import IDENT_PATTERN

__all__ = ["MAX_BATCH_NS", "MAX_BATCH_SAMPLES", "CsvCounts", "csv_batches", "csv_files"]

MAX_BATCH_SAMPLES = 4096
MAX_BATCH_NS = NS_PER_S
_CHUNK_ROWS = 65_536
_IDENT = re.compile(IDENT_PATTERN)


@dataclass
class CsvCounts:
    """Rows read from samples CSVs, and rows or cells skipped per reason (`columns`, `asset_id`, `time`,
    `value`)."""

    rows: int = 0
    bad: dict[str, int] = field(default_factory=dict)

    def bad_row(self, reason: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1


def csv_files(csv_path: Path) -> list[Path]:
    """The samples CSV at `csv_path`, or the `raw_*.csv` files of a directory (the simulator's export).

    Raises:
        FileNotFoundError: there is none.
    """
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
    column: tuple[str, ...], counts: CsvCounts
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Times of a column (exact to the ns, see `shared.timebase.parse_times_ns`) and which parsed."""
    times, good = parse_times_ns(column)
    bad = int(np.count_nonzero(~good))
    if bad:
        counts.bad["time"] = counts.bad.get("time", 0) + bad
    return times, good


def _parse_values(
    column: tuple[str, ...], counts: CsvCounts
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


def _chunks(path: Path, counts: CsvCounts) -> Iterator[_Chunk]:
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


def csv_batches(
    path: Path, rates: dict[tuple[str, str], float | None], counts: CsvCounts
) -> Iterator[RawBatch]:
    """Raw batches of one samples file, roughly in time order (sorted within each chunk).

    Args:
        path: the samples CSV.
        rates: the rate of each (asset, sensor) where known; others are inferred from their spacing.
        counts: where rows read and skipped are counted.

    Raises:
        ContractError: the header is not `asset_id,time,<sensor...>`.
        OSError, UnicodeDecodeError: the file cannot be read.
    """
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
