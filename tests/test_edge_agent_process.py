"""The edge agent as a real process (`python -m forewarn.cli edge --config ...`): kill -9 and SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.messages import Status, decode_uplink
from tests.test_edge_agent_helpers import VIB_RATE_HZ, RawPublisher, collecting, vibration_batches

REPO = Path(__file__).resolve().parents[1]


def _write_config(
    path: Path, *, gateway_id: str, asset_id: str, broker: MosquittoServer, workdir: Path
) -> Path:
    path.write_text(
        f"""
gateway_id = "{gateway_id}"
heartbeat_interval_s = 0.5
shutdown_ack_wait_s = 10.0
intake_queue_size = 20000

[plant_mqtt]
host = "{broker.host}"
port = {broker.port}
reconnect_max_s = 1.0

[upstream_mqtt]
host = "{broker.host}"
port = {broker.port}
reconnect_max_s = 1.0

[queue]
dir = "{workdir / "queue"}"
window = 200

[quarantine]
dir = "{workdir / "quarantine"}"

[models]
store_dir = "{workdir / "models"}"

[pipeline.aggregation]
period_s = 1.0

[[pipeline.assets]]
asset_id = "{asset_id}"
sensors = [{{ name = "vibration", kind = "vibration", sample_rate_hz = {VIB_RATE_HZ} }}]
"""
    )
    return path


@pytest.fixture
def agent_process(workdir: Path) -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """Start `forewarn edge --config` processes; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> subprocess.Popen[bytes]:
        log = (workdir / f"agent-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "forewarn.cli", "--log-level", "INFO", "edge", "--config", str(config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _next_seq(queue_dir: Path) -> int:
    with sqlite3.connect(queue_dir / "outbox.sqlite") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_loses_nothing_acknowledged(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    agent_process: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    """kill -9 while aggregates stream upstream, restart: the subscriber (connected throughout) sees every
    seq from 0 to the last; only the unacknowledged tail at the kill may come twice (counted). The broker
    publishes the offline last will when the process dies."""
    gateway_id = unique_id("gw")
    asset_id = unique_id("a")
    config = _write_config(
        workdir / "gateway.toml", gateway_id=gateway_id, asset_id=asset_id, broker=broker, workdir=workdir
    )
    stop_feeding = threading.Event()
    batches = vibration_batches(asset_id, n_batches=100_000, start_ns=1_790_000_000 * 10**9)
    with (
        collecting(broker.host, broker.port, f"forewarn/v1/gw/{gateway_id}/+", unique_id("sub")) as sub,
        collecting(broker.host, broker.port, topics.status(gateway_id), unique_id("st")) as status_sub,
    ):
        publisher = RawPublisher(broker, unique_id("pub"))

        def feeder() -> None:  # 50 batches (50 s of data, 50 aggregates) per second until told to stop
            for batch in batches:
                if stop_feeding.wait(0.02):
                    return
                publisher.publish(batch)

        thread = threading.Thread(target=feeder, name="test-feeder")
        thread.start()
        try:
            first = agent_process(config)
            wait_until(lambda: len(sub.seqs()) >= 150, timeout_s=30)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            received_at_kill = len(sub.seqs())

            def offline_seen() -> bool:
                states = [decode_uplink(p) for _, p in status_sub.messages]
                return any(isinstance(s, Status) and s.state == "offline" for s in states)

            wait_until(offline_seen, timeout_s=10)  # the last will
            second = agent_process(config)
            wait_until(lambda: len(sub.seqs()) >= received_at_kill + 150, timeout_s=30)
        finally:
            stop_feeding.set()
            thread.join(10)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0  # orderly stop: flush, wait for acks, offline status
        publisher.close()
        next_seq = _next_seq(workdir / "queue")
        wait_until(lambda: set(range(next_seq)) <= set(sub.seqs()), timeout_s=20)
        seqs = sub.seqs()
    assert set(seqs) == set(range(next_seq))  # contiguous from 0: nothing acknowledged was lost
    duplicates = len(seqs) - len(set(seqs))
    assert duplicates <= 200  # at most the unacknowledged window at the kill was sent again
    print(f"kill -9: {next_seq} messages, {duplicates} re-sent after the restart")
    with sqlite3.connect(workdir / "queue" / "outbox.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
