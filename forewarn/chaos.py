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
- `partition` (`forewarn.chaos_partition`): one gateway's uplink cut through a TCP proxy, with a queue
  bound smaller than what accumulates;
- `disk-full` (`forewarn.chaos_disk`): the edge queue's filesystem (a small tmpfs) filled, then freed;
- `model-push-during-outage` (`forewarn.chaos_model_push`): a signed model pushed while a gateway is
  stopped, and a flooding model rolled back by probation with the uplink down and the queue full.
- `clock-skew` (`forewarn.chaos_clock`): one edge agent restarted with its wall clock 5 minutes ahead
  (libfaketime); adds the measured skew and the flagged rows to the figures.

A scenario may return figures of its own, added to the common ones.

At the end the agents drain; a gateway's `sent` is every sequence number it assigned, `stored` the distinct
ones the database holds. `lost` = sent - stored - still queued - dropped by the declared policy;
`duplicated` = rows stored more than once; the drops are the queue file's own counts (kept across
restarts). `recovery_s`: from the end of the last fault until the database holds everything the gateways
had queued by then (or dropped by the policy).
"""

from __future__ import annotations

import contextlib
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
from edge_agent.disk_queue import read_counters, read_dropped
from forewarn.chaos_clock import ClockSkew
from forewarn.chaos_disk import DiskFull
from forewarn.chaos_fault import LOAD_SPEED, Durations, Fault, Rig, ScenarioSkipped
from forewarn.chaos_model_push import model_push_during_outage
from forewarn.chaos_partition import Partition
from forewarn.demo.configs import split_assets, write_gateway_config
from forewarn.localservices import MosquittoServer, PostgresServer, running, temporary_directory, wait_until
from forewarn.processes import ForewarnProcess, wait_for_ingest
from shared.config import ComponentSettings, MqttSettings, load_settings, render_settings
from shared.errors import ConfigError
from shared.timebase import NS_PER_S, now_ns
from simulators import Publisher, Scenario, iter_messages, load_scenario, publish_stream

__all__ = ["SCENARIOS", "Durations", "run_scenario"]

_DB = "forewarn_chaos"


def _write(path: Path, settings: ComponentSettings) -> Path:
    path.write_text(render_settings(settings))
    return path


def _mqtt(server: MosquittoServer) -> dict[str, object]:
    return {"host": server.host, "port": server.port}


def _stored(conninfo: str, gateway_id: str) -> tuple[int, int]:
    """(distinct sequence numbers stored, rows holding them); (-1, -1) while the database is down."""
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            account = sequence_account(conn, gateway_id)
    except psycopg.OperationalError:
        return -1, -1
    return account.distinct_seqs, account.rows


@contextlib.contextmanager
def _rig(workdir: Path, scenario: Scenario, fault: Fault) -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        plant = stack.enter_context(running(MosquittoServer(workdir / "plant-broker")))
        upstream = stack.enter_context(running(MosquittoServer(workdir / "upstream-broker")))
        changes = fault.prepare(workdir, upstream, stack)
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
                changes=changes.get(gateway_id),
            )
            edges[gateway_id] = stack.enter_context(
                ForewarnProcess(gateway_id, ["edge", "--config", str(config)], workdir / f"{gateway_id}.log")
            )
            state_dirs[gateway_id] = workdir / gateway_id
        yield Rig(plant, upstream, postgres, conninfo, ingest, edges, state_dirs)


class _Simple(Fault):
    """A fault that changes nothing in the rig: only `cause`, whose figures (if any) are the scenario's."""

    def __init__(self, cause: Callable[[Rig, Durations], dict[str, Any] | None]) -> None:
        self._cause = cause
        self._figures: dict[str, Any] = {}

    def cause(self, rig: Rig, durations: Durations) -> None:
        self._figures = self._cause(rig, durations) or {}

    def figures(self, rig: Rig) -> dict[str, Any]:
        del rig
        return self._figures


def _broker_outage(rig: Rig, durations: Durations) -> None:
    for _ in range(durations.repeats):
        rig.upstream.stop()  # SIGTERM: the broker saves its persistent sessions
        time.sleep(durations.outage_s)
        rig.upstream.start()
        time.sleep(durations.settle_s)


def _db_outage(rig: Rig, durations: Durations) -> None:
    rig.postgres.stop(mode="fast")
    time.sleep(durations.outage_s)
    rig.postgres.start()


def _edge_kill(rig: Rig, durations: Durations) -> None:
    victim = next(iter(rig.edges.values()))
    deadline = time.monotonic() + durations.kill_for_s
    while time.monotonic() < deadline:
        time.sleep(durations.kill_every_s)
        victim.kill()
        victim.start()


def _ingest_kill(rig: Rig, durations: Durations) -> None:
    for _ in range(durations.repeats):
        time.sleep(durations.settle_s)
        rig.ingest.kill()
        time.sleep(1.0)
        rig.ingest.start()


# Each name makes a fresh `Fault` per run (a fault may hold state: a proxy, a mount).
SCENARIOS: dict[str, Callable[[], Fault]] = {
    "broker-outage": lambda: _Simple(_broker_outage),
    "clock-skew": ClockSkew,
    "db-outage": lambda: _Simple(_db_outage),
    "disk-full": DiskFull,
    "edge-kill": lambda: _Simple(_edge_kill),
    "ingest-kill": lambda: _Simple(_ingest_kill),
    "model-push-during-outage": lambda: _Simple(model_push_during_outage),
    "partition": Partition,
}


def _caught_up(rig: Rig, queued_at_end: dict[str, int]) -> bool:
    """Whether the database holds every seq queued by then that the queue did not drop by its policy."""
    return all(
        _stored(rig.conninfo, g)[0] + _dropped(rig.queue_file(g)) >= queued_at_end[g] for g in rig.edges
    )


def _dropped(queue_file: Path) -> int:
    """Messages a gateway's queue dropped by its declared policy (full queue), since it was created: the
    queue file's own counts, which survive restarts (a heartbeat's may be older than the last drop)."""
    return sum(read_dropped(queue_file).values())


def _publish_live(scenario: Scenario, plant: MosquittoServer, stop: threading.Event) -> threading.Thread:
    def publish() -> None:
        settings = MqttSettings(host=plant.host, port=plant.port)
        with Publisher(settings=settings, client_id=f"forewarn-chaos-sim-{os.getpid()}") as publisher:
            publish_stream(iter_messages(scenario), publisher, speed=LOAD_SPEED, stop=stop)

    thread = threading.Thread(target=publish, name="chaos-simulator", daemon=True)
    thread.start()
    return thread


def run_scenario(name: str, *, quick: bool = False, workdir: Path | None = None) -> dict[str, Any]:
    """Run one scenario and return its figures (`sent`, `stored`, `lost`, `duplicated`, ...); a scenario
    that cannot run on this machine returns `{"skipped": reason}`."""
    if name not in SCENARIOS:
        raise ConfigError("chaos --scenario", name, f"one of {', '.join(sorted(SCENARIOS))}")
    fault = SCENARIOS[name]()
    try:
        return _run(name, fault, quick=quick, workdir=workdir)
    except ScenarioSkipped as skipped:
        print(f"chaos: {name}: skipped: {skipped}", file=sys.stderr)
        return {"skipped": str(skipped)}


def _run(name: str, fault: Fault, *, quick: bool, workdir: Path | None) -> dict[str, Any]:
    durations = Durations.for_run(quick=quick)
    base = fault.scenario(load_scenario("smoke"))
    scenario = base.with_changes(start_ns=now_ns() - NS_PER_S)
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forewarn-chaos-")))
        rig = stack.enter_context(_rig(root, scenario, fault))
        wait_for_ingest(rig.conninfo)
        stop = threading.Event()
        publisher = _publish_live(scenario, rig.plant, stop)
        wait_until(lambda: all(_stored(rig.conninfo, g)[0] > 0 for g in rig.edges), timeout_s=120)
        print(f"chaos: {name}: load running, causing the fault", file=sys.stderr)
        fault.cause(rig, durations)
        fault_end = time.monotonic()
        queued_at_end = {g: read_counters(rig.queue_file(g))[0] for g in rig.edges}
        recovery_s: float | None = None
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: _caught_up(rig, queued_at_end), timeout_s=120, interval_s=0.2)
            recovery_s = round(time.monotonic() - fault_end, 2)
        time.sleep(durations.settle_s)
        stop.set()
        publisher.join(timeout=30)
        for edge in rig.edges.values():
            edge.stop()  # flushes and drains its queue upstream
        wait_until(lambda: all(read_counters(rig.queue_file(g))[1] == 0 for g in rig.edges), timeout_s=60)
        assigned = {g: read_counters(rig.queue_file(g))[0] for g in rig.edges}
        with contextlib.suppress(TimeoutError):  # the broker has them all; ingest may still be writing
            wait_until(lambda: _caught_up(rig, assigned), timeout_s=60, interval_s=0.2)
        figures = _figures(rig, recovery_s) | fault.figures(rig)
        figures["lost"] += figures.get("still_held", 0)  # held in memory, without a seq, lost at the stop
        return figures


def _figures(rig: Rig, recovery_s: float | None) -> dict[str, Any]:
    """The common figures. A message the in-memory write hold shed never got a `seq`: it counts in
    `dropped_by_policy` but not against `sent`."""
    sent = stored = duplicated = left = dropped = held_dropped = 0
    missing: dict[str, list[int]] = {}
    with psycopg.connect(rig.conninfo) as conn:
        for gateway_id in rig.state_dirs:
            assigned, depth = read_counters(rig.queue_file(gateway_id))  # seqs assigned, still queued
            account = sequence_account(conn, gateway_id)
            metrics = latest_gateway_metrics(conn, gateway_id)
            sent += assigned
            left += depth
            stored += account.distinct_seqs
            duplicated += account.duplicated
            dropped += _dropped(rig.queue_file(gateway_id))
            held_dropped += _sum_prefixed(metrics, "queue.hold_dropped.")
            if account.distinct_seqs < assigned:
                missing[gateway_id] = missing_sequences(conn, gateway_id, below=assigned)
    return {
        "sent": sent,
        "stored": stored,
        "lost": max(0, sent - stored - left - dropped),
        "duplicated": duplicated,
        "dropped_by_policy": dropped + held_dropped,
        "still_queued": left,
        "recovery_s": recovery_s,
        "missing_seqs": missing,
    }


def _sum_prefixed(metrics: dict[str, float], prefix: str) -> int:
    return int(sum(v for k, v in metrics.items() if k.startswith(prefix)))
