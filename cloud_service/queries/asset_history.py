"""An asset's history as the asset page draws it: feature series and which model version scored which
period, read from the aggregates for short ranges and from their hourly rollups for long ones.

Feature means over long ranges come from `forecast_hourly` (the hourly per-asset feature means the
forecasting jobs maintain) up to where it was last refreshed, and from the raw aggregates after that; the
model periods of long ranges from `rollup_hourly`, one lookup per hour. Functions take an open
connection, only read, and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row

from cloud_service.forecasting.repository import hourly_refreshed_through
from cloud_service.rollups import BUCKET_ORIGIN, align_down, align_up
from shared.errors import ContractError

__all__ = [
    "DEFAULT_ROLLUP_FROM",
    "FeaturePoint",
    "ModelPeriod",
    "asset_feature_names",
    "feature_series",
    "model_periods",
]

# Ranges at least this long, at a whole-hour resolution, read the hourly rollups (as `asset_series`).
DEFAULT_ROLLUP_FROM = timedelta(days=2)
_HOUR = timedelta(hours=1)


def asset_feature_names(conn: psycopg.Connection[Any], asset_id: str) -> list[str]:
    """The feature names of the asset's latest aggregate (empty when it has none)."""
    row = conn.execute(
        "SELECT f.feature_names FROM aggregates a JOIN feature_sets f USING (feature_set_id) "
        "WHERE a.asset_id = %s ORDER BY a.period_start DESC LIMIT 1",
        (asset_id,),
    ).fetchone()
    return [] if row is None else [str(name) for name in row[0]]


@dataclass(frozen=True, slots=True)
class FeaturePoint:
    """One bucket of a feature's series: the mean of its period means, and their lowest and highest
    (None where the bucket was read from the hourly rollup, which keeps means only)."""

    bucket: datetime
    mean: float
    low: float | None
    high: float | None


_FEATURE_RAW = """
SELECT date_bin(%(resolution)s, a.period_start, %(origin)s) AS bucket,
       avg(a.feature_mean[array_position(f.feature_names, %(feature)s)])::float8 AS mean,
       min(a.feature_min[array_position(f.feature_names, %(feature)s)])::float8 AS low,
       max(a.feature_max[array_position(f.feature_names, %(feature)s)])::float8 AS high
FROM aggregates a JOIN feature_sets f USING (feature_set_id)
WHERE a.asset_id = %(asset_id)s AND a.period_start >= %(start)s AND a.period_start < %(end)s
  AND %(feature)s = ANY(f.feature_names)
GROUP BY 1 ORDER BY 1
"""
# Hourly means weighted by their periods, so a bucket's mean is the mean over all its periods.
_FEATURE_HOURLY = """
SELECT date_bin(%(resolution)s, hour, %(origin)s) AS bucket,
       (sum(means[array_position(names, %(feature)s)] * n_periods) / sum(n_periods))::float8 AS mean,
       NULL::float8 AS low, NULL::float8 AS high
FROM forecast_hourly
WHERE asset_id = %(asset_id)s AND hour >= %(start)s AND hour < %(end)s AND %(feature)s = ANY(names)
GROUP BY 1 ORDER BY 1
"""


def _read_points(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> list[FeaturePoint]:
    if params["end"] <= params["start"]:
        return []
    with conn.cursor(row_factory=class_row(FeaturePoint)) as cur:
        return [p for p in cur.execute(statement, params).fetchall() if p.mean is not None]


def feature_series(
    conn: psycopg.Connection[Any],
    asset_id: str,
    feature: str,
    *,
    start: datetime,
    end: datetime,
    resolution: timedelta,
    source: Literal["auto", "raw"] = "auto",
    rollup_from: timedelta = DEFAULT_ROLLUP_FROM,
) -> list[FeaturePoint]:
    """One feature of an asset over `[start, end)` (widened to whole buckets) in buckets of `resolution`.

    With `source="auto"`, a range of at least `rollup_from` at a whole-hour resolution reads the hourly
    rollup up to its last refresh (means only) and the raw aggregates after it; other ranges, or
    `source="raw"`, read the raw aggregates (means, lowest and highest).

    Raises:
        ContractError: a resolution that is not positive.
    """
    if resolution <= timedelta(0):
        raise ContractError("resolution", resolution, "a positive duration")
    lower, upper = align_down(start, resolution), align_up(end, resolution)
    params: dict[str, Any] = {"resolution": resolution, "origin": BUCKET_ORIGIN, "asset_id": asset_id}
    params["feature"] = feature
    use_rollup = source == "auto" and upper - lower >= rollup_from and resolution % _HOUR == timedelta(0)
    through = hourly_refreshed_through(conn) if use_rollup else None
    if through is None:
        return _read_points(conn, _FEATURE_RAW, {**params, "start": lower, "end": upper})
    split = min(max(align_down(through, resolution), lower), upper)  # buckets never straddle the split
    return _read_points(conn, _FEATURE_HOURLY, {**params, "start": lower, "end": split}) + _read_points(
        conn, _FEATURE_RAW, {**params, "start": split, "end": upper}
    )


@dataclass(frozen=True, slots=True)
class ModelPeriod:
    """A stretch of an asset's aggregates scored by one model version."""

    model_version: str
    model_kind: str
    first_start: datetime
    last_end: datetime
    n_periods: int


# Runs of consecutive periods of one model (gaps and islands: the two row numbers differ by a constant
# within a run).
_RUNS = """
, runs AS (
    SELECT *, row_number() OVER (ORDER BY first_start)
              - row_number() OVER (PARTITION BY model_version, model_kind ORDER BY first_start) AS run
    FROM scored
)
SELECT model_version, model_kind, min(first_start) AS first_start, max(last_end) AS last_end,
       sum(n_periods)::bigint AS n_periods
FROM runs GROUP BY model_version, model_kind, run ORDER BY first_start
"""
_PERIODS_RAW = (
    """
WITH scored AS (
    SELECT model_version, model_kind, period_start AS first_start, period_end AS last_end, 1 AS n_periods
    FROM aggregates WHERE asset_id = %(asset_id)s AND period_start >= %(start)s AND period_start < %(end)s
)"""
    + _RUNS
)
# An hour is attributed to the model that scored its first period: one index lookup per hour.
_PERIODS_HOURLY = (
    """
WITH scored AS (
    SELECT m.model_version, m.model_kind, h.bucket AS first_start, h.bucket + INTERVAL '1 hour' AS last_end,
           h.n_periods
    FROM rollup_hourly h
    CROSS JOIN LATERAL (
        SELECT model_version, model_kind FROM aggregates a
        WHERE a.asset_id = h.asset_id AND a.period_start >= h.bucket
          AND a.period_start < h.bucket + INTERVAL '1 hour'
        ORDER BY a.period_start LIMIT 1
    ) m
    WHERE h.asset_id = %(asset_id)s AND h.bucket >= %(start)s AND h.bucket < %(end)s
)"""
    + _RUNS
)


def model_periods(
    conn: psycopg.Connection[Any],
    asset_id: str,
    *,
    start: datetime,
    end: datetime,
    rollup_from: timedelta = DEFAULT_ROLLUP_FROM,
) -> list[ModelPeriod]:
    """Which model version scored the asset's periods within `[start, end)`: each uninterrupted run of
    one version, in order.

    Ranges of at least `rollup_from` are read at hour resolution from the hourly rollup (each hour counts
    for the version that scored its first period); shorter ones period by period.
    """
    statement = _PERIODS_HOURLY if end - start >= rollup_from else _PERIODS_RAW
    params = {"asset_id": asset_id, "start": start, "end": end}
    if statement is _PERIODS_HOURLY:
        params = {**params, "start": align_down(start, _HOUR), "end": align_up(end, _HOUR)}
    with conn.cursor(row_factory=class_row(ModelPeriod)) as cur:
        return cur.execute(statement, params).fetchall()
