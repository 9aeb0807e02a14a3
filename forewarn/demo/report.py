"""What the demo saw, read back from the database and the broker, and how it is printed."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TextIO

import psycopg

from cloud_service.forecasting.repository import latest_forecasts
from cloud_service.lifecycle import registry
from cloud_service.queries import (
    advised_modes,
    best_diagnoses,
    latest_gateway_metrics,
    missing_sequences,
    sequence_account,
    stored_counts,
)
from forewarn.demo.watcher import AlertSeen
from shared.timebase import NS_PER_S, datetime_to_ns, iso_time, parse_time_ns
from simulators import TruthRecord

__all__ = [
    "AssetOutcome",
    "DemoReport",
    "DiagnosisScore",
    "GatewayOutcome",
    "collect",
    "counted",
    "failure_leads",
    "failures_alerted",
    "faults_at",
    "print_report",
]


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
    diagnosed_modes: dict[str, int] = dataclasses.field(default_factory=dict)  # mode -> alerts
    advice_modes: list[str] = dataclasses.field(default_factory=list)

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
        if self.diagnosed_modes:
            ranked = sorted(self.diagnosed_modes.items(), key=lambda item: (-item[1], item[0]))
            parts.append("diagnosed " + ", ".join(f"{mode} x{n}" for mode, n in ranked))
        if self.advice_modes:
            parts.append("advice: " + ", ".join(dict.fromkeys(self.advice_modes)))
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
class DiagnosisScore:
    """Each stored alert's best diagnosis (edge or cloud) against the simulator's ground truth at the
    diagnosed window's time (`faults_at`)."""

    correct: int = 0  # named a mode the asset then had
    wrong: int = 0  # named another mode while the asset had a fault
    unknown: int = 0  # `unknown` while the asset had a fault
    mode_without_fault: int = 0  # named a mode while the asset had none
    unknown_without_fault: int = 0  # `unknown` while the asset had none (right)

    def add(self, mode: str, faults: set[str]) -> None:
        """Count one diagnosis naming `mode` (`outer_race:drive-end` counts as `outer_race`)."""
        mode = mode.split(":", maxsplit=1)[0]
        if faults:
            if mode == "unknown":
                self.unknown += 1
            elif mode in faults:
                self.correct += 1
            else:
                self.wrong += 1
        elif mode == "unknown":
            self.unknown_without_fault += 1
        else:
            self.mode_without_fault += 1


def faults_at(truth: Sequence[TruthRecord], asset_id: str, ts_ns: int) -> set[str]:
    """The failure modes an asset had at `ts_ns` (onset on or before it, no maintenance since), and
    `sensor_fault` while one of its sensors was faulty."""
    faults: set[str] = set()
    for record in sorted(truth, key=lambda r: r.ts_ns):
        if record.asset_id != asset_id or record.ts_ns > ts_ns:
            continue
        if record.event == "onset":
            faults.add(record.mode)
        elif record.event == "maintenance":  # a repair or a preventive maintenance ends every degradation
            faults -= {mode for mode in faults if mode != "sensor_fault"}
        elif record.event == "sensor_fault":
            until = dict(part.split("=", 1) for part in record.detail.split(";") if "=" in part).get("until")
            if until is None or ts_ns <= parse_time_ns(until):
                faults.add("sensor_fault")
    return faults


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
    alerts_diagnosed: int = 0
    alerts_with_mode: int = 0
    diagnosis_vs_truth: DiagnosisScore = dataclasses.field(default_factory=DiagnosisScore)
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
            "alerts_diagnosed": self.alerts_diagnosed,
            "alerts_with_diagnosis": self.alerts_with_mode,
            "diagnosis_vs_truth": dataclasses.asdict(self.diagnosis_vs_truth),
            "assets_with_advice": sum(1 for a in self.assets if a.advice_modes),
            "assets_with_diagnosed_advice": sum(
                1 for a in self.assets if any(mode != "forecast" for mode in a.advice_modes)
            ),
            "failures": sum(a.failures for a in self.assets),
            "failures_alerted_before": failures_alerted(self.truth, self.plant_alerts),
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


def failure_leads(
    truth: Sequence[TruthRecord], alerts: Sequence[AlertSeen]
) -> list[tuple[TruthRecord, float | None]]:
    """Each failure with the hours from its first alert to it, or None when none was raised in time.

    An alert counts when its asset raised it between the failure's onset (the asset's latest one at or
    before the failure, after its previous failure and its last maintenance, which ends a degradation as
    in `faults_at`) and the failure; a failure without an onset (nothing degraded first) counts only with
    an alert at the failure itself.
    """
    raised: dict[str, list[int]] = {}
    for seen in alerts:
        if seen.alert.state == "raised":
            raised.setdefault(seen.alert.asset_id, []).append(seen.alert.ts_ns)
    onsets: dict[str, int] = {}
    leads: list[tuple[TruthRecord, float | None]] = []
    for record in sorted(truth, key=lambda r: r.ts_ns):
        if record.event == "onset":
            onsets[record.asset_id] = record.ts_ns
        elif record.event == "maintenance":
            onsets.pop(record.asset_id, None)
        elif record.event == "failure":
            start = onsets.pop(record.asset_id, record.ts_ns)
            in_time = [ts for ts in raised.get(record.asset_id, ()) if start <= ts <= record.ts_ns]
            leads.append((record, (record.ts_ns - min(in_time)) / NS_PER_S / 3600 if in_time else None))
    return leads


def failures_alerted(truth: Sequence[TruthRecord], alerts: Sequence[AlertSeen]) -> int:
    """How many failures had an alert raised between their onset and the failure (`failure_leads`)."""
    return sum(1 for _, lead in failure_leads(truth, alerts) if lead is not None)


def _diagnoses(report: DemoReport, conn: psycopg.Connection[Any]) -> dict[str, dict[str, int]]:
    """Score each stored alert's best diagnosis against the truth; per asset, alerts per diagnosed mode."""
    per_asset: dict[str, dict[str, int]] = {}
    for record in best_diagnoses(conn, limit=1_000_000):
        report.alerts_diagnosed += 1
        report.alerts_with_mode += record.mode != "unknown"
        modes = per_asset.setdefault(record.asset_id, {})
        modes[record.mode] = modes.get(record.mode, 0) + 1
        ts_ns = datetime_to_ns(record.ts)
        report.diagnosis_vs_truth.add(record.mode, faults_at(report.truth, record.asset_id, ts_ns))
    return per_asset


def _asset_outcomes(report: DemoReport, shares: dict[str, str], conn: psycopg.Connection[Any]) -> None:
    forecasts = {f.asset_id: f for f in latest_forecasts(conn)}
    diagnosed = _diagnoses(report, conn)
    advised = advised_modes(conn)
    leads: dict[str, list[tuple[TruthRecord, float | None]]] = {}
    for failure, lead in failure_leads(report.truth, report.plant_alerts):
        leads.setdefault(failure.asset_id, []).append((failure, lead))
    for asset_id, gateway_id in shares.items():
        outcome = AssetOutcome(asset_id, gateway_id)
        failures = leads.get(asset_id, [])
        outcome.failures = len(failures)
        outcome.failure_modes = [failure.mode for failure, _ in failures]
        if failures:
            outcome.first_alert_lead_h = failures[0][1]
        mine = [seen.alert for seen in report.plant_alerts if seen.alert.asset_id == asset_id]
        outcome.alerts_raised = sum(1 for a in mine if a.state == "raised")
        outcome.alerts_cleared = sum(1 for a in mine if a.state == "cleared")
        outcome.diagnosed_modes = diagnosed.get(asset_id, {})
        outcome.advice_modes = advised.get(asset_id, [])
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
    score = report.diagnosis_vs_truth
    print(
        f"\n== Diagnosis: {report.alerts_diagnosed:,} of {counted(report.alerts_stored, 'stored alert')} "
        f"diagnosed, {report.alerts_with_mode:,} naming a mode; against the ground truth, while a fault was "
        f"active: {score.correct} right, {score.wrong} wrong, {score.unknown} unknown; with no fault: "
        f"{score.mode_without_fault} naming a mode, {score.unknown_without_fault} unknown; "
        f"{counted(summary['assets_with_advice'], 'asset')} with advice, "
        f"{summary['assets_with_diagnosed_advice']} of them naming a diagnosed mode",
        file=out,
    )
    leads = failure_leads(report.truth, report.plant_alerts)
    print(
        f"\n== Ground truth: {len(leads)} failures, {summary['failures_alerted_before']} alerted before",
        file=out,
    )
    for record, lead in leads:
        alerted = "no alert since its onset" if lead is None else f"first alert {lead:.0f} h before"
        print(f"  {iso_time(record.ts_ns)} {record.asset_id} failed ({record.mode}): {alerted}", file=out)
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
