"""Advice from a stored diagnosis and forecast: what to do by when, stored with its inputs, closed by
maintenance with the mode found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from cloud_service.advice import Advice, build_advice, refresh_advice
from cloud_service.advice_settings import AdviceSettings
from cloud_service.forecasting.repository import ForecastRecord
from cloud_service.queries.advice import open_advice
from cloud_service.queries.diagnoses import DiagnosisRecord, store_diagnosis
from cloud_service.writer import BatchWriter
from shared.messages import AlertDiagnosis, MaintenanceEvent
from shared.timebase import datetime_to_ns

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _diagnosis(mode: str, zone: str, *, age_h: float = 1.0) -> DiagnosisRecord:
    return DiagnosisRecord(
        gateway_id="gw",
        alert_id="a1",
        source="edge",
        asset_id="pump-v",
        ts=NOW - timedelta(hours=age_h),
        mode=mode,
        confidence=0.8,
        evidence_json="[]",
        shaft_hz=49.0,
        velocity_rms_mm_s=3.0,
        iso_zone=zone,
    )


def _forecast(*, p_fail: float, rul_low_h: float) -> ForecastRecord:
    return ForecastRecord(
        asset_id="pump-v",
        computed_at=NOW,
        as_of=NOW,
        rul_h=rul_low_h * 2,
        rul_low_h=rul_low_h,
        rul_high_h=rul_low_h * 4,
        p_fail=p_fail,
        horizon_h=168.0,
        short_history=False,
        forecaster_version=1,
    )


def _build(
    diagnosis: DiagnosisRecord | None, forecast: ForecastRecord | None, settings: AdviceSettings | None = None
) -> Advice | None:
    return build_advice(
        asset_id="pump-v",
        asset_type="centrifugal_pump",
        diagnosis=diagnosis,
        forecast=forecast,
        now=NOW,
        settings=settings or AdviceSettings(),
    )


def test_a_bearing_diagnosis_gives_a_bearing_action_within_its_lead_time() -> None:
    advice = _build(_diagnosis("outer_race", "B"), None)
    assert advice is not None
    assert "bearing" in advice.action
    assert advice.due_by == NOW - timedelta(hours=1) + timedelta(hours=168)  # from the diagnosis
    assert advice.urgency == "plan"
    assert advice.inputs["diagnosis"]["mode"] == "outer_race"


def test_zone_d_and_a_short_rul_bring_the_date_forward_and_make_it_urgent() -> None:
    advice = _build(_diagnosis("outer_race", "D"), _forecast(p_fail=0.3, rul_low_h=10.0))
    assert advice is not None
    assert advice.urgency == "urgent"
    assert advice.due_by == NOW  # RUL low end 10 h, minus the 24 h safety margin: now
    assert advice.inputs["forecast"]["rul_low_h"] == 10.0


def test_lead_times_are_configurable_per_asset_type_and_mode() -> None:
    settings = AdviceSettings(lead_times_h={"centrifugal_pump:imbalance": 12.0, "*": 100.0})
    advice = _build(_diagnosis("imbalance", "A"), None, settings)
    assert advice is not None
    assert advice.due_by == NOW - timedelta(hours=1) + timedelta(hours=12)


def test_nothing_to_advise_without_a_mode_or_a_worrying_forecast() -> None:
    assert _build(_diagnosis("unknown", "B"), _forecast(p_fail=0.05, rul_low_h=500.0)) is None
    assert _build(_diagnosis("outer_race", "B", age_h=200.0), None) is None  # too old to act on
    forecast_only = _build(None, _forecast(p_fail=0.6, rul_low_h=400.0))
    assert forecast_only is not None
    assert (forecast_only.mode, forecast_only.urgency) == ("forecast", "urgent")


def _store(
    conn: psycopg.Connection[Any], alert_id: str, asset_id: str, ts: datetime, diagnosis: AlertDiagnosis
) -> None:
    store_diagnosis(
        conn,
        gateway_id="gw",
        alert_id=alert_id,
        asset_id=asset_id,
        ts_ns=datetime_to_ns(ts),
        diagnosis=diagnosis,
    )


@pytest.mark.slow
def test_advice_is_stored_refreshed_and_closed_by_maintenance(db: str) -> None:
    diagnosis = AlertDiagnosis(mode="misalignment", confidence=0.7, iso_zone="C")
    with psycopg.connect(db) as conn:
        _store(conn, "a1", "pump-v", NOW - timedelta(hours=2), diagnosis)
        first = refresh_advice(conn, settings=AdviceSettings(), now=NOW)
        again = refresh_advice(conn, settings=AdviceSettings(), now=NOW + timedelta(minutes=10))
        assert (first.created, again.created, again.updated) == (1, 0, 1)
        (advice,) = open_advice(conn, asset_id="pump-v")
        assert advice.mode == "misalignment"
        assert advice.due_by == NOW - timedelta(hours=2) + timedelta(hours=168)  # 336 h halved in zone C
        assert advice.inputs["diagnosis"]["iso_zone"] == "C"
        event = MaintenanceEvent(
            asset_id="pump-v",
            ts_ns=datetime_to_ns(NOW + timedelta(hours=1)),
            event="maintenance",
            mode="misalignment",
            source="cmms",
            note="coupling realigned",
        )
        BatchWriter(conn).write([event])
        closing = refresh_advice(conn, settings=AdviceSettings(), now=NOW + timedelta(hours=2))
        assert (closing.closed, closing.created) == (1, 0)  # the diagnosis before it is answered
        assert open_advice(conn, asset_id="pump-v") == []
        found = conn.execute(
            "SELECT found_mode, closing_note FROM asset_advice WHERE asset_id = 'pump-v'"
        ).fetchone()
        assert found == ("misalignment", "coupling realigned")


def test_the_scheduler_refreshes_advice_when_given_the_job() -> None:
    from cloud_service.lifecycle.scheduler import lifecycle_jobs  # noqa: PLC0415
    from cloud_service.lifecycle.settings import LifecycleSettings  # noqa: PLC0415

    def noop() -> None:
        return None

    settings = LifecycleSettings.model_validate({})
    with_advice = lifecycle_jobs(
        settings, retrain=noop, drift=noop, refresh_rollups=None, refresh_advice=noop
    )
    without = lifecycle_jobs(settings, retrain=noop, drift=noop, refresh_rollups=None)
    assert "advice" in {job.job_id for job in with_advice}
    assert "advice" not in {job.job_id for job in without}


@pytest.mark.slow
def test_a_diagnosed_fault_stays_advised_past_the_age_limit_until_a_maintenance_answers_it(db: str) -> None:
    settings = AdviceSettings()
    age_limit = timedelta(hours=settings.diagnosis_max_age_h)
    with psycopg.connect(db) as conn:
        _store(conn, "a1", "pump-v", NOW, AlertDiagnosis(mode="outer_race", confidence=0.8))
        too_old = NOW - age_limit - timedelta(hours=1)  # when first seen: starts no advice
        _store(conn, "b1", "fan-v", too_old, AlertDiagnosis(mode="imbalance", confidence=0.8))
        refresh_advice(conn, settings=settings, now=NOW)
        later = refresh_advice(conn, settings=settings, now=NOW + 2 * age_limit)
        assert later.updated == 1
        (advice,) = open_advice(conn)
        assert (advice.asset_id, advice.mode) == ("pump-v", "outer_race")  # not "forecast", not dropped
        assert advice.inputs["diagnosis"]["alert_id"] == "a1"
        BatchWriter(conn).write(
            [MaintenanceEvent(asset_id="pump-v", ts_ns=datetime_to_ns(NOW + age_limit), event="maintenance")]
        )
        answered = refresh_advice(conn, settings=settings, now=NOW + 2 * age_limit + timedelta(minutes=1))
        assert (answered.closed, answered.created) == (1, 0)
        assert open_advice(conn) == []
