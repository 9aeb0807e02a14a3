"""A small TCP proxy whose link can be cut and restored: a network partition caused for real.

`cut()` closes the listening socket (new connections are refused) and every connection through it (both
ends see the link go down); `restore()` listens again on the same port. Threads and the stdlib only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from types import TracebackType

from forewarn.localservices import free_port

__all__ = ["TcpProxy"]

logger = logging.getLogger(__name__)

_CHUNK = 65536
_ACCEPT_POLL_S = 0.2


class TcpProxy:
    """Forwards `127.0.0.1:port` to `target_host:target_port` until cut.

    Args:
        target_host: where connections go.
        target_port: its port.
    """

    def __init__(self, *, target_host: str, target_port: int) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.accepted = 0
        self.cuts = 0

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cut()

    @property
    def is_cut(self) -> bool:
        """Whether the link is down."""
        return self._listener is None

    def restore(self) -> None:
        """Listen again (on the same port); a no-op when the link is up."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            listener.settimeout(_ACCEPT_POLL_S)
            self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="tcp-proxy", daemon=True
        )
        self._acceptor.start()

    def cut(self) -> None:
        """Refuse new connections and close every open one; a no-op when already cut."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
        if listener is None:
            return
        self.cuts += 1
        listener.close()
        for conn in connections:
            _close(conn)
        if self._acceptor is not None:
            self._acceptor.join(timeout=2 * _ACCEPT_POLL_S + 1)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by `cut`
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError as exc:
                logger.warning("tcp proxy: target %s:%d unreachable: %s", *self._target, exc)
                _close(client)
                continue
            for conn in (client, upstream):
                conn.settimeout(None)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._connections |= {client, upstream}
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="tcp-proxy-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy one direction until either end closes, then close both."""
        with contextlib.suppress(OSError):
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        with self._lock:
            self._connections -= {source, sink}
        _close(source)
        _close(sink)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()
