"""A raised alert's re-diagnosis (`alert-update/1`) is stored against the same alert: not a new alert, not
annunciated again, not an alarm transition in the event log."""

from __future__ import annotations

import psycopg
import pytest

from cloud_service.ingest import decode_received
from cloud_service.queries import (
    alert_diagnoses,
    alert_history,
    diagnosis_history,
    list_alerts,
    open_alerts,
)
from cloud_service.queries.alarm_management import AlarmState, Transition
from cloud_service.writer import BatchWriter
from shared import topics
from shared.messages import Alert, AlertDiagnosis, AlertUpdate, encode
from shared.timebase import NS_PER_S, now_ns

GATEWAY, ASSET, ALERT_ID = "gw-u", "pump-u", "pump-u:1"


def _raised(ts_ns: int) -> Alert:
    return Alert(
        gateway_id=GATEWAY,
        asset_id=ASSET,
        seq=1,
        alert_id=ALERT_ID,
        state="raised",
        severity="warning",
        ts_ns=ts_ns,
        score=9.0,
        threshold=6.0,
        model_version="baseline",
        model_kind="baseline",
        diagnosis=AlertDiagnosis(mode="imbalance", confidence=0.5),
    )


def _update(ts_ns: int, *, seq: int, mode: str, confidence: float, alert_id: str = ALERT_ID) -> AlertUpdate:
    return AlertUpdate(
        gateway_id=GATEWAY,
        asset_id=ASSET,
        seq=seq,
        alert_id=alert_id,
        ts_ns=ts_ns,
        reason="changed",
        severity="critical",
        score=14.0,
        threshold=6.0,
        model_version="baseline",
        model_kind="baseline",
        diagnosis=AlertDiagnosis(mode=mode, confidence=confidence),
        message=f"diagnosis changed: {mode}",
    )


@pytest.mark.slow
def test_an_update_replaces_the_edge_diagnosis_of_the_same_alert_without_a_new_alert(db: str) -> None:
    raised_ns = now_ns() - 3600 * NS_PER_S
    later_ns, latest_ns = raised_ns + 600 * NS_PER_S, raised_ns + 1200 * NS_PER_S
    update = _update(later_ns, seq=2, mode="outer_race", confidence=1.0)
    # the update arrives on the gateway's alert topic, where the contract accepts it
    (decoded,) = decode_received(topics.alert(GATEWAY), encode(update))  # type: ignore[misc]
    assert decoded == update
    with psycopg.connect(db) as conn:
        writer = BatchWriter(conn)
        writer.write([_raised(raised_ns), decoded])  # a raise and its update in one batch, in seq order
        writer.write([decoded])  # a redelivery stores nothing twice
        writer.write([_update(latest_ns, seq=4, mode="outer_race", confidence=0.9)])
        writer.write([_update(later_ns, seq=3, mode="imbalance", confidence=0.4)])  # an older window, late
        conn.commit()

        (alert,) = open_alerts(conn)
        assert (alert.alert_id, alert.state, alert.severity) == (ALERT_ID, "open", "warning")
        (managed,) = list_alerts(conn)
        assert managed.state is AlarmState.ACTIVE_UNACKNOWLEDGED
        events = alert_history(conn, gateway_id=GATEWAY, alert_id=ALERT_ID)
        assert [e.transition for e in events] == [Transition.RAISED]
        (edge,) = alert_diagnoses(conn, gateway_id=GATEWAY, alert_id=ALERT_ID)
        assert (edge.mode, edge.source) == ("outer_race", "edge")
        assert edge.confidence == pytest.approx(0.9)  # the latest window's, not the late older one's
        steps = diagnosis_history(conn, gateway_id=GATEWAY, alert_id=ALERT_ID)
        assert [(s.seq, s.state, s.diagnosis.mode) for s in steps] == [
            (1, "raised", "imbalance"),
            (2, "updated", "outer_race"),
            (3, "updated", "imbalance"),
            (4, "updated", "outer_race"),
        ]
        stored = conn.execute(
            "SELECT count(*) FROM alert_messages WHERE gateway_id = %s", (GATEWAY,)
        ).fetchone()
        assert stored == (4,)


@pytest.mark.slow
def test_an_update_of_an_unknown_alert_creates_no_alert(db: str) -> None:
    ts = now_ns()
    with psycopg.connect(db) as conn:
        BatchWriter(conn).write([_update(ts, seq=7, mode="cage", confidence=0.6, alert_id="pump-u:9")])
        conn.commit()
        assert open_alerts(conn) == []
        assert alert_history(conn, gateway_id=GATEWAY, alert_id="pump-u:9") == []
        (kept,) = diagnosis_history(conn, gateway_id=GATEWAY, alert_id="pump-u:9")
        assert kept.diagnosis.mode == "cage"  # kept, never lost
