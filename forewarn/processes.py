"""`forewarn` subcommands run as supervised child processes (the demo, the fault campaign), and the waits
for them to be ready."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from cloud_service.queries import ingest_status
from forewarn.localservices import wait_until

__all__ = ["ForewarnProcess", "stop_child", "wait_for_ingest"]

logger = logging.getLogger(__name__)


def stop_child(process: subprocess.Popen[bytes], name: str, timeout_s: float = 30.0) -> None:
    """SIGTERM a child and wait for it; SIGKILL it if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %.0f s: killing it", name, timeout_s)
        process.kill()
        process.wait(timeout=10)


class ForewarnProcess:
    """`forewarn ARGUMENTS` as a child process appending to `log_path`, which can be killed and restarted.

    `environment` entries (settings variables such as a password) are added to the child's environment.
    """

    def __init__(
        self, name: str, arguments: list[str], log_path: Path, *, environment: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.arguments = arguments
        self.log_path = log_path
        self.environment = {**os.environ, **(environment or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ForewarnProcess:
        """Start it (again)."""
        command = [sys.executable, "-m", "forewarn.cli", "--log-level", "INFO", *self.arguments]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.environment
            )
        return self

    def kill(self) -> None:
        """SIGKILL, as a power loss would stop it: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait (SIGKILL after `timeout_s`)."""
        if self.process is not None:
            stop_child(self.process, self.name, timeout_s)

    def __enter__(self) -> ForewarnProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def wait_for_ingest(conninfo: str, timeout_s: float = 120.0) -> None:
    """Wait until an ingest worker is connected to the broker, so no uplink message meets a broker with no
    subscriber (MQTT drops those)."""

    def connected() -> bool:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return any(worker.get("connected") for worker in ingest_status(conn).workers)

    wait_until(connected, timeout_s=timeout_s, interval_s=0.5)
