"""Alarm management the ISA-18.2 / IEC 62682 way: alert states, operator actions and their event log.

An *alarm point* is an asset and the rule that fired on it (`alerts.model_kind`, the detector whose k-of-n
raised it); every raise of a point is a new alert. An alert has two separate facts, *active* (not cleared)
and *acknowledged*, and on top of them two suppressions: its point may be *shelved* for a limited time,
and its asset may be *out of service* (under maintenance: its alerts are recorded, not annunciated).
Every transition is appended to `alert_events`, which the database keeps append-only.

Expired shelves: a shelve whose end has passed is not shelved for any read here (reads compare with the
database's clock), so the state shown never depends on a job having run. `expire_shelves` then deletes the
expired shelves and logs each automatic unshelve at the moment the shelve ended (not when it was noticed),
so the log's times are exact whenever the sweep runs; the dashboard sweeps on every refresh of the alerts
page, and `shelve_alert` sweeps first, so a re-shelve never hides an earlier shelve's end.

Functions take an open connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import psycopg
from psycopg.rows import class_row

from shared.errors import ContractError

__all__ = [
    "ATTENTION_STATES",
    "AlarmState",
    "AlertEvent",
    "ManagedAlert",
    "Transition",
    "acknowledge",
    "alert_history",
    "expire_shelves",
    "known_assets",
    "list_alerts",
    "out_of_service_assets",
    "record_edge_transition",
    "return_to_service",
    "set_out_of_service",
    "shelve_alert",
    "unshelve_alert",
]

MAX_COMMENT_CHARS: Final = 500
SYSTEM_ACTOR: Final = "system"


class AlarmState(StrEnum):
    """Where an alert is, as an operator sees it (ISA-18.2's alarm states)."""

    ACTIVE_UNACKNOWLEDGED = "active_unacknowledged"
    ACTIVE_ACKNOWLEDGED = "active_acknowledged"
    RETURNED_UNACKNOWLEDGED = "returned_unacknowledged"
    SHELVED = "shelved"
    OUT_OF_SERVICE = "out_of_service"
    NORMAL = "normal"  # cleared and acknowledged: only its history remains


ATTENTION_STATES: Final = frozenset(AlarmState) - {AlarmState.NORMAL}


class Transition(StrEnum):
    """What an `alert_events` row records."""

    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    OUT_OF_SERVICE = "out_of_service"
    RETURNED_TO_SERVICE = "returned_to_service"


@dataclass(frozen=True, slots=True)
class ManagedAlert:
    """An alert with both of its facts, its suppressions and the state they give."""

    gateway_id: str
    alert_id: str
    asset_id: str
    site_id: str
    rule: str
    severity: str
    message: str
    score: float | None
    threshold: float | None
    raised_at: datetime | None
    cleared_at: datetime | None
    is_active: bool
    is_acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    comment: str
    shelved_until: datetime | None
    shelved_by: str | None
    shelve_reason: str | None
    out_of_service_since: datetime | None
    state: AlarmState

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", AlarmState(self.state))


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One row of the alert event log."""

    event_id: int
    asset_id: str
    rule: str | None
    gateway_id: str | None
    alert_id: str | None
    transition: Transition
    ts: datetime
    actor: str
    comment: str
    shelved_until: datetime | None
    annunciated: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "transition", Transition(self.transition))


# Out of service wins over shelved, shelved over the two facts; cleared and acknowledged is normal.
_STATE = """
CASE WHEN al.cleared_at IS NOT NULL AND al.acknowledged_at IS NOT NULL THEN 'normal'
     WHEN o.asset_id IS NOT NULL THEN 'out_of_service'
     WHEN s.asset_id IS NOT NULL THEN 'shelved'
     WHEN al.cleared_at IS NULL AND al.acknowledged_at IS NULL THEN 'active_unacknowledged'
     WHEN al.cleared_at IS NULL THEN 'active_acknowledged'
     ELSE 'returned_unacknowledged' END
"""
_LIST = f"""
SELECT * FROM (
    SELECT al.gateway_id, al.alert_id, al.asset_id, coalesce(a.site_id, '') AS site_id, al.model_kind AS rule,
           al.severity, al.message, al.score::float8 AS score, al.threshold::float8 AS threshold,
           al.raised_at, al.cleared_at, al.cleared_at IS NULL AS is_active,
           al.acknowledged_at IS NOT NULL AS is_acknowledged, al.acknowledged_by, al.acknowledged_at,
           al.comment,
           s.shelved_until, s.shelved_by, s.reason AS shelve_reason, o.since AS out_of_service_since,
           {_STATE} AS state
    FROM alerts al
    LEFT JOIN assets a ON a.asset_id = al.asset_id
    LEFT JOIN alert_shelves s
           ON s.asset_id = al.asset_id AND s.rule = al.model_kind AND s.shelved_until > now()
    LEFT JOIN asset_out_of_service o ON o.asset_id = al.asset_id
    WHERE (%(include_normal)s OR al.cleared_at IS NULL OR al.acknowledged_at IS NULL)
      AND (%(asset)s::text IS NULL OR al.asset_id = %(asset)s)
) listed
WHERE state = ANY(%(states)s)
ORDER BY raised_at DESC NULLS LAST, alert_id
LIMIT %(limit)s
"""

# Whether a transition of this point, recorded now, is shown to operators.
_ANNUNCIATED = """
NOT EXISTS (SELECT 1 FROM asset_out_of_service o WHERE o.asset_id = %(asset)s)
AND NOT EXISTS (SELECT 1 FROM alert_shelves s
                WHERE s.asset_id = %(asset)s AND s.rule = %(rule)s AND s.shelved_until > now())
"""
_EDGE_TRANSITION = f"""
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor, annunciated)
SELECT %(asset)s, %(rule)s, %(gateway)s, %(alert)s, %(transition)s, %(ts)s, 'gateway:' || %(gateway)s,
       {_ANNUNCIATED}
ON CONFLICT DO NOTHING
"""
_ACKNOWLEDGE = """
WITH acknowledged AS (
    UPDATE alerts SET acknowledged_by = %(by)s, acknowledged_at = now(), comment = %(comment)s,
                      state = CASE WHEN state = 'open' THEN 'acknowledged' ELSE state END, updated_at = now()
    WHERE gateway_id = %(gateway)s AND alert_id = %(alert)s AND acknowledged_at IS NULL
    RETURNING asset_id, model_kind, gateway_id, alert_id
)
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor, comment)
SELECT asset_id, model_kind, gateway_id, alert_id, 'acknowledged', now(), %(by)s, %(comment)s
FROM acknowledged
"""
_SHELVE = """
WITH target AS (
    SELECT asset_id, model_kind AS rule, gateway_id, alert_id FROM alerts
    WHERE gateway_id = %(gateway)s AND alert_id = %(alert)s
      AND (cleared_at IS NULL OR acknowledged_at IS NULL)
), shelf AS (
    INSERT INTO alert_shelves
        (asset_id, rule, gateway_id, alert_id, shelved_by, shelved_at, shelved_until, reason)
    SELECT asset_id, rule, gateway_id, alert_id, %(by)s, now(), now() + %(duration)s, %(reason)s FROM target
    ON CONFLICT (asset_id, rule) DO UPDATE SET
        gateway_id = EXCLUDED.gateway_id, alert_id = EXCLUDED.alert_id, shelved_by = EXCLUDED.shelved_by,
        shelved_at = EXCLUDED.shelved_at, shelved_until = EXCLUDED.shelved_until, reason = EXCLUDED.reason
    RETURNING asset_id, rule, gateway_id, alert_id, shelved_until
)
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor, comment, shelved_until)
SELECT asset_id, rule, gateway_id, alert_id, 'shelved', now(), %(by)s, %(reason)s, shelved_until FROM shelf
RETURNING shelved_until
"""
_UNSHELVE = """
WITH gone AS (
    DELETE FROM alert_shelves s USING alerts al
    WHERE al.gateway_id = %(gateway)s AND al.alert_id = %(alert)s
      AND s.asset_id = al.asset_id AND s.rule = al.model_kind AND s.shelved_until > now()
    RETURNING s.asset_id, s.rule, s.gateway_id, s.alert_id
)
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor, comment)
SELECT asset_id, rule, gateway_id, alert_id, 'unshelved', now(), %(by)s, %(comment)s FROM gone
"""
_EXPIRE = f"""
WITH gone AS (
    DELETE FROM alert_shelves WHERE shelved_until <= now()
    RETURNING asset_id, rule, gateway_id, alert_id, shelved_until
)
INSERT INTO alert_events (asset_id, rule, gateway_id, alert_id, transition, ts, actor, comment)
SELECT asset_id, rule, gateway_id, alert_id, 'unshelved', shelved_until, '{SYSTEM_ACTOR}', 'shelve expired'
FROM gone
"""
_OUT_OF_SERVICE = """
WITH placed AS (
    INSERT INTO asset_out_of_service (asset_id, set_by, reason)
    SELECT asset_id, %(by)s, %(reason)s FROM assets WHERE asset_id = %(asset)s
    ON CONFLICT (asset_id) DO NOTHING
    RETURNING asset_id, since
)
INSERT INTO alert_events (asset_id, transition, ts, actor, comment)
SELECT asset_id, 'out_of_service', since, %(by)s, %(reason)s FROM placed
"""
_RETURN_TO_SERVICE = """
WITH returned AS (DELETE FROM asset_out_of_service WHERE asset_id = %(asset)s RETURNING asset_id)
INSERT INTO alert_events (asset_id, transition, ts, actor, comment)
SELECT asset_id, 'returned_to_service', now(), %(by)s, %(comment)s FROM returned
"""
_EVENT_COLUMNS = """event_id, asset_id, rule, gateway_id, alert_id, transition, ts, actor, comment,
                    shelved_until, annunciated"""
# The alert's own events, and the shelves of its point and out-of-service spells of its asset that
# overlapped its life (from its raise until it was both cleared and acknowledged, or until now).
_HISTORY = f"""
WITH alert AS (
    SELECT asset_id, model_kind AS rule, coalesce(raised_at, cleared_at, updated_at) AS born,
           CASE WHEN cleared_at IS NOT NULL AND acknowledged_at IS NOT NULL
                THEN greatest(cleared_at, acknowledged_at) ELSE 'infinity'::timestamptz END AS settled
    FROM alerts WHERE gateway_id = %(gateway)s AND alert_id = %(alert)s
)
SELECT {_EVENT_COLUMNS} FROM alert_events e
WHERE (e.gateway_id = %(gateway)s AND e.alert_id = %(alert)s)
   OR EXISTS (
       SELECT 1 FROM alert
       WHERE e.asset_id = alert.asset_id AND (e.rule IS NULL OR e.rule = alert.rule)
         AND e.transition IN ('shelved', 'unshelved', 'out_of_service', 'returned_to_service')
         AND e.ts >= alert.born AND e.ts <= alert.settled
   )
ORDER BY e.ts, e.event_id
"""


def _require(field: str, value: str, expected: str) -> str:
    text = value.strip()
    if not text:
        raise ContractError(field, value, expected)
    return text


def _comment(comment: str) -> str:
    if len(comment) > MAX_COMMENT_CHARS:
        raise ContractError("comment", comment[:40], f"at most {MAX_COMMENT_CHARS} characters")
    return comment.strip()


def record_edge_transition(
    cur: psycopg.Cursor[Any] | psycopg.Connection[Any],
    *,
    gateway_id: str,
    alert_id: str,
    asset_id: str,
    rule: str,
    transition: Transition,
    ts: datetime,
) -> None:
    """Log a gateway's raise or clear of an alert (the ingest write path calls this once per new message).

    A replayed message logs nothing more: each alert is raised once and cleared once.

    Raises:
        ContractError: `transition` is neither raised nor cleared.
    """
    if transition not in (Transition.RAISED, Transition.CLEARED):
        raise ContractError("transition", transition, "raised or cleared (from a gateway)")
    cur.execute(
        _EDGE_TRANSITION,
        {
            "asset": asset_id,
            "rule": rule,
            "gateway": gateway_id,
            "alert": alert_id,
            "transition": transition.value,
            "ts": ts,
        },
    )


def list_alerts(
    conn: psycopg.Connection[Any],
    *,
    states: Collection[AlarmState] = ATTENTION_STATES,
    asset_id: str | None = None,
    limit: int = 1000,
) -> list[ManagedAlert]:
    """Alerts in any of `states` (by default every state that needs an operator), newest raise first.

    Args:
        conn: an open connection.
        states: the states to list; `AlarmState.NORMAL` adds alerts cleared and acknowledged.
        asset_id: only this asset's alerts; None lists every asset's.
        limit: at most this many alerts.
    """
    with conn.cursor(row_factory=class_row(ManagedAlert)) as cur:
        return cur.execute(
            _LIST,
            {
                "include_normal": AlarmState.NORMAL in states,
                "asset": asset_id,
                "states": [state.value for state in states],
                "limit": limit,
            },
        ).fetchall()


def acknowledge(
    conn: psycopg.Connection[Any], *, gateway_id: str, alert_id: str, by: str, comment: str = ""
) -> bool:
    """Acknowledge an alert not yet acknowledged, active or already returned, with a comment; logs it.

    Returns:
        True if the alert is now acknowledged by `by`; False if it is unknown or was acknowledged before.

    Raises:
        ContractError: `by` is blank or the comment too long.
    """
    cur = conn.execute(
        _ACKNOWLEDGE,
        {
            "gateway": gateway_id,
            "alert": alert_id,
            "by": _require("by", by, "the name of whoever acknowledges"),
            "comment": _comment(comment),
        },
    )
    return cur.rowcount == 1


def shelve_alert(
    conn: psycopg.Connection[Any],
    *,
    gateway_id: str,
    alert_id: str,
    by: str,
    reason: str,
    duration: timedelta,
    max_duration: timedelta,
) -> datetime | None:
    """Shelve the alert's alarm point for `duration` (at most `max_duration`), for a reason; logs it.

    Shelving a point already shelved replaces its end and reason. An alert cleared and acknowledged cannot
    be shelved (there is nothing left to hide).

    Returns:
        When the shelve ends; None if the alert is unknown or cleared and acknowledged.

    Raises:
        ContractError: `by` or `reason` is blank, or `duration` is not within (0, `max_duration`].
    """
    if duration <= timedelta(0) or duration > max_duration:
        raise ContractError("duration", duration, f"more than 0 s and at most {max_duration}")
    expire_shelves(conn)
    row = conn.execute(
        _SHELVE,
        {
            "gateway": gateway_id,
            "alert": alert_id,
            "by": _require("by", by, "the name of whoever shelves"),
            "reason": _comment(_require("reason", reason, "why the alert is shelved")),
            "duration": duration,
        },
    ).fetchone()
    return None if row is None else row[0]


def unshelve_alert(
    conn: psycopg.Connection[Any], *, gateway_id: str, alert_id: str, by: str, comment: str = ""
) -> bool:
    """End the shelve of the alert's alarm point now; logs it.

    Returns:
        True if the point was shelved and no longer is; False if it was not shelved.

    Raises:
        ContractError: `by` is blank or the comment too long.
    """
    cur = conn.execute(
        _UNSHELVE,
        {
            "gateway": gateway_id,
            "alert": alert_id,
            "by": _require("by", by, "the name of whoever unshelves"),
            "comment": _comment(comment),
        },
    )
    return cur.rowcount == 1


def expire_shelves(conn: psycopg.Connection[Any]) -> int:
    """Delete every shelve that has ended and log its automatic unshelve at the time it ended.

    Concurrent callers log each expiry once (the row is deleted by exactly one of them).

    Returns:
        How many shelves ended.
    """
    return max(conn.execute(_EXPIRE).rowcount, 0)


def set_out_of_service(conn: psycopg.Connection[Any], *, asset_id: str, by: str, reason: str) -> bool:
    """Take an asset out of service (under maintenance): its alerts are recorded, not annunciated.

    Returns:
        True if the asset is now out of service; False if it is unknown or already out of service.

    Raises:
        ContractError: `by` or `reason` is blank.
    """
    cur = conn.execute(
        _OUT_OF_SERVICE,
        {
            "asset": asset_id,
            "by": _require("by", by, "the name of whoever takes it out of service"),
            "reason": _comment(_require("reason", reason, "why the asset is out of service")),
        },
    )
    return cur.rowcount == 1


def return_to_service(conn: psycopg.Connection[Any], *, asset_id: str, by: str, comment: str = "") -> bool:
    """Return an out-of-service asset to service; its active alerts are annunciated again.

    Returns:
        True if the asset was out of service; False otherwise.

    Raises:
        ContractError: `by` is blank or the comment too long.
    """
    cur = conn.execute(
        _RETURN_TO_SERVICE,
        {
            "asset": asset_id,
            "by": _require("by", by, "the name of whoever returns it to service"),
            "comment": _comment(comment),
        },
    )
    return cur.rowcount == 1


def known_assets(conn: psycopg.Connection[Any]) -> list[str]:
    """Every asset id the cloud knows, sorted (what may be taken out of service)."""
    return [str(row[0]) for row in conn.execute("SELECT asset_id FROM assets ORDER BY asset_id")]


def out_of_service_assets(conn: psycopg.Connection[Any]) -> dict[str, datetime]:
    """Every asset out of service, with since when."""
    rows = conn.execute("SELECT asset_id, since FROM asset_out_of_service ORDER BY asset_id").fetchall()
    return {str(asset_id): since for asset_id, since in rows}


def alert_history(conn: psycopg.Connection[Any], *, gateway_id: str, alert_id: str) -> list[AlertEvent]:
    """An alert's transitions, oldest first, with the shelves and out-of-service spells during its life."""
    with conn.cursor(row_factory=class_row(AlertEvent)) as cur:
        return cur.execute(_HISTORY, {"gateway": gateway_id, "alert": alert_id}).fetchall()
