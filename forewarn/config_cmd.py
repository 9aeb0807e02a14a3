"""`forewarn config show COMPONENT`: print a component's effective settings with their descriptions."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from shared.config import ComponentSettings, load_settings, render_settings

__all__ = ["SETTINGS_CLASSES", "register", "settings_class"]

# Component name -> "module:Class" of its settings; a part adds its line when it is built.
SETTINGS_CLASSES: dict[str, str] = {
    "cloud": "cloud_service.settings:CloudSettings",
    "connect-files": "edge_agent.connectors.settings:FilesConnectorSettings",
    "connect-modbus": "edge_agent.connectors.settings:ModbusConnectorSettings",
    "connect-opcua": "edge_agent.connectors.settings:OpcUaConnectorSettings",
    "connect-sparkplug": "edge_agent.connectors.settings:SparkplugConnectorSettings",
    "dashboard": "dashboard.settings:DashboardSettings",
    "demo": "forewarn.settings:DemoSettings",
    "edge": "edge_agent.settings:EdgeSettings",
    "sim": "simulators.settings:SimSettings",
}


def settings_class(component: str) -> type[ComponentSettings]:
    """The settings class of a component."""
    module_name, _, class_name = SETTINGS_CLASSES[component].partition(":")
    cls: type[ComponentSettings] = getattr(importlib.import_module(module_name), class_name)
    return cls


def _show(args: argparse.Namespace) -> int:
    settings = load_settings(settings_class(args.component), toml_path=args.config)
    print(render_settings(settings), end="")
    return 0


def register(subparsers: Any) -> None:
    """Add `config` to the command line."""
    parser = subparsers.add_parser("config", help="Show effective configuration.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="Print a component's effective settings (defaults < TOML file < FOREWARN_* environment).",
    )
    show.add_argument("component", choices=sorted(SETTINGS_CLASSES), help="Which component.")
    show.add_argument("--config", type=Path, default=None, help="The component's TOML file.")
    show.set_defaults(handler=_show)
