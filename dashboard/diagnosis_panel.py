"""The asset page's diagnosis and advice panels: the probable failure mode of the newest diagnosed alert
with its evidence against the asset's own baseline and the ISO 20816-3 zone beside the anomaly score, and
the open advice (what to do, by when, and why) with the advice closed before it. Layout only; the reads
are `dashboard.page_data.asset_diagnosis_data`.

Every stored string (modes, evidence names, actions, notes, the advice's inputs) is a text child of a
component: nothing here renders markup from data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from dash import html
from dash.development.base_component import Component

from cloud_service.queries import AdviceRecord, AlertDetail, DiagnosisRecord, EventRecord
from dashboard.fleet import probable_mode
from dashboard.page_data import AssetDiagnosisData
from dashboard.pages import elapsed_text, empty_state, time_text
from shared.messages import DiagnosisEvidence

__all__ = [
    "ISO_ZONE_MEANINGS",
    "NO_ADVICE",
    "NO_CLOSED_ADVICE",
    "NO_DIAGNOSIS",
    "advice_panel",
    "diagnosis_panel",
    "due_text",
    "panel_layout",
    "panels",
    "service_note",
    "what_followed",
    "why_advice",
]

NO_DIAGNOSIS = (
    "No diagnosis yet: one is made when an alert is raised (the gateway diagnoses the window that raised "
    "it against this asset's own healthy baseline), and again by the cloud from the alert's raw snapshot "
    "when the gateway sends one."
)
NO_ADVICE = (
    "No open advice: the cloud's advice job (every 15 minutes by default) makes one when an alert's "
    "diagnosis names a failure mode or the failure forecast rises, and closes it when a maintenance or "
    "failure event is recorded for the asset."
)
NO_CLOSED_ADVICE = (
    "No closed advice yet: an advice closes when a maintenance or failure event is recorded for the asset, "
    "and the mode found is kept here."
)
# ISO 20816-3's evaluation zones of the velocity RMS (mm/s).
ISO_ZONE_MEANINGS: Mapping[str, str] = {
    "A": "newly commissioned machines",
    "B": "unrestricted long-term operation",
    "C": "restricted: limited operation until a remedy",
    "D": "severe enough to cause damage",
}
_SOURCES = {
    "edge": "the gateway, from the window that raised the alert",
    "cloud": "the cloud, from the alert's raw snapshot",
}


def panel_layout() -> html.Div:
    """The two panels' places, filled by the asset diagnosis callback."""
    return html.Div(
        [
            html.Div(id="asset-service"),
            html.H3("Probable failure mode"),
            html.Div(id="asset-diagnosis"),
            html.H3("Advice"),
            html.Div(id="asset-advice"),
        ],
        id="asset-diagnosis-panels",
    )


def service_note(out_of_service_since: datetime | None) -> html.Div | None:
    """A line saying the asset is out of service (under maintenance) since when; None when in service."""
    if out_of_service_since is None:
        return None
    return html.Div(
        f"Out of service since {time_text(out_of_service_since)}: its alerts are recorded but not "
        "annunciated (return it to service on the Alerts page).",
        className="banner",
        id="asset-out-of-service",
    )


def _facts(rows: Sequence[tuple[str, str]], table_id: str, *, class_name: str = "table") -> html.Table:
    return html.Table(
        html.Tbody([html.Tr([html.Th(k), html.Td(v)]) for k, v in rows]), className=class_name, id=table_id
    )


def _number(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:.3g}{unit}"


def _zone_text(diagnosis: DiagnosisRecord) -> str:
    if diagnosis.iso_zone is None:
        return "not measured (no velocity channel, or no zone boundaries for this machine)"
    meaning = ISO_ZONE_MEANINGS.get(diagnosis.iso_zone, "")
    velocity = _number(diagnosis.velocity_rms_mm_s, " mm/s")
    return f"{diagnosis.iso_zone} ({meaning}), velocity RMS {velocity}"


def _score_text(alert: AlertDetail | None) -> str:
    if alert is None or alert.score is None:
        return "–"
    share = alert.score_share
    threshold = _number(alert.threshold)
    return f"{alert.score:.3g} / {threshold}" + ("" if share is None else f" ({share:.2f}x the threshold)")


def _against_baseline(evidence: DiagnosisEvidence) -> str:
    if evidence.baseline is None:
        return "no baseline"
    if evidence.baseline == 0:
        return f"{evidence.value - evidence.baseline:+.3g}"
    return f"{evidence.value / evidence.baseline:.2f}x"


def _evidence_table(evidence: Sequence[DiagnosisEvidence]) -> html.Div | html.Table:
    if not evidence:
        return empty_state("The diagnosis carries no evidence: no peak or level was tested.")
    header = html.Tr(
        [
            html.Th(n)
            for n in (
                "evidence",
                "frequency (Hz)",
                "amplitude or level",
                "noise floor",
                "asset's baseline",
                "against the baseline",
                "found",
            )
        ]
    )
    rows = [
        html.Tr(
            [
                html.Td(e.name, className="mono"),
                html.Td("–" if e.freq_hz is None else f"{e.freq_hz:.1f}"),
                html.Td(f"{e.value:.3g}"),
                html.Td(_number(e.floor)),
                html.Td(_number(e.baseline)),
                html.Td(_against_baseline(e)),
                html.Td("yes" if e.is_found else "no"),
            ]
        )
        for e in evidence
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="diagnosis-evidence")


def what_followed(diagnosis: DiagnosisRecord, events: Sequence[EventRecord]) -> str:
    """The first maintenance or failure recorded at or after a diagnosis (`events` oldest first), with the
    mode found and the note; says so when nothing was recorded."""
    event = next((e for e in events if e.ts >= diagnosis.ts), None)
    if event is None:
        return "nothing recorded since"
    found = f"found {event.mode}" if event.mode else "no mode recorded"
    return f"{event.event} {time_text(event.ts)}, {found}" + (f": {event.note}" if event.note else "")


def _earlier_table(diagnoses: Sequence[DiagnosisRecord], events: Sequence[EventRecord]) -> html.Table:
    header = html.Tr(
        [
            html.Th(n)
            for n in ("alert", "at", "probable mode", "confidence", "ISO zone", "by", "maintenance since")
        ]
    )
    rows = [
        html.Tr(
            [
                html.Td(d.alert_id, className="mono"),
                html.Td(time_text(d.ts)),
                html.Td(probable_mode(d) or "unknown"),
                html.Td(f"{100 * d.confidence:.0f} %"),
                html.Td(d.iso_zone or "–"),
                html.Td(d.source),
                html.Td(what_followed(d, events)),
            ]
        )
        for d in diagnoses
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="diagnosis-earlier")


def diagnosis_panel(
    diagnoses: Sequence[DiagnosisRecord],
    alert: AlertDetail | None,
    *,
    events: Sequence[EventRecord] = (),
) -> html.Div:
    """The newest diagnosed alert's best diagnosis (`diagnoses` newest first, as `best_diagnoses` gives
    them), its evidence, its zone beside the alert's anomaly score, and the earlier ones; each with the
    maintenance or failure that followed it (`events`, oldest first)."""
    if not diagnoses:
        return html.Div(empty_state(NO_DIAGNOSIS), id="diagnosis-panel")
    newest = diagnoses[0]
    mode = probable_mode(newest)
    facts = [
        ("probable failure mode", mode or "unknown: no evidence of a known failure mode"),
        ("confidence", f"{100 * newest.confidence:.0f} %" if mode else "–"),
        ("diagnosed by", _SOURCES.get(newest.source, newest.source)),
        ("alert", f"{newest.alert_id}, {time_text(newest.ts)}"),
        ("anomaly score at the alert", _score_text(alert)),
        ("ISO 20816-3 zone", _zone_text(newest)),
        ("shaft speed", "–" if newest.shaft_hz is None else f"{newest.shaft_hz:.2f} Hz"),
        ("maintenance since", what_followed(newest, events)),
    ]
    parts: list[Component] = [_facts(facts, "diagnosis-facts"), _evidence_table(newest.evidence)]
    if len(diagnoses) > 1:
        parts += [html.H4("Earlier diagnoses"), _earlier_table(diagnoses[1:], events)]
    return html.Div(parts, id="diagnosis-panel")


def _when(value: Any) -> str:
    """An ISO time from the advice's inputs as the tables show times; the text itself if it is not one."""
    try:
        return time_text(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value)


def _percent(value: Any) -> str:
    return f"{100 * value:.0f} %" if isinstance(value, int | float) else "–"


def _hours(value: Any) -> str:
    return f"{value:.0f} h" if isinstance(value, int | float) else "–"


def why_advice(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The inputs an advice was built from, one line each (`cloud_service.advice.build_advice`): the
    diagnosis, the forecast, the asset type and lead time; any other input as its JSON."""
    lines: list[tuple[str, str]] = []
    diagnosis = inputs.get("diagnosis")
    if isinstance(diagnosis, Mapping):
        zone = diagnosis.get("iso_zone")
        velocity = diagnosis.get("velocity_rms_mm_s")
        lines.append(
            (
                "diagnosis",
                f"{diagnosis.get('mode', '–')} ({_percent(diagnosis.get('confidence'))}) of alert "
                f"{diagnosis.get('alert_id', '–')} at {_when(diagnosis.get('ts'))}; ISO zone {zone or '–'}"
                + (f", velocity RMS {velocity:.3g} mm/s" if isinstance(velocity, int | float) else ""),
            )
        )
    forecast = inputs.get("forecast")
    if isinstance(forecast, Mapping):
        lines.append(
            (
                "failure forecast",
                f"as of {_when(forecast.get('as_of'))}: RUL {_hours(forecast.get('rul_h'))} "
                f"({_hours(forecast.get('rul_low_h'))} to {_hours(forecast.get('rul_high_h'))}), "
                f"p(fail) {_percent(forecast.get('p_fail'))} within {_hours(forecast.get('horizon_h'))}",
            )
        )
    if "asset_type" in inputs or "lead_time_h" in inputs:
        asset_type = inputs.get("asset_type") or "(not set)"
        lines.append(
            (
                "lead time",
                f"{_hours(inputs.get('lead_time_h'))} (asset type {asset_type} and this mode, after the ISO "
                "zone's factor); the date is never past the RUL interval's low end less the safety margin",
            )
        )
    known = {"diagnosis", "forecast", "asset_type", "lead_time_h"}
    lines += [(key, json.dumps(value, default=str)) for key, value in inputs.items() if key not in known]
    return lines


def due_text(advice: AdviceRecord, now: datetime) -> str:
    """When an open advice is due, and by how long it is overdue once that time has passed."""
    if advice.due_by >= now:
        return f"{time_text(advice.due_by)} (in {elapsed_text((advice.due_by - now).total_seconds())})"
    return f"{time_text(advice.due_by)}: OVERDUE by {elapsed_text((now - advice.due_by).total_seconds())}"


def _open_advice(advice: AdviceRecord, now: datetime) -> list[Component]:
    facts = [
        ("what to do", advice.action),
        ("for the failure mode", advice.mode),
        ("urgency", advice.urgency),
        ("by", due_text(advice, now)),
        ("advised", f"{time_text(advice.created_at)}, last refreshed {time_text(advice.updated_at)}"),
    ]
    try:
        inputs: Any = advice.inputs
    except ValueError:
        inputs = None
    # Inputs that are not a JSON object are shown as stored.
    why = why_advice(inputs) if isinstance(inputs, Mapping) else [("inputs", advice.inputs_json)]
    overdue = " advice-overdue" if advice.due_by < now else ""
    return [
        _facts(facts, f"advice-{advice.advice_id}", class_name=f"table{overdue}"),
        html.H4("Why this advice"),
        _facts(why or [("inputs", "none stored")], f"advice-why-{advice.advice_id}"),
    ]


def _closed_table(closed: Sequence[AdviceRecord]) -> html.Div | html.Table:
    if not closed:
        return empty_state(NO_CLOSED_ADVICE)
    header = html.Tr(
        [html.Th(n) for n in ("closed", "advised mode", "urgency", "due by", "mode found", "note")]
    )
    rows = [
        html.Tr(
            [
                html.Td(time_text(a.closed_at)),
                html.Td(a.mode),
                html.Td(a.urgency),
                html.Td(time_text(a.due_by)),
                html.Td(a.found_mode or "not stated"),
                html.Td(a.closing_note or "–"),
            ]
        )
        for a in closed
    ]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="advice-closed")


def advice_panel(
    open_advice: Sequence[AdviceRecord], closed: Sequence[AdviceRecord], *, now: datetime
) -> html.Div:
    """The asset's open advice, soonest due first, each with why and overdue ones marked (due before
    `now`); then its recently closed advice."""
    parts: list[Component] = []
    for advice in open_advice:
        parts += _open_advice(advice, now)
    if not open_advice:
        parts.append(empty_state(NO_ADVICE))
    parts += [html.H4("Recently closed advice"), _closed_table(closed)]
    return html.Div(parts, id="advice-panel")


def panels(data: AssetDiagnosisData) -> tuple[html.Div | None, html.Div, html.Div]:
    """The asset page's out-of-service note, diagnosis panel and advice panel, from one read."""
    return (
        service_note(data.out_of_service_since),
        diagnosis_panel(data.diagnoses, data.alert, events=data.events),
        advice_panel(data.open_advice, data.closed_advice, now=data.now),
    )
