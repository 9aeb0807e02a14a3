"""`forewarn connect KIND --config FILE`: run one plant connector until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import importlib
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from shared.config import ComponentSettings, load_settings

__all__ = ["CONNECTORS", "register"]

# Connector kind -> ("module:SettingsClass", "module:run"); `run(settings, stop)` runs until `stop` is set.
# A connector adds its line when it is built.
CONNECTORS: dict[str, tuple[str, str]] = {
    "files": ("edge_agent.connectors.settings:FilesConnectorSettings", "edge_agent.connectors.files:run"),
    "modbus": ("edge_agent.connectors.settings:ModbusConnectorSettings", "edge_agent.connectors.modbus:run"),
    "opcua": ("edge_agent.connectors.settings:OpcUaConnectorSettings", "edge_agent.connectors.opcua:run"),
    "sparkplug": (
        "edge_agent.connectors.settings:SparkplugConnectorSettings",
        "edge_agent.connectors.sparkplug:run",
    ),
}


def _resolve(reference: str) -> Any:
    module_name, _, name = reference.partition(":")
    return getattr(importlib.import_module(module_name), name)


def _connect(args: argparse.Namespace) -> int:
    settings_ref, run_ref = CONNECTORS[args.kind]
    settings_class: type[ComponentSettings] = _resolve(settings_ref)
    run: Callable[[Any, threading.Event], None] = _resolve(run_ref)
    settings = load_settings(settings_class, toml_path=args.config)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del frame
        print(f"forewarn connect {args.kind}: {signal.Signals(signum).name}, stopping", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"forewarn connect {args.kind}: running (SIGTERM or Ctrl-C stops)", flush=True)
    run(settings, stop)
    return 0


def register(subparsers: Any) -> None:
    """Add `connect` to the command line."""
    parser = subparsers.add_parser(
        "connect",
        help="Run a plant connector (files, modbus, ...) publishing raw batches on the plant broker.",
        description="Read a plant source and publish its values as raw batches until SIGTERM/SIGINT.",
    )
    parser.add_argument("kind", choices=sorted(CONNECTORS), help="Which connector.")
    parser.add_argument("--config", type=Path, default=None, help="The connector's TOML settings file.")
    parser.set_defaults(handler=_connect)
