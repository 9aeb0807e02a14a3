"""An alert's diagnosis is stored with it when it arrives and read back through the queries; the cloud
re-diagnoses the raw snapshot and the advice takes the best of the two."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from apscheduler.triggers.interval import IntervalTrigger

from cloud_service.advice import AdviceSettings, refresh_advice
from cloud_service.lifecycle.service import LifecycleService
from cloud_service.queries import alert_diagnoses, best_diagnoses, latest_diagnoses, open_advice
from cloud_service.service import IngestWorker
from cloud_service.settings import CloudSettings
from cloud_service.snapshot_diagnosis import SnapshotDiagnosisRun
from cloud_service.writer import BatchWriter
from edge_agent.settings import SnapshotSettings
from edge_agent.snapshots import SnapshotRecorder
from forewarn.localservices import MosquittoServer, wait_until
from shared.asset_config import AssetDiagnosisConfig, BearingGeometry, BearingSettings, decode_asset_config
from shared.config import load_settings
from shared.messages import Alert, AlertDiagnosis, DiagnosisEvidence, Snapshot
from shared.timebase import NS_PER_S, now_ns, ns_to_datetime
from tests.test_cloud_ingest import (  # noqa: F401 - publisher and worker_factory are fixtures used here
    Publisher,
    cloud_settings,
    publisher,
    uplink,
    worker_factory,
)


def _alert(
    ts_ns: int, *, diagnosis: AlertDiagnosis | None, seq: int = 1, alert_id: str = "pump-d:1"
) -> Alert:
    return Alert(
        gateway_id="gw-d",
        asset_id="pump-d",
        seq=seq,
        alert_id=alert_id,
        state="raised",
        severity="warning",
        ts_ns=ts_ns,
        score=9.0,
        threshold=6.0,
        model_version="baseline",
        model_kind="baseline",
        diagnosis=diagnosis,
    )


@pytest.mark.slow
def test_the_diagnosis_of_a_raised_alert_is_stored_and_readable(db: str) -> None:
    ts = now_ns()
    evidence = [DiagnosisEvidence(name="bpfo x1", value=0.03, freq_hz=107.4, floor=0.001, is_found=True)]
    diagnosis = AlertDiagnosis(
        mode="outer_race",
        confidence=0.67,
        evidence=evidence,
        shaft_hz=29.95,
        velocity_rms_mm_s=3.1,
        iso_zone="C",
    )
    with psycopg.connect(db) as conn:
        writer = BatchWriter(conn)
        writer.write(
            [_alert(ts, diagnosis=diagnosis), _alert(ts, diagnosis=None, seq=2, alert_id="pump-d:2")]
        )
        writer.write([_alert(ts, diagnosis=diagnosis)])  # a redelivery stores nothing twice
        conn.commit()
        (stored,) = alert_diagnoses(conn, gateway_id="gw-d", alert_id="pump-d:1")
        assert (stored.mode, stored.source, stored.iso_zone) == ("outer_race", "edge", "C")
        assert stored.confidence == pytest.approx(0.67)
        assert stored.evidence == evidence
        assert alert_diagnoses(conn, gateway_id="gw-d", alert_id="pump-d:2") == []
        assert [d.alert_id for d in latest_diagnoses(conn, asset_id="pump-d")] == ["pump-d:1"]


# --- the cloud re-diagnoses the raw snapshot (edge recorder -> broker -> ingest -> job) --------------

GEOMETRY = BearingGeometry(ball_count=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)  # SKF 6205
RATE_HZ = 25_600.0
SHAFT_HZ = 29.95


def _outer_race_samples(n: int, seed: int) -> npt.NDArray[np.float32]:
    """A shaft at 29.95 Hz with outer-race impacts at BPFO ringing a 5 kHz resonance, and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE_HZ
    since = np.mod(t, 1.0 / (GEOMETRY.orders().bpfo * SHAFT_HZ))
    x = 0.05 * np.sin(2 * np.pi * SHAFT_HZ * t) + 0.02 * rng.standard_normal(n)
    x += 0.3 * np.exp(-since / 0.0004) * np.sin(2 * np.pi * 5000.0 * since)
    return x.astype(np.float32)


def _edge_snapshot(alert: Alert, config: AssetDiagnosisConfig | None) -> Snapshot:
    """The snapshot the edge's recorder cuts around `alert` (its samples all arrived)."""
    recorder = SnapshotRecorder(
        settings=SnapshotSettings(),
        gateway_id=alert.gateway_id,
        asset_id=alert.asset_id,
        sensor="vibration",
        sample_rate_hz=RATE_HZ,
        scoring_lag_samples=8192,
        diagnosis_config=config,
    )
    n = 65_536
    start_ns = alert.ts_ns - round(n / 2 / RATE_HZ * 1e9)
    recorder.append(_outer_race_samples(n, seed=alert.seq), start_ns)
    (snapshot,) = recorder.request(alert)
    return msgspec.structs.replace(snapshot, seq=alert.seq + 1)


@pytest.mark.slow
def test_the_cloud_rediagnoses_a_snapshot_stores_it_and_advice_takes_the_best(
    db: str,
    broker: MosquittoServer,
    publisher: Publisher,  # noqa: F811 - the fixture imported above
    worker_factory: Callable[..., IngestWorker],  # noqa: F811 - the fixture imported above
    unique_id: Callable[[str], str],
) -> None:
    config = AssetDiagnosisConfig(shaft_rpm=60 * SHAFT_HZ, bearings=(BearingSettings(geometry=GEOMETRY),))
    ts = now_ns() - 60 * NS_PER_S
    edge_unknown = AlertDiagnosis(mode="unknown", confidence=0.0)
    alert = _alert(ts, diagnosis=edge_unknown, seq=1)
    snapshot = _edge_snapshot(alert, config)
    assert decode_asset_config(snapshot.diagnosis_config) == config
    bad_alert = _alert(ts + NS_PER_S, diagnosis=None, seq=3, alert_id="pump-d:2")
    bad = msgspec.structs.replace(_edge_snapshot(bad_alert, config), diagnosis_config='{"shaft_rpm": -1}')
    worker = worker_factory()
    items = uplink([alert, snapshot, bad_alert, bad])
    publisher.publish(items)
    wait_until(lambda: worker.metrics.acked == len(items), timeout_s=15)

    service = LifecycleService(cloud_settings(broker, db, unique_id("g")), runner_id="test")
    assert service.diagnose_snapshots() == SnapshotDiagnosisRun(diagnosed=1, failed=1)
    assert service.diagnose_snapshots() == SnapshotDiagnosisRun(diagnosed=0, failed=0)  # none taken twice
    with psycopg.connect(db) as conn:
        stored = {d.source: d for d in alert_diagnoses(conn, gateway_id="gw-d", alert_id="pump-d:1")}
        assert stored["edge"].mode == "unknown"
        cloud = stored["cloud"]
        assert (cloud.mode, cloud.ts) == ("outer_race", ns_to_datetime(ts))
        assert any(e.is_found and e.name == "bpfo x1" for e in cloud.evidence)
        (best,) = best_diagnoses(conn, asset_id="pump-d")
        assert (best.source, best.mode) == ("cloud", "outer_race")
        row = conn.execute(
            "SELECT cloud_diagnosis_error FROM snapshots WHERE gateway_id = 'gw-d' AND seq = %s", (bad.seq,)
        ).fetchone()
        assert row is not None
        assert row[0].startswith("ConfigError: shaft_rpm")
        refresh_advice(conn, settings=AdviceSettings(), now=datetime.now(UTC))
        (advice,) = open_advice(conn, asset_id="pump-d")
        assert advice.mode == "outer_race"


def test_the_scheduler_runs_the_snapshot_diagnosis_job_when_enabled() -> None:
    settings = load_settings(CloudSettings, environ={}, overrides={"diagnosis": {"interval_s": 30}})
    jobs = {job.job_id: job for job in LifecycleService(settings).scheduler().jobs.values()}
    assert str(jobs["snapshot-diagnosis"].trigger) == str(IntervalTrigger(seconds=30, timezone=UTC))
    disabled = load_settings(CloudSettings, environ={}, overrides={"diagnosis": {"enabled": False}})
    assert "snapshot-diagnosis" not in LifecycleService(disabled).scheduler().jobs
