"""Every SQL statement of the live forecaster: hourly history in, forecasters and forecasts out.

Tables (migration `0200_forecasts.sql`): `forecasters` (versioned fitted models, at most one `active`) and
`forecasts` (per asset and recompute run). History is read from `aggregates`, `feature_sets` and
`maintenance_events`. Functions take an open connection; writes commit their own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import class_row

from cloud_service.schema import Backend, current_backend

__all__ = [
    "ForecastRecord",
    "ForecasterRecord",
    "HourlyRow",
    "StoredForecaster",
    "active_forecaster",
    "delete_forecasts_before",
    "hourly_history",
    "import_hourly_history",
    "insert_forecaster",
    "insert_forecasts",
    "latest_forecasts",
    "list_forecasters",
    "stored_events",
]

_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class HourlyRow:
    """One asset's aggregates over one hour: feature means by name, score mean and max, last period end."""

    asset_id: str
    hour: int  # hours since 1970-01-01 UTC
    score_mean: float
    score_max: float
    last_end: datetime
    names: list[str]
    values: list[float]


_HOURLY = """
WITH a AS (
    SELECT asset_id, floor(extract(epoch FROM period_start) / 3600)::bigint AS hour,
           feature_set_id, feature_mean, score_mean, score_max, period_end
    FROM aggregates
    WHERE period_start >= %(start)s AND period_start < %(end)s
),
scores AS (
    SELECT asset_id, hour, avg(score_mean)::float8 AS score_mean, max(score_max)::float8 AS score_max,
           max(period_end) AS last_end
    FROM a GROUP BY asset_id, hour
),
feats AS (
    SELECT a.asset_id, a.hour, f.feature_names[u.i] AS name, avg(u.v)::float8 AS value
    FROM a JOIN feature_sets f USING (feature_set_id)
    CROSS JOIN LATERAL unnest(a.feature_mean) WITH ORDINALITY AS u (v, i)
    WHERE %(names)s::text[] IS NULL OR f.feature_names[u.i] = ANY(%(names)s::text[])
    GROUP BY 1, 2, 3
),
packed AS (
    SELECT asset_id, hour, array_agg(name ORDER BY name) AS names, array_agg(value ORDER BY name) AS vals
    FROM feats GROUP BY asset_id, hour
)
SELECT s.asset_id, s.hour, s.score_mean, s.score_max, s.last_end,
       coalesce(p.names, '{}'::text[]), coalesce(p.vals, '{}'::float8[])
FROM scores s LEFT JOIN packed p USING (asset_id, hour)
ORDER BY s.asset_id, s.hour
"""


def hourly_history(
    conn: psycopg.Connection[Any], *, start: datetime, end: datetime, names: Sequence[str] | None = None
) -> list[HourlyRow]:
    """Per asset and hour of `[start, end)`: the mean of each feature mean, and the score mean and max.

    Args:
        names: only these features (None: every feature stored).
    """
    params = {"start": start, "end": end, "names": list(names) if names is not None else None}
    return [
        HourlyRow(str(r[0]), int(r[1]), float(r[2]), float(r[3]), r[4], list(r[5]), [float(v) for v in r[6]])
        for r in conn.execute(_HOURLY, params)
    ]


def stored_events(
    conn: psycopg.Connection[Any], *, start: datetime, end: datetime
) -> list[tuple[str, datetime, str]]:
    """Failure and maintenance events in `[start, end)`: (asset_id, ts, event), by asset and time."""
    rows = conn.execute(
        "SELECT asset_id, ts, event FROM maintenance_events WHERE ts >= %s AND ts < %s ORDER BY asset_id, ts",
        (start, end),
    ).fetchall()
    return [(str(a), ts, str(event)) for a, ts, event in rows]


@dataclass(frozen=True, slots=True)
class ForecasterRecord:
    """What a refit stores: the training summary and the model directory's two files."""

    train_start: datetime
    train_end: datetime
    n_assets: int
    n_rows: int
    n_failures: int
    horizon_h: float
    columns: list[str]
    cv_metrics: dict[str, Any]
    fit_s: float
    metadata_json: str
    estimators: bytes


def insert_forecaster(conn: psycopg.Connection[Any], record: ForecasterRecord) -> int:
    """Store a fitted forecaster as the active one (the previous active one is retired); its version."""
    with conn.transaction():
        conn.execute("UPDATE forecasters SET status = 'retired' WHERE status = 'active'")
        row = conn.execute(
            "INSERT INTO forecasters (train_start, train_end, n_assets, n_rows, n_failures, horizon_h, "
            "columns, cv_metrics, fit_s, metadata_json, estimators, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, 'active') RETURNING version",
            (
                record.train_start,
                record.train_end,
                record.n_assets,
                record.n_rows,
                record.n_failures,
                record.horizon_h,
                record.columns,
                json.dumps(record.cv_metrics, default=str),
                record.fit_s,
                record.metadata_json,
                record.estimators,
            ),
        ).fetchone()
    if row is None:  # pragma: no cover - RETURNING always yields the row
        raise psycopg.DataError("forecaster version not returned")
    return int(row[0])


@dataclass(frozen=True, slots=True)
class StoredForecaster:
    """The active forecaster as stored: its version and model files."""

    version: int
    fitted_at: datetime
    horizon_h: float
    metadata_json: str
    estimators: bytes


def active_forecaster(conn: psycopg.Connection[Any]) -> StoredForecaster | None:
    """The forecaster recompute uses (None before the first successful refit)."""
    row = conn.execute(
        "SELECT version, fitted_at, horizon_h, metadata_json, estimators FROM forecasters "
        "WHERE status = 'active'"
    ).fetchone()
    if row is None:
        return None
    return StoredForecaster(int(row[0]), row[1], float(row[2]), str(row[3]), bytes(row[4]))


@dataclass(frozen=True, slots=True)
class ForecasterSummary:
    """A stored forecaster without its model files."""

    version: int
    fitted_at: datetime
    train_start: datetime
    train_end: datetime
    n_assets: int
    n_rows: int
    n_failures: int
    horizon_h: float
    fit_s: float
    status: str
    cv_metrics: dict[str, Any]


def list_forecasters(conn: psycopg.Connection[Any]) -> list[ForecasterSummary]:
    """Every stored forecaster, newest first."""
    with conn.cursor(row_factory=class_row(ForecasterSummary)) as cur:
        return cur.execute(
            "SELECT version, fitted_at, train_start, train_end, n_assets, n_rows, n_failures, horizon_h, "
            "fit_s, status, cv_metrics FROM forecasters ORDER BY version DESC"
        ).fetchall()


@dataclass(frozen=True, slots=True)
class ForecastRecord:
    """One asset's forecast: RUL (hours) with its interval, P(failure within horizon), and provenance."""

    asset_id: str
    computed_at: datetime
    as_of: datetime
    rul_h: float
    rul_low_h: float
    rul_high_h: float
    p_fail: float
    horizon_h: float
    short_history: bool
    forecaster_version: int


_FORECAST_COLUMNS = (
    "asset_id, computed_at, as_of, rul_h, rul_low_h, rul_high_h, p_fail, horizon_h, short_history, "
    "forecaster_version"
)


def insert_forecasts(conn: psycopg.Connection[Any], forecasts: Sequence[ForecastRecord]) -> int:
    """Store forecasts in one transaction; the number stored."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO forecasts ({_FORECAST_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (asset_id, computed_at) DO NOTHING",
            [
                (
                    f.asset_id,
                    f.computed_at,
                    f.as_of,
                    f.rul_h,
                    f.rul_low_h,
                    f.rul_high_h,
                    f.p_fail,
                    f.horizon_h,
                    f.short_history,
                    f.forecaster_version,
                )
                for f in forecasts
            ],
        )
    return len(forecasts)


def delete_forecasts_before(conn: psycopg.Connection[Any], before: datetime) -> int:
    """Delete forecasts computed before `before`; the number deleted."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM forecasts WHERE computed_at < %s", (before,))
    return cur.rowcount


def latest_forecasts(conn: psycopg.Connection[Any]) -> list[ForecastRecord]:
    """Each asset's most recent forecast, by asset id: what the dashboard shows."""
    with conn.cursor(row_factory=class_row(ForecastRecord)) as cur:
        return cur.execute(
            f"SELECT DISTINCT ON (asset_id) {_FORECAST_COLUMNS} FROM forecasts "
            "ORDER BY asset_id, computed_at DESC"
        ).fetchall()


def import_hourly_history(
    conn: psycopg.Connection[Any],
    *,
    asset_ids: Sequence[str],
    hours: npt.NDArray[np.int64],
    features: npt.NDArray[np.float64],
    feature_names: Sequence[str],
    scores: npt.NDArray[np.float64],
    events: Sequence[tuple[str, int, str]] = (),
    feature_spec: str = "import/1",
    gateway_id: str = "import",
) -> int:
    """Store a history given per asset and hour as one-hour aggregates plus events (backfill, tests).

    Args:
        asset_ids, hours, features, scores: one row each: asset, hour since 1970 UTC, feature means
            aligned with `feature_names`, and the score (stored as both its mean and its max).
        events: (asset_id, hour, "failure" | "maintenance").

    Returns:
        The number of aggregate rows written (rows already there are skipped).
    """
    starts = [datetime.fromtimestamp(int(h) * 3600, tz=UTC) for h in hours]
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO feature_sets (feature_spec, feature_names) VALUES (%s, %s) "
            "ON CONFLICT (feature_spec, feature_names) DO UPDATE SET feature_spec = EXCLUDED.feature_spec "
            "RETURNING feature_set_id",
            (feature_spec, list(feature_names)),
        ).fetchone()
        if row is None:  # pragma: no cover - RETURNING always yields the row
            raise psycopg.DataError("feature set not returned")
        if current_backend(conn) is Backend.POSTGRES:
            # Any instant of a week picks its partition: one call per week touched.
            weeks = {(s - timedelta(days=s.weekday())).replace(hour=0) for s in starts}
            for week_start in sorted(weeks):
                conn.execute("SELECT forewarn_ensure_partition('aggregates', %s)", (week_start,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO aggregates (gateway_id, seq, asset_id, period_start, period_end, "
                "feature_set_id, feature_mean, feature_min, feature_max, score_mean, score_max, threshold, "
                "n_windows, n_above, model_version, model_kind) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, 1, 0, 'import', 'import') "
                "ON CONFLICT DO NOTHING",
                [
                    (gateway_id, i, asset_ids[i], start, start + _HOUR, row[0], vals, vals, vals, s, s)
                    for i, (start, vals, s) in enumerate(
                        zip(starts, features.tolist(), scores.tolist(), strict=True)
                    )
                ],
            )
            cur.executemany(
                "INSERT INTO maintenance_events (asset_id, ts, event, source) VALUES (%s, %s, %s, 'import') "
                "ON CONFLICT DO NOTHING",
                [(a, datetime.fromtimestamp(h * 3600, tz=UTC), kind) for a, h, kind in events],
            )
    return len(starts)
