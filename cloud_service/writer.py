"""The idempotent write path: one batch of validated messages (and dead letters), one transaction.

Aggregates, the high-volume kind, go by binary COPY (`FORMAT BINARY`, the stream built by
`cloud_service.copy_encoding` from `AggregateBlock`s; single `Aggregate`s are packed into blocks first):
straight into the time-series table inside a savepoint, and if any row of the batch is already stored (a
redelivery), into a temporary staging table instead, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`.
The other kinds are few and go by single-row statements. Every kind is idempotent: a redelivered message
leaves the table as it was. Feature sets and (plain PostgreSQL) weekly partitions are created on first
sight, before the batch, in short transactions of their own; gateways and assets are registered on first
sight inside the batch's transaction. `BatchWriter` owns its connection's transactions: it commits, then
the ingest worker acknowledges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec
import numpy as np
import psycopg

from cloud_service.clock_skew import ClockSkewEstimator, SkewWarnings
from cloud_service.copy_encoding import (
    AGGREGATE_BULK_COLUMNS,
    AGGREGATE_COLUMNS,
    PG_EPOCH_US,
    aggregate_copy_data,
)
from cloud_service.deadletter import DeadLetter, write_dead_letters
from cloud_service.ingest import Accepted
from cloud_service.queries.alarm_management import Transition, record_edge_transition
from cloud_service.queries.assets import recent_clock_skews
from cloud_service.queries.diagnoses import store_diagnosis
from cloud_service.schema import Backend, current_backend
from cloud_service.settings import StorageSettings
from shared.aggregate_block import pack_aggregates
from shared.messages import (
    Aggregate,
    AggregateBlock,
    Alert,
    AlertDiagnosis,
    AlertUpdate,
    DeploymentAck,
    MaintenanceEvent,
    Snapshot,
    Status,
)
from shared.timebase import NS_PER_S, datetime_to_ns, ns_to_datetime

__all__ = [
    "AGGREGATE_COPY_COLUMNS",
    "BatchWriter",
    "WriteResult",
    "is_outage",
]

logger = logging.getLogger(__name__)

_WEEK_NS = 7 * 24 * 3600 * 1_000_000_000
_DAY_NS = 24 * 3600 * NS_PER_S
DEFAULT_ROLLUP_LOOKBACK = timedelta(hours=StorageSettings().rollup_lookback_h)
_JSON = msgspec.json.Encoder()

AGGREGATE_COPY_COLUMNS = ", ".join(name for name, _ in AGGREGATE_COLUMNS)
_CREATE_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS stage_aggregates ("
    + ", ".join(f"{name} {sql_type.replace('float4', 'real')}" for name, sql_type in AGGREGATE_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
# The marking time is taken at the statement (not the transaction's start), so a refresh that read an
# older mark never deletes this newer one (see `cloud_service.upkeep`).
_MARK_LATE_DAYS = """
INSERT INTO rollup_pending_days (day) SELECT unnest(%s::timestamptz[])
ON CONFLICT (day) DO UPDATE SET marked_at = clock_timestamp()
"""
_COPY_DIRECT = f"COPY aggregates ({AGGREGATE_BULK_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_STAGE = f"COPY stage_aggregates ({AGGREGATE_BULK_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_INSERT_AGGREGATES = f"""
INSERT INTO aggregates ({AGGREGATE_COPY_COLUMNS})
SELECT {AGGREGATE_COPY_COLUMNS} FROM stage_aggregates
ON CONFLICT (gateway_id, seq, period_start) DO NOTHING
"""
_INSERT_HEARTBEAT = """
INSERT INTO heartbeats (gateway_id, ts, state, seq, uptime_s, cpu_percent, memory_bytes, metrics,
                        model_versions)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)
ON CONFLICT (gateway_id, ts) DO NOTHING
"""
# A status without counters (the last will an offline gateway leaves) keeps the last counters and model
# versions known: what a gateway had queued when it went away is what its administrator needs to see.
_UPSERT_GATEWAY_STATUS = """
INSERT INTO gateways (gateway_id, status_ts, state, status_seq, uptime_s, cpu_percent, memory_bytes, metrics,
                      model_versions, status_received_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, now())
ON CONFLICT (gateway_id) DO UPDATE SET
    state = EXCLUDED.state, status_ts = EXCLUDED.status_ts, status_seq = EXCLUDED.status_seq,
    uptime_s = EXCLUDED.uptime_s, cpu_percent = EXCLUDED.cpu_percent, memory_bytes = EXCLUDED.memory_bytes,
    metrics = CASE WHEN EXCLUDED.metrics = '{}' THEN gateways.metrics ELSE EXCLUDED.metrics END,
    model_versions = CASE WHEN EXCLUDED.model_versions = '{}' THEN gateways.model_versions
                          ELSE EXCLUDED.model_versions END,
    status_received_at = EXCLUDED.status_received_at
WHERE gateways.status_ts IS NULL OR gateways.status_ts < EXCLUDED.status_ts
"""
_RECORD_CLOCK_SKEW = """
UPDATE gateways SET clock_skew_s = %s, clock_skew_measured_at = now() WHERE gateway_id = %s
"""
# The three alert statements list first the columns `_alert_values` gives, in its order.
_INSERT_ALERT_MESSAGE = """
INSERT INTO alert_messages (gateway_id, alert_id, asset_id, severity, ts, score, threshold, model_version,
                            model_kind, message, seq, state, top_features, diagnosis, clock_skew_s)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)
ON CONFLICT (gateway_id, seq) DO NOTHING
"""
_ALERT_RAISED = """
INSERT INTO alerts (gateway_id, alert_id, asset_id, severity, raised_at, score, threshold, model_version,
                    model_kind, message, top_features, state)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, 'open')
ON CONFLICT (gateway_id, alert_id) DO UPDATE SET
    raised_at = EXCLUDED.raised_at, severity = EXCLUDED.severity, score = EXCLUDED.score,
    threshold = EXCLUDED.threshold, model_version = EXCLUDED.model_version,
    model_kind = EXCLUDED.model_kind, top_features = EXCLUDED.top_features, message = EXCLUDED.message,
    updated_at = now()
WHERE alerts.raised_at IS NULL
"""
_ALERT_CLEARED = """
INSERT INTO alerts (gateway_id, alert_id, asset_id, severity, cleared_at, score, threshold, model_version,
                    model_kind, message, state)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'cleared')
ON CONFLICT (gateway_id, alert_id) DO UPDATE SET
    state = 'cleared', cleared_at = EXCLUDED.cleared_at, updated_at = now()
"""
_INSERT_SNAPSHOT = """
INSERT INTO snapshots (gateway_id, seq, asset_id, sensor, alert_id, start_at, sample_rate_hz, samples,
                       diagnosis_config)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::real[], %s)
ON CONFLICT (gateway_id, seq) DO NOTHING
"""
_INSERT_ACK = """
INSERT INTO deployment_acks (gateway_id, seq, target, version, ok, reason, ts)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (gateway_id, seq) DO NOTHING
"""
_INSERT_EVENT = """
INSERT INTO maintenance_events (asset_id, ts, event, mode, source, note)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (asset_id, ts, event) DO NOTHING
"""
_REGISTER_GATEWAYS = """
INSERT INTO gateways (gateway_id) SELECT unnest(%s::text[]) ORDER BY 1 ON CONFLICT (gateway_id) DO NOTHING
"""
_REGISTER_ASSETS = """
INSERT INTO assets (asset_id, gateway_id)
SELECT a, NULLIF(g, '') FROM unnest(%s::text[], %s::text[]) AS u (a, g) ORDER BY 1
ON CONFLICT (asset_id) DO UPDATE SET gateway_id = EXCLUDED.gateway_id
WHERE assets.gateway_id IS NULL AND EXCLUDED.gateway_id IS NOT NULL
"""
_FEATURE_SET = """
INSERT INTO feature_sets (feature_spec, feature_names) VALUES (%s, %s)
ON CONFLICT (feature_spec, feature_names) DO UPDATE SET feature_spec = EXCLUDED.feature_spec
RETURNING feature_set_id
"""


def is_outage(exc: BaseException) -> bool:
    """Whether a database error means "the database is unreachable" (retry) rather than "bad row"."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


@dataclass(slots=True)
class WriteResult:
    """What one committed batch did."""

    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    dead_lettered: int = 0
    conflict_fallbacks: int = 0

    @property
    def rows_inserted(self) -> int:
        """Rows inserted into data tables (dead letters not included)."""
        return sum(self.inserted.values())


@dataclass(slots=True)
class _Sorted:
    blocks: list[AggregateBlock] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    alerts: list[Alert | AlertUpdate] = field(default_factory=list)  # in seq order: a raise before its update
    snapshots: list[Snapshot] = field(default_factory=list)
    acks: list[DeploymentAck] = field(default_factory=list)
    events: list[MaintenanceEvent] = field(default_factory=list)

    @classmethod
    def of(cls, messages: Iterable[Accepted]) -> _Sorted:
        out = cls()
        singles: list[Aggregate] = []
        for message in messages:
            match message:
                case AggregateBlock():
                    out.blocks.append(message)
                case Aggregate():
                    singles.append(message)
                case Status():
                    out.statuses.append(message)
                case Alert() | AlertUpdate():
                    out.alerts.append(message)
                case Snapshot():
                    out.snapshots.append(message)
                case DeploymentAck():
                    out.acks.append(message)
                case MaintenanceEvent():
                    out.events.append(message)
        out.blocks += pack_aggregates(singles)
        return out


class BatchWriter:
    """Writes batches on one connection, which it owns; create a new writer after reconnecting.

    Args:
        conn: an open connection (not in autocommit mode) to a migrated database.
        max_clock_skew_s: a gateway whose clock is further off the cloud's (measured from its heartbeats)
            has its aggregates and alerts stored with `clock_skew_s` set.
        rollup_lookback: how far back the upkeep's rollup refresh reaches (`storage.rollup_lookback_h`);
            aggregates of older days mark their day for the next refresh (`rollup_pending_days`).
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        max_clock_skew_s: float = 5.0,
        rollup_lookback: timedelta = DEFAULT_ROLLUP_LOOKBACK,
    ) -> None:
        self._conn = conn
        self._rollup_lookback = rollup_lookback
        self._backend = current_backend(conn)
        self._skews = ClockSkewEstimator()
        self._skew_warnings = SkewWarnings(max_skew_s=max_clock_skew_s)
        self._seed_clock_skews()
        conn.commit()
        self._feature_sets: dict[tuple[str, tuple[str, ...]], int] = {}
        self._partitions: set[tuple[str, int]] = set()
        self._gateways: set[str] = set()
        self._assets: set[str] = set()
        self._stage_ready = False

    @property
    def backend(self) -> Backend:
        """The storage backend of the database."""
        return self._backend

    def write(self, messages: Sequence[Accepted], dead_letters: Sequence[DeadLetter] = ()) -> WriteResult:
        """Store `messages` and `dead_letters` in one transaction and commit it.

        Raises:
            psycopg.Error: the batch was not committed (nothing of it is stored).
        """
        batch = _Sorted.of(messages)
        feature_set_ids = self._prepare(batch)
        received_ns = time.time_ns()
        for status in batch.statuses:
            if status.state == "online":  # an "offline" last will carries the time its gateway connected
                self._skews.observe(
                    status.gateway_id,
                    sent_ns=status.ts_ns,
                    received_ns=received_ns,
                    uptime_s=status.uptime_s or None,  # 0: a sender that does not report it
                )
        skews = self._skews.skews_s(now_ns=received_ns)
        flagged = self._skew_warnings.flagged(skews)
        result = WriteResult()
        gateways = self._new_gateways(messages)
        assets = self._new_assets(messages)
        with self._conn.transaction(), self._conn.cursor() as cur:
            if gateways:
                cur.execute(_REGISTER_GATEWAYS, (sorted(gateways),))
            if assets:
                ids = sorted(assets)
                cur.execute(_REGISTER_ASSETS, (ids, [assets[asset_id] for asset_id in ids]))
            self._write_aggregates(cur, batch.blocks, feature_set_ids, flagged, result)
            self._mark_late_days(cur, batch.blocks)
            self._write_statuses(cur, batch.statuses, result)
            if batch.statuses:
                measured = sorted({s.gateway_id for s in batch.statuses} & skews.keys())
                cur.executemany(_RECORD_CLOCK_SKEW, [(skews[g], g) for g in measured])
            self._write_alerts(cur, batch.alerts, flagged, result)
            self._write_others(cur, batch, result)
            result.dead_lettered = write_dead_letters(cur, dead_letters)
        self._gateways.update(gateways)
        self._assets.update(assets)
        return result

    def _seed_clock_skews(self) -> None:
        """Start from the skews measured recently (by this worker before a restart, or by another)."""
        since = ns_to_datetime(time.time_ns() - int(self._skews.window_s * 1e9))
        for gateway_id, (skew_s, measured_at) in recent_clock_skews(self._conn, since=since).items():
            measured_ns = datetime_to_ns(measured_at)
            self._skews.observe(
                gateway_id, sent_ns=measured_ns + round(skew_s * 1e9), received_ns=measured_ns
            )

    # -- preparation, in short transactions of their own -------------------------------------------

    def _prepare(self, batch: _Sorted) -> list[int]:
        ids = [self._feature_set_id(block) for block in batch.blocks]
        if self._backend is Backend.POSTGRES:
            self._ensure_partitions("aggregates", (b.period_start_ns for b in batch.blocks))
            self._ensure_partitions("heartbeats", ([m.ts_ns for m in batch.statuses],))
        return ids

    def _feature_set_id(self, block: AggregateBlock) -> int:
        key = (block.feature_spec, tuple(block.feature_names))
        known = self._feature_sets.get(key)
        if known is not None:
            return known
        with self._conn.transaction():
            row = self._conn.execute(_FEATURE_SET, (key[0], list(key[1]))).fetchone()
        if row is None:  # pragma: no cover - RETURNING always yields the row
            raise psycopg.DataError("feature set not returned")
        self._feature_sets[key] = int(row[0])
        return int(row[0])

    def _ensure_partitions(self, table: str, times_ns: Iterable[Sequence[int]]) -> None:
        """Create the weekly partitions of `table` that the timestamps (given in groups) fall in."""
        found = {int(w) for group in times_ns if group for w in np.unique(np.asarray(group) // _WEEK_NS)}
        weeks = {(table, week) for week in found} - self._partitions
        for week in sorted(weeks):
            # Any instant of the week picks it; the database aligns partitions on Mondays (UTC).
            sample = ns_to_datetime(week[1] * _WEEK_NS)
            with self._conn.transaction():
                self._conn.execute("SELECT forewarn_ensure_partition(%s, %s)", (table, sample))
                self._conn.execute(
                    "SELECT forewarn_ensure_partition(%s, %s)", (table, sample + timedelta(days=6, hours=23))
                )
            self._partitions.add(week)

    def _new_gateways(self, messages: Iterable[Accepted]) -> set[str]:
        found = {m.gateway_id for m in messages if not isinstance(m, MaintenanceEvent)}
        return found - self._gateways

    def _new_assets(self, messages: Iterable[Accepted]) -> dict[str, str]:
        found: dict[str, str] = {}
        for m in messages:
            if isinstance(m, AggregateBlock):
                found.update((a, m.gateway_id) for a in m.assets if a not in self._assets)
                continue
            if isinstance(m, Status | DeploymentAck) or m.asset_id in self._assets:
                continue
            gateway_id = "" if isinstance(m, MaintenanceEvent) else m.gateway_id
            if gateway_id or m.asset_id not in found:
                found[m.asset_id] = gateway_id
        return found

    # -- per kind ------------------------------------------------------------------------------------

    def _write_aggregates(
        self,
        cur: psycopg.Cursor[Any],
        blocks: Sequence[AggregateBlock],
        ids: Sequence[int],
        flagged: Mapping[str, float],
        result: WriteResult,
    ) -> None:
        """Optimistic binary COPY straight into `aggregates` inside a savepoint; if any row is already
        there (a redelivery), roll back to the savepoint and take the idempotent path: COPY into the
        staging table, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`. Redeliveries are rare (after a
        crash or an outage), so nearly every batch takes the fast path, and every batch is idempotent."""
        if not blocks:
            return
        rows = sum(len(block) for block in blocks)
        data = aggregate_copy_data(
            blocks, ids, received_us=time.time_ns() // 1000 - PG_EPOCH_US, clock_skew_s=flagged
        )
        try:
            with self._conn.transaction(), cur.copy(_COPY_DIRECT) as copy:
                copy.write(data)
        except psycopg.errors.UniqueViolation:
            result.conflict_fallbacks += 1
        else:
            self._count(result, "aggregates", rows, rows)
            return
        if not self._stage_ready:
            cur.execute(_CREATE_STAGE)
            self._stage_ready = True
        with cur.copy(_COPY_STAGE) as copy:
            copy.write(data)
        cur.execute(_INSERT_AGGREGATES)
        self._count(result, "aggregates", cur.rowcount, rows)

    def _mark_late_days(self, cur: psycopg.Cursor[Any], blocks: Sequence[AggregateBlock]) -> None:
        """Mark for the rollup refresh the days of aggregates older than its lookback. Recent days are not
        marked, so concurrent ingest workers do not contend for the same row on every batch."""
        cutoff_ns = time.time_ns() - int(self._rollup_lookback.total_seconds()) * NS_PER_S
        late = {
            int(day)
            for block in blocks
            for day in np.unique(np.asarray(block.period_start_ns, dtype=np.int64) // _DAY_NS)
            if int(day) * _DAY_NS < cutoff_ns
        }
        if late:
            cur.execute(_MARK_LATE_DAYS, ([ns_to_datetime(day * _DAY_NS) for day in sorted(late)],))

    def _write_statuses(
        self, cur: psycopg.Cursor[Any], statuses: Sequence[Status], result: WriteResult
    ) -> None:
        if not statuses:
            return
        rows = [
            (
                s.gateway_id,
                ns_to_datetime(s.ts_ns),
                s.state,
                s.seq,
                s.uptime_s,
                s.cpu_percent,
                s.memory_bytes,
                _JSON.encode(s.metrics).decode(),
                _JSON.encode(s.model_versions).decode(),
            )
            for s in sorted(statuses, key=lambda s: (s.gateway_id, s.ts_ns))
        ]
        inserted = _execute_each(cur, _INSERT_HEARTBEAT, rows)
        cur.executemany(_UPSERT_GATEWAY_STATUS, rows)
        self._count(result, "heartbeats", inserted, len(rows))

    def _write_alerts(
        self,
        cur: psycopg.Cursor[Any],
        alerts: Sequence[Alert | AlertUpdate],
        flagged: Mapping[str, float],
        result: WriteResult,
    ) -> None:
        if not alerts:
            return
        inserted = 0
        for a in alerts:
            clock_skew_s = flagged.get(a.gateway_id)
            if not self._log_alert_message(cur, a, clock_skew_s):
                continue  # a replay: stored the first time
            inserted += 1
            if isinstance(a, AlertUpdate):
                self._write_update(cur, a)
            else:
                self._write_transition(cur, a)
        self._count(result, "alert_messages", inserted, len(alerts))

    @staticmethod
    def _log_alert_message(
        cur: psycopg.Cursor[Any], a: Alert | AlertUpdate, clock_skew_s: float | None
    ) -> bool:
        """Record the message as received (with its gateway's clock skew when flagged); False if its `seq`
        was recorded before."""
        if isinstance(a, AlertUpdate):
            state, top = "updated", "[]"
        else:
            state, top = a.state, _JSON.encode(a.top_features).decode()
        diagnosis = None if a.diagnosis is None else _JSON.encode(a.diagnosis).decode()
        cur.execute(_INSERT_ALERT_MESSAGE, (*_alert_values(a), a.seq, state, top, diagnosis, clock_skew_s))
        return cur.rowcount == 1

    @staticmethod
    def _store_edge_diagnosis(cur: psycopg.Cursor[Any], a: Alert | AlertUpdate, d: AlertDiagnosis) -> None:
        store_diagnosis(
            cur, gateway_id=a.gateway_id, alert_id=a.alert_id, asset_id=a.asset_id, ts_ns=a.ts_ns, diagnosis=d
        )

    def _write_update(self, cur: psycopg.Cursor[Any], a: AlertUpdate) -> None:
        """A raised alert's new diagnosis: it replaces the edge's diagnosis of the same alert. No alert is
        created or changed and nothing is logged in `alert_events` (a diagnosis is not an alarm state), so
        nothing is annunciated again; the message itself stays in `alert_messages`."""
        self._store_edge_diagnosis(cur, a, a.diagnosis)

    def _write_transition(self, cur: psycopg.Cursor[Any], a: Alert) -> None:
        ts = ns_to_datetime(a.ts_ns)
        if a.state == "raised":
            cur.execute(_ALERT_RAISED, (*_alert_values(a), _JSON.encode(a.top_features).decode()))
            if a.diagnosis is not None:
                self._store_edge_diagnosis(cur, a, a.diagnosis)
        else:
            cur.execute(_ALERT_CLEARED, _alert_values(a))
        record_edge_transition(
            cur,
            gateway_id=a.gateway_id,
            alert_id=a.alert_id,
            asset_id=a.asset_id,
            rule=a.model_kind,
            transition=Transition(a.state),
            ts=ts,
        )

    def _write_others(self, cur: psycopg.Cursor[Any], batch: _Sorted, result: WriteResult) -> None:
        kinds: list[tuple[str, str, list[tuple[Any, ...]]]] = [
            (
                "snapshots",
                _INSERT_SNAPSHOT,
                [
                    (
                        s.gateway_id,
                        s.seq,
                        s.asset_id,
                        s.sensor,
                        s.alert_id,
                        ns_to_datetime(s.start_ns),
                        s.sample_rate_hz,
                        s.samples,
                        s.diagnosis_config,
                    )
                    for s in batch.snapshots
                ],
            ),
            (
                "deployment_acks",
                _INSERT_ACK,
                [
                    (a.gateway_id, a.seq, a.target, a.version, a.ok, a.reason, ns_to_datetime(a.ts_ns))
                    for a in batch.acks
                ],
            ),
            (
                "maintenance_events",
                _INSERT_EVENT,
                [
                    (e.asset_id, ns_to_datetime(e.ts_ns), e.event, e.mode, e.source, e.note)
                    for e in batch.events
                ],
            ),
        ]
        for table, statement, rows in kinds:
            if rows:
                self._count(result, table, _execute_each(cur, statement, rows), len(rows))

    @staticmethod
    def _count(result: WriteResult, table: str, inserted: int, offered: int) -> None:
        result.inserted[table] = result.inserted.get(table, 0) + inserted
        result.duplicates += offered - inserted


def _alert_values(a: Alert | AlertUpdate) -> tuple[Any, ...]:
    """The columns every alert statement stores first: gateway, alert, asset, severity, the message's
    time, score, threshold, model version and kind, message."""
    return (
        a.gateway_id,
        a.alert_id,
        a.asset_id,
        a.severity,
        ns_to_datetime(a.ts_ns),
        a.score,
        a.threshold,
        a.model_version,
        a.model_kind,
        a.message,
    )


def _execute_each(cur: psycopg.Cursor[Any], statement: str, rows: Iterable[tuple[Any, ...]]) -> int:
    """Run `statement` once a row; returns the rows it inserted (a conflict inserts none)."""
    inserted = 0
    for row in rows:
        cur.execute(statement, row)
        inserted += max(cur.rowcount, 0)
    return inserted
