"""`forewarn bench SUITE [--json]`: run a benchmark suite and print its figures."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from typing import Any

from forewarn.bench import SUITES
from forewarn.bench.machine import describe_machine

__all__ = ["register", "run_suite"]


def run_suite(name: str, *, quick: bool = False) -> dict[str, Any]:
    """Run one suite and return its figures, with the machine it ran on under `machine`."""
    module_name, _, function_name = SUITES[name].partition(":")
    suite: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module_name), function_name)
    figures = {"suite": name, "machine": describe_machine()}
    figures.update(suite(quick=quick))
    return figures


def _bench(args: argparse.Namespace) -> int:
    print(f"machine: {describe_machine()}", file=sys.stderr)
    figures = run_suite(args.suite, quick=args.quick)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:44s} {value}")
    return 0


def register(subparsers: Any) -> None:
    """Add `bench` to the command line."""
    parser = subparsers.add_parser("bench", help="Run a benchmark suite.")
    parser.add_argument("suite", choices=sorted(SUITES), help="Which suite.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--quick", action="store_true", help="A short run (for tests), less precise.")
    parser.set_defaults(handler=_bench)
