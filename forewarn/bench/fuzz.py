"""`forewarn bench fuzz`: mutated and random payloads of every message type over a real broker into a
running edge agent and cloud service.

Each type gets `n` payloads (100,000; 2,000 with `--quick`): valid seeds with bytes flipped, cut, inserted
or spliced, and pure random bytes, on the topic where that type arrives. Afterwards both processes must
still be running, every payload the edge received must be decoded or rejected by reason (quarantine), every
one the cloud received decoded or dead-lettered by reason, and the resident memory of each process is
reported before and after. The model topics' payloads reach the agent's deployment receiver, whose
counters are not in the heartbeat: for them the figure is that the agent is still running.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from cloud_service.lifecycle.signing import init_keys
from cloud_service.queries import latest_gateway_metrics
from cloud_service.service import prepare_database
from cloud_service.settings import CloudSettings
from edge_agent.settings import EdgeSettings
from forewarn.bench.messages import PERIOD_NS, one_of_each
from forewarn.localservices import MosquittoServer, PostgresServer, running, temporary_directory, wait_until
from forewarn.processes import ForewarnProcess
from shared import topics
from shared.config import MqttSettings, load_settings, render_settings
from shared.messages import (
    Aggregate,
    Alert,
    DeploymentAck,
    MaintenanceEvent,
    Snapshot,
    Status,
    encode,
)
from shared.model_transfer import Chunk, encode_chunk
from shared.mqtt import connect, make_client
from shared.raw_batch import RawBatch, encode_raw_batch
from shared.timebase import NS_PER_S, now_ns

__all__ = ["run"]

_GATEWAY = "gw-fuzz"  # the running edge agent
_FUZZED_GATEWAY = "gw-fuzzed"  # the uplink payloads claim this one, so they never pose as the agent
_ASSET = "pump-fuzz"


def _seed_messages() -> dict[str, tuple[str, list[bytes]]]:
    """Message type -> (topic it arrives on, valid payloads to mutate)."""
    ts = now_ns() - PERIOD_NS - NS_PER_S  # the aggregate's period ends a second ago
    uplink: dict[type, list[bytes]] = {}
    for message in one_of_each(_FUZZED_GATEWAY, _ASSET, ts_ns=ts):
        uplink.setdefault(type(message), []).append(encode(message))
    raw = RawBatch(
        asset_id=_ASSET,
        sensor="vibration",
        seq=0,
        start_ns=ts,
        sample_rate_hz=10_000.0,
        samples=np.linspace(-1.0, 1.0, 1024, dtype=np.float32),
    )
    chunk = encode_chunk(Chunk(version=2, chunk_count=1, index=0, data=b"\x00" * 256))
    return {
        "raw_batch": (topics.raw(_ASSET, "vibration"), [encode_raw_batch(raw)]),
        "aggregate": (topics.aggregate(_FUZZED_GATEWAY), uplink[Aggregate]),
        "alert": (topics.alert(_FUZZED_GATEWAY), uplink[Alert]),
        "snapshot": (topics.snapshot(_FUZZED_GATEWAY), uplink[Snapshot]),
        "status": (topics.status(_FUZZED_GATEWAY), uplink[Status]),
        "deploy_ack": (topics.deploy_ack(_FUZZED_GATEWAY), uplink[DeploymentAck]),
        "event": (topics.event(_ASSET), uplink[MaintenanceEvent]),
        "model_deployment": (topics.model_deployment(_ASSET), [*uplink[DeploymentAck], chunk]),
        "model_chunk": (topics.model_chunk(_ASSET, 0), [chunk]),
    }


_EDGE_TYPES = ("raw_batch", "model_deployment", "model_chunk")


def _mutations(seeds: list[bytes], n: int, rng: np.random.Generator) -> Iterator[bytes]:
    for i in range(n):
        if i % 10 == 9:  # one in ten: random bytes of a random length
            yield rng.bytes(int(rng.integers(0, 2048)))
            continue
        buffer = bytearray(seeds[int(rng.integers(len(seeds)))])
        for _ in range(int(rng.integers(1, 6))):
            if not buffer:
                break
            at = int(rng.integers(len(buffer)))
            action = int(rng.integers(4))
            if action == 0:
                buffer[at] ^= 1 << int(rng.integers(8))
            elif action == 1:
                del buffer[at : at + int(rng.integers(1, 64))]
            elif action == 2:
                buffer[at:at] = rng.bytes(int(rng.integers(1, 16)))
            else:
                buffer[at] = int(rng.integers(256))
        yield bytes(buffer)


def _rss_bytes(process: ForewarnProcess) -> int:
    assert process.process is not None
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _configs(workdir: Path, broker: MosquittoServer, postgres: PostgresServer) -> tuple[Path, Path]:
    mqtt = {"host": broker.host, "port": broker.port}
    cloud = load_settings(
        CloudSettings,
        environ={},
        overrides={
            "mqtt": mqtt,
            "db": {"host": postgres.host, "port": postgres.port, "dbname": "fuzz", "user": postgres.user},
            "ingest": {"workers": 1, "group": "fuzz", "metrics_interval_s": 1.0},
            "lifecycle": {"scheduler": False},
            "forecast": {"enabled": False},
        },
    )
    prepare_database(cloud)
    keys = init_keys(workdir / "keys")
    edge = load_settings(
        EdgeSettings,
        environ={},
        overrides={
            "gateway_id": _GATEWAY,
            "heartbeat_interval_s": 1.0,
            "plant_mqtt": mqtt,
            "upstream_mqtt": mqtt,
            "queue": {"dir": workdir / "edge" / "queue"},
            "quarantine": {"dir": workdir / "edge" / "quarantine"},
            "models": {"store_dir": workdir / "edge" / "models"},
            "deployment": {
                "public_key": keys.public_key,
                "state_file": workdir / "edge" / "deployments.json",
            },
            "pipeline": {
                "assets": [
                    {
                        "asset_id": _ASSET,
                        "sensors": [{"name": "vibration", "kind": "vibration", "sample_rate_hz": 10_000.0}],
                    }
                ]
            },
        },
    )
    cloud_toml, edge_toml = workdir / "cloud.toml", workdir / "edge.toml"
    cloud_toml.write_text(render_settings(cloud))
    edge_toml.write_text(render_settings(edge))
    return cloud_toml, edge_toml


def _publish(broker: MosquittoServer, topic: str, payloads: Iterator[bytes], qos: int) -> tuple[int, float]:
    settings = MqttSettings(host=broker.host, port=broker.port)
    client = make_client(settings, client_id=f"forewarn-fuzz-{topic.replace('/', '-')[-40:]}")
    client.max_inflight_messages_set(1000)
    connect(client, settings, clean_start=True, session_expiry_s=0)
    client.loop_start()
    sent = 0
    started = time.perf_counter()
    try:
        wait_until(client.is_connected, timeout_s=10)
        last = None
        for payload in payloads:
            last = client.publish(topic, payload, qos=qos)
            sent += 1
            if sent % 1000 == 0:
                last.wait_for_publish(timeout=30)
        if last is not None:
            last.wait_for_publish(timeout=30)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent, time.perf_counter() - started


def _edge_counters(conn: psycopg.Connection[Any]) -> dict[str, float]:
    return latest_gateway_metrics(conn, _GATEWAY)


def _cloud_counters(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = conn.execute("SELECT metrics FROM ingest_workers ORDER BY updated_at DESC LIMIT 1").fetchone()
    return dict(row[0]) if row else {}


def run(*, quick: bool = False) -> dict[str, Any]:
    """Fuzz every message type through the broker; return per-type rates and the processes' counters."""
    n = 2_000 if quick else 100_000
    rng = np.random.default_rng(2026)
    figures: dict[str, Any] = {"payloads_per_type": n}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forewarn-fuzz-")))
        broker = stack.enter_context(running(MosquittoServer(workdir / "broker")))
        pg_dir = stack.enter_context(temporary_directory("forewarn-fuzz-pg-"))
        postgres = stack.enter_context(running(PostgresServer(pg_dir)))
        conninfo = postgres.create_database("fuzz")
        cloud_toml, edge_toml = _configs(workdir, broker, postgres)
        cloud = stack.enter_context(
            ForewarnProcess("cloud", ["cloud", "--config", str(cloud_toml)], workdir / "cloud.log")
        )
        edge = stack.enter_context(
            ForewarnProcess("edge", ["edge", "--config", str(edge_toml)], workdir / "edge.log")
        )
        with psycopg.connect(conninfo, autocommit=True) as conn:
            wait_until(lambda: _edge_counters(conn) and _cloud_counters(conn), timeout_s=240)
            rss_before = {"edge": _rss_bytes(edge), "cloud": _rss_bytes(cloud)}
            sent: dict[str, int] = {}
            for kind, (topic, seeds) in _seed_messages().items():
                count, seconds = _publish(broker, topic, _mutations(seeds, n, rng), qos=1)
                sent[kind] = count
                figures[f"{kind}_payloads_per_s"] = round(count / seconds)
            edge_sent = sum(sent[k] for k in _EDGE_TYPES)
            cloud_sent = sum(v for k, v in sent.items() if k not in _EDGE_TYPES)
            time.sleep(5.0)  # let both finish what they received
            edge_metrics, cloud_metrics = _edge_counters(conn), _cloud_counters(conn)
            dead_letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        figures.update(
            {
                "edge_alive": edge.process is not None and edge.process.poll() is None,
                "cloud_alive": cloud.process is not None and cloud.process.poll() is None,
                "edge_sent": edge_sent,
                "edge_raw_sent": sent["raw_batch"],
                "edge_received": int(edge_metrics.get("intake.received", 0)),
                "edge_rejected": int(edge_metrics.get("rejected.total", 0)),
                "edge_quarantine_kept": int(edge_metrics.get("quarantine.kept", 0)),
                "cloud_sent": cloud_sent,
                "cloud_received": int(cloud_metrics.get("received", 0)),
                "cloud_decoded": int(cloud_metrics.get("decoded", 0)),
                "cloud_dead_lettered": int(sum(dict(cloud_metrics.get("dead_lettered", {})).values())),
                "cloud_dead_letter_rows": int(dead_letters[0]) if dead_letters else 0,
                "edge_rss_growth_bytes": _rss_bytes(edge) - rss_before["edge"],
                "cloud_rss_growth_bytes": _rss_bytes(cloud) - rss_before["cloud"],
            }
        )
    return figures
