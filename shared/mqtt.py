"""One way to build and connect paho MQTT 5 clients from `MqttSettings`, for every component.

Callbacks run on paho's network thread: keep them to copying and enqueuing (see the style guide).
"""

from __future__ import annotations

import logging
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.config import MqttSettings
from shared.errors import ConfigError

__all__ = ["LastWill", "connect", "make_client", "tls_context"]

logger = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class LastWill:
    """The message the broker publishes for us if we vanish without disconnecting."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """A TLS 1.2+ client context: verifies the broker against `ca_file`, presents our certificate if set.

    Raises:
        ConfigError: a certificate or key file cannot be loaded, or the key is readable by others.
    """
    ca_file = str(settings.ca_file) if settings.ca_file else None
    try:
        context = ssl.create_default_context(cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.cert_file is not None and settings.key_file is not None:
            _check_private(settings.key_file)
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("mqtt", str(exc), "readable PEM files in ca_file, cert_file and key_file") from exc
    return context


def _check_private(key_file: Path) -> None:
    mode = key_file.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            "mqtt.key_file", str(key_file), f"mode {oct(mode & 0o777)}: must be 0600 or stricter"
        )


def make_client(
    settings: MqttSettings,
    *,
    client_id: str,
    will: LastWill | None = None,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A paho MQTT 5 client configured from `settings` (not yet connected).

    Args:
        settings: broker address, credentials, TLS and flow-control settings.
        client_id: used when `settings.client_id` is empty; persistent sessions need it stable.
        will: the last-will message, if any.
        manual_ack: acknowledge QoS 1 messages only when `client.ack(mid, qos)` is called.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id or client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password.get_secret_value() or None)
    if settings.tls:
        client.tls_set_context(tls_context(settings))
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.reconnect_delay_set(
        min_delay=max(1, round(settings.reconnect_min_s)), max_delay=round(settings.reconnect_max_s)
    )
    client.max_inflight_messages_set(settings.max_inflight)
    client.max_queued_messages_set(0)
    return client


def connect(
    client: mqtt.Client,
    settings: MqttSettings,
    *,
    clean_start: bool = False,
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
) -> None:
    """Start connecting asynchronously (paho retries with backoff); call `client.loop_start()` after.

    With `clean_start=False` and a session expiry, the broker keeps our subscriptions and queued QoS 1
    messages while we are away: the persistent session that store-and-forward relies on.
    """
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho lacks annotations here
    properties.SessionExpiryInterval = session_expiry_s
    properties.ReceiveMaximum = settings.receive_maximum
    client.connect_async(
        settings.host,
        settings.port,
        keepalive=settings.keepalive_s,
        clean_start=clean_start,
        properties=properties,
    )
    logger.info("connecting to MQTT broker", extra={"host": settings.host, "port": settings.port})
