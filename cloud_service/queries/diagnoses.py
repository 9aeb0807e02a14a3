"""Diagnoses of alerts: stored when an alert arrives with one, read for the dashboard and the advice.

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

__all__ = ["DiagnosisRecord", "alert_diagnoses", "latest_diagnoses", "store_diagnosis"]

_JSON = msgspec.json.Encoder()
_EVIDENCE = msgspec.json.Decoder(list[DiagnosisEvidence])

_UPSERT = """
INSERT INTO alert_diagnoses (gateway_id, alert_id, source, asset_id, ts, mode, confidence, evidence, shaft_hz,
                             velocity_rms_mm_s, iso_zone)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)
ON CONFLICT (gateway_id, alert_id, source) DO UPDATE SET
    ts = EXCLUDED.ts, mode = EXCLUDED.mode, confidence = EXCLUDED.confidence, evidence = EXCLUDED.evidence,
    shaft_hz = EXCLUDED.shaft_hz, velocity_rms_mm_s = EXCLUDED.velocity_rms_mm_s,
    iso_zone = EXCLUDED.iso_zone, stored_at = now()
"""
_COLUMNS = """gateway_id, alert_id, source, asset_id, ts, mode, confidence, evidence::text AS evidence_json,
              shaft_hz, velocity_rms_mm_s, iso_zone"""


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
    """Store (or replace) the diagnosis of one alert from one source."""
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
