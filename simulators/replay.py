"""Reading recordings in the bring-your-own-data CSV format back into raw batches and events.

A samples file has the header `asset_id,time,<sensor...>`: one row per sample instant, one column per
sensor (an empty cell: that sensor has no sample then). An events file has exactly `asset_id,time,event`
with `failure` or `maintenance` events. `time` is ISO 8601 with a time zone (`2026-01-01T00:00:00.0001Z`)
or numeric UTC epoch seconds.

Rows of one asset must rise in time. Consecutive samples form one batch while their spacing stays the
same (within 1 %); a gap, a change of spacing, an empty cell or a full batch starts a new batch. The
sample rate of a batch is the inverse of that spacing (1 Hz for a batch of a single sample). Bad rows and
cells are counted by reason and skipped, never fatal. Memory stays flat: at most one batch per sensor.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.errors import ContractError
from shared.messages import MaintenanceEvent
from shared.raw_batch import RawBatch
from shared.timebase import NS_PER_S, check_time_ns, parse_time_ns
from shared.topics import check_ident
from simulators.stream import Message, event_message, raw_message

__all__ = ["ReplayStats", "messages_from_recording", "read_recording"]

_EVENT_HEADER = ["asset_id", "time", "event"]
_EVENTS = ("failure", "maintenance")


@dataclass(slots=True)
class ReplayStats:
    """Counters of one read: rows read, batches and events produced, rejections by reason."""

    rows: int = 0
    batches: int = 0
    events: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        """Count one rejected row or cell."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(slots=True)
class _Buffer:
    start_ns: int = 0
    values: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _AssetTrack:
    last_ns: int | None = None
    spacing_ns: int | None = None
    buffers: dict[str, _Buffer] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)


class _Batcher:
    def __init__(self, sensors: list[str], batch_samples: int, stats: ReplayStats) -> None:
        self.sensors = sensors
        self.batch_samples = batch_samples
        self.stats = stats
        self.tracks: dict[str, _AssetTrack] = {}

    def _flush(self, asset_id: str, track: _AssetTrack, sensor: str) -> RawBatch | None:
        buffer = track.buffers.pop(sensor, None)
        if buffer is None or not buffer.values:
            return None
        spacing = track.spacing_ns or NS_PER_S
        seq = track.seqs.get(sensor, 0)
        track.seqs[sensor] = seq + 1
        self.stats.batches += 1
        samples = np.asarray(buffer.values, dtype=np.float32)
        samples.flags.writeable = False
        return RawBatch(asset_id, sensor, seq, buffer.start_ns, NS_PER_S / spacing, samples)

    def flush_all(self, asset_id: str, track: _AssetTrack) -> list[RawBatch]:
        out = [self._flush(asset_id, track, sensor) for sensor in list(track.buffers)]
        return [batch for batch in out if batch is not None]

    def row(self, asset_id: str, ts_ns: int, cells: list[str]) -> list[RawBatch]:
        track = self.tracks.setdefault(asset_id, _AssetTrack())
        out: list[RawBatch] = []
        if track.last_ns is not None:
            delta = ts_ns - track.last_ns
            if delta <= 0:
                self.stats.reject("time_order")
                return out
            if track.spacing_ns is None:
                track.spacing_ns = delta
            elif abs(delta - track.spacing_ns) > 0.01 * track.spacing_ns:
                out.extend(self.flush_all(asset_id, track))
                track.spacing_ns = min(track.spacing_ns, delta)
        track.last_ns = ts_ns
        for sensor, cell in zip(self.sensors, cells, strict=False):
            value = _value(cell, self.stats)
            if value is None:
                batch = self._flush(asset_id, track, sensor)
                if batch is not None:
                    out.append(batch)
                continue
            buffer = track.buffers.setdefault(sensor, _Buffer(start_ns=ts_ns))
            buffer.values.append(value)
            if len(buffer.values) >= self.batch_samples:
                batch = self._flush(asset_id, track, sensor)
                if batch is not None:
                    out.append(batch)
        return out


def _value(cell: str, stats: ReplayStats) -> float | None:
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        stats.reject("value")
        return None
    if not math.isfinite(value):
        stats.reject("non_finite")
        return None
    return value


def _row_key(row: list[str], stats: ReplayStats) -> tuple[str, int] | None:
    try:
        asset_id = check_ident("asset_id", row[0])
        ts_ns = check_time_ns("time", parse_time_ns(row[1]))
    except ContractError as exc:
        stats.reject(exc.reason)
        return None
    return asset_id, ts_ns


def read_recording(
    path: Path, *, batch_samples: int = 4096, stats: ReplayStats | None = None
) -> Iterator[RawBatch | MaintenanceEvent]:
    """Raw batches (or events, for an events file) from a CSV recording, in file order.

    Raises:
        ContractError: the header is not `asset_id,time,...` with valid sensor names.
    """
    stats = stats if stats is not None else ReplayStats()
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if header[:2] != ["asset_id", "time"] or len(header) < 3:
            raise ContractError("header", ",".join(header)[:80], "asset_id,time,<column...>")
        if header == _EVENT_HEADER:
            yield from _read_events(reader, stats)
            return
        sensors = [check_ident("sensor", name) for name in header[2:]]
        batcher = _Batcher(sensors, batch_samples, stats)
        for row in reader:
            stats.rows += 1
            if len(row) != len(header):
                stats.reject("columns")
                continue
            key = _row_key(row, stats)
            if key is not None:
                yield from batcher.row(key[0], key[1], row[2:])
        for asset_id, track in batcher.tracks.items():
            yield from batcher.flush_all(asset_id, track)


def _read_events(reader: Iterator[list[str]], stats: ReplayStats) -> Iterator[MaintenanceEvent]:
    for row in reader:
        stats.rows += 1
        if len(row) != len(_EVENT_HEADER):
            stats.reject("columns")
            continue
        key = _row_key(row, stats)
        if key is None:
            continue
        if row[2] not in _EVENTS:
            stats.reject("event")
            continue
        stats.events += 1
        yield MaintenanceEvent(asset_id=key[0], ts_ns=key[1], event=row[2], source="replay")  # type: ignore[arg-type]  # checked above


def messages_from_recording(
    path: Path, *, batch_samples: int = 4096, stats: ReplayStats | None = None
) -> Iterator[Message]:
    """The MQTT messages replaying a CSV recording (see `read_recording`)."""
    for item in read_recording(path, batch_samples=batch_samples, stats=stats):
        yield raw_message(item) if isinstance(item, RawBatch) else event_message(item)
