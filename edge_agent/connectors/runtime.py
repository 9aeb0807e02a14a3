"""What runs around every connector's source loop: its counters, publisher and heartbeat.

`ConnectorRuntime` is a context manager: on entry it connects the `SamplePublisher` to the plant broker
(with the connector's offline status as last will) and starts the heartbeat; on exit it stops the
heartbeat, flushes what is buffered, replaces the retained status by the offline one and disconnects.
A connector's `run(stop)` receives it and uses `runtime.publisher` and `runtime.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Self

from edge_agent.connectors.health import ConnectorMetrics, HealthReporter, offline_status
from edge_agent.connectors.publishing import SamplePublisher, StreamKey
from edge_agent.connectors.settings import ConnectorSettings
from shared import topics
from shared.mqtt import LastWill

__all__ = ["ConnectorRuntime"]


class ConnectorRuntime:
    """The publisher, counters and heartbeat of one connector process.

    Args:
        settings: the connector's settings (its `kind` names the connector in the heartbeat).
        initial_seqs: the next `seq` per stream, for a connector that resumes after a restart.
    """

    def __init__(
        self, settings: ConnectorSettings, *, initial_seqs: Mapping[StreamKey, int] | None = None
    ) -> None:
        self.settings = settings
        self.metrics = ConnectorMetrics()
        self.status_topic = topics.connector_status(settings.connector_id)
        kind = type(settings).kind
        self.publisher = SamplePublisher(
            mqtt_settings=settings.mqtt,
            settings=settings.publishing,
            client_id=f"forewarn-connect-{kind}-{settings.connector_id}",
            metrics=self.metrics,
            will=LastWill(self.status_topic, offline_status(settings.connector_id, kind)),
            initial_seqs=initial_seqs,
        )
        self.health = HealthReporter(
            connector_id=settings.connector_id,
            connector_kind=kind,
            metrics=self.metrics,
            interval_s=settings.health.interval_s,
            publish=lambda payload: self.publisher.publish_retained(self.status_topic, payload),
            is_broker_connected=lambda: self.publisher.is_connected,
        )

    def __enter__(self) -> Self:
        self.publisher.__enter__()
        self.health.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.health.stop()
        offline = offline_status(self.settings.connector_id, type(self.settings).kind)  # stamped now
        self.publisher.close(final_payload=(self.status_topic, offline))
