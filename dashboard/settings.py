"""Settings of the dashboard (`forewarn dashboard`): where it listens, its database, sessions and logins."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from shared.config import ComponentSettings, DatabaseSettings, MqttSettings

__all__ = [
    "AlertsSettings",
    "DashboardSettings",
    "LoginSettings",
    "ModelActionSettings",
    "ProxySettings",
    "SessionSettings",
]


class SessionSettings(BaseModel, frozen=True, extra="forbid"):
    """How logged-in sessions are kept."""

    secret_key_file: Path = Field(
        Path("/var/lib/forewarn/dashboard/secret_key"),
        description="Key file signing session cookies; created (mode 0600) if absent. Never shown.",
    )
    lifetime_s: int = Field(
        8 * 3600, ge=60, le=30 * 86400, description="A session expires this long after login, in seconds."
    )
    secure_cookies: bool = Field(
        False,
        description=(
            "Send cookies only over HTTPS (set true whenever the dashboard is served by HTTPS; a request "
            "that arrives by HTTPS, or through the trusted proxy as HTTPS, gets Secure cookies anyway)."
        ),
    )


class LoginSettings(BaseModel, frozen=True, extra="forbid"):
    """How repeated failed logins are slowed."""

    free_failures: int = Field(
        3, ge=1, le=100, description="Failed logins in a row before a user name (known or not) is locked."
    )
    address_free_failures: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Failed logins from one client address before it is locked.",
    )
    base_delay_s: float = Field(
        2.0, gt=0, le=3600, description="The first lock's length; doubles per failure."
    )
    max_delay_s: float = Field(900.0, gt=0, le=86400, description="The longest lock, in seconds.")


class ProxySettings(BaseModel, frozen=True, extra="forbid"):
    """Running behind a reverse proxy (nginx, Caddy) that sets X-Forwarded-* headers."""

    behind_proxy: bool = Field(
        False, description="Trust X-Forwarded-For/-Proto/-Host/-Prefix from the proxies in front (ProxyFix)."
    )
    trusted_proxies: int = Field(
        1, ge=1, le=10, description="How many proxies in front of the dashboard set those headers."
    )


class AlertsSettings(BaseModel, frozen=True, extra="forbid"):
    """The alerts page: how long an alert may be shelved, and the window of its alarm-health panel."""

    max_shelve_s: float = Field(
        8 * 3600.0,
        ge=1,
        le=7 * 86400,
        description="Longest shelve an engineer may set, in seconds (ISA-18.2: shelving is time-limited).",
    )
    health_window_days: int = Field(
        7, ge=1, le=366, description="The alarm-health panel counts the alerts of this many recent days."
    )


class ModelActionSettings(BaseModel, frozen=True, extra="forbid"):
    """What the Models page's deploy and roll back need: the broker to publish orders to and the key that
    signs rollbacks (the cloud service's `mqtt` and `lifecycle` values)."""

    mqtt: MqttSettings = Field(
        MqttSettings.model_validate({}), description="The broker the gateways take deployment orders from."
    )
    signing_key: Path = Field(
        Path("/etc/forewarn/keys/forewarn-signing.key"),
        description="Ed25519 private key (PEM, mode 0600) that signs rollback orders.",
    )
    chunk_bytes: int = Field(
        256 * 1024, ge=1024, le=1 << 20, description="Artifact bytes per retained MQTT chunk message."
    )
    push_timeout_s: float = Field(
        30.0, gt=0, le=600, description="Bound on connecting to the broker and on each acknowledgement."
    )


class DashboardSettings(ComponentSettings):
    """Settings of the dashboard."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_DASHBOARD_")
    component: ClassVar[str] = "dashboard"

    host: str = Field("127.0.0.1", description="Address to listen on (127.0.0.1: this machine only).")
    port: int = Field(8050, ge=1, le=65535, description="TCP port to listen on.")
    threads: int = Field(4, ge=1, le=64, description="Waitress worker threads.")
    refresh_s: float = Field(30.0, ge=2, le=3600, description="How often live pages refresh, in seconds.")
    fleet_rows_shown: int = Field(
        100, ge=10, le=5000, description="Rows of the fleet table shown, most at risk first (filters narrow)."
    )
    db: DatabaseSettings = Field(
        DatabaseSettings.model_validate({}), description="The cloud service's PostgreSQL database."
    )
    read_db: DatabaseSettings | None = Field(
        None,
        description=(
            "A read-only replica of `db` (a streaming-replication hot standby) that the pages read from; "
            "logins, acknowledgements, shelves, the alerts page's refresh and model actions stay on `db`. "
            "Not set: everything on `db`."
        ),
    )
    session: SessionSettings = Field(SessionSettings.model_validate({}), description="Sessions.")
    login: LoginSettings = Field(LoginSettings.model_validate({}), description="Failed-login slowing.")
    proxy: ProxySettings = Field(ProxySettings.model_validate({}), description="Reverse proxy.")
    alerts: AlertsSettings = Field(AlertsSettings.model_validate({}), description="The alerts page.")
    models: ModelActionSettings = Field(
        ModelActionSettings.model_validate({}), description="Deploying and rolling back from the Models page."
    )
