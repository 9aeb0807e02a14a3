"""`forewarn bench connectors --quick`: every figure is measured and stands beside its ceiling."""

from __future__ import annotations

import pytest

from forewarn.bench.connectors import run


@pytest.mark.slow
def test_bench_connectors_reports_each_connector_beside_its_ceiling() -> None:
    figures = run(quick=True)
    for kind in ("wav", "tdms"):
        assert figures[f"files_{kind}_samples_per_s"] > 0
        assert figures[f"files_{kind}_read_ceiling_samples_per_s"] > 0
        assert figures[f"files_{kind}_of_ceiling"] > 0
    assert set(figures["files_samples_per_s"]) == {"wav", "tdms"}
    assert figures["files_publish_ceiling_samples_per_s"] > 0
    assert figures["modbus_registers_per_s"] > 0
    assert figures["modbus_client_ceiling_registers_per_s"] > 0
    assert figures["modbus_delivered_registers_per_s"] > 0
    assert figures["opcua_values_per_s"] > 0
    assert figures["opcua_projected_cores_at_target"] > 0
    assert figures["opcua_server_offered_values_per_s"] > 0
    assert figures["sparkplug_metrics_per_s"] > 0
    assert figures["sparkplug_protobuf_parse_ceiling_metrics_per_s"] > figures["sparkplug_metrics_per_s"]
    assert figures["sparkplug_broker_ceiling_metrics_per_s"] > 0
