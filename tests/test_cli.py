"""The command line: one entry point, and the contracts benchmark prints one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from forewarn.cli import build_parser, main


def test_help_lists_built_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "forewarn.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    for command in ("config", "bench"):
        assert command in result.stdout


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    for name, subparser in subparsers.choices.items():  # type: ignore[attr-defined]
        assert subparser.format_help(), name


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
