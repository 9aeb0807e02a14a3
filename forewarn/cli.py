"""`forewarn`: one command line, one subcommand per part of the product.

Each subcommand lives in a module of this package that exposes `register(subparsers)`; the module adds its
parser and sets `handler`, a function of the parsed arguments returning the exit code. The logic itself
stays in the part's own package.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from forewarn.logs import configure_logging
from shared.errors import ForewarnError

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

# Modules that register a subcommand, in the order `forewarn --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "forewarn.config_cmd",
    "forewarn.bench.cli",
    "forewarn.cloud_cmd",
    "forewarn.sim_cmd",
    "forewarn.forecast_cmd",
    "forewarn.edge_cmd",
    "forewarn.models_cmd",
    "forewarn.diagnose_cmd",
    "forewarn.keys_cmd",
    "forewarn.users_cmd",
    "forewarn.dashboard_cmd",
    "forewarn.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every built subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="forewarn",
        description="Forewarn: predictive maintenance from the sensor to the failure forecast.",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Log verbosity (default: WARNING, quiet).",
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="Log line format.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        return int(args.handler(args))
    except ForewarnError as exc:
        print(f"forewarn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"forewarn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
