"""Valid messages of every uplink type the cloud ingests: the seeds `forewarn bench fuzz` mutates, and the
messages the storage and ingest tests write (one definition for both)."""

from __future__ import annotations

from shared.features import DEFAULT_SPEC
from shared.messages import (
    Aggregate,
    Alert,
    DeploymentAck,
    FeatureStats,
    MaintenanceEvent,
    ScoreStats,
    Snapshot,
    Status,
)
from shared.timebase import NS_PER_S, now_ns

__all__ = ["PERIOD_NS", "aggregate", "one_of_each"]

PERIOD_NS = 10 * NS_PER_S
"""The aggregation period of `aggregate`'s messages."""


def aggregate(gateway_id: str, asset_id: str, seq: int, start_ns: int, *, score: float = 0.5) -> Aggregate:
    """An aggregate of the default feature spec over `PERIOD_NS` whose features depend on `seq`."""
    features = {
        name: FeatureStats(float(seq % 97) + i, float(seq % 97) + i - 1.0, float(seq % 97) + i + 1.0)
        for i, name in enumerate(DEFAULT_SPEC.feature_names)
    }
    return Aggregate(
        gateway_id=gateway_id,
        asset_id=asset_id,
        seq=seq,
        period_start_ns=start_ns,
        period_end_ns=start_ns + PERIOD_NS,
        feature_spec=DEFAULT_SPEC.spec_id,
        features=features,
        score=ScoreStats(mean=score, max=score * 2, threshold=1.0, n_windows=10, n_above_threshold=seq % 3),
        model_version="3",
        model_kind="onnx",
    )


def one_of_each(
    gateway_id: str, asset_id: str, *, seq0: int = 0, ts_ns: int | None = None
) -> list[Aggregate | Alert | Snapshot | Status | DeploymentAck | MaintenanceEvent]:
    """One message of every kind the cloud ingests (two heartbeats: with metrics, and with a `seq`), the
    gateway's sequence numbers from `seq0`, at `ts_ns` (default now)."""
    ts = ts_ns or now_ns()
    return [
        aggregate(gateway_id, asset_id, seq0, ts),
        Alert(
            gateway_id=gateway_id,
            asset_id=asset_id,
            seq=seq0 + 1,
            alert_id=f"{asset_id}-a1",
            state="raised",
            severity="warning",
            ts_ns=ts,
            score=2.5,
            threshold=1.0,
            model_version="3",
            model_kind="onnx",
            message="bearing",
        ),
        Snapshot(
            gateway_id=gateway_id,
            asset_id=asset_id,
            sensor="vibration",
            seq=seq0 + 2,
            alert_id=f"{asset_id}-a1",
            start_ns=ts,
            sample_rate_hz=1000.0,
            samples=[0.5, -0.25, 1.0],
        ),
        Status(gateway_id=gateway_id, ts_ns=ts, state="online", uptime_s=12.0, metrics={"received": 5.0}),
        Status(gateway_id=gateway_id, ts_ns=ts + 1000, state="online", seq=seq0 + 3),
        DeploymentAck(
            gateway_id=gateway_id, seq=seq0 + 4, target="pump", version=2, ok=False, reason="sha256", ts_ns=ts
        ),
        MaintenanceEvent(asset_id=asset_id, ts_ns=ts, event="failure", mode="bearing", source="cmms"),
    ]
