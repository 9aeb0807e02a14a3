"""The asset page's "why this alert" panel: score against threshold, the k-of-n rule that fired, the top
features against their baselines, the model version, and the raw snapshot (waveform and spectrum) when
the gateway sent one. Layout and figures only; the reads are `cloud_service.queries.alert_context`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from dash import dcc, html
from dash.development.base_component import Component

from cloud_service.queries import AlertDetail, AlertRecord, FeatureBaseline, SnapshotRecord
from dashboard.figures import PALETTE
from dashboard.pages import empty_state, time_text

__all__ = ["alert_choices", "panel", "panel_layout", "snapshot_figures"]


def panel_layout() -> html.Div:
    """The panel's chooser and body, filled by its callbacks."""
    return html.Div(
        [
            html.H3("Why this alert"),
            dcc.Dropdown(id="asset-why-choice", placeholder="alert", clearable=False),
            html.Div(id="asset-why"),
        ]
    )


def alert_choices(alerts: Sequence[AlertRecord]) -> list[dict[str, str]]:
    """One option per alert of the range, newest first: `gateway/alert` values."""
    return [
        {
            "label": f"{time_text(a.raised_at)}: {a.severity}, {a.state} ({a.alert_id})",
            "value": f"{a.gateway_id}/{a.alert_id}",
        }
        for a in reversed(alerts)
    ]


def _deviation_text(value: float, baseline: FeatureBaseline | None) -> str:
    if baseline is None:
        return "no baseline"
    if baseline.low is not None and baseline.high is not None:
        if value > baseline.high:
            return f"above the 90 % point by {value - baseline.high:.3g}"
        if value < baseline.low:
            return f"below the 10 % point by {baseline.low - value:.3g}"
        return "within the 10-90 % range"
    ratio = value / baseline.centre if baseline.centre else None
    return f"{value - baseline.centre:+.3g}" + (f" ({ratio:.2f}x)" if ratio is not None else "")


def _features_table(alert: AlertDetail, baselines: Mapping[str, FeatureBaseline]) -> html.Div | html.Table:
    if not alert.top_features:
        return empty_state("The alert carries no top features (a cleared alert, or a baseline scorer).")
    header = html.Tr(
        [
            html.Th(n)
            for n in (
                "feature",
                "value at the alert",
                "baseline",
                "against the baseline",
                "contribution",
                "from",
            )
        ]
    )
    rows = []
    for top in alert.top_features:
        baseline = baselines.get(top.feature)
        centre = "–" if baseline is None else f"{baseline.centre:.3g}"
        if baseline is not None and baseline.low is not None and baseline.high is not None:
            centre += f" ({baseline.low:.3g} to {baseline.high:.3g})"
        rows.append(
            html.Tr(
                [
                    html.Td(top.feature, className="mono"),
                    html.Td(f"{top.value:.4g}"),
                    html.Td(centre),
                    html.Td(_deviation_text(top.value, baseline)),
                    html.Td(f"{top.contribution:.3g}"),
                    html.Td("–" if baseline is None else baseline.source),
                ]
            )
        )
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table", id="why-features")


def panel(
    alert: AlertDetail | None, baselines: Mapping[str, FeatureBaseline], snapshots: Sequence[SnapshotRecord]
) -> html.Div:
    """The explanation of one alert, from what its message stored, and its snapshots' figures."""
    if alert is None:
        return empty_state("No alert in this range: choose a longer range to explain an older one.")
    share = alert.score_share
    score = "–" if alert.score is None else f"{alert.score:.4g}"
    threshold = "–" if alert.threshold is None else f"{alert.threshold:.4g}"
    facts = [
        ("score against threshold", f"{score} / {threshold}" + ("" if share is None else f" ({share:.2f}x)")),
        ("rule that fired", alert.message or "–"),
        ("model", f"{alert.model_version} ({alert.model_kind})"),
        ("raised", f"{time_text(alert.raised_at)}, {alert.severity}, now {alert.state}"),
    ]
    parts: list[Component] = [
        html.Table(
            html.Tbody([html.Tr([html.Th(k), html.Td(v)]) for k, v in facts]),
            className="table",
            id="why-facts",
        ),
        _features_table(alert, baselines),
    ]
    if snapshots:
        for waveform, spectrum in snapshot_figures(snapshots, revision=alert.alert_id):
            parts += [dcc.Graph(figure=waveform), dcc.Graph(figure=spectrum)]
    else:
        parts.append(
            empty_state("No raw snapshot was stored with this alert (the gateway sends one when enabled).")
        )
    return html.Div(parts, id="why-panel")


def _layout(figure: go.Figure, *, title: str, x_title: str, y_title: str, revision: str) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.01},
        xaxis_title=x_title,
        yaxis_title=y_title,
        uirevision=revision,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        height=280,
        showlegend=False,
    )
    return figure


def snapshot_figures(
    snapshots: Sequence[SnapshotRecord], *, revision: str
) -> list[tuple[go.Figure, go.Figure]]:
    """Per snapshot: the waveform against time from its start, and its amplitude spectrum (Hann window)."""
    out = []
    for snapshot in snapshots:
        samples = np.asarray(snapshot.samples, dtype=np.float64)
        times_ms = np.arange(len(samples)) / snapshot.sample_rate_hz * 1000.0
        waveform = go.Figure(
            go.Scatter(x=times_ms, y=samples, mode="lines", line={"color": PALETTE["blue"], "width": 1})
        )
        window = np.hanning(len(samples)) if len(samples) > 1 else np.ones(1)
        amplitude = 2.0 * np.abs(np.fft.rfft((samples - samples.mean()) * window)) / max(window.sum(), 1e-12)
        frequencies = np.fft.rfftfreq(len(samples), d=1.0 / snapshot.sample_rate_hz)
        spectrum = go.Figure(
            go.Scatter(
                x=frequencies, y=amplitude, mode="lines", line={"color": PALETTE["vermillion"], "width": 1}
            )
        )
        start = time_text(snapshot.start_at)
        out.append(
            (
                _layout(
                    waveform,
                    title=f"Snapshot {snapshot.sensor}, from {start}",
                    x_title="time from the snapshot's start (ms)",
                    y_title=f"{snapshot.sensor} (sensor units)",
                    revision=revision,
                ),
                _layout(
                    spectrum,
                    title=f"Spectrum {snapshot.sensor} ({snapshot.sample_rate_hz:g} Hz sampling)",
                    x_title="frequency (Hz)",
                    y_title="amplitude (sensor units)",
                    revision=revision,
                ),
            )
        )
    return out
