"""`forewarn dashboard --config FILE`: serve the dashboard with waitress (127.0.0.1:8050 by default)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from dashboard.app import create_app
from dashboard.serving import DashboardServer
from dashboard.settings import DashboardSettings
from shared.config import load_settings

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = load_settings(DashboardSettings, toml_path=args.config, overrides=overrides)
    app = create_app(settings)
    server = DashboardServer(
        app.wsgi,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        behind_proxy=settings.proxy.behind_proxy,
    )
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    print(f"dashboard: http://{settings.host}:{server.port}/ (Ctrl-C stops)")
    try:
        server.run()
    finally:
        app.close()
    return 0


def register(subparsers: Any) -> None:
    """Add `dashboard` to the command line."""
    parser = subparsers.add_parser(
        "dashboard", help="Serve the web dashboard (log in with `forewarn users add`)."
    )
    parser.add_argument("--config", type=Path, default=None, help="The dashboard's TOML file.")
    parser.add_argument("--host", default=None, help="Override host (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=None, help="Override port.")
    parser.set_defaults(handler=_run)
