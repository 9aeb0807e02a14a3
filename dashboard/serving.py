"""Serving the dashboard with waitress, the production WSGI server (never Dash's development server)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore

__all__ = ["DashboardServer"]

logger = logging.getLogger(__name__)

# How long the serving loop waits for activity before it checks whether it should stop.
_LOOP_TIMEOUT_S = 0.2


class DashboardServer:
    """A waitress server bound at construction: `run()` serves until `stop()` (from any thread)."""

    def __init__(
        self, wsgi: Callable[..., Any], *, host: str, port: int, threads: int, behind_proxy: bool = False
    ) -> None:
        """Bind the address (port 0 picks a free port).

        With `behind_proxy`, X-Forwarded-* headers reach the application (whose ProxyFix trusts only the
        configured number of proxies); otherwise waitress removes them, so no client can claim HTTPS or
        another address.

        Raises:
            OSError: the address cannot be bound.
        """
        self._map: dict[int, Any] = {}
        self._stopping = threading.Event()
        self._server = waitress.create_server(
            wsgi,
            map=self._map,
            host=host,
            port=port,
            threads=threads,
            ident="forewarn-dashboard",
            clear_untrusted_proxy_headers=not behind_proxy,
        )
        self.host = host
        self.port = int(self._server.effective_port)

    def run(self) -> None:
        """Serve requests until `stop()`; the server is closed on this thread before it returns."""
        logger.info("dashboard listening on http://%s:%s/", self.host, self.port)
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=_LOOP_TIMEOUT_S, map=self._map, count=1)
        finally:
            self._close()

    def stop(self) -> None:
        """Make `run()` return within `_LOOP_TIMEOUT_S` (safe from any thread and from a signal handler)."""
        self._stopping.set()

    def _close(self) -> None:
        self._server.task_dispatcher.shutdown(timeout=5)
        trigger = self._server.trigger
        trigger.del_channel()
        _close_trigger(trigger)
        wasyncore.close_all(self._map)


def _close_trigger(trigger: Any) -> None:
    """Close waitress's wake-up pipe, each end exactly once.

    waitress 3.0.2's own `trigger.close()` closes the pipe's read end twice (by number, then through its file
    wrapper). In a process whose other threads open sockets (the connection pool does), the second close can
    hit a descriptor that was just reused, and a later server's pipe was then closed under it (EBADF).
    """
    trigger._closed = True  # waitress has no public way to close the pipe once: mark it closed ourselves
    trigger.socket.close()  # the read end, through the wrapper, which then forgets its number
    os.close(trigger.trigger)  # the write end
