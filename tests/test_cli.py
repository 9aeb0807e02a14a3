"""The command line: one entry point, and the contracts benchmark prints one JSON object."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from forewarn.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of `parser`'s subcommands (or actions), by name; empty when it has none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _listed(help_text: str) -> set[str]:
    """The names a help text lists under its positional arguments (indented by four spaces)."""
    return {line.split()[0] for line in help_text.splitlines() if line.startswith("    ") and line.split()}


@pytest.mark.slow
def test_help_lists_every_subcommand() -> None:
    commands = _subcommands(build_parser())
    assert {"config", "bench", "cloud", "sim", "forecast", "edge", "models", "keys", "demo"} <= set(commands)
    result = subprocess.run(
        [sys.executable, "-m", "forewarn.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    listed = _listed(result.stdout)
    assert set(commands) <= listed, set(commands) - listed


_LOADED_AFTER_EDGE_HELP = """
import sys
from forewarn.cli import main
try:
    main(["--log-level", "INFO", "edge", "--help"])
except SystemExit:
    pass
heavy = ("sklearn", "onnx", "dash", "psycopg", "apscheduler", "cloud_service")
print(" ".join(m for m in heavy if m in sys.modules))
"""


def test_a_subcommand_imports_only_its_own_module() -> None:
    # A gateway's `forewarn edge` must not load the cloud's libraries (seconds of imports, and memory).
    result = subprocess.run(
        [sys.executable, "-c", _LOADED_AFTER_EDGE_HELP],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "usage: forewarn edge" in result.stdout
    assert result.stdout.splitlines()[-1].strip() == "", result.stdout.splitlines()[-1]


def test_the_subcommand_parser_alone_parses_as_the_full_one() -> None:
    arguments = ["--log-format", "json", "edge", "score", "--csv", "x.csv", "--out", "y.csv"]
    assert (
        vars(build_parser(only="edge").parse_args(arguments)).keys()
        == vars(build_parser().parse_args(arguments)).keys()
    )


def test_each_subcommand_help_lists_its_actions() -> None:
    for name, subparser in _subcommands(build_parser()).items():
        help_text = subparser.format_help()
        assert help_text.startswith(f"usage: forewarn {name}"), name
        listed = _listed(help_text)
        actions = set(_subcommands(subparser))
        assert actions <= listed, f"forewarn {name} --help does not list {sorted(actions - listed)}"


def test_bench_contracts_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "contracts", "--json", "--quick"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in (
        "raw_batch_binary_decode_samples_per_s",
        "raw_batch_json_decode_samples_per_s",
        "features_windows_per_s",
        "machine",
    ):
        assert key in figures
    assert (
        figures["raw_batch_binary_decode_samples_per_s"] > figures["raw_batch_json_decode_samples_per_s"] > 0
    )
