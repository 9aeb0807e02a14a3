"""The OPC UA connector (`forewarn connect opcua`): variables of an OPC UA server into raw batches.

One session at a time, with asyncua's client on an event loop of its own:

* **Subscription** (the default): one subscription (`publishing_interval_ms`) with a monitored item per
  configured node, each with its sampling interval, queue size and deadband filter. A server that refuses
  subscriptions (`BadTooManySubscriptions`, `BadServiceUnsupported`, ...) is polled instead when
  `acquisition = "auto"`.
* **Polling**: every node read in one request `poll_rate_hz` times a second; a value whose source
  timestamp has not moved since the last read is the same sample and is not used again (`repeated`).

A value whose status code is not Good is counted (`bad_quality`, `uncertain_quality`) and not used. A
value gets its source timestamp (`timestamps` chooses), is calibrated (`raw * scale + offset`) and goes to
`SamplePublisher.add_value` on its node's nominal grid, which counts a late value as a gap in the stream.

A lost server (asyncua's watchdog notices within `watchdog_interval_s`) closes the session; the connector
reconnects with exponential backoff (`reconnect_min_s` doubling up to `reconnect_max_s`), opens a new
session, subscribes again and counts the reconnect; the outage shows in each stream as a counted gap, and
its length is logged and kept in `OpcUaConnector.outages_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent, Subscription
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_agent.connectors.health import ConnectorMetrics
from edge_agent.connectors.publishing import SamplePublisher
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import OpcUaConnectorSettings, OpcUaNode
from shared.timebase import now_ns

__all__ = ["OpcUaConnector", "run"]

logger = logging.getLogger(__name__)

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_STOP_POLL_S = 0.1
_MS_PER_S = 1000.0
# A server answering CreateSubscription with one of these cannot be subscribed to: poll it.
_NO_SUBSCRIPTIONS: Final = frozenset(
    {
        StatusCodes.BadTooManySubscriptions,
        StatusCodes.BadServiceUnsupported,
        StatusCodes.BadNotSupported,
        StatusCodes.BadNotImplemented,
    }
)
_DEADBAND_TYPES: Final = {"absolute": ua.DeadbandType.Absolute, "percent": ua.DeadbandType.Percent}
# Errors that mean "the server or the link is not there (yet)": retried with backoff.
_CONNECTION_ERRORS = (OSError, TimeoutError, ConnectionError, UaError, asyncio.IncompleteReadError)


class _SessionLostError(Exception):
    """The session ended (server gone, link lost); the connector reconnects."""


@dataclass(frozen=True, slots=True)
class _Channel:
    """A configured node, resolved: where its values go and at which nominal rate."""

    node: OpcUaNode
    rate_hz: float


def _to_ns(stamp: dt.datetime) -> int:
    delta = stamp - _EPOCH if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _is_epoch_zero(stamp: dt.datetime | None) -> bool:
    """OPC UA's "no timestamp" is DateTime 0 (1601-01-01), which asyncua decodes as such."""
    return stamp is None or stamp.year <= 1601


class OpcUaConnector:
    """Reads the configured OPC UA variables and hands their values to the publisher.

    Args:
        settings: the connector's settings.
        runtime: its publisher and counters.
    """

    def __init__(self, *, settings: OpcUaConnectorSettings, runtime: ConnectorRuntime) -> None:
        self._settings = settings
        self._publisher: SamplePublisher = runtime.publisher
        self._metrics: ConnectorMetrics = runtime.metrics
        self._channels = [_Channel(node, self._nominal_rate(node)) for node in settings.nodes]
        self._last_source_ns: list[int | None] = [None] * len(self._channels)
        self._lost_mono: float | None = None
        self.acquisition: str = ""
        self.outages_s: list[float] = []

    def _nominal_rate(self, node: OpcUaNode) -> float:
        if node.sample_rate_hz is not None:
            return node.sample_rate_hz
        if self._settings.acquisition == "polling" or node.sampling_interval_ms <= 0:
            return self._settings.poll_rate_hz
        return _MS_PER_S / node.sampling_interval_ms

    # --- the session loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Read until `stop` is set (reconnecting whenever the server is lost)."""
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        stopping = asyncio.Event()
        watcher = asyncio.create_task(_watch(stop, stopping))
        delay_s = self._settings.reconnect_min_s
        self._lost_mono = None
        try:
            while not stopping.is_set():
                try:
                    await self._session(stopping)
                except (*_CONNECTION_ERRORS, _SessionLostError) as exc:
                    self._metrics.error(f"OPC UA {self._settings.endpoint}: {exc!r}")
                    logger.warning("OPC UA session to %s ended: %r", self._settings.endpoint, exc)
                except Exception as exc:  # the connector must outlive any session failure: logged, retried
                    self._metrics.error(f"OPC UA {self._settings.endpoint}: {exc!r}")
                    logger.exception("OPC UA session to %s failed", self._settings.endpoint)
                if self._metrics.source_connected:
                    delay_s = self._settings.reconnect_min_s
                    self._lost_mono = time.monotonic()
                self._metrics.source_connected = False
                if stopping.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay_s)
                delay_s = min(delay_s * 2, self._settings.reconnect_max_s)
        finally:
            watcher.cancel()

    def _connected(self) -> None:
        """Called once a session is up: count the reconnect and log how long the server was away."""
        self._metrics.source_connected = True
        lost_mono = self._lost_mono
        if lost_mono is None:
            logger.info("connected to OPC UA server %s", self._settings.endpoint)
            return
        outage_s = time.monotonic() - lost_mono
        self._metrics.reconnects += 1
        self.outages_s.append(outage_s)
        logger.warning(
            "reconnected to OPC UA server %s after %.1f s without data", self._settings.endpoint, outage_s
        )

    async def _session(self, stopping: asyncio.Event) -> None:
        client = await self._client()
        lost = asyncio.Event()

        async def connection_lost(exc: Exception) -> None:
            del exc
            lost.set()

        client.connection_lost_callback = connection_lost
        await client.connect()
        try:
            nodes = [client.get_node(channel.node.node_id) for channel in self._channels]
            self._connected()
            if self._settings.acquisition != "polling" and await self._try_subscription(
                client, nodes, stopping, lost
            ):
                return
            self.acquisition = "polling"
            await self._poll(client, nodes, stopping, lost)
        finally:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await asyncio.wait_for(client.disconnect(), self._settings.timeout_s)

    async def _client(self) -> Client:
        settings = self._settings
        client = Client(
            settings.endpoint, timeout=settings.timeout_s, watchdog_intervall=settings.watchdog_interval_s
        )
        security = settings.security
        client.application_uri = security.application_uri
        client.name = client.description = f"Forewarn connector {settings.connector_id}"
        if settings.username:
            client.set_user(settings.username)
            client.set_password(settings.password.get_secret_value())
        if (
            security.policy != "None"
            and security.certificate is not None
            and security.private_key is not None
        ):
            if security.generate_certificate:
                await self._ensure_certificate(client, security.certificate, security.private_key)
            policy = getattr(security_policies, f"SecurityPolicy{security.policy}")
            await client.set_security(
                policy,
                certificate=str(security.certificate),
                private_key=str(security.private_key),
                private_key_password=security.private_key_password.get_secret_value() or None,
                server_certificate=str(security.server_certificate) if security.server_certificate else None,
                mode=getattr(ua.MessageSecurityMode, security.mode),
            )
        return client

    async def _ensure_certificate(self, client: Client, certificate: Path, private_key: Path) -> None:
        if certificate.exists() and private_key.exists():
            return
        logger.warning("creating a self-signed OPC UA application certificate at %s", certificate)
        await client.setup_self_signed_certificate(
            private_key,
            certificate,
            subject_attrs={"organizationName": "Forewarn"},
            extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )

    # --- subscription --------------------------------------------------------------------------------------

    async def _try_subscription(
        self, client: Client, nodes: list[Node], stopping: asyncio.Event, lost: asyncio.Event
    ) -> bool:
        """Subscribe and read until stopped or lost; False if the server refuses subscriptions and the
        settings allow polling instead."""
        try:
            subscription = await client.create_subscription(
                self._settings.publishing_interval_ms,
                None,
                queue_maxsize=self._settings.max_queued_notifications,
                overflow=OverflowPolicy.WARN,
            )
        except UaStatusCodeError as exc:
            if exc.code in _NO_SUBSCRIPTIONS and self._settings.acquisition == "auto":
                logger.warning("OPC UA server %s refuses subscriptions (%r): polling", client, exc)
                return False
            raise
        self.acquisition = "subscription"
        await self._subscribe_and_read(subscription, nodes, stopping, lost)
        return True

    async def _subscribe_and_read(
        self, subscription: Subscription, nodes: list[Node], stopping: asyncio.Event, lost: asyncio.Event
    ) -> None:
        requests = [self._monitored_item(handle, node) for handle, node in enumerate(nodes)]
        results = await subscription.create_monitored_items(requests)
        for channel, result in zip(self._channels, results, strict=True):
            if isinstance(result, ua.StatusCode):
                self._metrics.reject("bad_node")
                self._metrics.error(f"node {channel.node.node_id}: {result.name}")
                logger.warning("cannot monitor OPC UA node %s: %s", channel.node.node_id, result.name)
        reader = asyncio.create_task(self._read_notifications(subscription))
        await _until_any(reader, stopping, lost)

    def _monitored_item(self, handle: int, node: Node) -> ua.MonitoredItemCreateRequest:
        settings = self._channels[handle].node
        parameters = ua.MonitoringParameters()
        parameters.ClientHandle = handle
        parameters.SamplingInterval = settings.sampling_interval_ms
        parameters.QueueSize = settings.queue_size
        parameters.DiscardOldest = True
        if settings.deadband != "none":
            deadband = ua.DataChangeFilter()
            deadband.Trigger = ua.DataChangeTrigger.StatusValue
            deadband.DeadbandType = _DEADBAND_TYPES[settings.deadband]
            deadband.DeadbandValue = settings.deadband_value
            parameters.Filter = deadband
        item = ua.ReadValueId()
        item.NodeId = node.nodeid
        item.AttributeId = AttributeIds.Value
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = item
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = parameters
        return request

    async def _read_notifications(self, subscription: Subscription) -> None:
        async for event in subscription:
            if isinstance(event, DataChangeEvent):
                handle = event.data.subscription_data.client_handle
                if handle is not None:
                    self._take(handle, event.data.monitored_item.Value)
            elif isinstance(event, StatusChangeEvent) and not event.notification.Status.is_good():
                raise _SessionLostError(f"subscription status {event.notification.Status.name}")

    # --- polling -------------------------------------------------------------------------------------------

    async def _poll(
        self, client: Client, nodes: list[Node], stopping: asyncio.Event, lost: asyncio.Event
    ) -> None:
        reader = asyncio.create_task(self._poll_forever(client, nodes))
        await _until_any(reader, stopping, lost)

    async def _poll_forever(self, client: Client, nodes: list[Node]) -> None:
        period_s = 1.0 / self._settings.poll_rate_hz
        next_mono = time.monotonic()
        while True:
            values = await client.read_attributes(nodes)
            for handle, value in enumerate(values):
                self._take(handle, value, polled=True)
            next_mono += period_s
            delay_s = next_mono - time.monotonic()
            if delay_s < 0:  # a read took longer than a period: start the grid afresh
                next_mono = time.monotonic()
            await asyncio.sleep(max(0.0, delay_s))

    # --- one value -----------------------------------------------------------------------------------------

    def _take(self, handle: int, data_value: ua.DataValue | None, *, polled: bool = False) -> None:
        """Check, time, calibrate and publish one value of node `handle`."""
        metrics = self._metrics
        metrics.values_read += 1
        if data_value is None:
            metrics.reject("no_value")
            return
        status = data_value.StatusCode
        if status is not None and not status.is_good():
            metrics.reject("uncertain_quality" if status.is_uncertain() else "bad_quality")
            return
        raw = data_value.Value.Value if data_value.Value is not None else None
        if isinstance(raw, bool):
            raw = float(raw)
        if not isinstance(raw, int | float):
            metrics.reject("not_numeric")
            return
        time_ns = self._time_ns(data_value)
        if polled:
            if time_ns == self._last_source_ns[handle]:
                metrics.reject("repeated")
                return
            self._last_source_ns[handle] = time_ns
        channel = self._channels[handle]
        target = channel.node
        self._publisher.add_value(
            target.asset_id, target.sensor, time_ns, raw * target.scale + target.offset, channel.rate_hz
        )

    def _time_ns(self, data_value: ua.DataValue) -> int:
        choice = self._settings.timestamps
        if choice == "received":
            return now_ns()
        candidates: Iterable[dt.datetime | None]
        if choice == "source":
            candidates = (data_value.SourceTimestamp, data_value.ServerTimestamp)
        else:
            candidates = (data_value.ServerTimestamp,)
        for stamp in candidates:
            if stamp is not None and not _is_epoch_zero(stamp):
                return _to_ns(stamp)
        return now_ns()


async def _watch(stop: threading.Event, stopping: asyncio.Event) -> None:
    """Mirror the thread-side `stop` event into the loop."""
    while not stop.is_set():
        await asyncio.sleep(_STOP_POLL_S)
    stopping.set()


async def _until_any(reader: asyncio.Task[Any], stopping: asyncio.Event, lost: asyncio.Event) -> None:
    """Wait until the reader ends, `stopping` or `lost` is set; stop the reader; raise what it raised, or
    `_SessionLostError` if the session was lost."""
    waiters = [asyncio.create_task(stopping.wait()), asyncio.create_task(lost.wait())]
    try:
        await asyncio.wait([reader, *waiters], return_when=asyncio.FIRST_COMPLETED)
        failure = reader.exception() if reader.done() else None
    finally:
        for task in (reader, *waiters):
            task.cancel()
        await asyncio.gather(reader, *waiters, return_exceptions=True)
    if failure is not None:
        raise failure
    if lost.is_set() or (reader.done() and not stopping.is_set()):
        raise _SessionLostError("connection to the server lost")


def run(settings: OpcUaConnectorSettings, stop: threading.Event) -> None:
    """Run the OPC UA connector until `stop` is set."""
    with ConnectorRuntime(settings) as runtime:
        OpcUaConnector(settings=settings, runtime=runtime).run(stop)
