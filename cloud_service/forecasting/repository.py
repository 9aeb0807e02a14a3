"""Every SQL statement of the live forecaster: hourly history in, forecasters and forecasts out.

Tables (migration `0200_forecasts.sql`): `forecast_hourly` (the hourly input, kept from `aggregates`),
`forecasters` (versioned fitted models, at most one `active`) and `forecasts` (per asset and recompute
run). History comes from `aggregates`, `feature_sets` and `maintenance_events`. Functions take an open
connection; writes commit their own transaction.
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
    "delete_hourly_before",
    "forecasts_computed_at",
    "hourly_history",
    "hourly_refreshed_through",
    "import_hourly_history",
    "insert_forecaster",
    "insert_forecasts",
    "latest_forecasts",
    "list_forecasters",
    "refresh_hourly",
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


_HOURLY_LOCK = 0x4657_464F_5245_4341  # "FWFORECA": serialises refreshes of forecast_hourly
_THROUGH_KEY = "forecast_hourly_through"  # forewarn_meta: the end of the latest refresh (ISO 8601)

# One pass over the range: positional means (a NULL past a shorter feature set's end is ignored by avg).
_HOURLY_FROM_AGGREGATES = """
SELECT asset_id, floor(extract(epoch FROM period_start) / 3600)::bigint AS hour, feature_set_id,
       ARRAY[{positions}]::float8[], avg(score_mean)::float8, max(score_max)::float8, count(*),
       max(period_end)
FROM aggregates
WHERE period_start >= %(start)s AND period_start < %(end)s
GROUP BY 1, 2, 3
"""


def refresh_hourly(conn: psycopg.Connection[Any], *, start: datetime, end: datetime) -> int:
    """Recompute `forecast_hourly` for the whole hours of `[start, end)` from `aggregates`; rows written.

    One transaction, serialised with other refreshes by an advisory lock. Feature means are averaged by
    position per feature set (no unnesting: about 20x faster), then merged by name, weighted by periods.
    """
    start = _hour_floor(start)
    end = _hour_floor(end)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_HOURLY_LOCK,))
        sets = {
            int(i): list(n) for i, n in conn.execute("SELECT feature_set_id, feature_names FROM feature_sets")
        }
        width = max((len(n) for n in sets.values()), default=0)
        positions = ", ".join(f"avg(feature_mean[{i}])" for i in range(1, width + 1)) or "NULL"
        rows = conn.execute(
            _HOURLY_FROM_AGGREGATES.format(positions=positions),  # positions: generated numbers only
            {"start": start, "end": end},
        ).fetchall()
        merged = _merge_feature_sets(rows, sets)
        conn.execute("DELETE FROM forecast_hourly WHERE hour >= %s AND hour < %s", (start, end))
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY forecast_hourly (asset_id, hour, names, means, score_mean, score_max, n_periods, "
                "last_end) FROM STDIN"
            ) as copy,
        ):
            for row in merged:
                copy.write_row(row)
        _advance_refreshed_through(conn, end)
    return len(merged)


def _advance_refreshed_through(conn: psycopg.Connection[Any], end: datetime) -> None:
    """Record the refresh as reaching `end`, but never past the newest stored aggregate's hour.

    Data that has not arrived yet is not summarised: a replay (or a cloud started before its gateways)
    stores old hours after a refresh at the wall clock, and a watermark at `end` would skip them for good.
    """
    # the queries package re-exports this module, so a top-level import would be circular
    from cloud_service.queries.aggregates import latest_period_end  # noqa: PLC0415

    newest = latest_period_end(conn)
    if newest is None:
        return
    reached = min(end, _hour_floor(newest))
    previous = hourly_refreshed_through(conn)
    if previous is None or reached > previous:
        conn.execute(
            "INSERT INTO forewarn_meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (_THROUGH_KEY, reached.isoformat()),
        )


def _hour_floor(ts: datetime) -> datetime:
    return datetime.fromtimestamp(int(ts.timestamp()) // 3600 * 3600, tz=UTC)


def _merge_feature_sets(rows: Sequence[tuple[Any, ...]], sets: dict[int, list[str]]) -> list[tuple[Any, ...]]:
    """Rows per (asset, hour, feature set) merged into one per (asset, hour), features by name."""
    groups: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault((str(row[0]), int(row[1])), []).append(row)
    merged = []
    for (asset_id, hour), parts in sorted(groups.items()):
        sums: dict[str, float] = {}
        weights: dict[str, int] = {}
        n_total = sum(int(p[6]) for p in parts)
        for _, _, set_id, means, _, _, n, _ in parts:
            for name, value in zip(sets.get(int(set_id), []), means, strict=False):
                if value is not None:
                    sums[name] = sums.get(name, 0.0) + float(value) * int(n)
                    weights[name] = weights.get(name, 0) + int(n)
        names = sorted(sums)
        merged.append(
            (
                asset_id,
                datetime.fromtimestamp(hour * 3600, tz=UTC),
                names,
                [sums[name] / weights[name] for name in names],
                sum(float(p[4]) * int(p[6]) for p in parts) / n_total,
                max(float(p[5]) for p in parts),
                n_total,
                max(p[7] for p in parts),
            )
        )
    return merged


def hourly_refreshed_through(conn: psycopg.Connection[Any]) -> datetime | None:
    """Up to when `forecast_hourly` was last refreshed (None: never)."""
    row = conn.execute("SELECT value FROM forewarn_meta WHERE key = %s", (_THROUGH_KEY,)).fetchone()
    return datetime.fromisoformat(row[0]) if row else None


def delete_hourly_before(conn: psycopg.Connection[Any], before: datetime) -> int:
    """Drop `forecast_hourly` rows older than `before`; the number deleted."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM forecast_hourly WHERE hour < %s", (before,))
    return cur.rowcount


def hourly_history(
    conn: psycopg.Connection[Any], *, start: datetime, end: datetime, names: Sequence[str] | None = None
) -> list[HourlyRow]:
    """Per asset and hour of `[start, end)` from `forecast_hourly` (refresh it first), by asset and hour.

    Args:
        names: only these features (None: every feature stored).
    """
    wanted = set(names) if names is not None else None
    result = []
    for r in conn.execute(
        "SELECT asset_id, hour, score_mean, score_max, last_end, names, means FROM forecast_hourly "
        "WHERE hour >= %s AND hour < %s ORDER BY asset_id, hour",
        (start, end),
    ):
        pairs = [(n, float(v)) for n, v in zip(r[5], r[6], strict=True) if wanted is None or n in wanted]
        result.append(
            HourlyRow(
                str(r[0]),
                int(r[1].timestamp()) // 3600,
                float(r[2]),
                float(r[3]),
                r[4],
                [n for n, _ in pairs],
                [v for _, v in pairs],
            )
        )
    return result


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


def forecasts_computed_at(conn: psycopg.Connection[Any], computed_at: datetime) -> list[ForecastRecord]:
    """The forecasts of the recompute run at `computed_at`, by asset id."""
    with conn.cursor(row_factory=class_row(ForecastRecord)) as cur:
        return cur.execute(
            f"SELECT {_FORECAST_COLUMNS} FROM forecasts WHERE computed_at = %s ORDER BY asset_id",
            (computed_at,),
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
