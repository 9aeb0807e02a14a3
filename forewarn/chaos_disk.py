"""`forewarn chaos --scenario disk-full`: the filesystem of one gateway's disk queue fills up.

`gw-chaos-1`'s queue directory is a small filesystem of its own: an 8 MiB tmpfs, or, where tmpfs cannot
be mounted, a loop-mounted 16 MiB ext4 image (the scenario is skipped, saying why, when neither works,
e.g. without root). The fault writes a filler file until the filesystem is full, keeps it full for
`Durations.disk_full_s` (2 minutes; 15 s with `--quick`), then deletes the filler. Meanwhile the agent
must report it (`agent.queue_write_failing` and `queue.held` in the heartbeat, and a rate-limited log
line), keep scoring and raising alerts on the plant broker, keep what it could not write in its
in-memory hold (`queue.hold_max_messages`) and write it once there is room again: nothing lost. What is
still held 10 s after the filler is gone (`still_held`) counts as lost.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from cloud_service.queries import latest_gateway_metrics
from forewarn.chaos_fault import (
    ALERTING_GATEWAY,
    ALERTING_SETTINGS,
    Durations,
    Fault,
    GatewayChanges,
    PlantAlerts,
    Rig,
    ScenarioSkipped,
    alerting_scenario,
    start_spanning_a_raise,
)
from forewarn.localservices import MosquittoServer
from simulators import Scenario

__all__ = ["DiskFull", "mount_small_filesystem"]

_TMPFS_SIZE = "8m"
_IMAGE_BYTES = 16 << 20
_FILL_CHUNK = 64 * 1024
_TOP_UP_EVERY_S = 0.2
_WRITE_WARNING = "disk queue cannot write"
_HOLD_FLUSH_WAIT_S = 10.0


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


@contextlib.contextmanager
def mount_small_filesystem(directory: Path) -> Iterator[Path]:
    """Mount a small tmpfs (or else a loop-mounted ext4 image) on `directory` for the block.

    Raises:
        ScenarioSkipped: neither can be mounted here (the reason is in the message).
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmpfs = _run("mount", "-t", "tmpfs", "-o", f"size={_TMPFS_SIZE}", "tmpfs", str(directory))
    if tmpfs.returncode != 0:
        image = directory.parent / f"{directory.name}.ext4"
        with image.open("wb") as file:
            file.truncate(_IMAGE_BYTES)
        made = _run("mkfs.ext4", "-q", "-F", str(image))
        loop = _run("mount", "-o", "loop", str(image), str(directory)) if made.returncode == 0 else made
        if loop.returncode != 0:
            reason = f"cannot mount a small filesystem: tmpfs: {tmpfs.stderr.strip()}; ext4 image: "
            raise ScenarioSkipped(reason + loop.stderr.strip())
    try:
        yield directory
    finally:
        if _run("umount", str(directory)).returncode != 0:
            _run("umount", "-l", str(directory))


def _fill(path: Path) -> int:
    """Append to the filler at `path` until the filesystem refuses; returns the bytes added."""
    added = 0
    with contextlib.suppress(FileNotFoundError), path.open("ab", buffering=0) as filler:
        chunk = bytes(_FILL_CHUNK)
        while True:
            try:
                filler.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size = _FILL_CHUNK
                while size > 1:  # the last few bytes too
                    size //= 2
                    with contextlib.suppress(OSError):
                        while True:
                            filler.write(chunk[:size])
                            added += size
                return added
            added += _FILL_CHUNK
    return added  # the filler was deleted meanwhile


class DiskFull(Fault):
    """Fill the filesystem of one gateway's disk queue, for real, then free it."""

    def __init__(self) -> None:
        self._queue_dir: Path | None = None
        self._figures: dict[str, Any] = {}

    def scenario(self, base: Scenario) -> Scenario:
        return alerting_scenario(base)

    def prepare(
        self, workdir: Path, upstream: MosquittoServer, stack: contextlib.ExitStack
    ) -> GatewayChanges:
        del upstream
        if shutil.which("mount") is None:
            raise ScenarioSkipped("no `mount` command")
        # The directory `write_gateway_config` gives the gateway's queue, and that the campaign reads.
        self._queue_dir = stack.enter_context(mount_small_filesystem(workdir / ALERTING_GATEWAY / "queue"))
        return {ALERTING_GATEWAY: ALERTING_SETTINGS}

    def cause(self, rig: Rig, durations: Durations) -> None:
        assert self._queue_dir is not None, "prepare() runs first"
        filler = self._queue_dir / "filler"
        alerts = PlantAlerts(rig.plant)
        reported = held_max = 0
        try:
            start_spanning_a_raise(alerts, durations.disk_full_s)
            start = time.monotonic()
            deadline = start + durations.disk_full_s
            filled = _fill(filler)
            while time.monotonic() < deadline:
                time.sleep(_TOP_UP_EVERY_S)
                filled += _fill(filler)  # room SQLite gave back (a WAL truncated) is taken again
                metrics = _metrics(rig.conninfo)
                reported = max(reported, int(metrics.get("agent.queue_write_failing", 0)))
                held_max = max(held_max, int(metrics.get("queue.held", 0)))
            filler.unlink()
            end = time.monotonic()
            still_held = self._wait_for_the_hold_to_empty(rig.conninfo)
            self._figures = {
                "disk_full_s": round(end - start, 1),
                "filler_bytes": filled,
                "alerts_raised_during_fault": alerts.raised_between(start, end),
                "write_failing_reported": bool(reported),
                "held_max": held_max,
                "still_held": still_held,
            }
        finally:
            alerts.close()

    @staticmethod
    def _wait_for_the_hold_to_empty(conninfo: str) -> int:
        """Messages still held in memory `_HOLD_FLUSH_WAIT_S` after the disk has room (the heartbeat's
        `queue.held`): the agent's stop would lose them, and they have no seq to be counted by."""
        held = 0
        deadline = time.monotonic() + _HOLD_FLUSH_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(1.0)
            metrics = _metrics(conninfo)
            held = int(metrics.get("queue.held", 0))
            if not held and not metrics.get("agent.queue_write_failing", 0):
                break
        return held

    def figures(self, rig: Rig) -> dict[str, Any]:
        log = rig.edges[ALERTING_GATEWAY].log_path.read_text(errors="replace")
        metrics = _metrics(rig.conninfo)
        return {
            **self._figures,
            "write_warnings_logged": log.count(_WRITE_WARNING),
            "write_failing_at_end": bool(metrics.get("agent.queue_write_failing", 0)),
        }


def _metrics(conninfo: str) -> dict[str, float]:
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            return latest_gateway_metrics(conn, ALERTING_GATEWAY)
    except psycopg.OperationalError:
        return {}
