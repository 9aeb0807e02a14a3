"""Reads and edits of assets, sites and gateways: the fleet overview and each gateway's health.

Functions take an open connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from shared.errors import ContractError

__all__ = [
    "CRITICALITIES",
    "AssetStatus",
    "GatewayHealth",
    "asset_status",
    "clock_skew_flags",
    "fleet_status",
    "gateway_health",
    "recent_clock_skews",
    "register_asset",
    "update_asset",
    "upsert_site",
]

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
{where}
ORDER BY a.asset_id
"""


def fleet_status(conn: psycopg.Connection[Any]) -> list[AssetStatus]:
    """Every asset with its latest score, open alert count and gateway state.

    The score is the latest period's that scored windows (within a day of the asset's last period): a
    period without windows (a sensor gap, a machine stopped) has no score, not a score of 0. None if no
    period of that day scored any window.
    """
    with conn.cursor(row_factory=class_row(AssetStatus)) as cur:
        return cur.execute(_FLEET.format(where="")).fetchall()


def asset_status(conn: psycopg.Connection[Any], asset_id: str) -> AssetStatus | None:
    """One asset as `fleet_status` gives it (reading only that asset's rows); None if there is no such
    asset."""
    with conn.cursor(row_factory=class_row(AssetStatus)) as cur:
        return cur.execute(_FLEET.format(where="WHERE a.asset_id = %s"), (asset_id,)).fetchone()


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
    clock_skew_s: float | None = None  # the gateway's clock minus the cloud's, from its heartbeats
    clock_skew_measured_at: datetime | None = None


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
            "model_versions, clock_skew_s, clock_skew_measured_at FROM gateways ORDER BY gateway_id",
            (now - stale_after,),
        ).fetchall()


def recent_clock_skews(
    conn: psycopg.Connection[Any], *, since: datetime
) -> dict[str, tuple[float, datetime]]:
    """Each gateway's clock skew (seconds) and when it was measured, if measured at or after `since`."""
    rows = conn.execute(
        "SELECT gateway_id, clock_skew_s, clock_skew_measured_at FROM gateways "
        "WHERE clock_skew_s IS NOT NULL AND clock_skew_measured_at >= %s",
        (since,),
    ).fetchall()
    return {str(gateway_id): (float(skew_s), measured_at) for gateway_id, skew_s, measured_at in rows}


def clock_skew_flags(conn: psycopg.Connection[Any], gateway_id: str, *, from_seq: int = 0) -> tuple[int, int]:
    """(aggregate rows, those of them flagged with `clock_skew_s`) of a gateway, from seq `from_seq` on."""
    row = conn.execute(
        "SELECT count(*), count(clock_skew_s) FROM aggregates WHERE gateway_id = %s AND seq >= %s",
        (gateway_id, from_seq),
    ).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def update_asset(
    conn: psycopg.Connection[Any],
    asset_id: str,
    *,
    asset_type: str | None = None,
    line: str | None = None,
    criticality: str | None = None,
    site_id: str | None = None,
) -> bool:
    """Edit an asset's metadata (fields left None keep their value), in the caller's transaction.

    Returns:
        False if there is no such asset.

    Raises:
        ContractError: a criticality not in `CRITICALITIES`.
    """
    if criticality is not None and criticality not in CRITICALITIES:
        raise ContractError("criticality", criticality, f"one of {', '.join(CRITICALITIES)}")
    cur = conn.execute(
        "UPDATE assets SET asset_type = coalesce(%s, asset_type), line = coalesce(%s, line), "
        "criticality = coalesce(%s, criticality), site_id = coalesce(%s, site_id) WHERE asset_id = %s",
        (asset_type, line, criticality, site_id, asset_id),
    )
    return cur.rowcount == 1


def upsert_site(conn: psycopg.Connection[Any], site_id: str, *, name: str = "") -> None:
    """Create a site, or rename it (in the caller's transaction)."""
    conn.execute(
        "INSERT INTO sites (site_id, name) VALUES (%s, %s) "
        "ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name",
        (site_id, name),
    )


def register_asset(
    conn: psycopg.Connection[Any],
    asset_id: str,
    *,
    asset_type: str,
    gateway_id: str | None = None,
    line: str = "",
    site_id: str | None = None,
) -> None:
    """Create an asset with its metadata before its data arrives, or update that metadata (not committed).

    Model targets that name an asset type (`cloud_service.lifecycle`) find the asset through its type.
    """
    conn.execute(
        "INSERT INTO assets (asset_id, gateway_id, asset_type, line, site_id) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (asset_id) DO UPDATE SET asset_type = EXCLUDED.asset_type, line = EXCLUDED.line, "
        "gateway_id = coalesce(EXCLUDED.gateway_id, assets.gateway_id), "
        "site_id = coalesce(EXCLUDED.site_id, assets.site_id)",
        (asset_id, gateway_id, asset_type, line, site_id),
    )
