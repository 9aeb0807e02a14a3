"""Diagnoses of alerts: stored when an alert arrives with one (source `edge`) or when the cloud re-diagnoses
its raw snapshot (source `cloud`), read for the dashboard and the advice; the snapshots awaiting that.

Functions take an open connection (or the writer's cursor) and never commit: the caller owns the
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg
from psycopg.rows import class_row

from shared.messages import AlertDiagnosis, DiagnosisEvidence
from shared.timebase import ns_to_datetime

__all__ = [
    "DiagnosisRecord",
    "DiagnosisStep",
    "PendingSnapshot",
    "alert_diagnoses",
    "best_diagnoses",
    "diagnosis_history",
    "fleet_diagnoses",
    "latest_diagnoses",
    "mark_snapshot_diagnosed",
    "pending_snapshots",
    "store_diagnosis",
]

_JSON = msgspec.json.Encoder()
_DIAGNOSIS = msgspec.json.Decoder(AlertDiagnosis)
_EVIDENCE = msgspec.json.Decoder(list[DiagnosisEvidence])

_UPSERT = """
INSERT INTO alert_diagnoses (gateway_id, alert_id, source, asset_id, ts, mode, confidence, evidence, shaft_hz,
                             velocity_rms_mm_s, iso_zone)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)
ON CONFLICT (gateway_id, alert_id, source) DO UPDATE SET
    ts = EXCLUDED.ts, mode = EXCLUDED.mode, confidence = EXCLUDED.confidence, evidence = EXCLUDED.evidence,
    shaft_hz = EXCLUDED.shaft_hz, velocity_rms_mm_s = EXCLUDED.velocity_rms_mm_s,
    iso_zone = EXCLUDED.iso_zone, stored_at = now()
WHERE alert_diagnoses.ts <= EXCLUDED.ts
"""
_COLUMNS = """gateway_id, alert_id, source, asset_id, ts, mode, confidence, evidence::text AS evidence_json,
              shaft_hz, velocity_rms_mm_s, iso_zone"""


# Per alert, the best of its diagnoses: one naming a mode over `unknown`, then the more confident, then the
# edge's (it judged against the asset's own healthy baseline).
_BEST_PER_ALERT = """
SELECT DISTINCT ON (gateway_id, alert_id) * FROM alert_diagnoses
WHERE (%(asset)s::text IS NULL OR asset_id = %(asset)s)
ORDER BY gateway_id, alert_id, (mode <> 'unknown') DESC, confidence DESC, (source = 'edge') DESC
"""
# Per asset, its newest diagnosed alert's best diagnosis (ranked as `_BEST_PER_ALERT`), unless a maintenance
# or failure event since answered it: one index lookup per asset (`alert_diagnoses_asset_ts`, the primary
# keys of `alert_diagnoses` and `maintenance_events`), not a scan of every diagnosis.
_FLEET = """
SELECT best.gateway_id, best.alert_id, best.source, best.asset_id, best.ts, best.mode, best.confidence,
       best.evidence::text AS evidence_json, best.shaft_hz, best.velocity_rms_mm_s, best.iso_zone
FROM assets a
CROSS JOIN LATERAL (
    SELECT d.gateway_id AS g, d.alert_id AS al, d.ts AS newest_ts FROM alert_diagnoses d
    WHERE d.asset_id = a.asset_id ORDER BY d.ts DESC LIMIT 1
) newest
CROSS JOIN LATERAL (
    SELECT * FROM alert_diagnoses d WHERE d.gateway_id = newest.g AND d.alert_id = newest.al
    ORDER BY (d.mode <> 'unknown') DESC, d.confidence DESC, (d.source = 'edge') DESC LIMIT 1
) best
WHERE NOT EXISTS (
    SELECT 1 FROM maintenance_events e WHERE e.asset_id = a.asset_id AND e.ts >= newest.newest_ts
)
"""
_PENDING = """
SELECT s.gateway_id, s.seq, s.asset_id, s.alert_id, coalesce(a.raised_at, s.start_at) AS alert_ts,
       s.sample_rate_hz, s.samples, s.diagnosis_config
FROM snapshots s LEFT JOIN alerts a ON a.gateway_id = s.gateway_id AND a.alert_id = s.alert_id
WHERE s.cloud_diagnosed_at IS NULL AND s.diagnosis_config <> ''
ORDER BY s.received_at
LIMIT %s
FOR UPDATE OF s SKIP LOCKED
"""


@dataclass(frozen=True, slots=True)
class PendingSnapshot:
    """A stored snapshot the cloud has not diagnosed yet, with its asset's diagnosis configuration (JSON)."""

    gateway_id: str
    seq: int
    asset_id: str
    alert_id: str
    alert_ts: datetime
    sample_rate_hz: float
    samples: list[float]
    diagnosis_config: str


@dataclass(frozen=True, slots=True)
class DiagnosisRecord:
    """A stored diagnosis of an alert."""

    gateway_id: str
    alert_id: str
    source: str
    asset_id: str
    ts: datetime
    mode: str
    confidence: float
    evidence_json: str
    shaft_hz: float | None
    velocity_rms_mm_s: float | None
    iso_zone: str | None

    @property
    def evidence(self) -> list[DiagnosisEvidence]:
        """The evidence, decoded."""
        return _EVIDENCE.decode(self.evidence_json)


def store_diagnosis(
    cur: psycopg.Cursor[Any] | psycopg.Connection[Any],
    *,
    gateway_id: str,
    alert_id: str,
    asset_id: str,
    ts_ns: int,
    diagnosis: AlertDiagnosis,
    source: Literal["edge", "cloud"] = "edge",
) -> None:
    """Store the diagnosis of one alert from one source, replacing an earlier one of that source (a
    re-diagnosis of a raised alert); one of an earlier window than the stored one changes nothing."""
    cur.execute(
        _UPSERT,
        (
            gateway_id,
            alert_id,
            source,
            asset_id,
            ns_to_datetime(ts_ns),
            diagnosis.mode,
            diagnosis.confidence,
            _JSON.encode(diagnosis.evidence).decode(),
            diagnosis.shaft_hz,
            diagnosis.velocity_rms_mm_s,
            diagnosis.iso_zone,
        ),
    )


@dataclass(frozen=True, slots=True)
class DiagnosisStep:
    """One diagnosis a gateway sent for an alert: with its raise (`raised`) or as a re-diagnosis
    (`updated`), at the time of the window it read."""

    seq: int
    state: str
    ts: datetime
    diagnosis: AlertDiagnosis


def diagnosis_history(
    conn: psycopg.Connection[Any], *, gateway_id: str, alert_id: str
) -> list[DiagnosisStep]:
    """The edge's diagnoses of one alert in the order sent: the raise's, then each update's."""
    rows = conn.execute(
        "SELECT seq, state, ts, diagnosis::text FROM alert_messages "
        "WHERE gateway_id = %s AND alert_id = %s AND diagnosis IS NOT NULL ORDER BY seq",
        (gateway_id, alert_id),
    ).fetchall()
    return [DiagnosisStep(seq, state, ts, _DIAGNOSIS.decode(text)) for seq, state, ts, text in rows]


def alert_diagnoses(
    conn: psycopg.Connection[Any], *, gateway_id: str, alert_id: str
) -> list[DiagnosisRecord]:
    """Every stored diagnosis of one alert (edge and cloud)."""
    with conn.cursor(row_factory=class_row(DiagnosisRecord)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM alert_diagnoses WHERE gateway_id = %s AND alert_id = %s ORDER BY source",
            (gateway_id, alert_id),
        ).fetchall()


def latest_diagnoses(
    conn: psycopg.Connection[Any], *, asset_id: str | None = None, limit: int = 100
) -> list[DiagnosisRecord]:
    """The newest diagnoses, of one asset if given, newest first."""
    with conn.cursor(row_factory=class_row(DiagnosisRecord)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM alert_diagnoses "
            "WHERE (%(asset)s::text IS NULL OR asset_id = %(asset)s) ORDER BY ts DESC LIMIT %(limit)s",
            {"asset": asset_id, "limit": limit},
        ).fetchall()


def best_diagnoses(
    conn: psycopg.Connection[Any], *, asset_id: str | None = None, limit: int = 100
) -> list[DiagnosisRecord]:
    """Each alert's best diagnosis, newest alert first: of its edge and cloud diagnoses, one naming a mode
    before `unknown`, then the more confident, then the edge's (of one asset if given)."""
    with conn.cursor(row_factory=class_row(DiagnosisRecord)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM ({_BEST_PER_ALERT}) AS best ORDER BY ts DESC LIMIT %(limit)s",
            {"asset": asset_id, "limit": limit},
        ).fetchall()


def fleet_diagnoses(conn: psycopg.Connection[Any]) -> dict[str, DiagnosisRecord]:
    """Per asset, the best diagnosis of its newest diagnosed alert (ranked as `best_diagnoses` ranks an
    alert's edge and cloud diagnoses); assets with no diagnosis, or a maintenance or failure event at or
    after it (the maintenance answered it), are left out."""
    with conn.cursor(row_factory=class_row(DiagnosisRecord)) as cur:
        return {record.asset_id: record for record in cur.execute(_FLEET).fetchall()}


def pending_snapshots(conn: psycopg.Connection[Any], *, limit: int = 20) -> list[PendingSnapshot]:
    """The oldest snapshots with a diagnosis configuration and no cloud diagnosis yet, locked for this
    transaction (`SKIP LOCKED`: two processes never take the same one)."""
    with conn.cursor(row_factory=class_row(PendingSnapshot)) as cur:
        return cur.execute(_PENDING, (limit,)).fetchall()


def mark_snapshot_diagnosed(
    conn: psycopg.Connection[Any], *, gateway_id: str, seq: int, error: str = ""
) -> None:
    """Record that a snapshot was diagnosed (or, with `error`, why it could not be): it is not taken again."""
    conn.execute(
        "UPDATE snapshots SET cloud_diagnosed_at = now(), cloud_diagnosis_error = %s "
        "WHERE gateway_id = %s AND seq = %s",
        (error[:2000], gateway_id, seq),
    )
