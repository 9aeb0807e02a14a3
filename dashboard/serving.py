"""Serving the dashboard with waitress, the production WSGI server (never Dash's development server)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import waitress
from waitress.server import BaseWSGIServer

__all__ = ["make_server"]

logger = logging.getLogger(__name__)


def make_server(wsgi: Callable[..., Any], *, host: str, port: int, threads: int) -> BaseWSGIServer:
    """A bound waitress server for `wsgi`: `run()` serves until `close()` (port 0 picks a free port).

    Raises:
        OSError: the address cannot be bound.
    """
    server: BaseWSGIServer = waitress.create_server(
        wsgi,
        host=host,
        port=port,
        threads=threads,
        ident="forewarn-dashboard",
        clear_untrusted_proxy_headers=True,
    )
    logger.info("dashboard listening on http://%s:%s/", host, server.effective_port)
    return server
