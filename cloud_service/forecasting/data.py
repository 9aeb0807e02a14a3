"""In-memory histories: per-asset telemetry series plus failure and maintenance events.

The live job builds a `History` from stored aggregates; the offline CLI builds one from CSV files. Both then
call `fit(history)` and `predict(model, history)`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "AssetSeries",
    "Event",
    "EventKind",
    "History",
    "Life",
    "PredictionRow",
    "TimeKind",
    "split_lives",
]

FloatArray = npt.NDArray[np.float64]


class EventKind(enum.StrEnum):
    """What happened to an asset at an event's time."""

    FAILURE = "failure"
    MAINTENANCE = "maintenance"


class TimeKind(enum.StrEnum):
    """How `time` was written: a plain number (cycles, hours) or ISO 8601 (converted to hours)."""

    NUMERIC = "numeric"
    ISO = "iso"


@dataclass(frozen=True)
class Event:
    """A failure or maintenance of one asset at `time` (same unit as the telemetry's time)."""

    asset_id: str
    time: float
    kind: EventKind


@dataclass(frozen=True)
class AssetSeries:
    """One asset's telemetry: strictly increasing `time`, `values` of shape (rows, columns), NaN = missing.

    `time_labels` keeps the time as the user wrote it (for output); `None` means "format the number".
    `rows` are the 1-based file rows, for messages (empty for in-memory data).
    """

    asset_id: str
    time: FloatArray
    values: FloatArray
    time_labels: tuple[str, ...] | None = None
    rows: tuple[int, ...] = ()

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def label(self, index: int) -> str:
        """The time of row `index` as the user wrote it."""
        if self.time_labels is not None:
            return self.time_labels[index]
        value = float(self.time[index])
        return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True)
class History:
    """Telemetry of a fleet (`columns` name the value columns) plus its events."""

    columns: tuple[str, ...]
    assets: tuple[AssetSeries, ...]
    events: tuple[Event, ...] = ()
    time_kind: TimeKind = TimeKind.NUMERIC
    source: str = "<memory>"

    @property
    def n_rows(self) -> int:
        """Telemetry rows over all assets."""
        return sum(len(asset) for asset in self.assets)

    @classmethod
    def from_arrays(
        cls,
        asset_ids: Sequence[str],
        times: Sequence[float] | FloatArray,
        values: FloatArray,
        *,
        columns: Sequence[str],
        events: Sequence[Event] = (),
    ) -> History:
        """Build from flat arrays (one row per reading, any order); rows are sorted by time per asset.

        Raises:
            ValueError: if shapes disagree or an asset has two rows at one time.
        """
        ids = np.asarray(asset_ids, dtype=object)
        time = np.asarray(times, dtype=np.float64)
        matrix = np.asarray(values, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != time.shape[0] or ids.shape[0] != time.shape[0]:
            raise ValueError("asset_ids, times and values must have the same number of rows")
        if matrix.shape[1] != len(columns):
            raise ValueError("values must have one column per name in `columns`")
        series = []
        for asset_id in dict.fromkeys(ids.tolist()):
            mask = ids == asset_id
            order = np.argsort(time[mask], kind="stable")
            asset_time = time[mask][order]
            if np.any(np.diff(asset_time) <= 0):
                raise ValueError(f"asset {asset_id!r} has two rows at the same time")
            series.append(AssetSeries(str(asset_id), asset_time, matrix[mask][order]))
        return cls(tuple(columns), tuple(series), tuple(events))

    def column_index(self, names: Sequence[str]) -> list[int]:
        """Positions of `names` in `columns` (KeyError naming the first missing one)."""
        index = {name: i for i, name in enumerate(self.columns)}
        missing = [name for name in names if name not in index]
        if missing:
            raise KeyError(missing[0])
        return [index[name] for name in names]


@dataclass(frozen=True)
class PredictionRow:
    """One forecast: RUL with its interval, the probability of failure within `horizon`."""

    asset_id: str
    time_label: str
    time: float
    rul: float
    rul_low: float
    rul_high: float
    p_fail: float
    horizon: float
    short_history: bool


@dataclass(frozen=True)
class Life:
    """A stretch of one asset's history between two events (or its start and end).

    `end_time` is the event time (failure or maintenance) or the last observed time; `failed` says
    whether it ended in a failure (then RUL = end_time - time is known exactly), otherwise RUL is only known
    to be at least end_time - time (right-censored).
    """

    asset_index: int
    asset_id: str
    start: int
    stop: int
    start_time: float
    end_time: float
    failed: bool
    ended_by_event: bool = field(default=False)

    def __len__(self) -> int:
        return self.stop - self.start


def split_lives(history: History) -> list[Life]:
    """Cut each asset's rows at its events: a life ends at a failure, a maintenance, or the last row.

    Rows at or before an event's time belong to the life that event ends; a life starts at the previous
    event's time (or the asset's first row), which is where the age feature counts from.
    """
    by_asset: dict[str, list[Event]] = {}
    for event in history.events:
        by_asset.setdefault(event.asset_id, []).append(event)
    lives: list[Life] = []
    for index, asset in enumerate(history.assets):
        lives.extend(_asset_lives(index, asset, sorted(by_asset.get(asset.asset_id, []), key=_event_time)))
    return lives


def _event_time(event: Event) -> float:
    return event.time


def _asset_lives(index: int, asset: AssetSeries, events: list[Event]) -> Iterator[Life]:
    n = len(asset)
    if n == 0:
        return
    start = 0
    start_time = float(asset.time[0])
    for event in events:
        stop = int(np.searchsorted(asset.time, event.time, side="right"))
        if stop > start:
            yield Life(
                index,
                asset.asset_id,
                start,
                stop,
                start_time,
                float(event.time),
                failed=event.kind is EventKind.FAILURE,
                ended_by_event=True,
            )
        if stop >= start:
            start = stop
            start_time = max(start_time, float(event.time))
    if start < n:
        yield Life(index, asset.asset_id, start, n, start_time, float(asset.time[-1]), failed=False)
