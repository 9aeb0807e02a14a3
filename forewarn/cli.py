"""`forewarn`: one command line, one subcommand per part of the product.

Each subcommand lives in a module of this package that exposes `register(subparsers)`; the module adds its
parser and sets `handler`, a function of the parsed arguments returning the exit code. The logic itself
stays in the part's own package. A subcommand whose part is not installed (a gateway has only
`forewarn[edge]`) is still listed, and says which extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from forewarn.extras import missing_extra
from forewarn.logs import configure_logging
from shared.errors import ForewarnError

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

# (subcommand, module that registers it), in the order `forewarn --help` lists them.
COMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("config", "forewarn.config_cmd"),
    ("bench", "forewarn.bench.cli"),
    ("cloud", "forewarn.cloud_cmd"),
    ("sim", "forewarn.sim_cmd"),
    ("forecast", "forewarn.forecast_cmd"),
    ("edge", "forewarn.edge_cmd"),
    ("connect", "forewarn.connect_cmd"),
    ("models", "forewarn.models_cmd"),
    ("diagnose", "forewarn.diagnose_cmd"),
    ("keys", "forewarn.keys_cmd"),
    ("pki", "forewarn.pki_cmd"),
    ("users", "forewarn.users_cmd"),
    ("dashboard", "forewarn.dashboard_cmd"),
    ("demo", "forewarn.demo"),
    ("chaos", "forewarn.chaos_cmd"),
)


def _install_hint(command: str, extra: str) -> str:
    return f"`forewarn {command}` needs the {extra!r} extra: pip install 'forewarn[{extra}]'"


def _register_unavailable(subparsers: Any, command: str, extra: str) -> None:
    """List a subcommand whose part is not installed; running it says which extra to install."""
    hint = _install_hint(command, extra)
    parser = subparsers.add_parser(
        command, help=f"(not installed: needs forewarn[{extra}])", description=hint
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def refuse(_args: argparse.Namespace) -> int:
        raise ForewarnError(hint)

    parser.set_defaults(handler=refuse)


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
    for command, module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            extra = missing_extra(exc)
            if extra is None:
                raise
            _register_unavailable(subparsers, command, extra)
            continue
        module.register(subparsers)
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
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(f"forewarn {args.command}: error: {_install_hint(args.command, extra)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"forewarn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
