"""The `clock-skew` chaos scenario: one gateway's clock minutes ahead, caused for real with libfaketime.

The first edge agent is stopped (it drains its queue) and started again under libfaketime
(`LD_PRELOAD=libfaketime.so.1`, `FAKETIME=+300`): every wall-clock read of that process, Python's and every
library's, is five minutes ahead, while the other agent, the simulator and the cloud keep the machine's
clock. The cloud must measure the skew from the heartbeats and store the skewed gateway's rows flagged.

Two libfaketime 0.9.10 (Debian bookworm) defects shape the setup, measured on Python 3.11:
with the monotonic clock faked too (its default), a lock or `threading.Event.wait` with a timeout never
returns; with `FAKETIME_DONT_FAKE_MONOTONIC=1` those work, but `time.sleep` (an absolute
`clock_nanosleep` on the monotonic clock) fails with EINVAL, in every `FAKETIME` form ("+300", "+5m",
"@<date>") and with `libfaketimeMT.so.1` alike. So the monotonic clock is left real and a
`sitecustomize` put first on the agent's `PYTHONPATH` replaces `time.sleep` with an `Event.wait`, which
sleeps on the same real monotonic clock. The wall clock, the thing under test, stays libfaketime's.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import psycopg

from cloud_service.queries import clock_skew_flags, gateway_health
from edge_agent.disk_queue import read_counters
from forewarn.chaos_fault import Durations, Fault, Rig
from forewarn.localservices import wait_until
from shared.errors import ConfigError

__all__ = ["APPLIED_SKEW_S", "ClockSkew", "faketime_environment"]

APPLIED_SKEW_S = 300
_MIN_SKEWED_MESSAGES = 20
_LIBFAKETIME_GLOBS = ("*/faketime/libfaketime.so.1", "faketime/libfaketime.so.1")  # under /usr/lib
_SLEEP_SHIM = '''"""Chaos rig: time.sleep on an Event, as libfaketime breaks it (see forewarn.chaos_clock)."""
import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
'''


def _libfaketime() -> str:
    for pattern in _LIBFAKETIME_GLOBS:
        found = sorted(Path("/usr/lib").glob(pattern))
        if found:
            return str(found[0])
    raise ConfigError("chaos --scenario clock-skew", "libfaketime", "installed (apt-get install faketime)")


def faketime_environment(shim_dir: Path, *, offset_s: int, python_path: str) -> dict[str, str]:
    """The environment entries that run a Forewarn process with its wall clock `offset_s` seconds off."""
    shim_dir.mkdir(parents=True, exist_ok=True)
    (shim_dir / "sitecustomize.py").write_text(_SLEEP_SHIM)
    return {
        "LD_PRELOAD": _libfaketime(),
        "FAKETIME": f"{offset_s:+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": ":".join(p for p in (str(shim_dir), python_path) if p),
    }


class ClockSkew(Fault):
    """Restart the first gateway with its clock `APPLIED_SKEW_S` ahead; run the load on it for a while."""

    def __init__(self) -> None:
        self._applied_s: dict[str, int] = {}
        self._from_seq: dict[str, int] = {}  # per gateway: the first seq made under its present clock

    def cause(self, rig: Rig, durations: Durations) -> None:
        victim_id = next(iter(rig.edges))
        victim = rig.edges[victim_id]
        victim.stop()  # drains its queue: every row from here on was made under the skewed clock
        skewed_from_seq = read_counters(rig.queue_file(victim_id))[0]
        victim.environment.update(
            faketime_environment(
                rig.state_dirs[victim_id].parent / "faketime-shim",
                offset_s=APPLIED_SKEW_S,
                python_path=victim.environment.get("PYTHONPATH", ""),
            )
        )
        victim.start()
        time.sleep(durations.kill_for_s)
        # A restart on a loaded machine can take most of that time: run on until it has made messages
        # under the skewed clock (bounded, so a victim that never comes back still ends the scenario).
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: read_counters(rig.queue_file(victim_id))[0] >= skewed_from_seq + _MIN_SKEWED_MESSAGES,
                timeout_s=120,
                interval_s=0.5,
            )
        self._applied_s = {g: (APPLIED_SKEW_S if g == victim_id else 0) for g in rig.edges}
        self._from_seq = {g: (skewed_from_seq if g == victim_id else 0) for g in rig.edges}

    def figures(self, rig: Rig) -> dict[str, Any]:
        """Read once everything is stored: the skew the cloud measured and the rows it flagged."""
        with psycopg.connect(rig.conninfo) as conn:
            health = gateway_health(conn)
            flags = {g: clock_skew_flags(conn, g, from_seq=self._from_seq[g]) for g in rig.edges}
        measured = {h.gateway_id: h.clock_skew_s for h in health if h.gateway_id in rig.edges}
        return {
            "skew_applied_s": self._applied_s,
            "skew_measured_s": {g: None if s is None else round(s, 3) for g, s in measured.items()},
            "flagged_rows": {g: {"rows": rows, "flagged": flagged} for g, (rows, flagged) in flags.items()},
        }
