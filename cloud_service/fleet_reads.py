"""Reads the dashboard needs beyond `cloud_service.queries`: alert history, feature series, forecast
history and which model version scored which period, per asset.

Functions take an open connection, only read, and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from cloud_service.forecasting.repository import ForecastRecord
from cloud_service.queries import AlertRecord
from cloud_service.rollups import BUCKET_ORIGIN, align_down, align_up
from shared.errors import ContractError

__all__ = [
    "FeaturePoint",
    "ModelPeriod",
    "asset_alerts",
    "asset_feature_names",
    "feature_series",
    "forecast_history",
    "last_alerts",
    "model_periods",
]

_ALERT_COLUMNS = (
    "gateway_id, alert_id, asset_id, state, severity, raised_at, cleared_at, score::float8 AS score, "
    "threshold::float8 AS threshold, model_version, message, acknowledged_by, acknowledged_at, comment"
)


def last_alerts(conn: psycopg.Connection[Any]) -> dict[str, AlertRecord]:
    """Each asset's most recently raised alert (whatever its state), by asset id."""
    with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        rows = cur.execute(
            f"SELECT DISTINCT ON (asset_id) {_ALERT_COLUMNS} FROM alerts "
            "ORDER BY asset_id, raised_at DESC NULLS LAST, updated_at DESC"
        ).fetchall()
    return {row.asset_id: row for row in rows}


def asset_alerts(
    conn: psycopg.Connection[Any], asset_id: str, *, start: datetime, end: datetime
) -> list[AlertRecord]:
    """An asset's alerts raised within `[start, end)`, oldest first."""
    with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        return cur.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE asset_id = %s AND raised_at >= %s AND raised_at < %s "
            "ORDER BY raised_at",
            (asset_id, start, end),
        ).fetchall()


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
    """One bucket of a feature's series: the mean of its period means, and its lowest and highest."""

    bucket: datetime
    mean: float
    low: float
    high: float


_FEATURE_SERIES = """
SELECT date_bin(%(resolution)s, a.period_start, %(origin)s) AS bucket,
       avg(a.feature_mean[array_position(f.feature_names, %(feature)s)])::float8 AS mean,
       min(a.feature_min[array_position(f.feature_names, %(feature)s)])::float8 AS low,
       max(a.feature_max[array_position(f.feature_names, %(feature)s)])::float8 AS high
FROM aggregates a JOIN feature_sets f USING (feature_set_id)
WHERE a.asset_id = %(asset_id)s AND a.period_start >= %(start)s AND a.period_start < %(end)s
  AND %(feature)s = ANY(f.feature_names)
GROUP BY 1 ORDER BY 1
"""


def feature_series(
    conn: psycopg.Connection[Any],
    asset_id: str,
    feature: str,
    *,
    start: datetime,
    end: datetime,
    resolution: timedelta,
) -> list[FeaturePoint]:
    """One feature of an asset over `[start, end)` (widened to whole buckets) in buckets of `resolution`.

    Raises:
        ContractError: a resolution that is not positive.
    """
    if resolution <= timedelta(0):
        raise ContractError("resolution", resolution, "a positive duration")
    params = {
        "resolution": resolution,
        "origin": BUCKET_ORIGIN,
        "asset_id": asset_id,
        "feature": feature,
        "start": align_down(start, resolution),
        "end": align_up(end, resolution),
    }
    with conn.cursor(row_factory=class_row(FeaturePoint)) as cur:
        return [p for p in cur.execute(_FEATURE_SERIES, params).fetchall() if p.mean is not None]


def forecast_history(
    conn: psycopg.Connection[Any], asset_id: str, *, start: datetime, end: datetime
) -> list[ForecastRecord]:
    """The asset's forecasts computed within `[start, end)`, oldest first."""
    with conn.cursor(row_factory=class_row(ForecastRecord)) as cur:
        return cur.execute(
            "SELECT asset_id, computed_at, as_of, rul_h, rul_low_h, rul_high_h, p_fail, horizon_h, "
            "short_history, forecaster_version FROM forecasts "
            "WHERE asset_id = %s AND computed_at >= %s AND computed_at < %s ORDER BY computed_at",
            (asset_id, start, end),
        ).fetchall()


@dataclass(frozen=True, slots=True)
class ModelPeriod:
    """A stretch of an asset's aggregates scored by one model version."""

    model_version: str
    model_kind: str
    first_start: datetime
    last_end: datetime
    n_periods: int


def model_periods(
    conn: psycopg.Connection[Any], asset_id: str, *, start: datetime, end: datetime
) -> list[ModelPeriod]:
    """Which model version scored the asset's periods within `[start, end)`, in order of first use."""
    with conn.cursor(row_factory=class_row(ModelPeriod)) as cur:
        return cur.execute(
            "SELECT model_version, model_kind, min(period_start) AS first_start, "
            "max(period_end) AS last_end, count(*) AS n_periods FROM aggregates "
            "WHERE asset_id = %s AND period_start >= %s AND period_start < %s "
            "GROUP BY model_version, model_kind ORDER BY first_start",
            (asset_id, start, end),
        ).fetchall()
