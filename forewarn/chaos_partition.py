"""`forewarn chaos --scenario partition`: one gateway cut off from the upstream broker, the other working.

`gw-chaos-1` reaches the upstream broker through a `TcpProxy`; the fault cuts it (connections closed,
new ones refused) for `Durations.partition_s` (10 minutes; 15 s with `--quick`) and restores it. That
gateway's queue bound (`queue.max_bytes` = 60,000 bytes, about 5 s of its uplink) is far smaller than what it
accumulates meanwhile, so its documented drop policy must act: oldest aggregates first, alerts kept,
every drop counted in the heartbeat (`queue.dropped.*`) and reported as `dropped_by_policy`. Its pump
wears out again and again (`alerting_scenario`), so alerts are raised during the cut; the figures count
them (`alerts_raised_during_fault`, on the plant broker) and the alerts dropped (`alerts_dropped`, 0).
"""

from __future__ import annotations

import contextlib
import time
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
    alerting_scenario,
    start_spanning_a_raise,
)
from forewarn.localservices import MosquittoServer
from forewarn.tcp_proxy import TcpProxy
from simulators import Scenario

__all__ = ["PARTITIONED_QUEUE_MAX_BYTES", "Partition"]

PARTITIONED_QUEUE_MAX_BYTES = 60_000  # about 5 s of this gateway's uplink (two assets at 10x)


class Partition(Fault):
    """Cut one gateway's link to the upstream broker, for real, while the other keeps working."""

    def __init__(self) -> None:
        self._proxy: TcpProxy | None = None
        self._alerts_during = 0
        self._cut_s = 0.0

    def scenario(self, base: Scenario) -> Scenario:
        return alerting_scenario(base)

    def prepare(
        self, workdir: Path, upstream: MosquittoServer, stack: contextlib.ExitStack
    ) -> GatewayChanges:
        del workdir
        self._proxy = stack.enter_context(TcpProxy(target_host=upstream.host, target_port=upstream.port))
        return {
            ALERTING_GATEWAY: {
                **ALERTING_SETTINGS,
                "upstream_mqtt": {"host": self._proxy.host, "port": self._proxy.port},
                "queue": {"max_bytes": PARTITIONED_QUEUE_MAX_BYTES},
            }
        }

    def cause(self, rig: Rig, durations: Durations) -> None:
        assert self._proxy is not None, "prepare() runs first"
        alerts = PlantAlerts(rig.plant)
        try:
            start_spanning_a_raise(alerts, durations.partition_s)
            start = time.monotonic()
            self._proxy.cut()
            time.sleep(durations.partition_s)
            self._proxy.restore()
            end = time.monotonic()
            self._cut_s = round(end - start, 1)
            self._alerts_during = alerts.raised_between(start, end)
        finally:
            alerts.close()

    def figures(self, rig: Rig) -> dict[str, Any]:
        with psycopg.connect(rig.conninfo) as conn:
            metrics = latest_gateway_metrics(conn, ALERTING_GATEWAY)
        return {
            "partitioned_gateway": ALERTING_GATEWAY,
            "partition_s": self._cut_s,
            "alerts_raised_during_fault": self._alerts_during,
            "dropped_by_kind": {
                key.removeprefix("queue.dropped."): int(value)
                for key, value in metrics.items()
                if key.startswith("queue.dropped.")
            },
            "alerts_dropped": int(
                metrics.get("queue.dropped.alert", 0) + metrics.get("queue.hold_dropped.alert", 0)
            ),
        }
