"""Plotly figures of the dashboard: units on every axis, the Okabe-Ito colour-blind-safe palette, and a
`uirevision` so interval refreshes keep zoom and legend selections."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from cloud_service.forecasting.repository import ForecastRecord
from cloud_service.queries import AlertRecord, FeaturePoint, RiskDay, Series
from dashboard.timezones import to_display, zone_name

__all__ = ["PALETTE", "empty_figure", "feature_figure", "forecast_figure", "risk_figure", "score_figure"]

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
}
_SEVERITY_COLOUR = {"info": PALETTE["sky"], "warning": PALETTE["orange"], "critical": PALETTE["vermillion"]}


def _times_to_display(figure: go.Figure) -> None:
    """Every trace's datetime x values as wall-clock times of the browser's zone."""
    for trace in figure.data:
        values = trace.x
        if values is not None and any(isinstance(x, datetime) for x in values):
            trace.x = [to_display(x) if isinstance(x, datetime) else x for x in values]


def _layout(
    figure: go.Figure,
    *,
    title: str,
    y_title: str,
    revision: str,
    is_time_x: bool = True,
    x_range: tuple[datetime, datetime] | None = None,
) -> go.Figure:
    if is_time_x:
        _times_to_display(figure)
    if x_range is not None:  # the chosen range, also when it holds one point or none
        figure.update_xaxes(type="date", range=[to_display(x_range[0]), to_display(x_range[1])])
    figure.update_layout(
        title={"text": title, "x": 0.01},
        xaxis_title=f"time ({zone_name()})",
        yaxis_title=y_title,
        uirevision=revision,
        template="plotly_white",
        colorway=list(PALETTE.values()),
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        height=340,
    )
    return figure


def score_figure(
    series: Series,
    *,
    threshold: float | None,
    alerts: Sequence[AlertRecord],
    revision: str,
    x_range: tuple[datetime, datetime] | None = None,
) -> go.Figure:
    """The anomaly score (mean and max per bucket) with the threshold and the alerts raised.

    A bucket in which no window was scored (the machine stopped, the baseline warming up) is a gap, not
    a score of 0: its aggregates carry 0 as a placeholder, which would read as perfectly healthy.
    """
    times = [p.bucket for p in series.points]
    scored = [p.n_windows > 0 for p in series.points]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[
                p.score_max if is_scored else None for p, is_scored in zip(series.points, scored, strict=True)
            ],
            name="score, max",
            mode="lines",
            line={"color": PALETTE["sky"], "width": 1},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[
                p.score_mean if is_scored else None
                for p, is_scored in zip(series.points, scored, strict=True)
            ],
            name="score, mean",
            mode="lines",
            line={"color": PALETTE["blue"], "width": 2},
        )
    )
    if threshold is not None:
        figure.add_hline(
            y=threshold,
            line={"color": PALETTE["vermillion"], "dash": "dash"},
            annotation_text=f"threshold {threshold:.3g}",
            annotation_position="top left",
        )
        figure.add_trace(  # a legend entry for the line
            go.Scatter(
                x=[None],
                y=[None],
                name="threshold",
                mode="lines",
                line={"color": PALETTE["vermillion"], "dash": "dash"},
            )
        )
    raised = [a for a in alerts if a.raised_at is not None]
    for severity in ("info", "warning", "critical"):
        chosen = [a for a in raised if a.severity == severity]
        if chosen:
            figure.add_trace(
                go.Scatter(
                    x=[a.raised_at for a in chosen],
                    y=[a.score for a in chosen],
                    name=f"alert ({severity})",
                    mode="markers",
                    marker={
                        "color": _SEVERITY_COLOUR[severity],
                        "size": 11,
                        "symbol": "triangle-up",
                        "line": {"color": PALETTE["black"], "width": 1},
                    },
                    text=[a.message for a in chosen],
                    hovertemplate="%{x}<br>score %{y:.3g}<br>%{text}<extra>alert</extra>",
                )
            )
    title = f"Anomaly score ({series.source.replace('_', ' ')}, {_resolution_text(series)} buckets)"
    if not all(scored):
        title += "; gaps: no window scored (stopped or warming up)"
    return _layout(
        figure, title=title, y_title="anomaly score (dimensionless)", revision=revision, x_range=x_range
    )


def _resolution_text(series: Series) -> str:
    seconds = int(series.resolution.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


def _band_with_line(
    figure: go.Figure,
    times: Sequence[Any],
    *,
    low: Sequence[float | None],
    high: Sequence[float | None],
    line: Sequence[float],
    band_name: str,
    line_name: str,
    colour: str,
    band_fill: str,
    line_mode: str = "lines",
) -> None:
    """A shaded band from `low` to `high` under a line (the upper edge is drawn first, then filled to)."""
    figure.add_trace(
        go.Scatter(x=times, y=list(high), mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
    )
    figure.add_trace(
        go.Scatter(
            x=times,
            y=list(low),
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=band_fill,
            name=band_name,
        )
    )
    figure.add_trace(
        go.Scatter(x=times, y=list(line), mode=line_mode, name=line_name, line={"color": colour, "width": 2})
    )


def feature_figure(
    points: Sequence[FeaturePoint],
    *,
    feature: str,
    revision: str,
    x_range: tuple[datetime, datetime] | None = None,
) -> go.Figure:
    """One feature's mean per bucket with its lowest-to-highest band (where the buckets keep them: those
    read from the hourly rollup keep means only, and the band has a gap there)."""
    figure = go.Figure()
    _band_with_line(
        figure,
        [p.bucket for p in points],
        low=[p.low for p in points],
        high=[p.high for p in points],
        line=[p.mean for p in points],
        band_name="min to max",
        line_name="mean",
        colour=PALETTE["green"],
        band_fill="rgba(0, 158, 115, 0.2)",
    )
    return _layout(
        figure,
        title=f"Feature {feature}",
        y_title=f"{feature} (sensor units)",
        revision=revision,
        x_range=x_range,
    )


def forecast_figure(
    history: Sequence[ForecastRecord], *, revision: str, x_range: tuple[datetime, datetime] | None = None
) -> go.Figure:
    """The forecast's history: RUL with its interval as a band, and p(fail within the horizon)."""
    times = [f.computed_at for f in history]
    figure = go.Figure()
    _band_with_line(
        figure,
        times,
        low=[f.rul_low_h for f in history],
        high=[f.rul_high_h for f in history],
        line=[f.rul_h for f in history],
        band_name="RUL interval",
        line_name="RUL",
        colour=PALETTE["orange"],
        band_fill="rgba(230, 159, 0, 0.25)",
        line_mode="lines+markers",
    )
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[100.0 * f.p_fail for f in history],
            mode="lines",
            name="p(fail) in horizon",
            yaxis="y2",
            line={"color": PALETTE["purple"], "dash": "dot"},
        )
    )
    figure = _layout(
        figure,
        title="Failure forecast",
        y_title="remaining useful life (h)",
        revision=revision,
        x_range=x_range,
    )
    extra: dict[str, Any] = {
        "yaxis2": {
            "title": "p(fail within horizon) (%)",
            "overlaying": "y",
            "side": "right",
            "range": [0, 100],
        }
    }
    figure.update_layout(**extra)
    return figure


def risk_figure(
    days: Sequence[RiskDay],
    *,
    likely: float,
    possible: float,
    span: tuple[datetime, datetime],
    revision: str,
) -> go.Figure:
    """The fleet's risk per day over `span`: assets forecast likely, possibly and unlikely to fail within
    the horizon (stacked), and the mean p(fail) on the right axis."""
    if not days:
        return empty_figure("no forecasts yet: the cloud service computes them on its schedule")
    x = [d.day + timedelta(hours=12) for d in days]  # a bar fills its day
    figure = go.Figure()
    for name, values, colour in (
        (f"likely (p ≥ {likely:.0%})", [d.n_likely for d in days], PALETTE["vermillion"]),
        (f"possible ({possible:.0%} ≤ p < {likely:.0%})", [d.n_possible for d in days], PALETTE["orange"]),
        (f"unlikely (p < {possible:.0%})", [d.n_unlikely for d in days], PALETTE["sky"]),
    ):
        figure.add_trace(go.Bar(x=x, y=values, name=name, marker_color=colour, width=0.8 * 86_400_000))
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[100.0 * d.mean_p_fail for d in days],
            name="mean p(fail)",
            yaxis="y2",
            mode="lines+markers",
            line={"color": PALETTE["black"], "dash": "dot"},
        )
    )
    # Days are UTC days: the axis stays in UTC.
    figure = _layout(
        figure, title="Fleet risk, last 30 days", y_title="assets (count)", revision=revision, is_time_x=False
    )
    extra: dict[str, Any] = {
        "barmode": "stack",
        "xaxis": {"title": "day (UTC)", "type": "date", "range": [span[0], span[1]]},
        "legend": {"orientation": "h", "y": -0.35},
        "margin": {"l": 60, "r": 60, "t": 50, "b": 90},
        "height": 330,
        "yaxis2": {
            "title": "mean p(fail within horizon) (%)",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        },
    }
    figure.update_layout(**extra)
    return figure


def empty_figure(text: str) -> go.Figure:
    """A blank chart that says why it is blank."""
    figure = go.Figure()
    figure.add_annotation(
        text=text, showarrow=False, font={"size": 16}, x=0.5, y=0.5, xref="paper", yref="paper"
    )
    figure.update_layout(
        template="plotly_white", height=200, xaxis={"visible": False}, yaxis={"visible": False}
    )
    return figure
