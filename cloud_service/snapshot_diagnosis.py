"""The cloud's diagnosis of the raw snapshots the edge sends around an alert.

A lifecycle job (`diagnose_pending_snapshots`, every `cloud.diagnosis.interval_s`) takes the oldest stored
snapshots that carry their asset's diagnosis configuration and have no cloud diagnosis yet, runs the
shared diagnosis (`shared.diagnosis`) on each whole snapshot, and stores the result with the alert
(`alert_diagnoses`, source `cloud`). Ingest only stores the snapshot, so a diagnosis never slows it; the
snapshot stays pending until the transaction that stores its diagnosis commits, so a crash loses no work,
and one that cannot be diagnosed (a bad configuration) is marked with the reason and not taken again.

The cloud has no healthy baseline of the asset (only the snapshots around alerts), so it applies the
noise-floor tests and the ISO zone only: bearing modes are read as on the edge, with the finer frequency
resolution of a snapshot several windows long; imbalance and misalignment only in zone C or D.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from cloud_service.queries.diagnoses import (
    PendingSnapshot,
    mark_snapshot_diagnosed,
    pending_snapshots,
    store_diagnosis,
)
from shared.asset_config import AssetDiagnosisConfig, decode_asset_config
from shared.diagnosis import WindowSignals, diagnose, measure, to_alert_diagnosis
from shared.errors import ConfigError
from shared.messages import AlertDiagnosis
from shared.timebase import datetime_to_ns

__all__ = ["SnapshotDiagnosisRun", "diagnose_pending_snapshots", "diagnose_samples"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SnapshotDiagnosisRun:
    """What one pass did: snapshots diagnosed, and those that could not be (marked with the reason)."""

    diagnosed: int
    failed: int


def diagnose_samples(
    samples: list[float], sample_rate_hz: float, config: AssetDiagnosisConfig
) -> AlertDiagnosis:
    """The diagnosis of one raw vibration record (no baseline: noise-floor tests and the zone)."""
    window = WindowSignals(vibration=np.asarray(samples, dtype=np.float64), sample_rate_hz=sample_rate_hz)
    return to_alert_diagnosis(diagnose(measure(window, config), config, None))


def _diagnose_one(conn: psycopg.Connection[Any], snapshot: PendingSnapshot) -> str:
    """Diagnose and store one snapshot; returns the reason it could not be, or ""."""
    source = f"snapshot {snapshot.gateway_id}/{snapshot.seq}"
    try:
        config = decode_asset_config(snapshot.diagnosis_config, source=source)
        diagnosis = diagnose_samples(snapshot.samples, snapshot.sample_rate_hz, config)
    except ConfigError as exc:
        logger.warning("%s: bad diagnosis configuration: %s", source, exc)
        return f"ConfigError: {exc}"
    except Exception as exc:  # one bad snapshot must not stop the others; it is kept and marked
        logger.exception("%s: diagnosis failed", source)
        return f"{type(exc).__name__}: {exc}"
    store_diagnosis(
        conn,
        gateway_id=snapshot.gateway_id,
        alert_id=snapshot.alert_id,
        asset_id=snapshot.asset_id,
        ts_ns=datetime_to_ns(snapshot.alert_ts),
        diagnosis=diagnosis,
        source="cloud",
    )
    return ""


def diagnose_pending_snapshots(conn: psycopg.Connection[Any], *, batch_size: int) -> SnapshotDiagnosisRun:
    """Diagnose up to `batch_size` pending snapshots and store the results (the caller commits)."""
    diagnosed = failed = 0
    for snapshot in pending_snapshots(conn, limit=batch_size):
        error = _diagnose_one(conn, snapshot)
        mark_snapshot_diagnosed(conn, gateway_id=snapshot.gateway_id, seq=snapshot.seq, error=error)
        diagnosed += not error
        failed += bool(error)
    return SnapshotDiagnosisRun(diagnosed=diagnosed, failed=failed)
