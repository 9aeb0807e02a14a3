"""Layered configuration: defaults < TOML < environment < overrides, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from forewarn import config_cmd
from forewarn.cli import main
from forewarn.config_cmd import SETTINGS_CLASSES, settings_class
from shared.config import ComponentSettings, DatabaseSettings, MqttSettings, load_settings, render_settings
from shared.errors import ConfigError


class QueueSection(BaseModel, frozen=True, extra="forbid"):
    max_bytes: int = Field(1000, gt=0, description="Queue bound in bytes.")


class SensorSection(BaseModel, frozen=True, extra="forbid"):
    name: str = Field("vibration", description="Sensor name.")
    window_len: int | None = Field(None, description="Samples per window; empty: the default.")


class ExampleSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="FOREWARN_EXAMPLE_")
    component = "example"

    gateway_id: str = Field("gw-1", description="This gateway's id.")
    mqtt: MqttSettings = MqttSettings()
    db: DatabaseSettings = DatabaseSettings()
    queue: QueueSection = QueueSection()
    sensors: tuple[SensorSection, ...] = Field((), description="Sensors.")


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "example.toml"
    path.write_text(
        'gateway_id = "from-file"\n[mqtt]\nport = 1884\nhost = "file-host"\n[queue]\nmax_bytes = 5\n'
    )
    return path


def test_defaults_apply_without_sources() -> None:
    settings = load_settings(ExampleSettings, environ={})
    assert settings.gateway_id == "gw-1"
    assert settings.mqtt.port == 1883
    assert settings.queue.max_bytes == 1000


def test_sources_in_order_of_priority(toml_file: Path) -> None:
    environ = {"FOREWARN_EXAMPLE_MQTT__PORT": "1885", "FOREWARN_EXAMPLE_GATEWAY_ID": "from-env"}
    settings = load_settings(
        ExampleSettings, toml_path=toml_file, environ=environ, overrides={"gateway_id": "from-cli"}
    )
    assert settings.gateway_id == "from-cli"  # overrides beat the environment
    assert settings.mqtt.port == 1885  # the environment beats the file
    assert settings.mqtt.host == "file-host"  # the file beats defaults, field by field within a section
    assert settings.mqtt.keepalive_s == 30  # untouched keys keep their defaults
    assert settings.queue.max_bytes == 5


def test_environment_is_read_only_through_its_prefix(toml_file: Path) -> None:
    settings = load_settings(ExampleSettings, toml_path=toml_file, environ={"FOREWARN_OTHER_MQTT__PORT": "1"})
    assert settings.mqtt.port == 1884


def test_settings_are_frozen() -> None:
    settings = load_settings(ExampleSettings, environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.gateway_id = "x"  # type: ignore[misc]  # assigning a frozen field is what is tested


@pytest.mark.parametrize(
    ("environ", "toml", "message"),
    [
        (
            {"FOREWARN_EXAMPLE_QUEUE__MAX_BYTES": "-1"},
            "",
            "example.queue.max_bytes = '-1': must be greater than 0 (from FOREWARN_EXAMPLE_QUEUE__MAX_BYTES)",
        ),
        (
            {"FOREWARN_EXAMPLE_MQTT__PORT": "abc"},
            "",
            "example.mqtt.port = 'abc': must be a valid integer",
        ),
        (
            {},
            "[mqtt]\nport = 70000\n",
            "example.mqtt.port = 70000: must be less than or equal to 65535 (from ",
        ),
        ({}, "gateway_idd = 'x'\n", "example.gateway_idd = 'x': unknown setting (from "),
    ],
)
def test_bad_values_name_key_value_rule_and_source(
    tmp_path: Path, environ: dict[str, str], toml: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(ExampleSettings, toml_path=path, environ=environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_bad_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt\nport = ")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(ExampleSettings, toml_path=broken, environ={})
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(ExampleSettings, toml_path=tmp_path / "absent.toml", environ={})


def test_render_shows_descriptions_and_masks_secrets() -> None:
    settings = load_settings(
        ExampleSettings,
        environ={"FOREWARN_EXAMPLE_DB__PASSWORD": "hunter2", "FOREWARN_EXAMPLE_MQTT__PORT": "1999"},
    )
    assert settings.db.password == SecretStr("hunter2")
    text = render_settings(settings)
    assert "hunter2" not in text
    assert 'password = "**********"' in text
    assert "# Broker TCP port.\nport = 1999" in text
    assert "[queue]\n# Queue bound in bytes.\nmax_bytes = 1000" in text


def test_database_conninfo_quotes_values() -> None:
    db = DatabaseSettings(host="db.local", password=SecretStr("it's"))
    assert "host='db.local'" in db.conninfo()
    assert "password='it\\'s'" in db.conninfo()


def test_config_show_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], toml_file: Path
) -> None:
    monkeypatch.setitem(config_cmd.SETTINGS_CLASSES, "example", "tests.test_config:ExampleSettings")
    monkeypatch.setenv("FOREWARN_EXAMPLE_MQTT__PORT", "1886")
    assert main(["config", "show", "example", "--config", str(toml_file)]) == 0
    out = capsys.readouterr().out
    assert 'gateway_id = "from-file"' in out
    assert "port = 1886" in out


def test_config_show_reports_bad_value_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(config_cmd.SETTINGS_CLASSES, "example", "tests.test_config:ExampleSettings")
    monkeypatch.setenv("FOREWARN_EXAMPLE_QUEUE__MAX_BYTES", "0")
    assert main(["config", "show", "example"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "forewarn config: error: example.queue.max_bytes = '0': must be greater than 0 "
        "(from FOREWARN_EXAMPLE_QUEUE__MAX_BYTES)"
    )


def test_rendered_settings_load_back_to_the_same_settings(tmp_path: Path) -> None:
    settings = load_settings(
        ExampleSettings,
        environ={"FOREWARN_EXAMPLE_MQTT__PORT": "1999"},
        overrides={"sensors": [{"name": "vibration", "window_len": 2048}, {"name": "temperature"}]},
    )
    path = tmp_path / "rendered.toml"
    path.write_text(render_settings(settings))
    assert "[[sensors]]" in path.read_text()
    assert load_settings(ExampleSettings, toml_path=path, environ={}) == settings


@pytest.mark.parametrize("component", sorted(SETTINGS_CLASSES))
def test_every_components_default_settings_render_and_load_back(component: str, tmp_path: Path) -> None:
    cls = settings_class(component)
    settings = load_settings(cls, environ={})
    path = tmp_path / f"{component}.toml"
    path.write_text(render_settings(settings))
    assert load_settings(cls, toml_path=path, environ={}) == settings
