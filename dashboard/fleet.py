"""The fleet overview's rows: each asset's state and risk, from the cloud's reads (no SQL here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cloud_service.forecasting.repository import ForecastRecord
from cloud_service.queries import AlertRecord, AssetStatus, DiagnosisRecord, GatewayHealth

__all__ = [
    "OUT_OF_SERVICE",
    "STATES",
    "WARNING_SHARE",
    "FleetRow",
    "failure_mode_text",
    "fleet_rows",
    "probable_mode",
    "rul_text",
]

# An asset whose latest score passes this share of its threshold is in `warning`.
WARNING_SHARE = 0.8
OUT_OF_SERVICE = "out of service"
# Most to least urgent: the fleet table sorts by this first. An asset out of service (under maintenance:
# its alerts are recorded, not annunciated) sorts last, so that it never pushes an in-service asset's alarm
# out of the rows shown; the state filter finds it.
STATES = ("alarm", "warning", "offline", "normal", "no data", OUT_OF_SERVICE)


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One asset as the fleet table shows it."""

    asset_id: str
    site_id: str
    line: str
    asset_type: str
    criticality: str
    state: str
    score: float | None
    threshold: float | None
    forecast: ForecastRecord | None
    last_alert: AlertRecord | None
    open_alerts: int
    diagnosis: DiagnosisRecord | None = None
    out_of_service_since: datetime | None = None

    @property
    def score_share(self) -> float | None:
        """The latest score as a share of the threshold (1.0 at the threshold)."""
        if self.score is None or not self.threshold:
            return None
        return self.score / self.threshold

    def risk_key(self) -> tuple[int, float, float]:
        """Sort key, most at risk first: state, then p(fail), then score against threshold."""
        p_fail = self.forecast.p_fail if self.forecast is not None else -1.0
        share = self.score_share if self.score_share is not None else -1.0
        return (STATES.index(self.state), -p_fail, -share)


def _state(asset: AssetStatus, alerts: list[AlertRecord], gateway: GatewayHealth | None) -> str:
    if asset.last_period_end is None:
        return "no data"
    if gateway is not None and (gateway.is_stale or gateway.state == "offline"):
        return "offline"
    share = (
        asset.last_score_mean / asset.threshold
        if asset.last_score_mean is not None and asset.threshold
        else None
    )
    if any(a.severity == "critical" for a in alerts) or (share is not None and share >= 1.0):
        return "alarm"
    if alerts or (share is not None and share >= WARNING_SHARE):
        return "warning"
    return "normal"


def fleet_rows(
    assets: Iterable[AssetStatus],
    *,
    open_alerts: Iterable[AlertRecord],
    last_alerts: Mapping[str, AlertRecord],
    forecasts: Iterable[ForecastRecord],
    gateways: Iterable[GatewayHealth],
    diagnoses: Mapping[str, DiagnosisRecord] | None = None,
    out_of_service: Mapping[str, datetime] | None = None,
) -> list[FleetRow]:
    """Every asset with its state, score, forecast, last alert and diagnosis, most at risk first.

    States: `out of service` (taken out of service, under maintenance: this wins over every other state,
    as it does on the Alerts page), `alarm` (a critical open alert, or the latest score at or above the
    threshold), `warning` (another open alert, or the score above `WARNING_SHARE` of the threshold),
    `offline` (its gateway's heartbeat is overdue or it said offline), `normal`, and `no data` (nothing
    received yet). They sort in `STATES`' order: out of service last.

    Args:
        diagnoses: per asset, the diagnosis to show (`fleet_diagnoses`).
        out_of_service: the assets out of service, with since when (`out_of_service_assets`).
    """
    diagnosis_of = diagnoses or {}
    out_since = out_of_service or {}
    by_asset: dict[str, list[AlertRecord]] = {}
    for alert in open_alerts:
        by_asset.setdefault(alert.asset_id, []).append(alert)
    forecast_of = {f.asset_id: f for f in forecasts}
    gateway_of = {g.gateway_id: g for g in gateways}
    rows = [
        FleetRow(
            asset_id=asset.asset_id,
            site_id=asset.site_id or "",
            line=asset.line,
            asset_type=asset.asset_type,
            criticality=asset.criticality,
            state=OUT_OF_SERVICE
            if asset.asset_id in out_since
            else _state(asset, by_asset.get(asset.asset_id, []), gateway_of.get(asset.gateway_id or "")),
            score=asset.last_score_mean,
            threshold=asset.threshold,
            forecast=forecast_of.get(asset.asset_id),
            last_alert=last_alerts.get(asset.asset_id),
            open_alerts=asset.open_alerts,
            diagnosis=diagnosis_of.get(asset.asset_id),
            out_of_service_since=out_since.get(asset.asset_id),
        )
        for asset in assets
    ]
    return sorted(rows, key=lambda row: (row.risk_key(), row.asset_id))


def rul_text(forecast: ForecastRecord | None) -> str:
    """The remaining useful life as the table shows it.

    "beyond the horizon" when even the interval's low end lies past the forecast horizon (no degradation
    seen within it), instead of a falsely precise number.
    """
    if forecast is None:
        return "no forecast yet"
    if forecast.rul_low_h >= forecast.horizon_h:
        return f"beyond the horizon (> {forecast.horizon_h:.0f} h)"
    return f"{forecast.rul_h:.0f} h ({forecast.rul_low_h:.0f}–{forecast.rul_high_h:.0f} h)"


def probable_mode(diagnosis: DiagnosisRecord | None) -> str | None:
    """The diagnosed failure mode, or None when there is none or no evidence for it: a mode is only named
    with at least one piece of its evidence found (`unknown` and a mode without found evidence give None)."""
    if diagnosis is None or diagnosis.mode == "unknown" or diagnosis.confidence <= 0.0:
        return None
    return diagnosis.mode if any(e.is_found for e in diagnosis.evidence) else None


def failure_mode_text(diagnosis: DiagnosisRecord | None) -> str:
    """The probable failure mode as the fleet table shows it: `outer_race (82 %)`, `unknown` when a
    diagnosis found no evidence of a mode, and a dash when the asset has no diagnosis."""
    if diagnosis is None:
        return "–"
    mode = probable_mode(diagnosis)
    return "unknown" if mode is None else f"{mode} ({100 * diagnosis.confidence:.0f} %)"
