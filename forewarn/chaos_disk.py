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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from forewarn.chaos_fault import (
    ALERTING_GATEWAY,
    AlertingFault,
    Durations,
    Rig,
    ScenarioSkipped,
    alerting_gateway_metrics,
)
from forewarn.localservices import MosquittoServer

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


class DiskFull(AlertingFault):
    """Fill the filesystem of one gateway's disk queue, for real, then free it."""

    def __init__(self) -> None:
        super().__init__()
        self._queue_dir: Path | None = None
        self._filled = self._reported = self._held_max = self._still_held = 0

    def prepare_gateway(
        self, workdir: Path, upstream: MosquittoServer, stack: contextlib.ExitStack
    ) -> Mapping[str, object]:
        del upstream
        if shutil.which("mount") is None:
            raise ScenarioSkipped("no `mount` command")
        # The directory `write_gateway_config` gives the gateway's queue, and that the campaign reads.
        self._queue_dir = stack.enter_context(mount_small_filesystem(workdir / ALERTING_GATEWAY / "queue"))
        return {}

    def fault_length_s(self, durations: Durations) -> float:
        return durations.disk_full_s

    def hold(self, rig: Rig, length_s: float) -> None:
        assert self._queue_dir is not None, "prepare() runs first"
        filler = self._queue_dir / "filler"
        deadline = time.monotonic() + length_s
        self._filled = _fill(filler)
        while time.monotonic() < deadline:
            time.sleep(_TOP_UP_EVERY_S)
            self._filled += _fill(filler)  # room SQLite gave back (a WAL truncated) is taken again
            metrics = alerting_gateway_metrics(rig.conninfo)
            self._reported = max(self._reported, int(metrics.get("agent.queue_write_failing", 0)))
            self._held_max = max(self._held_max, int(metrics.get("queue.held", 0)))
        filler.unlink()

    def cause(self, rig: Rig, durations: Durations) -> None:
        super().cause(rig, durations)
        self._still_held = self._wait_for_the_hold_to_empty(rig.conninfo)

    @staticmethod
    def _wait_for_the_hold_to_empty(conninfo: str) -> int:
        """Messages still held in memory `_HOLD_FLUSH_WAIT_S` after the disk has room (the heartbeat's
        `queue.held`): the agent's stop would lose them, and they have no seq to be counted by."""
        held = 0
        deadline = time.monotonic() + _HOLD_FLUSH_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(1.0)
            metrics = alerting_gateway_metrics(conninfo)
            held = int(metrics.get("queue.held", 0))
            if not held and not metrics.get("agent.queue_write_failing", 0):
                break
        return held

    def figures(self, rig: Rig) -> dict[str, Any]:
        log = rig.edges[ALERTING_GATEWAY].log_path.read_text(errors="replace")
        metrics = alerting_gateway_metrics(rig.conninfo)
        return {
            "disk_full_s": self.fault_s,
            "filler_bytes": self._filled,
            "alerts_raised_during_fault": self.alerts_raised_during_fault,
            "write_failing_reported": bool(self._reported),
            "held_max": self._held_max,
            "still_held": self._still_held,
            "write_warnings_logged": log.count(_WRITE_WARNING),
            "write_failing_at_end": bool(metrics.get("agent.queue_write_failing", 0)),
        }
