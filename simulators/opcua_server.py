"""A simulated OPC UA server (asyncua): a small address space of variables whose values change over time.

Each `SimulatedVariable` is a Double at node id `ns=<index>;s=<name>` under the Objects folder whose value
at UTC time t is `offset + amplitude * sin(2 pi frequency_hz t)`, written with t as its source timestamp
every `update_interval_s`; one in every `bad_every` updates carries the status `BadSensorFailure`. A
reader can therefore check any value it received against its source timestamp.

The server can require a user name and password, offer signed and encrypted endpoints (it makes its own
self-signed certificate), refuse subscriptions (a server that can only be polled), and be stopped and
started again on the same port. `SimulatedOpcUaServer` runs it on its own thread and event loop, so a
test or a bench can drive it from plain code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from cryptography.x509.oid import ExtendedKeyUsageOID

from shared.timebase import NS_PER_S, now_ns

__all__ = ["NAMESPACE_URI", "SimulatedOpcUaServer", "SimulatedVariable", "variable_value"]

logger = logging.getLogger(__name__)

NAMESPACE_URI = "urn:forewarn:simulated-plant"
APPLICATION_URI = "urn:forewarn:simulated-opcua-server"
SecurityMode = Literal["none", "sign", "sign_and_encrypt"]
_POLICIES: dict[SecurityMode, ua.SecurityPolicyType] = {
    "none": ua.SecurityPolicyType.NoSecurity,
    "sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "sign_and_encrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
_NS_PER_US = 1000
_START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class SimulatedVariable:
    """One simulated process variable.

    Attributes:
        name: its string node id and browse name (`Pump7.Vibration`).
        amplitude: peak of the sine.
        frequency_hz: its frequency.
        offset: its mean.
        bad_every: one update in this many has status `BadSensorFailure` (0: never).
    """

    name: str
    amplitude: float = 1.0
    frequency_hz: float = 0.5
    offset: float = 0.0
    bad_every: int = 0


def variable_value(variable: SimulatedVariable, time_ns: int) -> float:
    """The value `variable` has at UTC epoch ns `time_ns` (exact to the microsecond OPC UA keeps)."""
    phase = 2.0 * math.pi * variable.frequency_hz * ((time_ns // _NS_PER_US) / 1e6)
    return variable.offset + variable.amplitude * math.sin(phase)


class _PasswordUsers(UserManager):
    """An asyncua user manager accepting the configured user names and passwords only."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        del iserver, certificate
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass
class _Counters:
    updates: int = 0
    bad_updates: int = 0
    started: int = 0


@dataclass
class SimulatedOpcUaServer:
    """An asyncua server on its own thread; `start()` and `stop()` may be called again and again.

    Args:
        port: TCP port (the endpoint is `opc.tcp://{host}:{port}/`).
        variables: the address space.
        update_interval_s: seconds between value updates.
        host: address to listen on.
        users: user name -> password; empty: anonymous access.
        security: the endpoint's message security (`none`, `sign`, `sign_and_encrypt`; Basic256Sha256).
        certificate_dir: where the server keeps its self-signed certificate (needed unless `none`).
        allow_subscriptions: False makes the server refuse every subscription (clients must poll).
    """

    port: int
    variables: Sequence[SimulatedVariable]
    update_interval_s: float = 0.1
    host: str = "127.0.0.1"
    users: Mapping[str, str] = field(default_factory=dict)
    security: SecurityMode = "none"
    certificate_dir: Path | None = None
    allow_subscriptions: bool = True
    counters: _Counters = field(default_factory=_Counters, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _stopping: asyncio.Event | None = field(default=None, init=False, repr=False)
    _namespace_index: int = field(default=2, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        """The server's endpoint URL."""
        return f"opc.tcp://{self.host}:{self.port}/"

    def node_id(self, name: str) -> str:
        """The node id string of variable `name` (`ns=2;s=Pump7.Vibration`)."""
        return f"ns={self._namespace_index};s={name}"

    @property
    def is_running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start serving (no-op if running); returns once the server listens.

        Raises:
            RuntimeError: the server did not start (its error is chained).
        """
        if self.is_running:
            return
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="opcua-sim", daemon=True)
        self._thread.start()
        try:
            started.result(timeout=_START_TIMEOUT_S)
        except Exception as exc:
            raise RuntimeError(f"simulated OPC UA server did not start on {self.endpoint}") from exc

    def stop(self) -> None:
        """Stop serving and close every connection (no-op if stopped)."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is None or stopping is None or thread is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(_START_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> SimulatedOpcUaServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, started: concurrent.futures.Future[None]) -> None:
        asyncio.run(self._main(started))

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server, nodes = await self._build()
            await server.start()
        except Exception as exc:  # noqa: BLE001 - handed to the thread that called start(), which raises it
            started.set_exception(exc)
            return
        self.counters.started += 1
        started.set_result(None)
        updater = asyncio.create_task(self._update_forever(server, nodes))
        try:
            await self._stopping.wait()
        finally:
            updater.cancel()
            await asyncio.gather(updater, return_exceptions=True)
            await server.stop()

    async def _build(self) -> tuple[Server, list[tuple[SimulatedVariable, ua.NodeId]]]:
        server = Server(user_manager=_PasswordUsers(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Forewarn simulated plant")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy([_POLICIES[self.security]])
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.security != "none":
            await self._load_certificate(server)
        if not self.allow_subscriptions:
            server.iserver.max_subscriptions = 0
        self._namespace_index = await server.register_namespace(NAMESPACE_URI)
        objects = server.nodes.objects
        nodes = []
        for variable in self.variables:
            node_id = self.node_id(variable.name)
            node = await objects.add_variable(node_id, variable.name, variable.offset, ua.VariantType.Double)
            nodes.append((variable, node.nodeid))
        return server, nodes

    async def _load_certificate(self, server: Server) -> None:
        if self.certificate_dir is None:
            raise ValueError("a secured endpoint needs certificate_dir for the server's certificate")
        self.certificate_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.certificate_dir / "server-key.pem"
        cert_file = self.certificate_dir / "server-cert.der"
        await setup_self_signed_certificate(
            key_file,
            cert_file,
            APPLICATION_URI,
            self.host,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"organizationName": "Forewarn simulated plant"},
        )
        await server.load_certificate(cert_file)
        await server.load_private_key(key_file)

    async def _update_forever(self, server: Server, nodes: list[tuple[SimulatedVariable, ua.NodeId]]) -> None:
        next_mono = time.monotonic()
        while True:
            await self._update_once(server, nodes)
            next_mono += self.update_interval_s
            delay = next_mono - time.monotonic()
            if delay < 0:  # fell behind: skip the missed updates rather than bunch them
                next_mono = time.monotonic()
                delay = 0.0
            await asyncio.sleep(delay)

    async def _update_once(self, server: Server, nodes: list[tuple[SimulatedVariable, ua.NodeId]]) -> None:
        time_ns = now_ns() // _NS_PER_US * _NS_PER_US
        stamp = ua.DateTime.fromtimestamp(time_ns // NS_PER_S, tz=dt.UTC) + dt.timedelta(
            microseconds=(time_ns % NS_PER_S) // _NS_PER_US
        )
        update = self.counters.updates
        for variable, node_id in nodes:
            is_bad = variable.bad_every > 0 and update % variable.bad_every == 0
            status = ua.StatusCode(ua.UInt32(StatusCodes.BadSensorFailure if is_bad else StatusCodes.Good))
            value = ua.Variant(variable_value(variable, time_ns), ua.VariantType.Double)
            data_value = ua.DataValue(value, status, SourceTimestamp=stamp, ServerTimestamp=stamp)
            await server.write_attribute_value(node_id, data_value)
            self.counters.bad_updates += is_bad
        self.counters.updates += 1
