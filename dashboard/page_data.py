"""The reads behind each page, one function a page: what its callback (and `forewarn bench dashboard`)
runs against the database before drawing. No SQL here: every read is a `cloud_service.queries` function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cloud_service.forecasting.repository import ForecastRecord
from cloud_service.queries import (
    AdviceRecord,
    AlertDetail,
    AlertRecord,
    AssetStatus,
    DiagnosisRecord,
    EventRecord,
    FeaturePoint,
    GatewayTraffic,
    JobDuration,
    ModelPeriod,
    RiskDay,
    Series,
    StorageUse,
    alert_detail,
    asset_alerts,
    asset_feature_names,
    asset_series,
    asset_status,
    best_diagnoses,
    closed_advice,
    feature_series,
    fleet_diagnoses,
    fleet_latest_forecasts,
    fleet_status,
    forecast_history,
    gateway_health,
    gateway_traffic,
    job_durations,
    last_alerts,
    maintenance_events,
    model_periods,
    open_advice,
    open_alerts,
    out_of_service_assets,
    risk_history,
    storage_use,
)
from cloud_service.rollups import align_down, align_up
from dashboard.fleet import FleetRow, fleet_rows

__all__ = [
    "DIAGNOSES_SHOWN",
    "RISK_DAYS",
    "AssetDiagnosisData",
    "AssetPageData",
    "CostPageData",
    "asset_diagnosis_data",
    "asset_page_data",
    "cost_page_data",
    "fleet_page_data",
    "fleet_risk_data",
    "risk_span",
]

RISK_DAYS = 30  # days of the fleet page's risk overview
DIAGNOSES_SHOWN = 6  # the asset page's newest diagnosed alerts: the newest in full, the others in a table
CLOSED_ADVICE_SHOWN = 5


def fleet_page_data(conn: psycopg.Connection[Any]) -> list[FleetRow]:
    """Every asset with its state, risk and probable failure mode, most at risk first."""
    return fleet_rows(
        fleet_status(conn),
        open_alerts=open_alerts(conn),
        last_alerts=last_alerts(conn),
        forecasts=fleet_latest_forecasts(conn),
        gateways=gateway_health(conn),
        diagnoses=fleet_diagnoses(conn),
        out_of_service=out_of_service_assets(conn),
    )


def risk_span(end: datetime) -> tuple[datetime, datetime]:
    """The whole UTC days of the risk overview: the `RISK_DAYS` days to `end`, `end`'s day included."""
    day = timedelta(days=1)
    return align_down(end - RISK_DAYS * day, day) + day, align_up(end, day)


def fleet_risk_data(conn: psycopg.Connection[Any], *, end: datetime) -> list[RiskDay]:
    """The fleet's risk per day over `risk_span(end)`."""
    start, stop = risk_span(end)
    return risk_history(conn, start=start, end=stop)


@dataclass(frozen=True, slots=True)
class AssetPageData:
    """What the asset page shows of one asset over a range."""

    status: AssetStatus | None
    feature_names: list[str]
    feature: str | None
    series: Series
    feature_points: list[FeaturePoint]
    alerts: list[AlertRecord]
    forecasts: list[ForecastRecord]
    periods: list[ModelPeriod]
    open_alerts: list[AlertRecord]


def asset_page_data(
    conn: psycopg.Connection[Any],
    asset_id: str,
    *,
    start: datetime,
    end: datetime,
    resolution: timedelta,
    feature: str | None,
) -> AssetPageData:
    """One asset over `[start, end)` in buckets of `resolution`: only that asset's rows are read, and long
    ranges come from the rollups.

    `feature` is the feature to draw; one the asset does not have is replaced by its first.
    """
    names = asset_feature_names(conn, asset_id)
    if feature not in names:
        feature = names[0] if names else None
    points = (
        feature_series(conn, asset_id, feature, start=start, end=end, resolution=resolution)
        if feature
        else []
    )
    return AssetPageData(
        status=asset_status(conn, asset_id),
        feature_names=names,
        feature=feature,
        series=asset_series(conn, asset_id, start=start, end=end, resolution=resolution),
        feature_points=points,
        alerts=asset_alerts(conn, asset_id, start=start, end=end),
        forecasts=forecast_history(conn, asset_id, start=start, end=end),
        periods=model_periods(conn, asset_id, start=start, end=end),
        open_alerts=open_alerts(conn, asset_id=asset_id),
    )


@dataclass(frozen=True, slots=True)
class AssetDiagnosisData:
    """What the asset page's diagnosis and advice panels show of one asset."""

    diagnoses: list[DiagnosisRecord]  # each alert's best, newest alert first
    alert: AlertDetail | None  # the newest diagnosed alert, for its anomaly score
    open_advice: list[AdviceRecord]
    closed_advice: list[AdviceRecord]
    out_of_service_since: datetime | None
    events: list[EventRecord]  # since the oldest diagnosis shown, oldest first
    now: datetime  # when it was read: advice due before it is overdue


def asset_diagnosis_data(
    conn: psycopg.Connection[Any], asset_id: str, *, now: datetime | None = None
) -> AssetDiagnosisData:
    """The asset's newest diagnoses (whatever the page's range) with the maintenance that followed them,
    its advice, and whether it is out of service."""
    now = now or datetime.now(UTC)
    diagnoses = best_diagnoses(conn, asset_id=asset_id, limit=DIAGNOSES_SHOWN)
    newest = diagnoses[0] if diagnoses else None
    events = maintenance_events(conn, start=diagnoses[-1].ts, asset_ids=[asset_id]) if diagnoses else []
    return AssetDiagnosisData(
        diagnoses=diagnoses,
        alert=alert_detail(conn, newest.gateway_id, newest.alert_id) if newest is not None else None,
        open_advice=open_advice(conn, asset_id=asset_id),
        closed_advice=closed_advice(conn, asset_id=asset_id, limit=CLOSED_ADVICE_SHOWN),
        out_of_service_since=out_of_service_assets(conn).get(asset_id),
        events=events,
        now=now,
    )


@dataclass(frozen=True, slots=True)
class CostPageData:
    """What the cost page shows: bandwidth per gateway over a range, storage, and job durations."""

    traffic: list[GatewayTraffic]
    storage: StorageUse
    jobs: list[JobDuration]


def cost_page_data(conn: psycopg.Connection[Any], *, start: datetime, end: datetime) -> CostPageData:
    """The gateways' traffic over `[start, end)`, the database's storage and the lifecycle jobs."""
    return CostPageData(
        traffic=gateway_traffic(conn, start=start, end=end),
        storage=storage_use(conn),
        jobs=job_durations(conn),
    )
