"""Serving the dashboard with waitress, the production WSGI server (never Dash's development server)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore

__all__ = ["DashboardServer"]

logger = logging.getLogger(__name__)


class DashboardServer:
    """A waitress server bound at construction: `run()` serves until `stop()` (from any thread)."""

    def __init__(self, wsgi: Callable[..., Any], *, host: str, port: int, threads: int) -> None:
        """Bind the address (port 0 picks a free port).

        Raises:
            OSError: the address cannot be bound.
        """
        self._map: dict[int, Any] = {}
        self._server = waitress.create_server(
            wsgi,
            map=self._map,
            host=host,
            port=port,
            threads=threads,
            ident="forewarn-dashboard",
            clear_untrusted_proxy_headers=True,
        )
        self.host = host
        self.port = int(self._server.effective_port)

    def run(self) -> None:
        """Serve requests until `stop()`."""
        logger.info("dashboard listening on http://%s:%s/", self.host, self.port)
        self._server.run()

    def stop(self) -> None:
        """Make `run()` return: the sockets are closed on the server's own loop, then its workers stop."""
        self._server.trigger.pull_trigger(self._close_in_loop)

    def _close_in_loop(self) -> None:
        wasyncore.close_all(self._map)
        self._server.task_dispatcher.shutdown(timeout=5)
