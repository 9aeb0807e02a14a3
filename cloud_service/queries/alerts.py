"""Reads and edits of alerts and of maintenance and failure events.

Functions take an open connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from cloud_service.queries.alarm_management import acknowledge

__all__ = [
    "AlertRecord",
    "EventRecord",
    "acknowledge_alert",
    "asset_alerts",
    "last_alerts",
    "maintenance_events",
    "open_alerts",
]


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


_ALERT_COLUMNS = """gateway_id, alert_id, asset_id, state, severity, raised_at, cleared_at,
                    score::float8 AS score, threshold::float8 AS threshold, model_version, message,
                    acknowledged_by, acknowledged_at, comment"""


def open_alerts(conn: psycopg.Connection[Any], *, asset_id: str | None = None) -> list[AlertRecord]:
    """Alerts not yet cleared (open or acknowledged), newest first; of one asset if given."""
    with conn.cursor(row_factory=class_row(AlertRecord)) as cur:
        return cur.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE state <> 'cleared' "
            "AND (%(asset)s::text IS NULL OR asset_id = %(asset)s) ORDER BY raised_at DESC NULLS LAST",
            {"asset": asset_id},
        ).fetchall()


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


def acknowledge_alert(
    conn: psycopg.Connection[Any], *, gateway_id: str, alert_id: str, by: str, comment: str = ""
) -> bool:
    """Mark an alert not yet acknowledged as acknowledged by `by`, with a comment, and log it.

    The same operation as `alarm_management.acknowledge` (kept under this name for its callers).

    Returns:
        True if the alert is now acknowledged; False if it is unknown or was acknowledged before.

    Raises:
        ContractError: `by` is blank.
    """
    return acknowledge(conn, gateway_id=gateway_id, alert_id=alert_id, by=by, comment=comment)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A recorded failure or maintenance of an asset, with what was found and the technician's note."""

    asset_id: str
    ts: datetime
    event: str  # `failure` or `maintenance`
    mode: str  # the failure mode found; "" when not recorded
    note: str


def maintenance_events(
    conn: psycopg.Connection[Any],
    *,
    start: datetime,
    end: datetime | None = None,
    asset_ids: Sequence[str] | None = None,
) -> list[EventRecord]:
    """Failure and maintenance events within `[start, end)`, by asset and time.

    Args:
        conn: an open connection.
        start: the first time included.
        end: the first time excluded; None: no end.
        asset_ids: only these assets' events; None reads every asset's.

    Returns:
        The events, ordered by asset, then time.
    """
    with conn.cursor(row_factory=class_row(EventRecord)) as cur:
        return cur.execute(
            "SELECT asset_id, ts, event, mode, note FROM maintenance_events "
            "WHERE (%(assets)s::text[] IS NULL OR asset_id = ANY(%(assets)s)) "
            "AND ts >= %(start)s AND (%(end)s::timestamptz IS NULL OR ts < %(end)s) "
            "ORDER BY asset_id, ts",
            {"assets": None if asset_ids is None else list(asset_ids), "start": start, "end": end},
        ).fetchall()
