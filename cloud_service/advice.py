"""Advice a planner can act on: what to inspect or replace on an asset, and by when.

Built from the asset's latest alert's best diagnosis (edge or cloud, `best_diagnoses`: mode, confidence,
ISO 20816-3 zone) and its failure forecast
(RUL interval, p(fail within the horizon)):

- the action follows the diagnosed mode (`ACTIONS`); a forecast without a diagnosed mode gives a general
  inspection;
- the lead time is configured per asset type and mode (`AdviceSettings.lead_times_h`, keys `type:mode`,
  `mode` or `*`), counted from the diagnosis, shortened by the zone (`zone_factors`), and never later
  than the low end of the RUL interval minus `safety_h`;
- urgency is `urgent` when p(fail) reaches `urgent_p_fail` or the zone is D, `plan` otherwise, and
  `monitor` for a forecast alone below `plan_p_fail`.

`refresh_advice` (a scheduler job) first closes open advice after a maintenance or failure event (the
mode found becomes the label), then creates or refreshes one open advice per asset, stored with its
inputs so "why this advice" can be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg

from cloud_service.advice_settings import AdviceSettings
from cloud_service.forecasting.repository import ForecastRecord, latest_forecasts
from cloud_service.queries.advice import (
    AdviceRecord,
    asset_types,
    close_advice_after_maintenance,
    last_maintenance,
    open_advice,
    upsert_open_advice,
)
from cloud_service.queries.diagnoses import DiagnosisRecord, best_diagnoses

__all__ = ["ACTIONS", "Advice", "AdviceRefresh", "AdviceSettings", "build_advice", "refresh_advice"]

ACTIONS: dict[str, str] = {
    "outer_race": "Inspect the bearing (outer race defect): check lubrication, plan the bearing replacement.",
    "inner_race": "Inspect the bearing (inner race defect): plan the bearing replacement.",
    "rolling_element": "Inspect the bearing (rolling element defect): plan the bearing replacement.",
    "cage": "Inspect the bearing cage: plan the bearing replacement before it seizes.",
    "imbalance": "Check the rotor for build-up, wear or lost balance weights; balance the rotor.",
    "misalignment": "Check the shaft alignment and the coupling; realign.",
    "looseness": "Check the foundation bolts, bearing housings and fits; tighten or repair.",
    "cavitation": "Check the suction side: inlet pressure, strainer, valve positions, NPSH margin.",
    "overheating": "Check lubrication, cooling and load; inspect the bearing housing temperature.",
    "sensor_fault": "Check the sensor, its cable and mounting; the machine's state is not known meanwhile.",
    "forecast": "Inspect the asset: the failure forecast rose without a diagnosed failure mode.",
}
Urgency = Literal["monitor", "plan", "urgent"]


@dataclass(frozen=True, slots=True)
class Advice:
    """One asset's advice and the inputs it came from."""

    asset_id: str
    mode: str
    action: str
    urgency: Urgency
    due_by: datetime
    inputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AdviceRefresh:
    """What one refresh did."""

    created: int
    updated: int
    closed: int


def _lead_h(settings: AdviceSettings, asset_type: str, mode: str) -> float:
    base_mode = mode.split(":", maxsplit=1)[0]
    for key in (f"{asset_type}:{base_mode}", base_mode, "*"):
        if key in settings.lead_times_h:
            return settings.lead_times_h[key]
    return 168.0


def build_advice(
    *,
    asset_id: str,
    asset_type: str,
    diagnosis: DiagnosisRecord | None,
    forecast: ForecastRecord | None,
    now: datetime,
    settings: AdviceSettings,
    is_advised: bool = False,
) -> Advice | None:
    """The advice for one asset, or None when neither a diagnosed mode nor the forecast calls for one.

    A diagnosis older than `diagnosis_max_age_h` starts no advice, but one an open advice was already
    built from (`is_advised`) is still acted on: a diagnosed fault does not heal by itself, so its advice
    stands until a maintenance answers it.
    """
    fresh = diagnosis is not None and (
        is_advised or now - diagnosis.ts <= timedelta(hours=settings.diagnosis_max_age_h)
    )
    mode = diagnosis.mode if diagnosis is not None and fresh and diagnosis.mode != "unknown" else None
    p_fail = forecast.p_fail if forecast is not None else None
    if mode is None and (p_fail is None or p_fail < settings.plan_p_fail):
        return None
    zone = diagnosis.iso_zone if diagnosis is not None and fresh else None
    lead_h = _lead_h(settings, asset_type, mode or "forecast") * settings.zone_factors.get(zone or "A", 1.0)
    # Anchored where the evidence came from, so a refresh does not push the date back.
    anchor = diagnosis.ts if diagnosis is not None and fresh else forecast.as_of if forecast else now
    due_by = anchor + timedelta(hours=lead_h)
    if forecast is not None:
        rul_due = forecast.as_of + timedelta(hours=max(0.0, forecast.rul_low_h - settings.safety_h))
        due_by = min(due_by, rul_due)
    is_urgent = zone == "D" or (p_fail is not None and p_fail >= settings.urgent_p_fail)
    urgency: Urgency = "urgent" if is_urgent else "plan"
    if mode is None and not is_urgent and p_fail is not None and p_fail < settings.plan_p_fail:
        urgency = "monitor"
    inputs: dict[str, Any] = {"asset_type": asset_type, "lead_time_h": lead_h}
    if diagnosis is not None and fresh:
        inputs["diagnosis"] = {
            "gateway_id": diagnosis.gateway_id,
            "alert_id": diagnosis.alert_id,
            "mode": diagnosis.mode,
            "confidence": diagnosis.confidence,
            "iso_zone": diagnosis.iso_zone,
            "velocity_rms_mm_s": diagnosis.velocity_rms_mm_s,
            "ts": diagnosis.ts.isoformat(),
        }
    if forecast is not None:
        inputs["forecast"] = {
            "rul_h": forecast.rul_h,
            "rul_low_h": forecast.rul_low_h,
            "rul_high_h": forecast.rul_high_h,
            "p_fail": forecast.p_fail,
            "horizon_h": forecast.horizon_h,
            "as_of": forecast.as_of.isoformat(),
        }
    key = (mode or "forecast").split(":", maxsplit=1)[0]
    return Advice(
        asset_id, mode or "forecast", ACTIONS.get(key, ACTIONS["forecast"]), urgency, due_by, inputs
    )


def refresh_advice(
    conn: psycopg.Connection[Any], *, settings: AdviceSettings, now: datetime
) -> AdviceRefresh:
    """Close advice after maintenance, then create or refresh each asset's open advice (no commit)."""
    closed = close_advice_after_maintenance(conn, now=now)
    diagnoses: dict[str, DiagnosisRecord] = {}
    # Each alert's best diagnosis (edge or cloud: `best_diagnoses`), newest first: keep each asset's newest.
    for record in best_diagnoses(conn, limit=10_000):
        diagnoses.setdefault(record.asset_id, record)
    forecasts = {f.asset_id: f for f in latest_forecasts(conn)}
    types = asset_types(conn)
    maintained = last_maintenance(conn)
    advised = {a.asset_id: _advised_alert(a) for a in open_advice(conn)}
    created = updated = 0
    for asset_id in sorted(set(diagnoses) | set(forecasts)):
        diagnosis = diagnoses.get(asset_id)
        if diagnosis is not None and asset_id in maintained and diagnosis.ts <= maintained[asset_id]:
            diagnosis = None  # the maintenance since answered it
        advice = build_advice(
            asset_id=asset_id,
            asset_type=types.get(asset_id, ""),
            diagnosis=diagnosis,
            forecast=forecasts.get(asset_id),
            now=now,
            settings=settings,
            is_advised=diagnosis is not None
            and advised.get(asset_id) == (diagnosis.gateway_id, diagnosis.alert_id),
        )
        if advice is None:
            continue
        is_new = upsert_open_advice(
            conn,
            asset_id=asset_id,
            now=now,
            mode=advice.mode,
            action=advice.action,
            urgency=advice.urgency,
            due_by=advice.due_by,
            inputs=advice.inputs,
        )
        created += is_new
        updated += not is_new
    return AdviceRefresh(created=created, updated=updated, closed=len(closed))


def _advised_alert(advice: AdviceRecord) -> tuple[str, str] | None:
    """The (gateway, alert) whose diagnosis an open advice was built from; None for forecast advice."""
    try:
        inputs: Any = advice.inputs
    except ValueError:  # not JSON: stored by hand
        return None
    diagnosis = inputs.get("diagnosis") if isinstance(inputs, dict) else None
    if not isinstance(diagnosis, dict):
        return None
    return str(diagnosis.get("gateway_id", "")), str(diagnosis.get("alert_id", ""))
