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


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Log verbosity (default: WARNING, quiet).",
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="Log line format.")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every built subcommand registered, or only the subcommand `only`.

    With `only`, the other subcommands' modules are not imported: every subcommand's imports together take
    seconds and load the cloud's libraries (scikit-learn, ONNX, SciPy's statistics), which a gateway's
    `forewarn edge` has no use for.
    """
    parser = argparse.ArgumentParser(
        prog="forewarn",
        description="Forewarn: predictive maintenance from the sensor to the failure forecast.",
    )
    _add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command, module_name in COMMAND_MODULES:
        if only is not None and command != only:
            continue
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


def command_named(argv: Sequence[str]) -> str | None:
    """The known subcommand `argv` names after its global options, or None (help, a typo, nothing).

    >>> command_named(["--log-level", "INFO", "edge", "--config", "gateway.toml"])
    'edge'
    >>> command_named(["--help"]) is None and command_named(["edgy"]) is None
    True
    """
    options = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    _add_global_options(options)
    try:
        _, rest = options.parse_known_args(argv)
    except argparse.ArgumentError:
        return None  # the full parser reports it
    known = {command for command, _ in COMMAND_MODULES}
    return rest[0] if rest and rest[0] in known else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=command_named(arguments))
    args = parser.parse_args(arguments)
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
