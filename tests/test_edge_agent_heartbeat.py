"""The heartbeat's status: rates over the last interval, bounded values, process usage."""

from __future__ import annotations

import msgspec

from edge_agent.heartbeat import Heartbeat, ProcessUsage, Readings, offline_status
from shared.messages import Status, decode_uplink


def test_rates_are_computed_over_the_interval_and_non_finite_values_are_zeroed() -> None:
    counters = {"samples_in": 0.0, "windows": 0.0, "weird": float("nan")}
    sent: list[bytes] = []

    def publish(payload: bytes) -> bool:
        sent.append(payload)
        return True

    heartbeat = Heartbeat(
        gateway_id="gw-1",
        interval_s=60.0,
        collect=lambda: Readings(metrics=dict(counters), model_versions={"a1": "baseline"}),
        publish=publish,
        rate_keys=("samples_in", "windows"),
    )
    assert heartbeat.beat()
    counters["samples_in"] = 1_000_000.0
    counters["windows"] = 1000.0
    assert heartbeat.beat()
    first, second = (decode_uplink(payload) for payload in sent)
    assert isinstance(first, Status)
    assert isinstance(second, Status)
    assert "samples_in_per_s" not in first.metrics  # no interval yet
    assert second.metrics["samples_in_per_s"] > 10_000.0  # a million samples within the (short) interval
    assert second.metrics["weird"] == 0.0
    assert second.model_versions == {"a1": "baseline"}
    assert second.state == "online"
    assert second.uptime_s >= first.uptime_s


def test_offline_status_is_a_valid_status_and_usage_is_plausible() -> None:
    status = msgspec.json.decode(offline_status("gw-1"), type=Status)
    assert status.state == "offline"
    usage = ProcessUsage()
    sum(range(200_000))  # burn a little CPU
    assert usage.cpu_percent() >= 0.0
    assert usage.memory_bytes() > 1_000_000
