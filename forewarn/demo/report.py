"""What the demo saw, read back from the database and the broker, and how it is printed."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TextIO

import psycopg

from cloud_service.forecasting.repository import latest_forecasts
from cloud_service.lifecycle import registry
from cloud_service.queries import latest_gateway_metrics, missing_sequences, sequence_account, stored_counts
from forewarn.demo.watcher import AlertSeen
from shared.timebase import NS_PER_S, iso_time
from simulators import TruthRecord

__all__ = ["AssetOutcome", "DemoReport", "GatewayOutcome", "collect", "counted", "print_report"]



def counted(count: int, noun: str) -> str:
    """`1 alert`, `3 alerts`: a count with its noun in the right number."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"

@dataclasses.dataclass
class AssetOutcome:
    """What happened to one asset, in plain terms."""

    asset_id: str
    gateway_id: str
    failures: int = 0
    failure_modes: list[str] = dataclasses.field(default_factory=list)
    alerts_raised: int = 0
    alerts_cleared: int = 0
    first_alert_lead_h: float | None = None
    rul_h: float | None = None
    rul_low_h: float | None = None
    rul_high_h: float | None = None
    p_fail: float | None = None
    horizon_h: float | None = None

    def describe(self) -> str:
        """One line: failed or not, alerted or not, and the forecast."""
        parts = []
        if self.failures:
            modes = ", ".join(sorted(set(self.failure_modes)))
            parts.append(f"failed {self.failures} time{'s' if self.failures > 1 else ''} ({modes})")
            if self.first_alert_lead_h is not None:
                parts.append(f"first alert {self.first_alert_lead_h:.0f} h before its first failure")
            else:
                parts.append("no alert before its first failure")
        if self.alerts_raised:
            cleared = f", {self.alerts_cleared} cleared" if self.alerts_cleared else ", none cleared"
            parts.append(f"{counted(self.alerts_raised, 'alert')} raised{cleared}")
        elif not self.failures:
            parts.append("healthy, no alert")
        if self.rul_h is None:
            parts.append("no forecast")
        else:
            parts.append(
                f"RUL {self.rul_h:.0f} h ({self.rul_low_h:.0f}-{self.rul_high_h:.0f}), "
                f"p(fail in {self.horizon_h:.0f} h) {self.p_fail:.2f}"
            )
        return "; ".join(parts)


@dataclasses.dataclass
class GatewayOutcome:
    """One gateway's accounting: what it queued, what the cloud stored, and its models."""

    gateway_id: str
    assets: int
    queued: int = 0
    stored: int = 0
    left_in_queue: int = 0
    dropped_by_policy: int = 0
    duplicated: int = 0
    upstream_bytes: float = 0.0
    raw_bytes: float = 0.0
    retrained_models_active: list[str] = dataclasses.field(default_factory=list)
    missing_seqs: list[int] = dataclasses.field(default_factory=list)

    @property
    def lost(self) -> int:
        """Queued messages neither stored, still queued, nor dropped by the declared policy."""
        return max(0, self.queued - self.stored - self.left_in_queue - self.dropped_by_policy)


@dataclasses.dataclass
class DemoReport:
    """What the demo saw."""

    scenario: str = ""
    simulated_days: float = 0.0
    speed: float = 0.0
    wall_s: float = 0.0
    raw_messages: int = 0
    raw_samples: int = 0
    dashboard_url: str = ""
    plant_alerts: list[AlertSeen] = dataclasses.field(default_factory=list)
    truth: list[TruthRecord] = dataclasses.field(default_factory=list)
    assets: list[AssetOutcome] = dataclasses.field(default_factory=list)
    gateways: list[GatewayOutcome] = dataclasses.field(default_factory=list)
    aggregates_stored: int = 0
    alerts_stored: int = 0
    dead_letters: int = 0

    def summary(self) -> dict[str, Any]:
        """The figures `forewarn demo --json` prints."""
        raw = sum(g.raw_bytes for g in self.gateways)
        return {
            "scenario": self.scenario,
            "simulated_days": round(self.simulated_days, 2),
            "speed": round(self.speed),
            "wall_s": round(self.wall_s, 1),
            "assets": len(self.assets),
            "raw_samples": self.raw_samples,
            "alerts": sum(1 for seen in self.plant_alerts if seen.alert.state == "raised"),
            "alerts_stored": self.alerts_stored,
            "failures": sum(a.failures for a in self.assets),
            "failures_alerted_before": sum(
                1 for a in self.assets if a.failures and a.first_alert_lead_h is not None
            ),
            "assets_with_forecast": sum(1 for a in self.assets if a.rul_h is not None),
            "forecast_p_fail_quantiles": _quantiles([a.p_fail for a in self.assets if a.p_fail is not None]),
            "gateways": len(self.gateways),
            "gateways_on_retrained_model": sum(1 for g in self.gateways if g.retrained_models_active),
            "upstream_bytes_per_raw_byte": (
                round(sum(g.upstream_bytes for g in self.gateways) / raw, 6) if raw else None
            ),
            "aggregates_stored": self.aggregates_stored,
            "dead_letters": self.dead_letters,
            "lost": sum(g.lost for g in self.gateways),
            "duplicated": sum(g.duplicated for g in self.gateways),
            "dropped_by_policy": sum(g.dropped_by_policy for g in self.gateways),
            "dashboard_url": self.dashboard_url,
        }


_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _quantiles(values: Sequence[float]) -> list[float] | None:
    """The 0, 10, 25, 50, 75, 90 and 100 % quantiles (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return [round(ordered[round(q * (len(ordered) - 1))], 4) for q in _QUANTILES]


def _first_lead_h(alerts: Sequence[AlertSeen], asset_id: str, failure_ns: int) -> float | None:
    raised = [
        seen.alert.ts_ns
        for seen in alerts
        if seen.alert.asset_id == asset_id and seen.alert.state == "raised" and seen.alert.ts_ns <= failure_ns
    ]
    return (failure_ns - min(raised)) / NS_PER_S / 3600 if raised else None


def _asset_outcomes(report: DemoReport, shares: dict[str, str], conn: psycopg.Connection[Any]) -> None:
    forecasts = {f.asset_id: f for f in latest_forecasts(conn)}
    for asset_id, gateway_id in shares.items():
        outcome = AssetOutcome(asset_id, gateway_id)
        failures = [r for r in report.truth if r.asset_id == asset_id and r.event == "failure"]
        outcome.failures = len(failures)
        outcome.failure_modes = [r.mode for r in failures]
        if failures:
            outcome.first_alert_lead_h = _first_lead_h(report.plant_alerts, asset_id, failures[0].ts_ns)
        mine = [seen.alert for seen in report.plant_alerts if seen.alert.asset_id == asset_id]
        outcome.alerts_raised = sum(1 for a in mine if a.state == "raised")
        outcome.alerts_cleared = sum(1 for a in mine if a.state == "cleared")
        forecast = forecasts.get(asset_id)
        if forecast is not None:
            outcome.rul_h, outcome.rul_low_h = forecast.rul_h, forecast.rul_low_h
            outcome.rul_high_h, outcome.p_fail = forecast.rul_high_h, forecast.p_fail
            outcome.horizon_h = forecast.horizon_h
        report.assets.append(outcome)


def _retrained_active(conn: psycopg.Connection[Any], gateway_id: str) -> list[str]:
    active: list[str] = []
    for target in sorted({m.target for m in registry.list_models(conn)}):
        for state in registry.gateway_states(conn, target):
            if state.gateway_id == gateway_id and state.state == "active":
                active.append(f"{target} v{state.version}")
                break
    return active


def collect(
    report: DemoReport,
    conn: psycopg.Connection[Any],
    *,
    shares: dict[str, str],
    queued: dict[str, tuple[int, int]],
) -> None:
    """Fill `report` from the database. `queued`: per gateway, (sequence numbers assigned, still queued)."""
    counts = stored_counts(conn)
    report.aggregates_stored, report.alerts_stored = counts.aggregates, counts.alerts
    report.dead_letters = counts.dead_letters
    _asset_outcomes(report, shares, conn)
    for gateway_id, (assigned, left) in sorted(queued.items()):
        outcome = GatewayOutcome(gateway_id, assets=sum(1 for g in shares.values() if g == gateway_id))
        account = sequence_account(conn, gateway_id)
        outcome.queued, outcome.left_in_queue = assigned, left
        outcome.stored, outcome.duplicated = account.distinct_seqs, account.duplicated
        metrics = latest_gateway_metrics(conn, gateway_id)
        outcome.dropped_by_policy = int(sum(v for k, v in metrics.items() if k.startswith("queue.dropped.")))
        outcome.upstream_bytes = metrics.get("uplink.bytes_out", 0.0)
        outcome.raw_bytes = metrics.get("intake.received_bytes", 0.0)
        outcome.retrained_models_active = _retrained_active(conn, gateway_id)
        if outcome.lost:
            outcome.missing_seqs = missing_sequences(conn, gateway_id, below=assigned)
        report.gateways.append(outcome)


def print_report(report: DemoReport, out: TextIO, *, as_json: bool = False) -> None:
    """The demo's closing report: per asset what happened, per gateway its accounting, the totals."""
    summary = report.summary()
    if as_json:
        print(json.dumps(summary), file=out)
        return
    print(
        f"\n== {report.scenario}: {report.simulated_days:.1f} simulated days in {report.wall_s:.0f} s "
        f"({report.speed:,.0f}x), {report.raw_samples:,} raw samples",
        file=out,
    )
    print("\n== Assets", file=out)
    for asset in report.assets:
        print(f"  {asset.asset_id:10s} ({asset.gateway_id}): {asset.describe()}", file=out)
    print("\n== Gateways", file=out)
    for gateway in report.gateways:
        models = ", ".join(gateway.retrained_models_active) or "none yet (statistical baseline)"
        ratio = gateway.upstream_bytes / gateway.raw_bytes if gateway.raw_bytes else 0.0
        print(
            f"  {gateway.gateway_id}: {gateway.assets} assets; queued {gateway.queued}, stored "
            f"{gateway.stored}, still queued {gateway.left_in_queue}, lost {gateway.lost}, duplicated "
            f"{gateway.duplicated}; upstream {ratio:.2e} byte per raw byte; retrained models active: "
            f"{models}"
            + (f"; first missing sequence numbers {gateway.missing_seqs}" if gateway.missing_seqs else ""),
            file=out,
        )
    failures = [r for r in report.truth if r.event == "failure"]
    print(f"\n== Ground truth: {len(failures)} failures", file=out)
    for record in failures:
        print(f"  {iso_time(record.ts_ns)} {record.asset_id} failed ({record.mode})", file=out)
    print(
        f"\n== Totals: {counted(summary['alerts'], 'alert')} raised, {summary['assets_with_forecast']} of "
        f"{counted(summary['assets'], 'asset')} forecast, {summary['gateways_on_retrained_model']} of "
        f"{counted(summary['gateways'], 'gateway')} on a retrained model, "
        f"{counted(report.aggregates_stored, 'aggregate')} and "
        f"{counted(report.alerts_stored, 'alert')} stored, "
        f"{counted(report.dead_letters, 'dead letter')}, lost {summary['lost']}, "
        f"duplicated {summary['duplicated']}",
        file=out,
    )
    if report.dashboard_url:
        print(f"\n== Dashboard: {report.dashboard_url}", file=out)
