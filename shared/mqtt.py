"""One way to build and connect paho MQTT 5 clients from `MqttSettings`, for every component.

Callbacks run on paho's network thread: keep them to copying and enqueuing (see the style guide).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.config import MqttSettings

__all__ = ["LastWill", "connect", "make_client"]

logger = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class LastWill:
    """The message the broker publishes for us if we vanish without disconnecting."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


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
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        client.tls_set_context(context)
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
