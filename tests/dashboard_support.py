"""Seeding and serving for the dashboard tests: a small plant written through the real write path, and
the dashboard served by waitress on a free port in a thread."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import requests

from cloud_service.forecasting.repository import (
    ForecasterRecord,
    ForecastRecord,
    insert_forecaster,
    insert_forecasts,
)
from cloud_service.lifecycle.records import CandidateMetrics, Gate, Gates
from cloud_service.lifecycle.registry import insert_model, mark_deployed
from cloud_service.queries import update_asset, upsert_site
from cloud_service.rollups import record_refreshed_through, refresh_rollups
from cloud_service.users import add_user
from cloud_service.writer import BatchWriter
from dashboard.app import DashboardApp, create_app
from dashboard.security import CSRF_COOKIE, CSRF_HEADER
from dashboard.serving import DashboardServer
from dashboard.settings import DashboardSettings
from shared.config import load_settings
from shared.features import DEFAULT_SPEC
from shared.messages import (
    Aggregate,
    Alert,
    DeploymentAck,
    FeatureStats,
    ModelManifest,
    ScoreStats,
    Status,
    encode,
)
from shared.timebase import datetime_to_ns

GATEWAY = "gw-plant1"
DEGRADING = "pump-07"

# The fleet and asset pages' data callbacks, as a test posts them (component id, property[, value]).
FLEET_OUTPUTS = [
    ("fleet-table", "children"),
    ("fleet-site", "options"),
    ("fleet-line", "options"),
    ("fleet-type", "options"),
    ("fleet-criticality", "options"),
]
FLEET_INPUTS = [
    ("refresh", "n_intervals", 1),
    ("fleet-site", "value", None),
    ("fleet-line", "value", None),
    ("fleet-type", "value", None),
    ("fleet-criticality", "value", None),
    ("fleet-state", "value", None),
]

ASSET_OUTPUTS = [
    ("asset-score", "figure"),
    ("asset-feature-graph", "figure"),
    ("asset-forecast", "figure"),
    ("asset-feature", "options"),
    ("asset-feature", "value"),
    ("asset-alerts", "children"),
    ("asset-models", "children"),
    ("asset-message", "children"),
    ("asset-acknowledge", "children"),
]
ASSET_INPUTS = [
    ("asset-id", "data", DEGRADING),
    ("asset-range", "value", "last 24 hours"),
    ("asset-feature", "value", None),
    ("refresh", "n_intervals", 1),
]
HEALTHY = ("fan-02", "motor-11")
HOSTILE_LINE = "<img src=x onerror=alert(1)>line 3"
PASSWORD = "correct horse battery"
PERIOD = timedelta(minutes=10)
HISTORY = timedelta(hours=48)
THRESHOLD = 1.0


@dataclass(frozen=True, slots=True)
class Plant:
    """What `seed_plant` wrote."""

    alert_id: str
    now: datetime


def _aggregate(asset_id: str, seq: int, start: datetime, score: float) -> Aggregate:
    features = {
        name: FeatureStats(score * (i + 1), score * (i + 1) * 0.8, score * (i + 1) * 1.2)
        for i, name in enumerate(DEFAULT_SPEC.feature_names)
    }
    start_ns = datetime_to_ns(start)
    return Aggregate(
        gateway_id=GATEWAY,
        asset_id=asset_id,
        seq=seq,
        period_start_ns=start_ns,
        period_end_ns=start_ns + int(PERIOD.total_seconds() * 1e9),
        feature_spec=DEFAULT_SPEC.spec_id,
        features=features,
        score=ScoreStats(mean=score, max=score * 1.3, threshold=THRESHOLD, n_windows=60, n_above_threshold=0),
        model_version="pump:v2",
        model_kind="onnx",
    )


def _degrading_score(fraction: float) -> float:
    """Flat at 0.3 for the first 70 % of the history, then rising past the threshold to about 1.6."""
    return 0.3 if fraction < 0.7 else 0.3 + (fraction - 0.7) / 0.3 * 1.3


def seed_plant(conninfo: str) -> Plant:
    """Three assets on one gateway over 48 hours: one degrading past its threshold with a critical alert,
    a heartbeat, forecasts, one registered model and a gateway's acknowledgement of it."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - HISTORY
    n = int(HISTORY / PERIOD)
    messages: list[Any] = []
    seq = 0
    for asset_id in (DEGRADING, *HEALTHY):
        for i in range(n):
            fraction = i / n
            score = _degrading_score(fraction) if asset_id == DEGRADING else 0.25 + 0.05 * ((i * 7) % 5) / 5
            messages.append(_aggregate(asset_id, seq, start + i * PERIOD, score))
            seq += 1
    crossing = start + int(n * (0.7 + 0.3 * (THRESHOLD - 0.3) / 1.3)) * PERIOD
    alert_id = f"{DEGRADING}-a1"
    messages.append(
        Alert(
            gateway_id=GATEWAY,
            asset_id=DEGRADING,
            seq=seq,
            alert_id=alert_id,
            state="raised",
            severity="critical",
            ts_ns=datetime_to_ns(crossing),
            score=1.05,
            threshold=THRESHOLD,
            model_version="pump:v2",
            model_kind="onnx",
            message="vibration rising <b>bold?</b>",
        )
    )
    metrics = {
        "queue.depth": 12.0,
        "queue.dropped.raw": 3.0,
        "rejected.total": 1.0,
        "uplink.bytes_out": 52_000.0,
    }
    messages.append(
        Status(
            gateway_id=GATEWAY,
            ts_ns=datetime_to_ns(now),
            state="online",
            seq=seq + 1,
            uptime_s=3600.0,
            metrics=metrics,
            model_versions={DEGRADING: "pump:v2", **dict.fromkeys(HEALTHY, "pump:v2")},
        )
    )
    messages.append(
        DeploymentAck(
            gateway_id=GATEWAY,
            seq=seq + 2,
            target="pump",
            version=2,
            ok=True,
            reason="",
            ts_ns=datetime_to_ns(now),
        )
    )
    with psycopg.connect(conninfo) as conn:
        writer = BatchWriter(conn)
        for chunk in range(0, len(messages), 500):
            writer.write(messages[chunk : chunk + 500])
        upsert_site(conn, "plant-1", name="Plant 1")
        for asset_id in (DEGRADING, *HEALTHY):
            update_asset(
                conn, asset_id, site_id="plant-1", line="line 1", asset_type="pump", criticality="high"
            )
        update_asset(conn, HEALTHY[1], line=HOSTILE_LINE, criticality="normal")
        _seed_forecasts(conn, now)
        _seed_model(conn, start, now)
        add_user(conn, "erin", role="engineer", password=PASSWORD)
        add_user(conn, "vic", role="viewer", password=PASSWORD)
        conn.commit()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        refresh_rollups(conn, start=start, end=now + timedelta(hours=1))
        record_refreshed_through(conn, now)
    return Plant(alert_id=alert_id, now=now)


def _seed_forecasts(conn: psycopg.Connection[Any], now: datetime) -> None:
    version = insert_forecaster(
        conn,
        ForecasterRecord(
            train_start=now - timedelta(days=30),
            train_end=now,
            n_assets=3,
            n_rows=1000,
            n_failures=4,
            horizon_h=72.0,
            columns=["rms"],
            cv_metrics={},
            fit_s=1.0,
            metadata_json="{}",
            estimators=b"",
        ),
    )
    records = []
    for hours_ago in range(12, -1, -3):
        at = now - timedelta(hours=hours_ago)
        rul = 30.0 + hours_ago * 1.5
        records.append(
            ForecastRecord(DEGRADING, at, at, rul, rul * 0.6, rul * 1.5, 0.8, 72.0, False, version)
        )
        records.extend(
            ForecastRecord(asset_id, at, at, 400.0, 250.0, 600.0, 0.02, 72.0, False, version)
            for asset_id in HEALTHY
        )
    insert_forecasts(conn, records)


def _seed_model(conn: psycopg.Connection[Any], start: datetime, now: datetime) -> None:
    artifact = b"onnx"
    manifest = ModelManifest(
        target="pump",
        version=2,
        model_type="pca",
        artifact_sha256=hashlib.sha256(artifact).hexdigest(),
        feature_spec=DEFAULT_SPEC.spec_id,
        feature_names=list(DEFAULT_SPEC.feature_names),
        threshold=THRESHOLD,
        created_ns=datetime_to_ns(now),
    )
    insert_model(
        conn,
        target="pump",
        version=2,
        model_type="pca",
        sha256=manifest.artifact_sha256,
        artifact=artifact,
        manifest_json=encode(manifest).decode(),
        signature_b64="",
        feature_spec=DEFAULT_SPEC.spec_id,
        feature_names=list(DEFAULT_SPEC.feature_names),
        threshold=THRESHOLD,
        assets=[DEGRADING, *HEALTHY],
        train_start=start,
        train_end=now,
        n_train_rows=800,
        metrics=CandidateMetrics(
            threshold=THRESHOLD,
            int8_float_decision_agreement=0.999,
            int8_latency_us=12.0,
            model_bytes_float=40_000.0,
            model_bytes_int8=12_000.0,
            healthy_score_p99=0.9,
            validation_alarm_rate=0.004,
            fault_detection_rate=0.93,
        ),
        gates=Gates(
            agreement=Gate(value=0.999, limit=0.99, passed=True),
            latency_us=Gate(value=12.0, limit=1000.0, passed=True),
            size_bytes=Gate(value=12_000, limit=5_000_000, passed=True),
        ),
        reference=None,
        status="approved",
    )
    mark_deployed(conn, "pump", 2, reason="approved by erin")


def dashboard_settings(conninfo: str, tmp_path: Path, **overrides: Any) -> DashboardSettings:
    """Dashboard settings for the test database, a key file under `tmp_path`, and a free port."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    values: dict[str, Any] = {
        "port": 1,
        "db": {
            "host": info["host"],
            "port": int(str(info["port"])),
            "dbname": info["dbname"],
            "user": info["user"],
            "connect_timeout_s": 2,
        },
        "session": {"secret_key_file": str(tmp_path / "dashboard" / "secret_key")},
        "refresh_s": 3600,
    }
    values.update(overrides)
    return load_settings(DashboardSettings, environ={}, overrides=values)


@dataclass(frozen=True, slots=True)
class Served:
    """A dashboard being served: its app and base URL."""

    app: DashboardApp
    url: str


@contextlib.contextmanager
def serving(settings: DashboardSettings) -> Iterator[Served]:
    """Serve the dashboard with waitress on 127.0.0.1 and a free port until the block ends."""
    app = create_app(settings)
    server = DashboardServer(
        app.wsgi, host="127.0.0.1", port=0, threads=4, behind_proxy=settings.proxy.behind_proxy
    )
    thread = threading.Thread(target=server.run, name="dashboard-waitress", daemon=True)
    thread.start()
    try:
        yield Served(app, f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()
        thread.join(timeout=10)
        app.close()
        assert not thread.is_alive(), "waitress did not stop"


def login(url: str, username: str, password: str = PASSWORD) -> requests.Session:
    """A logged-in HTTP session (the login form's CSRF field taken from the page, as a browser would)."""
    session = requests.Session()
    page = session.get(f"{url}/login", timeout=10)
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = session.post(
        f"{url}/login",
        data={"csrf_token": token, "username": username, "password": password},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text
    return session


def callback_headers(session: requests.Session) -> dict[str, str]:
    """The header Dash's renderer sends with each callback request: the CSRF token from its cookie."""
    return {CSRF_HEADER: session.cookies.get(CSRF_COOKIE) or ""}


def dash_callback(
    session: requests.Session,
    url: str,
    *,
    outputs: list[tuple[str, str]],
    inputs: list[tuple[str, str, Any]],
    state: Sequence[tuple[str, str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """POST one callback request the way Dash's renderer does."""
    if len(outputs) == 1:
        output = f"{outputs[0][0]}.{outputs[0][1]}"
        described: Any = {"id": outputs[0][0], "property": outputs[0][1]}
    else:
        output = ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".."
        described = [{"id": i, "property": p} for i, p in outputs]
    payload = {
        "output": output,
        "outputs": described,
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
    }
    return session.post(
        f"{url}/_dash-update-component",
        json=payload,
        headers=callback_headers(session) if headers is None else headers,
        timeout=30,
    )
