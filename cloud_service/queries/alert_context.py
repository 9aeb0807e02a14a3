"""Why an alert fired: what its message stored (score, threshold, the k-of-n rule, top features, model),
each top feature's baseline, and the raw snapshots the gateway sent with it.

A top feature's baseline is the scoring model's training data (median and 10-90 % range of its drift
reference) when the registry has that model, else the asset's own mean over the week before the alert.
Functions take an open connection, only read, and never commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from cloud_service.lifecycle.registry import get_model

__all__ = [
    "BASELINE_SPAN",
    "AlertDetail",
    "FeatureBaseline",
    "SnapshotRecord",
    "TopFeature",
    "alert_detail",
    "alert_snapshots",
    "feature_baselines",
]

BASELINE_SPAN = timedelta(days=7)  # the asset's own baseline: its mean over this span before the alert
_MODEL_VERSION = re.compile(r"^(?P<target>.+):v(?P<version>\d+)$")  # edge_agent.scoring's "target:vN"


@dataclass(frozen=True, slots=True)
class TopFeature:
    """A feature that pushed the alerting window's score up: its value then and its contribution."""

    feature: str
    value: float
    contribution: float


@dataclass(frozen=True, slots=True)
class AlertDetail:
    """An alert as its raising message stored it."""

    gateway_id: str
    alert_id: str
    asset_id: str
    state: str
    severity: str
    raised_at: datetime | None
    score: float | None
    threshold: float | None
    model_version: str
    model_kind: str
    message: str
    top_features: list[TopFeature]

    @property
    def score_share(self) -> float | None:
        """The score as a share of the threshold (1.0 at the threshold)."""
        return self.score / self.threshold if self.score is not None and self.threshold else None


_DETAIL_FIELDS = (
    "gateway_id",
    "alert_id",
    "asset_id",
    "state",
    "severity",
    "raised_at",
    "score",
    "threshold",
    "model_version",
    "model_kind",
    "message",
)


def alert_detail(conn: psycopg.Connection[Any], gateway_id: str, alert_id: str) -> AlertDetail | None:
    """One alert with its top features (None if there is no such alert)."""
    row = conn.execute(
        "SELECT gateway_id, alert_id, asset_id, state, severity, raised_at, score::float8, "
        "threshold::float8, model_version, model_kind, message, top_features FROM alerts "
        "WHERE gateway_id = %s AND alert_id = %s",
        (gateway_id, alert_id),
    ).fetchone()
    if row is None:
        return None
    top = [
        TopFeature(str(t.get("feature", "")), float(t.get("value", 0.0)), float(t.get("contribution", 0.0)))
        for t in row[11]
        if isinstance(t, dict)
    ]
    fields = dict(zip(_DETAIL_FIELDS, row[:11], strict=True))
    return AlertDetail(**fields, top_features=top)


@dataclass(frozen=True, slots=True)
class FeatureBaseline:
    """What a feature's value is compared with: a centre, and a range when the baseline has one."""

    feature: str
    centre: float
    low: float | None
    high: float | None
    source: str  # "model <target> v<N> training data" or "asset mean, 7 days before"


_ASSET_MEANS = """
SELECT n.name, avg(a.feature_mean[array_position(f.feature_names, n.name)])::float8
FROM aggregates a JOIN feature_sets f USING (feature_set_id)
CROSS JOIN unnest(%(names)s::text[]) AS n(name)
WHERE a.asset_id = %(asset_id)s AND a.period_start >= %(start)s AND a.period_start < %(end)s
  AND n.name = ANY(f.feature_names)
GROUP BY n.name
"""


def _model_baselines(
    conn: psycopg.Connection[Any], model_version: str, names: Sequence[str]
) -> list[FeatureBaseline]:
    match = _MODEL_VERSION.match(model_version)
    if match is None:
        return []
    target, version = match["target"], int(match["version"])
    model = get_model(conn, target, version)
    if model is None or model.reference is None:
        return []
    reference = model.reference
    found = []
    for name in names:
        if name in reference.feature_names:
            edges = reference.edges[reference.feature_names.index(name)]
            if len(edges) == 9:  # deciles: the 5th edge is the median, the 1st and 9th the 10 % and 90 %
                source = f"model {target} v{version} training data"
                found.append(FeatureBaseline(name, edges[4], edges[0], edges[8], source))
    return found


def feature_baselines(
    conn: psycopg.Connection[Any], alert: AlertDetail, *, span: timedelta = BASELINE_SPAN
) -> dict[str, FeatureBaseline]:
    """The baseline of each of the alert's top features, by name (a feature with neither a model
    reference nor data in the span before the alert has none)."""
    names = [t.feature for t in alert.top_features]
    found = {b.feature: b for b in _model_baselines(conn, alert.model_version, names)}
    missing = [n for n in names if n not in found]
    if missing and alert.raised_at is not None:
        params = {
            "names": missing,
            "asset_id": alert.asset_id,
            "start": alert.raised_at - span,
            "end": alert.raised_at,
        }
        for name, mean in conn.execute(_ASSET_MEANS, params).fetchall():
            if mean is not None:
                days = span / timedelta(days=1)
                found[name] = FeatureBaseline(name, mean, None, None, f"asset mean, {days:g} days before")
    return found


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A raw waveform a gateway sent with an alert."""

    sensor: str
    start_at: datetime
    sample_rate_hz: float
    samples: list[float]


def alert_snapshots(conn: psycopg.Connection[Any], gateway_id: str, alert_id: str) -> list[SnapshotRecord]:
    """The raw snapshots stored for an alert, by sensor."""
    with conn.cursor(row_factory=class_row(SnapshotRecord)) as cur:
        return cur.execute(
            "SELECT sensor, start_at, sample_rate_hz, samples::float8[] AS samples FROM snapshots "
            "WHERE alert_id = %s AND gateway_id = %s ORDER BY sensor, start_at",
            (alert_id, gateway_id),
        ).fetchall()
