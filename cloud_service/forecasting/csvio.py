"""Reading and writing the forecaster's CSV files, streaming with the `csv` module.

Telemetry: a header, then rows of `asset_id,time,<numeric columns>` (other id/time column names may be
chosen). Events: `asset_id,time,event` with event `failure` or `maintenance`. Time is a number (cycles,
hours, any unit) or ISO 8601 (converted to hours since 1970-01-01 UTC; a time without a zone is UTC), and
every row of a file uses the same kind. Empty cells and `nan`/`NA`/`null` are missing values; any other
non-number is an error naming the file, the row (1-based, the header is row 1) and the column.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_service.forecasting.data import AssetSeries, Event, EventKind, History, PredictionRow, TimeKind
from cloud_service.forecasting.errors import DataFileError

__all__ = [
    "PREDICTION_COLUMNS",
    "parse_time",
    "read_events",
    "read_header",
    "read_predictions",
    "read_telemetry",
    "read_truth",
    "write_predictions",
]

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("asset_id", "time", "rul", "rul_low", "rul_high", "p_fail", "horizon", "short_history")
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
_PROGRESS_ROWS = 50_000


def _open(path: Path) -> Generator[list[str], None, None]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            yield from csv.reader(handle)
    except FileNotFoundError as exc:
        raise DataFileError(path, 0, "", "file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataFileError(path, 0, "", f"not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise DataFileError(path, 0, "", f"not a valid CSV file ({exc})") from exc
    except OSError as exc:
        raise DataFileError(path, 0, "", f"cannot read ({exc.strerror})") from exc


def _header(path: Path, rows: Iterator[list[str]]) -> list[str]:
    header = next(rows, None)
    if header is None or not any(cell.strip() for cell in header):
        raise DataFileError(path, 1, "", "empty file: expected a header row")
    names = [cell.strip() for cell in header]
    seen: set[str] = set()
    for name in names:
        if not name:
            raise DataFileError(path, 1, "", "the header has an empty column name")
        if name in seen:
            raise DataFileError(path, 1, name, "column name appears twice in the header")
        seen.add(name)
    return names


def _require(path: Path, header: Sequence[str], names: Sequence[str]) -> list[int]:
    positions = []
    for name in names:
        if name not in header:
            raise DataFileError(path, 1, name, f"missing column (the header has: {', '.join(header)})")
        positions.append(header.index(name))
    return positions


def read_header(path: str | Path) -> list[str]:
    """The column names of a CSV file's header row.

    Raises:
        DataFileError: if the file cannot be read or its header is empty or repeats a name.
    """
    path = Path(path)
    rows = _open(path)
    try:
        return _header(path, rows)
    finally:
        rows.close()  # closes the file


def parse_time(text: str, kind: TimeKind | None) -> tuple[float, TimeKind] | None:
    """Parse a time cell: a finite number, or ISO 8601 converted to hours since the epoch (UTC).

    Returns `(value, kind)`, or None if `text` is not a time of `kind` (either kind if `kind` is None).
    """
    stripped = text.strip()
    if kind is not TimeKind.ISO:
        try:
            value = float(stripped)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value, TimeKind.NUMERIC
        if kind is TimeKind.NUMERIC:
            return None
    try:
        moment = dt.datetime.fromisoformat(stripped)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp() / 3600.0, TimeKind.ISO


def _number(path: Path, row: int, column: str, text: str) -> float:
    stripped = text.strip()
    if stripped.lower() in _MISSING:
        return math.nan
    try:
        value = float(stripped)
    except ValueError:
        raise DataFileError(
            path,
            row,
            column,
            f"{stripped[:40]!r} is not a number (leave a text column out with --ignore-columns)",
        ) from None
    if not math.isfinite(value):
        raise DataFileError(path, row, column, f"{stripped!r} is not a finite number")
    return value


@dataclass
class _AssetRows:
    times: list[float]
    labels: list[str]
    values: list[list[float]]
    rows: list[int]


def read_telemetry(
    path: str | Path,
    *,
    id_column: str = "asset_id",
    time_column: str = "time",
    columns: Sequence[str] | None = None,
    time_kind: TimeKind | None = None,
    progress: Callable[[str], None] | None = None,
) -> History:
    """Read a telemetry CSV into a `History` (without events).

    Args:
        path: the CSV file.
        id_column: the asset id column.
        time_column: the time column.
        columns: the value columns to keep (default: every other column); they must all exist.
        time_kind: the time kind the file must use (default: taken from the first row).
        progress: called with a short line every 50,000 rows.

    Raises:
        DataFileError: naming file, row and column, for a missing column, a non-number, a duplicate
            (asset, time), a time earlier than the asset's previous row, a ragged row, or no data rows.
    """
    path = Path(path)
    rows = _open(path)
    header = _header(path, rows)
    id_pos, time_pos = _require(path, header, [id_column, time_column])
    if columns is None:
        columns = [name for name in header if name not in (id_column, time_column)]
    value_pos = _require(path, header, columns)
    if not value_pos:
        raise DataFileError(path, 1, "", f"no value columns besides {id_column!r} and {time_column!r}")
    assets: dict[str, _AssetRows] = {}
    kind = time_kind
    row = 1
    for row, cells in enumerate(rows, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataFileError(path, row, "", f"{len(cells)} fields, but the header has {len(header)}")
        asset_id = cells[id_pos].strip()
        if not asset_id:
            raise DataFileError(path, row, id_column, "empty asset id")
        parsed = parse_time(cells[time_pos], kind)
        if parsed is None:
            expected = "a number" if kind is TimeKind.NUMERIC else "an ISO 8601 time"
            if kind is None:
                expected = "a number or an ISO 8601 time"
            raise DataFileError(path, row, time_column, f"{cells[time_pos][:40]!r} is not {expected}")
        time, kind = parsed
        values = [_number(path, row, header[pos], cells[pos]) for pos in value_pos]
        entry = assets.get(asset_id)
        if entry is None:
            entry = assets[asset_id] = _AssetRows([], [], [], [])
        elif time <= entry.times[-1]:
            _order_error(path, row, time_column, asset_id=asset_id, text=cells[time_pos], entry=entry)
        entry.times.append(time)
        entry.labels.append(cells[time_pos].strip())
        entry.values.append(values)
        entry.rows.append(row)
        if progress is not None and row % _PROGRESS_ROWS == 0:
            progress(f"read {row - 1} rows of {path.name}")
    if not assets:
        raise DataFileError(path, 0, "", "no data rows after the header")
    logger.info("read %d rows, %d assets from %s", row - 1, len(assets), path)
    series = tuple(
        AssetSeries(
            asset_id,
            np.asarray(entry.times, dtype=np.float64),
            np.asarray(entry.values, dtype=np.float64).reshape(len(entry.times), len(value_pos)),
            tuple(entry.labels),
            tuple(entry.rows),
        )
        for asset_id, entry in assets.items()
    )
    return History(tuple(columns), series, (), kind or TimeKind.NUMERIC, str(path))


def _order_error(path: Path, row: int, column: str, *, asset_id: str, text: str, entry: _AssetRows) -> None:
    previous_row, previous_label = entry.rows[-1], entry.labels[-1]
    if text.strip() == previous_label or parse_time(text, None) == parse_time(previous_label, None):
        detail = f"duplicate (asset, time) ({asset_id!r}, {text.strip()!r}): row {previous_row} has the same"
    else:
        detail = (
            f"time {text.strip()!r} of asset {asset_id!r} is before its previous row's time "
            f"{previous_label!r} (row {previous_row}): each asset's rows must be in increasing time order"
        )
    raise DataFileError(path, row, column, detail)


def read_events(
    path: str | Path,
    *,
    time_kind: TimeKind,
    id_column: str = "asset_id",
    time_column: str = "time",
) -> list[Event]:
    """Read an events CSV (`asset_id,time,event`, event `failure` or `maintenance`).

    The id/time columns may be named as in the telemetry (`id_column`, `time_column`) or `asset_id`/`time`.

    Raises:
        DataFileError: naming file, row and column, for a missing column, a bad time or an unknown event.
    """
    path = Path(path)
    rows = _open(path)
    header = _header(path, rows)
    id_name = id_column if id_column in header else "asset_id"
    time_name = time_column if time_column in header else "time"
    id_pos, time_pos, event_pos = _require(path, header, [id_name, time_name, "event"])
    events: list[Event] = []
    for row, cells in enumerate(rows, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataFileError(path, row, "", f"{len(cells)} fields, but the header has {len(header)}")
        asset_id = cells[id_pos].strip()
        if not asset_id:
            raise DataFileError(path, row, id_name, "empty asset id")
        parsed = parse_time(cells[time_pos], time_kind)
        if parsed is None:
            raise DataFileError(
                path,
                row,
                time_name,
                f"{cells[time_pos][:40]!r} is not a {time_kind} time like the telemetry's",
            )
        try:
            kind = EventKind(cells[event_pos].strip().lower())
        except ValueError:
            raise DataFileError(
                path, row, "event", f"{cells[event_pos][:40]!r} is not 'failure' or 'maintenance'"
            ) from None
        events.append(Event(asset_id, parsed[0], kind))
    return events


def write_predictions(path: str | Path, rows: Sequence[PredictionRow]) -> None:
    """Write forecasts as CSV with the `PREDICTION_COLUMNS` header."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(PREDICTION_COLUMNS)
            for item in rows:
                writer.writerow(
                    [
                        item.asset_id,
                        item.time_label,
                        f"{item.rul:.4g}",
                        f"{item.rul_low:.4g}",
                        f"{item.rul_high:.4g}",
                        f"{item.p_fail:.4f}",
                        f"{item.horizon:g}",
                        int(item.short_history),
                    ]
                )
    except OSError as exc:
        raise DataFileError(path, 0, "", f"cannot write ({exc.strerror})") from exc


def read_predictions(path: str | Path) -> list[PredictionRow]:
    """Read a predictions CSV (the first six columns required; `horizon`, `short_history` optional).

    Raises:
        DataFileError: naming file, row and column.
    """
    path = Path(path)
    rows = _open(path)
    header = _header(path, rows)
    positions = _require(path, header, PREDICTION_COLUMNS[:6])
    horizon_pos = header.index("horizon") if "horizon" in header else -1
    short_pos = header.index("short_history") if "short_history" in header else -1
    kind: TimeKind | None = None
    result = []
    for row, cells in enumerate(rows, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataFileError(path, row, "", f"{len(cells)} fields, but the header has {len(header)}")
        parsed = parse_time(cells[positions[1]], kind)
        if parsed is None:
            raise DataFileError(path, row, "time", f"{cells[positions[1]][:40]!r} is not a time")
        kind = parsed[1]
        rul, low, high, p_fail = (
            _required_number(path, row, PREDICTION_COLUMNS[i], cells[positions[i]]) for i in range(2, 6)
        )
        horizon = _number(path, row, "horizon", cells[horizon_pos]) if horizon_pos >= 0 else math.nan
        short = cells[short_pos].strip() in {"1", "true", "True"} if short_pos >= 0 else False
        result.append(
            PredictionRow(
                asset_id=cells[positions[0]].strip(),
                time_label=cells[positions[1]].strip(),
                time=parsed[0],
                rul=rul,
                rul_low=low,
                rul_high=high,
                p_fail=p_fail,
                horizon=horizon,
                short_history=short,
            )
        )
    return result


def _required_number(path: Path, row: int, column: str, text: str) -> float:
    value = _number(path, row, column, text)
    if math.isnan(value):
        raise DataFileError(path, row, column, "missing value")
    return value


def read_truth(path: str | Path) -> dict[str, float]:
    """Read a truth CSV `asset_id,rul` (true RUL at each asset's last time).

    Raises:
        DataFileError: naming file, row and column, for a missing column, a bad number or a repeated asset.
    """
    path = Path(path)
    rows = _open(path)
    header = _header(path, rows)
    id_pos, rul_pos = _require(path, header, ["asset_id", "rul"])
    truth: dict[str, float] = {}
    for row, cells in enumerate(rows, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataFileError(path, row, "", f"{len(cells)} fields, but the header has {len(header)}")
        asset_id = cells[id_pos].strip()
        if asset_id in truth:
            raise DataFileError(path, row, "asset_id", f"asset {asset_id!r} appears twice")
        truth[asset_id] = _required_number(path, row, "rul", cells[rul_pos])
    if not truth:
        raise DataFileError(path, 0, "", "no data rows after the header")
    return truth
