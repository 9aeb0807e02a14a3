"""Reads of the time-series aggregates and their rollups: score series, feature matrices for training.

The same functions serve plain PostgreSQL and TimescaleDB: the rollups have the same columns on both
(tables there, continuous aggregates here). Functions take an open connection and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import class_row

from cloud_service.rollups import BUCKET_ORIGIN, align_down, align_up, rollups_refreshed_through
from shared.errors import ContractError, StorageError

__all__ = [
    "FeatureMatrix",
    "Series",
    "SeriesPoint",
    "WindowSpread",
    "asset_series",
    "feature_matrix",
    "latest_period_end",
    "window_spread",
]

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One bucket of an asset's anomaly-score series."""

    bucket: datetime
    n_periods: int
    score_mean: float
    score_max: float
    n_windows: int
    n_above: int


@dataclass(frozen=True, slots=True)
class Series:
    """An asset's score series and where it was read from (`raw`, `rollup_hourly` or `rollup_daily`)."""

    asset_id: str
    start: datetime
    end: datetime
    resolution: timedelta
    source: str
    points: list[SeriesPoint]


_SERIES_RAW = """
SELECT date_bin(%(resolution)s, period_start, %(origin)s) AS bucket, count(*) AS n_periods,
       sum(score_mean::double precision) / count(*) AS score_mean,
       max(score_max)::double precision AS score_max, sum(n_windows)::bigint AS n_windows,
       sum(n_above)::bigint AS n_above
FROM aggregates
WHERE asset_id = %(asset_id)s AND period_start >= %(start)s AND period_start < %(end)s
GROUP BY 1 ORDER BY 1
"""
_SERIES_ROLLUP = """
SELECT date_bin(%(resolution)s, bucket, %(origin)s) AS bucket, sum(n_periods)::bigint AS n_periods,
       sum(score_mean_sum) / sum(n_periods) AS score_mean, max(score_max)::double precision AS score_max,
       sum(n_windows)::bigint AS n_windows, sum(n_above)::bigint AS n_above
FROM {table}
WHERE asset_id = %(asset_id)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1 ORDER BY 1
"""


def _choose_source(resolution: timedelta, span: timedelta, rollup_from: timedelta) -> str:
    if span < rollup_from or resolution % _HOUR:
        return "raw"
    return "rollup_daily" if resolution % _DAY == timedelta(0) else "rollup_hourly"


def asset_series(
    conn: psycopg.Connection[Any],
    asset_id: str,
    *,
    start: datetime,
    end: datetime,
    resolution: timedelta,
    source: Literal["auto", "raw", "rollup"] = "auto",
    rollup_from: timedelta = timedelta(days=2),
) -> Series:
    """An asset's anomaly scores over `[start, end)` in buckets of `resolution`.

    The range is widened to whole buckets. With `source="auto"`, ranges of at least `rollup_from` at a
    whole-hour resolution are read from the rollups up to their last refresh (`run_upkeep`) and from the
    raw aggregates after it, shorter ones from the raw aggregates; both give the same answer on refreshed
    data. `source="rollup"` reads the rollups only.

    Raises:
        ContractError: a resolution that is not positive, or a rollup source at a sub-hour resolution.
    """
    if resolution <= timedelta(0):
        raise ContractError("resolution", resolution, "a positive duration")
    lower, upper = align_down(start, resolution), align_up(end, resolution)
    chosen = _choose_source(resolution, upper - lower, rollup_from)
    if source == "raw":
        chosen = "raw"
    elif source == "rollup":
        if resolution % _HOUR:
            raise ContractError("resolution", resolution, "a whole number of hours to read from rollups")
        chosen = _choose_source(resolution, upper - lower, timedelta(0))
    params = {"resolution": resolution, "origin": BUCKET_ORIGIN, "asset_id": asset_id}
    if chosen == "raw":
        points = _points(conn, _SERIES_RAW, {**params, "start": lower, "end": upper})
        return Series(asset_id, lower, upper, resolution, chosen, points)
    rollup = _SERIES_ROLLUP.format(table=chosen)
    through = rollups_refreshed_through(conn) if source == "auto" else upper
    # the rollups up to their last refresh, the raw aggregates after it (buckets never straddle the split)
    split = min(max(align_down(through, resolution), lower), upper) if through is not None else lower
    points = _points(conn, rollup, {**params, "start": lower, "end": split}) if split > lower else []
    if split < upper:
        points += _points(conn, _SERIES_RAW, {**params, "start": split, "end": upper})
    return Series(asset_id, lower, upper, resolution, chosen, points)


def _points(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> list[SeriesPoint]:
    with conn.cursor(row_factory=class_row(SeriesPoint)) as cur:
        return cur.execute(statement, params).fetchall()


@dataclass(frozen=True, slots=True)
class _Periods:
    """Which stored periods rows are of: their feature set, assets and start times (rows by asset, then
    time)."""

    feature_spec: str
    feature_names: tuple[str, ...]
    asset_ids: list[str]
    period_start_ns: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FeatureMatrix(_Periods):
    """Aggregated feature means of assets over a range, one row per period."""

    values: npt.NDArray[np.float32]
    score_mean: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class WindowSpread(_Periods):
    """Per stored period: the mean, min and max of each feature over the period's windows."""

    mean: npt.NDArray[np.float32]
    min: npt.NDArray[np.float32]
    max: npt.NDArray[np.float32]


_FEATURE_ROWS = """
SELECT a.asset_id, (extract(epoch FROM a.period_start) * 1000000)::bigint * 1000 AS period_start_ns,
       f.feature_spec, f.feature_names, {columns}
FROM aggregates a JOIN feature_sets f USING (feature_set_id)
WHERE a.asset_id = ANY(%(assets)s) AND a.period_start >= %(start)s AND a.period_start < %(end)s
  AND (%(spec)s::text IS NULL OR f.feature_spec = %(spec)s)
  AND cardinality(f.feature_names) > 0  -- a period whose every window went unscored carries no features
ORDER BY a.asset_id, a.period_start
"""


@dataclass(frozen=True, slots=True)
class _FeatureRows(_Periods):
    """Aggregate rows of one feature set: which periods, and the asked-for value columns."""

    values: list[tuple[Any, ...]]

    def features(self, index: int) -> npt.NDArray[np.float32]:
        """Value column `index` (a feature array per row) as a matrix, one row per period."""
        return np.array([row[index] for row in self.values], dtype=np.float32).reshape(
            len(self.values), len(self.feature_names)
        )

    def scalars(self, index: int) -> npt.NDArray[np.float32]:
        """Value column `index` (one number per row) as a vector."""
        return np.array([row[index] for row in self.values], dtype=np.float32)


def _feature_rows(
    conn: psycopg.Connection[Any],
    reader: str,
    columns: Sequence[str],
    asset_ids: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    spec: str | None,
) -> _FeatureRows:
    """The aggregates of `asset_ids` in `[start, end)` (rows by asset, then time) with `columns`.

    Raises:
        StorageError: the range holds rows of several feature sets (pass `spec`); `reader` names who
            asked.
    """
    statement = _FEATURE_ROWS.format(columns=", ".join(f"a.{column}" for column in columns))
    rows = conn.execute(
        statement, {"assets": list(asset_ids), "start": start, "end": end, "spec": spec}
    ).fetchall()
    sets = {(row[2], tuple(row[3])) for row in rows}
    if len(sets) > 1:
        raise StorageError(reader, f"{len(sets)} feature sets in the range; pass feature_spec")
    found, names = sets.pop() if sets else (spec or "", ())
    return _FeatureRows(
        feature_spec=found,
        feature_names=names,
        asset_ids=[str(row[0]) for row in rows],
        period_start_ns=np.array([row[1] for row in rows], dtype=np.int64),
        values=[tuple(row[4:]) for row in rows],
    )


def feature_matrix(
    conn: psycopg.Connection[Any],
    asset_ids: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    feature_spec: str | None = None,
) -> FeatureMatrix:
    """The feature means of `asset_ids` over `[start, end)` as a matrix (rows by asset, then time).

    Args:
        conn: an open connection.
        asset_ids: the assets to read.
        start: the first period start included.
        end: the first period start excluded.
        feature_spec: only rows of this feature set; None takes the range's only one.

    Returns:
        The means and each period's mean anomaly score.

    Raises:
        StorageError: the range holds rows of several feature sets (pass `feature_spec`).
    """
    columns = ("feature_mean", "score_mean")
    rows = _feature_rows(conn, "feature_matrix", columns, asset_ids, start=start, end=end, spec=feature_spec)
    return FeatureMatrix(
        feature_spec=rows.feature_spec,
        feature_names=rows.feature_names,
        asset_ids=rows.asset_ids,
        period_start_ns=rows.period_start_ns,
        values=rows.features(0),
        score_mean=rows.scalars(1),
    )


def window_spread(
    conn: psycopg.Connection[Any],
    asset_ids: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    feature_spec: str | None = None,
) -> WindowSpread:
    """Feature means, minima and maxima of assets' aggregates in `[start, end)` (rows by asset, then time).

    `feature_matrix` returns the means only; training also needs the spread of the windows within each
    period, because gateways score single windows, not period means. The arguments, and the
    `StorageError` of a range with several feature sets, are those of `feature_matrix`.

    Returns:
        The three statistics of every period, each a matrix of one row per period.
    """
    columns = ("feature_mean", "feature_min", "feature_max")
    rows = _feature_rows(conn, "training data", columns, asset_ids, start=start, end=end, spec=feature_spec)
    return WindowSpread(
        feature_spec=rows.feature_spec,
        feature_names=rows.feature_names,
        asset_ids=rows.asset_ids,
        period_start_ns=rows.period_start_ns,
        mean=rows.features(0),
        min=rows.features(1),
        max=rows.features(2),
    )


def latest_period_end(conn: psycopg.Connection[Any]) -> datetime | None:
    """The end of the newest stored aggregate of any asset, or None when nothing is stored.

    One index probe per asset (`aggregates_asset_time`), not a scan of the time series.
    """
    row = conn.execute(
        "SELECT max(latest.period_end) FROM assets a CROSS JOIN LATERAL ("
        "SELECT period_end FROM aggregates g WHERE g.asset_id = a.asset_id "
        "ORDER BY g.period_start DESC LIMIT 1) AS latest"
    ).fetchone()
    return row[0] if row and row[0] is not None else None
