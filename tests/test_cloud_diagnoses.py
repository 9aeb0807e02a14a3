"""An alert's diagnosis is stored with it when it arrives and read back through the queries."""

from __future__ import annotations

import psycopg
import pytest

from cloud_service.queries import alert_diagnoses, latest_diagnoses
from cloud_service.writer import BatchWriter
from shared.messages import Alert, AlertDiagnosis, DiagnosisEvidence
from shared.timebase import now_ns


def _alert(
    ts_ns: int, *, diagnosis: AlertDiagnosis | None, seq: int = 1, alert_id: str = "pump-d:1"
) -> Alert:
    return Alert(
        gateway_id="gw-d",
        asset_id="pump-d",
        seq=seq,
        alert_id=alert_id,
        state="raised",
        severity="warning",
        ts_ns=ts_ns,
        score=9.0,
        threshold=6.0,
        model_version="baseline",
        model_kind="baseline",
        diagnosis=diagnosis,
    )


@pytest.mark.slow
def test_the_diagnosis_of_a_raised_alert_is_stored_and_readable(db: str) -> None:
    ts = now_ns()
    evidence = [DiagnosisEvidence(name="bpfo x1", value=0.03, freq_hz=107.4, floor=0.001, is_found=True)]
    diagnosis = AlertDiagnosis(
        mode="outer_race",
        confidence=0.67,
        evidence=evidence,
        shaft_hz=29.95,
        velocity_rms_mm_s=3.1,
        iso_zone="C",
    )
    with psycopg.connect(db) as conn:
        writer = BatchWriter(conn)
        writer.write(
            [_alert(ts, diagnosis=diagnosis), _alert(ts, diagnosis=None, seq=2, alert_id="pump-d:2")]
        )
        writer.write([_alert(ts, diagnosis=diagnosis)])  # a redelivery stores nothing twice
        conn.commit()
        (stored,) = alert_diagnoses(conn, gateway_id="gw-d", alert_id="pump-d:1")
        assert (stored.mode, stored.source, stored.iso_zone) == ("outer_race", "edge", "C")
        assert stored.confidence == pytest.approx(0.67)
        assert stored.evidence == evidence
        assert alert_diagnoses(conn, gateway_id="gw-d", alert_id="pump-d:2") == []
        assert [d.alert_id for d in latest_diagnoses(conn, asset_id="pump-d")] == ["pump-d:1"]
