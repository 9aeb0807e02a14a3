"""`forewarn demo`: the whole loop on one machine (`forewarn.demo.run` says what it starts, in which order).

Modules: `configs` (the scenario's timing and the TOML files the children read), `watcher` (plant alerts and
gateway status on the broker), `report` (what happened, read back from the database), `run` (the
orchestration).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forewarn.demo.configs import secret_environment, write_cloud_config, write_gateway_config
from forewarn.demo.report import DemoReport
from forewarn.demo.run import run_demo
from forewarn.localservices import unwind_on_sigterm
from forewarn.settings import DemoSettings
from shared.config import load_settings

__all__ = [
    "DemoReport",
    "register",
    "run_demo",
    "secret_environment",
    "write_cloud_config",
    "write_gateway_config",
]

_DESCRIPTION = """\
Run the whole loop on this machine: a local Mosquitto and PostgreSQL (unless --broker-url and
FOREWARN_DEMO_DATABASE name existing ones), the cloud service (ingest, retraining and push, forecasts),
two edge agents splitting the assets, and the dashboard (its URL and a login are printed). The simulator
plays the `plant` scenario (60 assets, 90 days, failures and maintenance) time-compressed into about 3
minutes; within 5 minutes the dashboard shows the degrading assets' alerts, a forecast for every asset,
and a model trained on the fleet's data active on both gateways. Then it prints what happened to each
asset and keeps serving the dashboard until Ctrl-C (or SIGTERM); --duration S stops by itself.
"""


def _demo(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    for key in ("scenario", "speed", "broker_url", "workdir", "duration_s", "gateways"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    if args.no_dashboard:
        overrides["dashboard"] = False
    settings = load_settings(DemoSettings, toml_path=args.config, overrides=overrides)
    unwind_on_sigterm()  # SIGTERM unwinds like Ctrl-C, so every child and local service stops
    run_demo(settings, as_json=args.json)
    return 0


def register(subparsers: Any) -> None:
    """Add `demo` to the command line."""
    parser = subparsers.add_parser(
        "demo",
        help="Run the whole loop locally: simulator, two gateways, cloud, retraining, forecasts, dashboard.",
        description=_DESCRIPTION,
    )
    parser.add_argument("--config", type=Path, default=None, help="The demo's TOML file.")
    parser.add_argument("--scenario", default=None, help="Scenario name or file (default: plant).")
    parser.add_argument(
        "--speed", type=float, default=None, help="Time compression (default: the scenario in play_s)."
    )
    parser.add_argument(
        "--duration",
        dest="duration_s",
        type=float,
        default=None,
        help="Stop by itself after S wall seconds and print the summary.",
    )
    parser.add_argument("--gateways", type=int, default=None, help="Edge agents to deal the assets to (2).")
    parser.add_argument("--no-dashboard", action="store_true", help="Leave the dashboard out.")
    parser.add_argument("--json", action="store_true", help="Print the summary as one JSON object.")
    parser.add_argument(
        "--broker-url", dest="broker_url", default=None, help="Use this broker (mqtt://host:port)."
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Keep configs, queues and logs here.")
    parser.set_defaults(handler=_demo)
