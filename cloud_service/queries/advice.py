"""Advice per asset: stored with its inputs, read for the dashboard, closed by maintenance.

Functions take an open connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

__all__ = [
    "AdviceRecord",
    "advised_modes",
    "asset_types",
    "close_advice_after_maintenance",
    "closed_advice",
    "last_maintenance",
    "open_advice",
    "upsert_open_advice",
]

_COLUMNS = """advice_id, asset_id, created_at, updated_at, mode, action, urgency, due_by,
              inputs::text AS inputs_json, state, closed_at, found_mode, closing_note"""

_RETURNING = """a.advice_id, a.asset_id, a.created_at, a.updated_at, a.mode, a.action, a.urgency, a.due_by,
                a.inputs::text AS inputs_json, a.state, a.closed_at, a.found_mode, a.closing_note"""


@dataclass(frozen=True, slots=True)
class AdviceRecord:
    """A stored advice; `inputs` says why (diagnosis, zone, RUL interval, p(fail), lead time)."""

    advice_id: int
    asset_id: str
    created_at: datetime
    updated_at: datetime
    mode: str
    action: str
    urgency: str
    due_by: datetime
    inputs_json: str
    state: str
    closed_at: datetime | None
    found_mode: str | None
    closing_note: str

    @property
    def inputs(self) -> dict[str, Any]:
        """The inputs the advice was built from."""
        decoded: dict[str, Any] = json.loads(self.inputs_json)
        return decoded


def upsert_open_advice(
    conn: psycopg.Connection[Any],
    *,
    asset_id: str,
    now: datetime,
    mode: str,
    action: str,
    urgency: str,
    due_by: datetime,
    inputs: dict[str, Any],
) -> bool:
    """Create the asset's open advice, or refresh it; returns True if a new one was created."""
    updated = conn.execute(
        "UPDATE asset_advice SET updated_at = %s, mode = %s, action = %s, urgency = %s, due_by = %s, "
        "inputs = %s::jsonb WHERE asset_id = %s AND state = 'open'",
        (now, mode, action, urgency, due_by, json.dumps(inputs), asset_id),
    )
    if updated.rowcount == 1:
        return False
    conn.execute(
        "INSERT INTO asset_advice (asset_id, created_at, updated_at, mode, action, urgency, due_by, inputs, "
        "state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, 'open')",
        (asset_id, now, now, mode, action, urgency, due_by, json.dumps(inputs)),
    )
    return True


def close_advice_after_maintenance(conn: psycopg.Connection[Any], *, now: datetime) -> list[AdviceRecord]:
    """Close every open advice whose asset had a maintenance or failure event since it was created.

    The event's mode (what was found) is recorded as `found_mode`, the label the evaluation reads.
    """
    with conn.cursor(row_factory=class_row(AdviceRecord)) as cur:
        return cur.execute(
            f"""
            WITH found AS (
                SELECT DISTINCT ON (a.advice_id) a.advice_id, e.ts, e.mode, e.note
                FROM asset_advice a JOIN maintenance_events e
                  ON e.asset_id = a.asset_id AND e.ts >= a.created_at
                WHERE a.state = 'open'
                ORDER BY a.advice_id, e.ts
            )
            UPDATE asset_advice a SET state = 'closed', closed_at = %s, found_mode = found.mode,
                   closing_note = found.note, updated_at = %s
            FROM found WHERE a.advice_id = found.advice_id
            RETURNING {_RETURNING}
            """,
            (now, now),
        ).fetchall()


def open_advice(conn: psycopg.Connection[Any], *, asset_id: str | None = None) -> list[AdviceRecord]:
    """Open advice, soonest due first; of one asset if given."""
    with conn.cursor(row_factory=class_row(AdviceRecord)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM asset_advice WHERE state = 'open' "
            "AND (%(asset)s::text IS NULL OR asset_id = %(asset)s) ORDER BY due_by",
            {"asset": asset_id},
        ).fetchall()


def closed_advice(conn: psycopg.Connection[Any], *, asset_id: str, limit: int = 5) -> list[AdviceRecord]:
    """An asset's closed advice, most recently closed first, with the mode the maintenance found."""
    with conn.cursor(row_factory=class_row(AdviceRecord)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM asset_advice WHERE state = 'closed' AND asset_id = %s "
            "ORDER BY closed_at DESC NULLS LAST, advice_id DESC LIMIT %s",
            (asset_id, limit),
        ).fetchall()


def last_maintenance(conn: psycopg.Connection[Any]) -> dict[str, datetime]:
    """Every asset's latest maintenance or failure event time."""
    return {
        row[0]: row[1]
        for row in conn.execute("SELECT asset_id, max(ts) FROM maintenance_events GROUP BY asset_id")
    }


def asset_types(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Every known asset's type (empty when not set)."""
    return {row[0]: row[1] for row in conn.execute("SELECT asset_id, asset_type FROM assets")}


def advised_modes(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Per advised asset, the modes of its advice (open and closed), oldest first."""
    modes: dict[str, list[str]] = {}
    rows = conn.execute("SELECT asset_id, mode FROM asset_advice ORDER BY asset_id, advice_id")
    for asset_id, mode in rows:
        modes.setdefault(asset_id, []).append(mode)
    return modes
