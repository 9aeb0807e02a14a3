"""`forewarn demo`: the whole loop on one machine, from simulated sensors to a retrained model and forecasts.

1. A broker and a database: the configured ones, or throwaway local Mosquitto and PostgreSQL started on
   free ports (and removed at the end).
2. A signing key pair; the cloud service (`forewarn cloud`: ingest and the lifecycle scheduler, which
   retrains each asset type's model and pushes the winner, and refits and recomputes the failure
   forecasts, every minute); the assets dealt to `gateways` edge agents (`forewarn edge`); the dashboard
   (`forewarn dashboard`) with an admin login created for the demo. Each is a child process configured from
   TOML files the demo writes.
3. The simulator publishes the scenario (default `plant`: 60 assets over 90 days, with failures and
   maintenance) as raw sensor batches, time-compressed so the whole scenario plays in `play_s`.
4. The edge agents window, score and alert within milliseconds and forward aggregates through their disk
   queues; the cloud stores them, trains on them, pushes signed models back, and forecasts.
5. At the end (the scenario played, `duration_s` passed, or Ctrl-C/SIGTERM) the agents drain their queues,
   the demo checks every gateway's sequence numbers against the database and prints what happened to
   each asset and gateway; without `duration_s` it keeps serving the dashboard until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import psycopg
from pydantic import SecretStr

from cloud_service.lifecycle.service import LifecycleService
from cloud_service.lifecycle.signing import init_keys
from cloud_service.queries import register_asset, sequence_account
from cloud_service.service import prepare_database
from cloud_service.settings import CloudSettings
from cloud_service.users import add_user
from edge_agent.agent import QUEUE_FILE
from edge_agent.disk_queue import read_counters
from edge_agent.settings import EdgeSettings
from forewarn.demo.configs import (
    demo_scenario,
    secret_environment,
    split_assets,
    write_cloud_config,
    write_dashboard_config,
    write_gateway_config,
)
from forewarn.demo.report import DemoReport, collect, counted, print_report
from forewarn.demo.watcher import BrokerWatcher
from forewarn.localservices import MosquittoServer, PostgresServer, free_port, temporary_directory, wait_until
from forewarn.processes import ForewarnProcess, stop_child, wait_for_ingest
from forewarn.settings import DemoSettings
from shared.config import DatabaseSettings, MqttSettings, load_settings
from shared.errors import ConfigError, ForewarnError
from shared.timebase import NS_PER_S, now_ns
from simulators import (
    Publisher,
    PublishStats,
    Scenario,
    fleet_units,
    iter_messages,
    load_scenario,
    publish_stream,
)

__all__ = ["run_demo", "stop_child"]

logger = logging.getLogger(__name__)

_DEMO_DB = "forewarn_demo"
_DEMO_USER = "demo"
# A stopping gateway first scores the raw batches it holds (shutdown_drain_s), then waits for its queue's
# acknowledgements (shutdown_ack_wait_s): it is only killed after both, with a margin.
_EDGE_STOP_TIMEOUT_S = (
    float(EdgeSettings.model_fields["shutdown_drain_s"].default)
    + float(EdgeSettings.model_fields["shutdown_ack_wait_s"].default)
    + 30.0
)


def _broker(stack: contextlib.ExitStack, settings: DemoSettings, workdir: Path) -> MqttSettings:
    if settings.broker_url:
        parts = urlsplit(settings.broker_url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ConfigError("demo.broker_url", settings.broker_url, "must look like mqtt://host:port")
        return MqttSettings(host=parts.hostname, port=parts.port or 1883)
    server = MosquittoServer(workdir / "mosquitto")
    stack.callback(server.stop, kill=True)
    server.start()
    print(f"demo: started a local Mosquitto on port {server.port}", file=sys.stderr)
    return MqttSettings(host=server.host, port=server.port)


def _database(stack: contextlib.ExitStack, settings: DemoSettings) -> DatabaseSettings:
    conninfo = settings.database.get_secret_value()
    if conninfo:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
        return DatabaseSettings(
            host=str(params.get("host", "127.0.0.1")),
            port=int(str(params.get("port") or 5432)),
            dbname=str(params.get("dbname", "forewarn")),
            user=str(params.get("user", "postgres")),
            password=SecretStr(str(params.get("password", ""))),
        )
    pg_dir = stack.enter_context(temporary_directory("forewarn-demo-pg-"))
    server = PostgresServer(pg_dir)
    stack.callback(server.stop, mode="fast")  # before start: an interrupt during start still stops it
    server.start()
    server.create_database(_DEMO_DB)
    print(f"demo: started a local PostgreSQL on port {server.port}", file=sys.stderr)
    return DatabaseSettings(host=server.host, port=server.port, dbname=_DEMO_DB, user=server.user)


@contextlib.contextmanager
def _child(
    name: str, arguments: list[str], log_path: Path, *, secrets_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `forewarn ARGUMENTS` as a child process logging to `log_path`; stop it (SIGTERM) at the end."""
    with ForewarnProcess(name, arguments, log_path, environment=secrets_env) as child:
        assert child.process is not None
        yield child.process


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _dashboard_port(settings: DemoSettings) -> int:
    wanted = settings.dashboard_port
    return wanted if wanted and _port_free(wanted) else free_port()


def _register_fleet(conninfo: str, scenario: Scenario, shares: dict[str, str]) -> None:
    """Each asset with its type (the model target) and gateway, before its data arrives."""
    with psycopg.connect(conninfo) as conn:
        for unit in fleet_units(scenario):
            register_asset(conn, unit.asset_id, asset_type=unit.type.name, gateway_id=shares[unit.asset_id])
        conn.commit()


def _create_login(conninfo: str) -> str:
    """An admin user for the demo's dashboard; returns its password (printed once, stored hashed)."""
    password = secrets.token_urlsafe(12)
    with psycopg.connect(conninfo) as conn:
        add_user(conn, _DEMO_USER, role="admin", password=password)
        conn.commit()
    return password


def _drain(conninfo: str, queued: dict[str, tuple[int, int]], timeout_s: float) -> None:
    """Wait until the database holds every message the stopped gateways sent (their queues are empty)."""

    def stored_all() -> bool:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return all(
                sequence_account(conn, gateway_id).distinct_seqs >= assigned - left
                for gateway_id, (assigned, left) in queued.items()
            )

    with contextlib.suppress(TimeoutError):  # what is still missing then is reported as lost
        wait_until(stored_all, timeout_s=timeout_s, interval_s=0.5)


def _progress(watcher: BrokerWatcher, report: DemoReport, start_ns: int) -> Any:
    def show(stats: PublishStats) -> None:
        report.plant_alerts.extend(watcher.drain())
        day = (stats.last_ts_ns - start_ns) / NS_PER_S / 86400 if stats.last_ts_ns else 0.0
        raised = sum(1 for seen in report.plant_alerts if seen.alert.state == "raised")
        print(
            f"demo: simulated day {day:5.1f}: {stats.samples:,} samples, {counted(raised, 'alert')} raised",
            file=sys.stderr,
        )

    return show


def _final_jobs(cloud_toml: Path, secrets_env: dict[str, str]) -> None:
    """On everything stored, what the scheduler's jobs do every minute: refit and recompute the forecasts,
    diagnose the snapshots still waiting, and refresh the advice from both."""
    service = LifecycleService(load_settings(CloudSettings, toml_path=cloud_toml, environ=secrets_env))
    refit = service.refit_forecaster()
    if refit.skipped_reason:
        print(f"demo: forecast refit skipped: {refit.skipped_reason}", file=sys.stderr)
    service.recompute_forecasts()
    service.diagnose_snapshots()
    service.refresh_advice()


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What the demo will run: the time-compressed scenario, its speed, and which gateway serves what."""

    scenario: Scenario
    speed: float
    span_s: float
    gateway_ids: list[str]
    shares: dict[str, str]

    @classmethod
    def from_settings(cls, settings: DemoSettings) -> _Plan:
        base = load_scenario(settings.scenario)
        scenario = demo_scenario(base, step_s=settings.step_s, end_ns=now_ns() - 60 * NS_PER_S)
        span_s = scenario.n_steps * scenario.step_ns / NS_PER_S
        gateway_ids = [f"{settings.gateway_id}-{i + 1}" for i in range(settings.gateways)]
        shares = {
            asset_id: gateway_ids[i]
            for i, assets in enumerate(split_assets(scenario, settings.gateways))
            for asset_id in assets
        }
        speed = settings.speed or span_s / settings.play_s
        return cls(scenario, speed, span_s, gateway_ids, shares)


@dataclasses.dataclass(frozen=True)
class _Configs:
    cloud: Path
    gateways: dict[str, Path]
    secrets_env: dict[str, str]


def _write_configs(
    plan: _Plan, settings: DemoSettings, workdir: Path, mqtt_settings: MqttSettings, db: DatabaseSettings
) -> _Configs:
    keys = init_keys(workdir / "keys")
    cloud = write_cloud_config(
        workdir / "cloud.toml",
        mqtt_settings=mqtt_settings,
        db=db,
        signing_key=keys.private_key,
        targets=sorted({unit.type.name for unit in fleet_units(plan.scenario)}),
    )
    gateways = {
        gateway_id: write_gateway_config(
            workdir / f"{gateway_id}.toml",
            scenario=plan.scenario,
            gateway_id=gateway_id,
            mqtt_settings=mqtt_settings,
            workdir=workdir,
            asset_ids=[a for a, g in plan.shares.items() if g == gateway_id],
            public_key=keys.public_key,
            warmup_windows=settings.warmup_windows,
            diagnosis=True,
            diagnosis_baseline_interval_s=settings.diagnosis_baseline_interval_s,
        )
        for gateway_id in plan.gateway_ids
    }
    return _Configs(cloud, gateways, secret_environment(db))


def _start_dashboard(
    stack: contextlib.ExitStack,
    settings: DemoSettings,
    workdir: Path,
    db: DatabaseSettings,
    configs: _Configs,
) -> str:
    """Serve the dashboard with an admin login made for the demo; returns its URL."""
    port = _dashboard_port(settings)
    dashboard_toml = write_dashboard_config(workdir / "dashboard.toml", db=db, port=port, workdir=workdir)
    password = _create_login(db.conninfo())
    stack.enter_context(
        _child(
            "dashboard",
            ["dashboard", "--config", str(dashboard_toml)],
            workdir / "dashboard.log",
            secrets_env=configs.secrets_env,
        )
    )
    url = f"http://127.0.0.1:{port}/"
    print(f"demo: dashboard at {url}, login {_DEMO_USER} / {password}", file=sys.stderr)
    return url


def _play(
    plan: _Plan,
    mqtt_settings: MqttSettings,
    watcher: BrokerWatcher,
    report: DemoReport,
    deadline: float | None,
) -> None:
    """Publish the scenario at the plan's speed, until it ends or the deadline passes."""
    stop = threading.Event()
    timer = None
    if deadline is not None:
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), stop.set)
        timer.daemon = True
        timer.start()
    scenario = plan.scenario
    try:
        with Publisher(settings=mqtt_settings, client_id=f"forewarn-demo-sim-{os.getpid()}") as publisher:
            stats = publish_stream(
                iter_messages(scenario, on_truth=report.truth.append),
                publisher,
                speed=plan.speed,
                stop=stop,
                progress=_progress(watcher, report, scenario.start_ns),
                progress_interval_s=10.0,
            )
    finally:
        if timer is not None:
            timer.cancel()
    report.raw_messages, report.raw_samples = stats.messages, stats.samples
    if stats.last_ts_ns:
        report.simulated_days = (stats.last_ts_ns - scenario.start_ns) / NS_PER_S / 86400


def _finish(
    plan: _Plan,
    *,
    edges: dict[str, subprocess.Popen[bytes]],
    workdir: Path,
    configs: _Configs,
    db: DatabaseSettings,
    watcher: BrokerWatcher,
    report: DemoReport,
) -> None:
    """Drain the gateways, forecast and advise on everything stored, and read back what happened."""
    for gateway_id, edge in edges.items():
        stop_child(edge, gateway_id, _EDGE_STOP_TIMEOUT_S)  # scores its backlog, drains its queue upstream
    conninfo = db.conninfo()
    queued = {g: read_counters(workdir / g / "queue" / QUEUE_FILE) for g in plan.gateway_ids}
    _drain(conninfo, queued, 120.0)
    _final_jobs(configs.cloud, configs.secrets_env)
    report.plant_alerts.extend(watcher.drain())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        collect(report, conn, shares=plan.shares, queued=queued)


def run_demo(
    settings: DemoSettings,
    *,
    out: TextIO = sys.stdout,
    as_json: bool = False,
    stop: threading.Event | None = None,
) -> DemoReport:
    """Run the demo end to end and return what it saw (also printed to `out`).

    Without `duration_s` it keeps serving the dashboard after its report until Ctrl-C, SIGTERM, or `stop`
    is set (for a caller that runs it from a thread or needs no signal).
    """
    started = time.monotonic()
    plan = _Plan.from_settings(settings)
    report = DemoReport(scenario=plan.scenario.name, speed=plan.speed)
    deadline = started + settings.duration_s if settings.duration_s else None
    with contextlib.ExitStack() as stack:
        if settings.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forewarn-demo-")))
        else:
            workdir = settings.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        mqtt_settings = _broker(stack, settings, workdir)
        db = _database(stack, settings)
        configs = _write_configs(plan, settings, workdir, mqtt_settings, db)
        prepare_database(load_settings(CloudSettings, toml_path=configs.cloud, environ=configs.secrets_env))
        _register_fleet(db.conninfo(), plan.scenario, plan.shares)
        print(f"demo: configs and logs in {workdir}", file=sys.stderr)
        watcher = BrokerWatcher(mqtt_settings, plan.gateway_ids)
        stack.callback(watcher.close)
        cloud_log = workdir / "cloud.log"
        stack.enter_context(
            _child(
                "cloud", ["cloud", "--config", str(configs.cloud)], cloud_log, secrets_env=configs.secrets_env
            )
        )
        wait_for_ingest(db.conninfo())
        if settings.dashboard:
            report.dashboard_url = _start_dashboard(stack, settings, workdir, db, configs)
        edges = {
            gateway_id: stack.enter_context(
                _child(gateway_id, ["edge", "--config", str(path)], workdir / f"{gateway_id}.log")
            )
            for gateway_id, path in configs.gateways.items()
        }
        if not watcher.online.wait(90):
            raise ForewarnError(f"the edge agents did not come online within 90 s: see the logs in {workdir}")
        print(
            f"demo: simulating {plan.scenario.name} ({len(plan.scenario.asset_ids)} assets, "
            f"{plan.span_s / 86400:.0f} days) at {plan.speed:,.0f}x through {len(edges)} gateways",
            file=sys.stderr,
        )
        _play(plan, mqtt_settings, watcher, report, deadline)
        _finish(plan, edges=edges, workdir=workdir, configs=configs, db=db, watcher=watcher, report=report)
        report.wall_s = time.monotonic() - started
        print_report(report, out, as_json=as_json)
        if deadline is None and settings.dashboard:
            print(
                f"demo: the dashboard keeps serving at {report.dashboard_url} (the gateways stopped when the "
                "scenario ended, so it shows them and their assets offline); Ctrl-C stops",
                file=sys.stderr,
            )
            (stop or threading.Event()).wait()
    return report
