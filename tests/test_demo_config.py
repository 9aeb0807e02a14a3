"""The demo's configuration files: written by the settings renderer, loaded back to the same settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from cloud_service.settings import CloudSettings
from edge_agent.settings import EdgeSettings
from forewarn.demo import secret_environment, write_cloud_config, write_gateway_config
from shared.config import DatabaseSettings, MqttSettings, load_settings
from simulators import load_scenario


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
