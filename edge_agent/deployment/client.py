"""The receiver's own MQTT connection to the upstream broker: deployment orders and chunks in.

Acknowledgements do not go out here: the receiver hands them to its ack listeners, and the edge agent
commits them to the disk queue, from which the forwarder publishes them like any other uplink message.
"""

from __future__ import annotations

import contextlib
import logging

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.deployment.receiver import DeploymentReceiver
from shared.config import MqttSettings
from shared.mqtt import connect, make_client

__all__ = ["DeploymentClient"]

logger = logging.getLogger(__name__)


class DeploymentClient:
    """Subscribes the receiver's topics (QoS 1) and acknowledges each message after the receiver handled it.

    paho's callbacks only subscribe and hand messages over (`DeploymentReceiver.on_message`); the MQTT
    acknowledgement (`manual_ack`) is sent from the receiver's worker once the message is handled, and
    Receive Maximum is the receiver's `queue_size`, so the broker never has more messages in flight to
    us than the receiver can hold.

    Args:
        settings: the upstream broker.
        receiver: the receiver to feed.
        client_id: MQTT client id (stable, for the persistent session).
        session_expiry_s: how long the broker keeps our session while we are away.
    """

    def __init__(
        self,
        *,
        settings: MqttSettings,
        receiver: DeploymentReceiver,
        client_id: str,
        session_expiry_s: int = 7 * 24 * 3600,
    ) -> None:
        self.settings = settings.model_copy(update={"receive_maximum": receiver.settings.queue_size})
        self.receiver = receiver
        self._session_expiry_s = session_expiry_s
        self._client = make_client(self.settings, client_id=client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Start the receiver's worker, then connect (asynchronously, with backoff)."""
        self.receiver.start()
        connect(self._client, self.settings, session_expiry_s=self._session_expiry_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the worker."""
        with contextlib.suppress(Exception):  # paho may already be disconnected; stopping must not fail
            self._client.disconnect()
        self._client.loop_stop()
        self.receiver.stop()

    @property
    def is_connected(self) -> bool:
        """Whether the upstream connection is up."""
        return bool(self._client.is_connected())

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, properties: object
    ) -> None:
        if reason.is_failure:
            logger.warning("deployment client: connection refused (%s)", reason)
            return
        filters = self.receiver.subscriptions()
        if filters:
            client.subscribe([(topic, 1) for topic in filters])

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        mid, qos = msg.mid, msg.qos
        self.receiver.on_message(msg.topic, bytes(msg.payload), lambda: client.ack(mid, qos))
