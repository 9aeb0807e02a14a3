"""Configuration: typed, frozen settings per component, layered from defaults, a TOML file, `FOREWARN_*`
environment variables and command-line overrides, in that order of increasing priority.

Each component defines one `ComponentSettings` subclass (with `component` set to its name and
`env_prefix` to `FOREWARN_<COMPONENT>_`) from the shared sections here. Settings are loaded once, at the
command line, with `load_settings`, and passed down; nothing below the CLI reads the environment.

A TOML file holds the component's keys at its top level, with sections as tables::

    gateway_id = "gw-01"
    [mqtt]
    host = "broker.plant.local"

The environment overrides one key at a time, nested sections joined by `__`:
`FOREWARN_EDGE_MQTT__PORT=1884`. A bad value stops start-up with one line naming the key, the value, what
is allowed and where the value came from.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pydantic
from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.errors import ConfigError

__all__ = [
    "ComponentSettings",
    "DatabaseSettings",
    "MqttSettings",
    "load_settings",
    "render_settings",
]

S = TypeVar("S", bound="ComponentSettings")


class MqttSettings(BaseModel, frozen=True, extra="forbid"):
    """How to reach an MQTT broker."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    client_id: str = Field(
        "", max_length=128, description="MQTT client id; empty derives one from the component and its id."
    )
    username: str = Field("", description="User name; empty connects without credentials.")
    password: SecretStr = Field(SecretStr(""), description="Password (never printed or logged).")
    tls: bool = Field(
        False,
        description="Connect with TLS only (the broker's certificate and host name are verified); off by "
        "default for a local development broker, required in production (see docs/security.md).",
    )
    ca_file: Path | None = Field(None, description="CA bundle for TLS; empty uses the system's.")
    cert_file: Path | None = Field(
        None, description="Client certificate (PEM) presented to the broker; its name is our MQTT identity."
    )
    key_file: Path | None = Field(
        None, description="Private key (PEM) of `cert_file`; must not be readable by group or others."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval in seconds.")
    reconnect_min_s: float = Field(
        0.5, gt=0, le=60, description="First reconnect delay; doubles per failure."
    )
    reconnect_max_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Longest reconnect delay: a link back after a long outage is used within this time.",
    )
    receive_maximum: int = Field(
        512, ge=1, le=65535, description="Unacknowledged QoS 1 messages the broker may send us at once."
    )
    max_inflight: int = Field(256, ge=1, le=65535, description="Unacknowledged QoS 1 messages we may send.")

    @model_validator(mode="after")
    def _client_certificate_needs_tls(self) -> MqttSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together")
        if (self.cert_file is not None or self.ca_file is not None) and not self.tls:
            raise ValueError("ca_file, cert_file and key_file need tls = true")
        return self


class DatabaseSettings(BaseModel, frozen=True, extra="forbid"):
    """How to reach PostgreSQL."""

    host: str = Field("127.0.0.1", description="Server host name, address, or a Unix socket directory.")
    port: int = Field(5432, ge=1, le=65535, description="Server port.")
    dbname: str = Field("forewarn", min_length=1, description="Database name.")
    user: str = Field("postgres", min_length=1, description="Role to connect as.")
    password: SecretStr = Field(SecretStr(""), description="Password (never printed or logged).")
    connect_timeout_s: int = Field(5, ge=1, le=300, description="Connection timeout in seconds.")
    pool_min_size: int = Field(
        1,
        ge=0,
        le=100,
        description="Connections a process's shared pool keeps open (its jobs share it).",
    )
    pool_max_size: int = Field(
        8, ge=1, le=1000, description="Most connections the pool opens; ingest writers have their own."
    )

    @model_validator(mode="after")
    def _pool_sizes_in_order(self) -> DatabaseSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"pool_min_size ({self.pool_min_size}) must be <= pool_max_size ({self.pool_max_size})"
            )
        return self

    def conninfo(self) -> str:
        """A libpq connection string (with the password, for the driver only: never log it)."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.dbname,
            "user": self.user,
            "connect_timeout": str(self.connect_timeout_s),
        }
        if self.password.get_secret_value():
            parts["password"] = self.password.get_secret_value()
        return " ".join(f"{key}={_libpq_quote(value)}" for key, value in parts.items())


def _libpq_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


class _Sources:
    """What one `load_settings` call layers: a TOML file's data, an environment, overrides."""

    def __init__(self, toml_data: dict[str, Any], environ: Mapping[str, str]) -> None:
        self.toml_data = toml_data
        self.environ = environ


_CURRENT: contextvars.ContextVar[_Sources] = contextvars.ContextVar("forewarn_settings_sources")


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value = _CURRENT.get().toml_data.get(field_name)
        return value, field_name, isinstance(value, dict)

    def __call__(self) -> dict[str, Any]:
        return dict(_CURRENT.get().toml_data)


class _EnvSource(EnvSettingsSource):
    def _load_env_vars(self) -> Mapping[str, str | None]:
        sources = _CURRENT.get(None)
        environ = sources.environ if sources is not None else os.environ
        if self.case_sensitive:
            return dict(environ)
        return {key.lower(): value for key, value in environ.items()}


class ComponentSettings(BaseSettings):
    """Base of every component's settings; subclasses set `component` and `env_prefix`."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_nested_delimiter="__")
    component: ClassVar[str] = "component"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Command-line overrides, then the environment, then the TOML file; defaults last."""
        del env_settings, dotenv_settings, file_secret_settings
        return (init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls))


def _read_toml(path: Path | None, component: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigError(f"{component} config file", str(path), "no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{component} config file", str(path), f"invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{component} config file", str(path), f"cannot be read: {exc.strerror}") from exc


def _lookup(data: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _source_of(
    cls: type[ComponentSettings],
    loc: tuple[str | int, ...],
    sources: _Sources,
    overrides: Mapping[str, Any],
    toml_path: Path | None,
) -> str:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    env_name = prefix + "__".join(str(part) for part in loc).upper()
    if any(key.upper() == env_name for key in sources.environ):
        return env_name
    if _lookup(overrides, loc):
        return "the command line"
    if _lookup(sources.toml_data, loc):
        return str(toml_path)
    return ""


def _error_message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    message = str(error["msg"])
    if message.startswith("Input should be "):
        return "must be " + message.removeprefix("Input should be ")
    return message.removeprefix("Value error, ")


def load_settings(
    cls: type[S],
    *,
    toml_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """Load a component's settings: defaults < TOML file < environment < overrides.

    Args:
        cls: the component's settings class.
        toml_path: the TOML file, if any.
        environ: the environment to read `FOREWARN_*` variables from (default: the process environment).
        overrides: values from command-line flags, nested like the settings.

    Raises:
        ConfigError: naming the first bad key, its value, what is allowed, and where it came from.
    """
    overrides = dict(overrides or {})
    sources = _Sources(_read_toml(toml_path, cls.component), os.environ if environ is None else environ)
    token = _CURRENT.set(sources)
    try:
        return cls(**overrides)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        key = ".".join([cls.component, *(str(part) for part in loc)])
        source = _source_of(cls, loc, sources, overrides, toml_path)
        raise ConfigError(key, error.get("input"), _error_message(error), source) from None
    finally:
        _CURRENT.reset(token)


def _render_scalar(value: Any) -> str:
    if isinstance(value, SecretStr):
        return '"**********"' if value.get_secret_value() else '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # strings and paths


def _render_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_render_value(item) for item in value) + "]"
    if isinstance(value, Mapping):  # an inline table; keys quoted, so any key (even "*") reads back
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_render_value(v)}" for k, v in value.items()) + " }"
    return _render_scalar(value)


def _render_model(model: BaseModel, path: list[str], lines: list[str]) -> None:
    fields = type(model).model_fields
    nested: list[tuple[str, BaseModel | list[BaseModel]]] = []
    for name, info in fields.items():
        value = getattr(model, name)
        is_table_array = isinstance(value, (list, tuple)) and bool(value)
        if isinstance(value, BaseModel) or (is_table_array and all(isinstance(v, BaseModel) for v in value)):
            nested.append((name, value if isinstance(value, BaseModel) else list(value)))
            continue
        if info.description:
            lines.append(f"# {info.description}")
        lines.append(f"# {name} is not set" if value is None else f"{name} = {_render_value(value)}")
    for name, value in nested:
        key = ".".join([*path, name])
        for item in [value] if isinstance(value, BaseModel) else value:
            lines.append("")
            lines.append(f"[{key}]" if isinstance(value, BaseModel) else f"[[{key}]]")
            _render_model(item, [*path, name], lines)


def render_settings(settings: ComponentSettings) -> str:
    """The effective settings as TOML, each key preceded by its description; secrets are masked.

    Loading the output back (with the secrets filled in) gives the same settings.
    """
    lines = [f"# Effective settings of `{settings.component}`", ""]
    _render_model(settings, [], lines)
    return "\n".join(lines) + "\n"
