"""`forewarn chaos --scenario partition`: one gateway cut off from the upstream broker, the other working.

`gw-chaos-1` reaches the upstream broker through a `TcpProxy`; the fault cuts it (connections closed,
new ones refused) for `Durations.partition_s` (10 minutes; 15 s with `--quick`) and restores it. That
gateway's queue bound (`queue.max_bytes` = 60,000 bytes, about 5 s of its uplink) is far smaller than what it
accumulates meanwhile, so its documented drop policy must act: oldest aggregates first, alerts kept,
every drop counted in the heartbeat (`queue.dropped.*`) and reported as `dropped_by_policy`. Its pump
wears out again and again (`AlertingFault`), so alerts are raised during the cut; the figures count
them (`alerts_raised_during_fault`, on the plant broker) and the alerts dropped (`alerts_dropped`, 0).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forewarn.chaos_fault import ALERTING_GATEWAY, AlertingFault, Durations, Rig, alerting_gateway_metrics
from forewarn.localservices import MosquittoServer
from forewarn.tcp_proxy import TcpProxy

__all__ = ["PARTITIONED_QUEUE_MAX_BYTES", "Partition"]

PARTITIONED_QUEUE_MAX_BYTES = 60_000  # about 5 s of this gateway's uplink (two assets at 10x)


class Partition(AlertingFault):
    """Cut one gateway's link to the upstream broker, for real, while the other keeps working."""

    def __init__(self) -> None:
        super().__init__()
        self._proxy: TcpProxy | None = None

    def prepare_gateway(
        self, workdir: Path, upstream: MosquittoServer, stack: contextlib.ExitStack
    ) -> Mapping[str, object]:
        del workdir
        self._proxy = stack.enter_context(TcpProxy(target_host=upstream.host, target_port=upstream.port))
        return {
            "upstream_mqtt": {"host": self._proxy.host, "port": self._proxy.port},
            "queue": {"max_bytes": PARTITIONED_QUEUE_MAX_BYTES},
        }

    def fault_length_s(self, durations: Durations) -> float:
        return durations.partition_s

    def hold(self, rig: Rig, length_s: float) -> None:
        del rig
        assert self._proxy is not None, "prepare() runs first"
        self._proxy.cut()
        time.sleep(length_s)
        self._proxy.restore()

    def figures(self, rig: Rig) -> dict[str, Any]:
        metrics = alerting_gateway_metrics(rig.conninfo)
        return {
            "partitioned_gateway": ALERTING_GATEWAY,
            "partition_s": self.fault_s,
            "alerts_raised_during_fault": self.alerts_raised_during_fault,
            "dropped_by_kind": {
                key.removeprefix("queue.dropped."): int(value)
                for key, value in metrics.items()
                if key.startswith("queue.dropped.")
            },
            "alerts_dropped": int(
                metrics.get("queue.dropped.alert", 0) + metrics.get("queue.hold_dropped.alert", 0)
            ),
        }
