"""The demo's configuration files: written by the settings renderer, loaded back to the same settings."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import SecretStr

from cloud_service.settings import CloudSettings
from edge_agent.settings import AssetSettings, EdgeSettings
from forewarn.demo import secret_environment, write_cloud_config, write_gateway_config
from shared.config import DatabaseSettings, MqttSettings, load_settings
from simulators import Scenario, fleet_units, load_scenario
from simulators.assets import asset_config_for_type


def test_gateway_config_serves_every_scenario_asset_and_loads_back(tmp_path: Path) -> None:
    scenario = load_scenario("smoke")
    path = write_gateway_config(
        tmp_path / "gateway.toml",
        scenario=scenario,
        gateway_id="gw-demo",
        mqtt_settings=MqttSettings(host="127.0.0.1", port=18830),
        workdir=tmp_path,
    )
    settings = load_settings(EdgeSettings, toml_path=path, environ={})
    assert settings.gateway_id == "gw-demo"
    assert settings.plant_mqtt.port == settings.upstream_mqtt.port == 18830
    assert settings.queue.dir == tmp_path / "gw-demo" / "queue"
    assert sorted(a.asset_id for a in settings.pipeline.assets) == sorted(scenario.asset_ids)
    vibration = {
        s.sample_rate_hz for a in settings.pipeline.assets for s in a.sensors if s.name == "vibration"
    }
    assert vibration == {scenario.spec.signals.vibration_rate_hz}


def _assets(
    tmp_path: Path, scenario: Scenario, *, diagnosis: bool, interval_s: float | None = None
) -> dict[str, AssetSettings]:
    path = write_gateway_config(
        tmp_path / f"gateway-{diagnosis}-{interval_s}.toml",
        scenario=scenario,
        gateway_id="gw-demo",
        mqtt_settings=MqttSettings(),
        workdir=tmp_path,
        diagnosis=diagnosis,
        diagnosis_baseline_interval_s=interval_s,
    )
    assets = load_settings(EdgeSettings, toml_path=path, environ={}).pipeline.assets
    return {a.asset_id: a for a in assets}


def test_gateway_config_diagnoses_every_asset_from_its_type_datasheet(tmp_path: Path) -> None:
    scenario = load_scenario("plant")  # every asset type, drives with three speed setpoints
    assets = _assets(tmp_path, scenario, diagnosis=True)
    speed_factors = scenario.spec.operation.speed_factors
    for unit in fleet_units(scenario):
        config = assets[unit.asset_id].diagnosis
        assert config is not None, unit.asset_id
        signals = scenario.spec.signals
        burst_s = signals.burst_samples / signals.vibration_rate_hz  # the longest contiguous run it gets
        assert config.window_s == burst_s
        datasheet_config = asset_config_for_type(unit.type, speed_factors)
        assert config == datasheet_config.model_copy(update={"window_s": burst_s}), "the TOML reads back"
        datasheet = unit.type
        assert config.shaft_rpm == datasheet.rpm
        (bearing,) = config.bearings
        orders = bearing.defect_orders()
        assert math.isclose(orders.bpfo, datasheet.bpfo_order, rel_tol=1e-9)
        assert math.isclose(orders.bpfi, datasheet.bpfi_order, rel_tol=1e-9)
        if datasheet.has_vfd:  # the search range holds every setpoint the drive runs at
            assert config.speed_range_rpm is not None
            low, high = config.speed_range_rpm
            assert low < min(speed_factors) * datasheet.rpm
            assert max(speed_factors) * datasheet.rpm < high
        else:
            assert config.speed_range_rpm is None
    assert all(a.diagnosis is None for a in _assets(tmp_path, scenario, diagnosis=False).values())
    sparse = _assets(tmp_path, scenario, diagnosis=True, interval_s=21_600.0)
    assert {a.diagnosis.baseline_interval_s for a in sparse.values() if a.diagnosis} == {21_600.0}
    assert all(a.diagnosis is not None for a in sparse.values())


def test_cloud_config_keeps_the_password_out_of_the_file(tmp_path: Path) -> None:
    db = DatabaseSettings(host="127.0.0.1", port=15432, dbname="demo", user="u", password=SecretStr("s3cret"))
    path = write_cloud_config(tmp_path / "cloud.toml", mqtt_settings=MqttSettings(port=18830), db=db)
    assert "s3cret" not in path.read_text()
    settings = load_settings(CloudSettings, toml_path=path, environ=secret_environment(db))
    assert settings.db.password.get_secret_value() == "s3cret"
    assert (settings.db.port, settings.db.dbname, settings.mqtt.port, settings.ingest.workers) == (
        15432,
        "demo",
        18830,
        1,
    )
