"""Every read (and the few edits) the dashboard, the training jobs and `forewarn cloud status` make.

No SQL lives anywhere else outside the write path and the migrations. Functions take an open connection;
edits commit their own transaction. The same functions serve plain PostgreSQL and TimescaleDB: the
rollups have the same columns on both (tables there, continuous aggregates here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import class_row

from cloud_service.rollups import BUCKET_ORIGIN, align_down, align_up
from shared.errors import ContractError, StorageError

__all__ = [
    "AlertRecord",
    "AssetStatus",
    "FeatureMatrix",
    "GatewayHealth",
    "IngestStatus",
    "Series",
    "SeriesPoint",
    "StoredCounts",
    "acknowledge_alert",
    "asset_series",
    "feature_matrix",
    "fleet_status",
    "gateway_health",
    "ingest_status",
    "open_alerts",
    "stored_counts",
    "update_asset",
    "upsert_site",
]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CRITICALITIES = ("low", "normal", "high", "critical")


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """One asset as the fleet overview shows it."""

    asset_id: str
    gateway_id: str | None
    site_id: str | None
    asset_type: str
    line: str
    criticality: str
    last_period_end: datetime | None
    last_score_mean: float | None
    last_score_max: float | None
    threshold: float | None
    open_alerts: int
    gateway_state: str | None


_FLEET = """
SELECT a.asset_id, a.gateway_id, a.site_id, a.asset_type, a.line, a.criticality,
       last.period_end AS last_period_end, g.score_mean AS last_score_mean, g.score_max AS last_score_max,
       g.threshold,
       (SELECT count(*) FROM alerts al WHERE al.asset_id = a.asset_id AND al.state <> 'cleared')
           AS open_alerts,
       gw.state AS gateway_state
FROM assets a
LEFT JOIN LATERAL (
    SELECT period_start, period_end FROM aggregates
    WHERE asset_id = a.asset_id ORDER BY period_start DESC LIMIT 1
) last ON TRUE
LEFT JOIN LATERAL (
    SELECT score_mean, score_max, threshold FROM aggregates
    WHERE asset_id = a.asset_id AND n_windows > 0
      AND period_start > last.period_start - interval '1 day' AND period_start <= last.period_start
    ORDER BY period_start DESC LIMIT 1
) g ON TRUE
LEFT JOIN gateways gw ON gw.gateway_id = a.gateway_id
ORDER BY a.asset_id
"""


def fleet_status(conn: psycopg.Connection[Any]) -> list[AssetStatus]:
    """Every asset with its latest score, open alert count and gateway state.

    The score is the latest period's that scored windows (within a day of the asset's last period): a
    period without windows (a sensor gap, a machine stopped) has no score, not a score of 0. None if no
    period of that day scored any window.
    """
    with conn.cursor(row_factory=class_row(AssetStatus)) as cur:
        return cur.execute(_FLEET).fetchall()


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
    if span < rollup_from or resolution % HOUR:
        return "raw"
    return "rollup_daily" if resolution % DAY == timedelta(0) else "rollup_hourly"


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
    whole-hour resolution are read from the rollups (refreshed by the upkeep timer on plain PostgreSQL,
    by TimescaleDB's policies there), shorter ones from the raw aggregates; both give the same answer on
    refreshed data.

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
        if resolution % HOUR:
            raise ContractError("resolution", resolution, "a whole number of hours to read from rollups")
        chosen = _choose_source(resolution, upper - lower, timedelta(0))
    statement = _SERIES_RAW if chosen == "raw" else _SERIES_ROLLUP.format(table=chosen)
    params = {
        "resolution": resolution,
        "origin": BUCKET_ORIGIN,
        "asset_id": asset_id,
        "start": lower,
        "end": upper,
    }
    with conn.cursor(row_factory=class_row(SeriesPoint)) as cur:
        points = cur.execute(statement, params).fetchall()
    return Series(asset_id, lower, upper, resolution, chosen, points)


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Aggregated feature means of assets over a range, one row per period, for training."""

    feature_spec: str
    feature_names: tuple[str, ...]
    asset_ids: list[str]
    period_start_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    score_mean: npt.NDArray[np.float32]


_FEATURE_ROWS = """
SELECT a.asset_id, (extract(epoch FROM a.period_start) * 1000000)::bigint * 1000 AS period_start_ns,
       a.feature_mean, a.score_mean, f.feature_spec, f.feature_names
FROM aggregates a JOIN feature_sets f USING (feature_set_id)
WHERE a.asset_id = ANY(%(assets)s) AND a.period_start >= %(start)s AND a.period_start < %(end)s
  AND (%(spec)s::text IS NULL OR f.feature_spec = %(spec)s)
ORDER BY a.asset_id, a.period_start
"""


def feature_matrix(
    conn: psycopg.Connection[Any],
    asset_ids: list[str],
    *,
    start: datetime,
    end: datetime,
    feature_spec: str | None = None,
) -> FeatureMatrix:
    """The feature means of `asset_ids` over `[start, end)` as a matrix (rows by asset, then time).

    Raises:
        StorageError: the range holds rows of several feature sets (pass `feature_spec`), or none.
    """
    rows = conn.execute(
        _FEATURE_ROWS, {"assets": asset_ids, "start": start, "end": end, "spec": feature_spec}
    ).fetchall()
    sets = {(row[4], tuple(row[5])) for row in rows}
    if len(sets) > 1:
        raise StorageError("feature_matrix", f"{len(sets)} feature sets in the range; pass feature_spec")
    spec, names = sets.pop() if sets else (feature_spec or "", ())
    return FeatureMatrix(
        feature_spec=spec,
        feature_names=names,
        asset_ids=[row[0] for row in rows],
        period_start_ns=np.array([row[1] for row in rows], dtype=np.int64),
        values=np.array([row[2] for row in rows], dtype=np.float32).reshape(len(rows), len(names)),
        score_mean=np.array([row[3] for row in rows], dtype=np.float32),
    )


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert and where it is in its lifecycle."""

    gateway_id: str
    alert_id: str
    asset_id: str
    state: str
    severity: str
    raised_at: datetime | None
    cleared_at: datetime | None
    score: float | None
    threshold: float | None
    model_version: str
    message: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    comment: str


_ALERT_COLUMNS = """gateway_id, alert_id, asset_id, state, severity, raised_at, cleared_at, score, threshold,
                    model_version, message, acknowledged_by, acknowledged_at, comment"""


def open_alerts(conn: psycopg.Connection[Any], *, asset_id: str | None = None) -> list[AlertRecord]:
    """Alerts not yet cleared (open or acknowledged), newest first; of one asset if given."""
    with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        return cur.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE state <> 'cleared' "
            "AND (%(asset)s::text IS NULL OR asset_id = %(asset)s) ORDER BY raised_at DESC NULLS LAST",
            {"asset": asset_id},
        ).fetchall()


def acknowledge_alert(
    conn: psycopg.Connection[Any], *, gateway_id: str, alert_id: str, by: str, comment: str = ""
) -> bool:
    """Mark an open alert acknowledged by `by`, with a comment; False if it is not open."""
    if not by.strip():
        raise ContractError("by", by, "the name of whoever acknowledges")
    with conn.transaction():
        cur = conn.execute(
            "UPDATE alerts SET state = 'acknowledged', acknowledged_by = %s, acknowledged_at = now(), "
            "comment = %s, updated_at = now() WHERE gateway_id = %s AND alert_id = %s AND state = 'open'",
            (by, comment, gateway_id, alert_id),
        )
        return cur.rowcount == 1


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    """A gateway's latest heartbeat, and whether it is overdue."""

    gateway_id: str
    site_id: str | None
    state: str
    status_ts: datetime | None
    status_received_at: datetime | None
    is_stale: bool
    uptime_s: float | None
    cpu_percent: float | None
    memory_bytes: int | None
    metrics: dict[str, float]
    model_versions: dict[str, str]


def gateway_health(
    conn: psycopg.Connection[Any],
    *,
    stale_after: timedelta = timedelta(minutes=2),
    now: datetime | None = None,
) -> list[GatewayHealth]:
    """Every gateway's latest state; stale when no heartbeat arrived within `stale_after`."""
    now = now or datetime.now(UTC)
    with conn.cursor(row_factory=class_row(GatewayHealth)) as cur:
        return cur.execute(
            "SELECT gateway_id, site_id, state, status_ts, status_received_at, "
            "(status_received_at IS NULL OR status_received_at < %s) AS is_stale, uptime_s, "
            "cpu_percent::double precision AS cpu_percent, memory_bytes::bigint AS memory_bytes, metrics, "
            "model_versions FROM gateways ORDER BY gateway_id",
            (now - stale_after,),
        ).fetchall()


def update_asset(
    conn: psycopg.Connection[Any],
    asset_id: str,
    *,
    asset_type: str | None = None,
    line: str | None = None,
    criticality: str | None = None,
    site_id: str | None = None,
) -> bool:
    """Edit an asset's metadata (fields left None keep their value); False if there is no such asset."""
    if criticality is not None and criticality not in CRITICALITIES:
        raise ContractError("criticality", criticality, f"one of {', '.join(CRITICALITIES)}")
    with conn.transaction():
        cur = conn.execute(
            "UPDATE assets SET asset_type = coalesce(%s, asset_type), line = coalesce(%s, line), "
            "criticality = coalesce(%s, criticality), site_id = coalesce(%s, site_id) WHERE asset_id = %s",
            (asset_type, line, criticality, site_id, asset_id),
        )
        return cur.rowcount == 1


def upsert_site(conn: psycopg.Connection[Any], site_id: str, *, name: str = "") -> None:
    """Create a site, or rename it."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO sites (site_id, name) VALUES (%s, %s) "
            "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name",
            (site_id, name),
        )


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """What `forewarn cloud status` shows."""

    backend: str
    schema_version: int
    aggregates_last_minute: int
    aggregates_per_s: float
    lag_p50_s: float | None
    lag_max_s: float | None
    dead_letters_total: int
    dead_letters_last_day: dict[str, int]
    workers: list[dict[str, Any]]


def ingest_status(conn: psycopg.Connection[Any], *, now: datetime | None = None) -> IngestStatus:
    """Ingest rate and lag over the last minute, dead letters, and each worker's latest counters."""
    now = now or datetime.now(UTC)
    minute_ago = now - timedelta(minutes=1)
    meta = conn.execute(
        "SELECT (SELECT value FROM forewarn_meta WHERE key = 'storage_backend'), "
        "(SELECT coalesce(max(version), 0) FROM schema_migrations)"
    ).fetchone()
    rate = conn.execute(
        "SELECT count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - period_end)), "
        "max(extract(epoch FROM received_at - period_end)) FROM aggregates "
        "WHERE received_at >= %s AND period_start >= %s",
        (minute_ago, now - timedelta(days=2)),
    ).fetchone()
    dead_total = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    by_field = conn.execute(
        "SELECT field, count(*) FROM dead_letters WHERE received_at >= %s GROUP BY field ORDER BY 2 DESC",
        (now - DAY,),
    ).fetchall()
    workers = conn.execute(
        "SELECT worker_id, updated_at, metrics FROM ingest_workers ORDER BY worker_id"
    ).fetchall()
    count = int(rate[0]) if rate else 0
    return IngestStatus(
        backend=str(meta[0]) if meta and meta[0] else "unmigrated",
        schema_version=int(meta[1]) if meta else 0,
        aggregates_last_minute=count,
        aggregates_per_s=round(count / 60.0, 1),
        lag_p50_s=float(rate[1]) if rate and rate[1] is not None else None,
        lag_max_s=float(rate[2]) if rate and rate[2] is not None else None,
        dead_letters_total=int(dead_total[0]) if dead_total else 0,
        dead_letters_last_day={str(row[0]): int(row[1]) for row in by_field},
        workers=[{"worker_id": row[0], "updated_at": row[1].isoformat(), **row[2]} for row in workers],
    )


@dataclass(frozen=True, slots=True)
class StoredCounts:
    """How many rows ingest has stored, in total."""

    aggregates: int
    alerts: int
    dead_letters: int


def stored_counts(conn: psycopg.Connection[Any]) -> StoredCounts:
    """Total aggregates, alerts and dead letters stored (full counts: for demos and checks)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM aggregates), (SELECT count(*) FROM alerts), "
        "(SELECT count(*) FROM dead_letters)"
    ).fetchone()
    aggregates, alerts, dead_letters = row if row else (0, 0, 0)
    return StoredCounts(int(aggregates), int(alerts), int(dead_letters))
