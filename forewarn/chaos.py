"""`forewarn chaos`: fault campaigns against the real parts, ending with every gateway's sequence numbers
checked against the database.

Each scenario runs on throwaway local services: a plant broker (the simulator's raw data in), an upstream
broker (the gateways' uplink), PostgreSQL, one cloud ingest process and two edge agents, with the `smoke`
fleet published live at 10x its own rate (3 assets, a 4096-sample vibration burst each per wall second).
One fault is caused for real while the load runs:

- `broker-outage`: the upstream broker stopped and restarted, several times;
- `db-outage`: PostgreSQL stopped under load, then restarted;
- `edge-kill`: an edge agent SIGKILLed and restarted, again and again (power loss);
- `ingest-kill`: the cloud ingest process SIGKILLed under load and restarted;
- `clock-skew`: one edge agent restarted with its wall clock 5 minutes ahead (libfaketime,
  `forewarn.chaos_clock`); adds the measured skew and the flagged rows to the figures.

At the end the agents drain; a gateway's `sent` is every sequence number it assigned, `stored` the distinct
ones the database holds. `lost` = sent - stored - still queued - dropped by the declared policy;
`duplicated` = rows stored more than once. `recovery_s`: from the end of the last fault until the database
holds everything the gateways had queued by then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from cloud_service.queries import latest_gateway_metrics, missing_sequences, sequence_account
from cloud_service.service import prepare_database
from cloud_service.settings import CloudSettings
from edge_agent.agent import QUEUE_FILE
from edge_agent.disk_queue import read_counters
from forewarn.chaos_clock import clock_skew
from forewarn.demo.configs import split_assets, write_gateway_config
from forewarn.localservices import MosquittoServer, PostgresServer, running, temporary_directory, wait_until
from forewarn.processes import ForewarnProcess, wait_for_ingest
from shared.config import ComponentSettings, MqttSettings, load_settings, render_settings
from shared.errors import ConfigError
from shared.timebase import NS_PER_S, now_ns
from simulators import Publisher, Scenario, iter_messages, load_scenario, publish_stream

__all__ = ["SCENARIOS", "Durations", "run_scenario"]

_DB = "forewarn_chaos"
_LOAD_SPEED = 10.0  # simulated seconds per wall second: one burst per asset per second


@dataclasses.dataclass(frozen=True)
class Durations:
    """How long faults last and how often they repeat (the issue's full form, or `--quick`)."""

    outage_s: float
    repeats: int
    kill_every_s: float
    kill_for_s: float
    settle_s: float

    @classmethod
    def for_run(cls, *, quick: bool) -> Durations:
        if quick:
            return cls(outage_s=5.0, repeats=2, kill_every_s=4.0, kill_for_s=12.0, settle_s=4.0)
        return cls(outage_s=60.0, repeats=5, kill_every_s=10.0, kill_for_s=300.0, settle_s=15.0)


@dataclasses.dataclass
class _Rig:
    """The running system a scenario attacks."""

    plant: MosquittoServer
    upstream: MosquittoServer
    postgres: PostgresServer
    conninfo: str
    ingest: ForewarnProcess
    edges: dict[str, ForewarnProcess]
    state_dirs: dict[str, Path]


def _write(path: Path, settings: ComponentSettings) -> Path:
    path.write_text(render_settings(settings))
    return path


def _mqtt(server: MosquittoServer) -> dict[str, object]:
    return {"host": server.host, "port": server.port}


def _queue_counters(state_dir: Path) -> tuple[int, int]:
    """(sequence numbers assigned, messages still queued) of a gateway, read beside the running agent."""
    return read_counters(state_dir / "queue" / QUEUE_FILE)


def _stored(conninfo: str, gateway_id: str) -> tuple[int, int]:
    """(distinct sequence numbers stored, rows holding them); (-1, -1) while the database is down."""
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            account = sequence_account(conn, gateway_id)
    except psycopg.OperationalError:
        return -1, -1
    return account.distinct_seqs, account.rows


@contextlib.contextmanager
def _rig(workdir: Path, scenario: Scenario) -> Iterator[_Rig]:
    with contextlib.ExitStack() as stack:
        plant = stack.enter_context(running(MosquittoServer(workdir / "plant-broker")))
        upstream = stack.enter_context(running(MosquittoServer(workdir / "upstream-broker")))
        pg_dir = stack.enter_context(temporary_directory("forewarn-chaos-pg-"))
        postgres = stack.enter_context(running(PostgresServer(pg_dir)))
        conninfo = postgres.create_database(_DB)
        cloud = load_settings(
            CloudSettings,
            environ={},
            overrides={
                "mqtt": _mqtt(upstream),
                "db": {"host": postgres.host, "port": postgres.port, "dbname": _DB, "user": postgres.user},
                "ingest": {"workers": 1, "group": "chaos", "shared_subscription": False},
                "lifecycle": {"scheduler": False},
                "forecast": {"enabled": False},
            },
        )
        prepare_database(cloud)
        cloud_toml = _write(workdir / "cloud.toml", cloud)
        ingest = stack.enter_context(
            ForewarnProcess("ingest", ["cloud", "--config", str(cloud_toml)], workdir / "cloud.log")
        )
        edges: dict[str, ForewarnProcess] = {}
        state_dirs: dict[str, Path] = {}
        for i, assets in enumerate(split_assets(scenario, 2)):
            gateway_id = f"gw-chaos-{i + 1}"
            config = write_gateway_config(
                workdir / f"{gateway_id}.toml",
                scenario=scenario,
                gateway_id=gateway_id,
                mqtt_settings=MqttSettings(host=plant.host, port=plant.port),
                upstream_mqtt=MqttSettings(host=upstream.host, port=upstream.port),
                workdir=workdir,
                asset_ids=assets,
                aggregation_period_s=1.0,
                heartbeat_interval_s=1.0,
            )
            edges[gateway_id] = stack.enter_context(
                ForewarnProcess(gateway_id, ["edge", "--config", str(config)], workdir / f"{gateway_id}.log")
            )
            state_dirs[gateway_id] = workdir / gateway_id
        yield _Rig(plant, upstream, postgres, conninfo, ingest, edges, state_dirs)


def _broker_outage(rig: _Rig, durations: Durations) -> None:
    for _ in range(durations.repeats):
        rig.upstream.stop()  # SIGTERM: the broker saves its persistent sessions
        time.sleep(durations.outage_s)
        rig.upstream.start()
        time.sleep(durations.settle_s)


def _db_outage(rig: _Rig, durations: Durations) -> None:
    rig.postgres.stop(mode="fast")
    time.sleep(durations.outage_s)
    rig.postgres.start()


def _edge_kill(rig: _Rig, durations: Durations) -> None:
    victim = next(iter(rig.edges.values()))
    deadline = time.monotonic() + durations.kill_for_s
    while time.monotonic() < deadline:
        time.sleep(durations.kill_every_s)
        victim.kill()
        victim.start()


def _ingest_kill(rig: _Rig, durations: Durations) -> None:
    for _ in range(durations.repeats):
        time.sleep(durations.settle_s)
        rig.ingest.kill()
        time.sleep(1.0)
        rig.ingest.start()


# A scenario may return a function giving extra figures, called once everything is stored.
ScenarioFigures = Callable[[psycopg.Connection[Any]], dict[str, Any]]
SCENARIOS: dict[str, Callable[[_Rig, Durations], ScenarioFigures | None]] = {
    "broker-outage": _broker_outage,
    "db-outage": _db_outage,
    "edge-kill": _edge_kill,
    "ingest-kill": _ingest_kill,
    "clock-skew": clock_skew,
}


def _caught_up(rig: _Rig, queued_at_end: dict[str, int]) -> bool:
    return all(_stored(rig.conninfo, g)[0] >= queued_at_end[g] for g in rig.edges)


def _publish_live(scenario: Scenario, plant: MosquittoServer, stop: threading.Event) -> threading.Thread:
    def publish() -> None:
        settings = MqttSettings(host=plant.host, port=plant.port)
        with Publisher(settings=settings, client_id=f"forewarn-chaos-sim-{os.getpid()}") as publisher:
            publish_stream(iter_messages(scenario), publisher, speed=_LOAD_SPEED, stop=stop)

    thread = threading.Thread(target=publish, name="chaos-simulator", daemon=True)
    thread.start()
    return thread


def run_scenario(name: str, *, quick: bool = False, workdir: Path | None = None) -> dict[str, Any]:
    """Run one scenario and return its figures (`sent`, `stored`, `lost`, `duplicated`, ...)."""
    if name not in SCENARIOS:
        raise ConfigError("chaos --scenario", name, f"one of {', '.join(sorted(SCENARIOS))}")
    durations = Durations.for_run(quick=quick)
    base = load_scenario("smoke")
    scenario = base.with_changes(start_ns=now_ns() - NS_PER_S)
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forewarn-chaos-")))
        rig = stack.enter_context(_rig(root, scenario))
        wait_for_ingest(rig.conninfo)
        stop = threading.Event()
        publisher = _publish_live(scenario, rig.plant, stop)
        wait_until(lambda: all(_stored(rig.conninfo, g)[0] > 0 for g in rig.edges), timeout_s=120)
        print(f"chaos: {name}: load running, causing the fault", file=sys.stderr)
        extra_figures = SCENARIOS[name](rig, durations)
        fault_end = time.monotonic()
        queued_at_end = {g: _queue_counters(rig.state_dirs[g])[0] for g in rig.edges}
        recovery_s: float | None = None
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: _caught_up(rig, queued_at_end), timeout_s=120, interval_s=0.2)
            recovery_s = round(time.monotonic() - fault_end, 2)
        time.sleep(durations.settle_s)
        stop.set()
        publisher.join(timeout=30)
        for edge in rig.edges.values():
            edge.stop()  # flushes and drains its queue upstream
        wait_until(lambda: all(_queue_counters(d)[1] == 0 for d in rig.state_dirs.values()), timeout_s=60)
        assigned = {g: _queue_counters(rig.state_dirs[g])[0] for g in rig.edges}
        with contextlib.suppress(TimeoutError):  # the broker has them all; ingest may still be writing
            wait_until(lambda: _caught_up(rig, assigned), timeout_s=60, interval_s=0.2)
        return _figures(rig, recovery_s, extra_figures)


def _figures(rig: _Rig, recovery_s: float | None, extra: ScenarioFigures | None = None) -> dict[str, Any]:
    sent = stored = duplicated = left = dropped = 0
    missing: dict[str, list[int]] = {}
    with psycopg.connect(rig.conninfo) as conn:
        for gateway_id, state_dir in rig.state_dirs.items():
            assigned, depth = _queue_counters(state_dir)
            account = sequence_account(conn, gateway_id)
            metrics = latest_gateway_metrics(conn, gateway_id)
            sent += assigned
            left += depth
            stored += account.distinct_seqs
            duplicated += account.duplicated
            dropped += int(sum(v for k, v in metrics.items() if k.startswith("queue.dropped.")))
            if account.distinct_seqs < assigned:
                missing[gateway_id] = missing_sequences(conn, gateway_id, below=assigned)
        extras = extra(conn) if extra else {}
    return {
        "sent": sent,
        "stored": stored,
        "lost": max(0, sent - stored - left - dropped),
        "duplicated": duplicated,
        "dropped_by_policy": dropped,
        "still_queued": left,
        "recovery_s": recovery_s,
        "missing_seqs": missing,
        **extras,
    }
