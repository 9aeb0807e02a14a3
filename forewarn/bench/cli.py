"""`forewarn bench SUITE [--json]`: run a benchmark suite and print its figures; `all` runs every suite."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forewarn.bench import SUITES
from forewarn.bench.all_suites import render_table, run_all, update_document
from forewarn.bench.machine import describe_machine
from forewarn.localservices import unwind_on_sigterm
from shared.errors import ConfigError

__all__ = ["register", "run_suite"]


def run_suite(name: str, *, quick: bool = False) -> dict[str, Any]:
    """Run one suite and return its figures, with the machine it ran on under `machine`."""
    module_name, _, function_name = SUITES[name].partition(":")
    suite: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module_name), function_name)
    figures = {"suite": name, "machine": describe_machine()}
    figures.update(suite(quick=quick))
    return figures


def _bench_all(args: argparse.Namespace) -> int:
    machine = describe_machine()
    suites = args.suites.split(",") if args.suites else sorted(SUITES)
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        raise ConfigError("bench --suites", ",".join(unknown), f"suites among {', '.join(sorted(SUITES))}")
    results = run_all(suites, run_suite, quick=args.quick)
    if args.markdown is not None:
        update_document(args.markdown, render_table(results, machine))
    document = {"suite": "all", "machine": machine, "quick": args.quick, "suites": results}
    print(json.dumps(document) if args.json else json.dumps(document, indent=2))
    return 0 if all("error" not in figures for figures in results.values()) else 1


def _bench(args: argparse.Namespace) -> int:
    unwind_on_sigterm()  # SIGTERM unwinds like Ctrl-C: the suites' throwaway PostgreSQL and Mosquitto stop
    if args.suite == "all":
        return _bench_all(args)
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
    parser.add_argument("suite", choices=[*sorted(SUITES), "all"], help="Which suite (all: every one).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--quick", action="store_true", help="A short run (for tests), less precise.")
    parser.add_argument(
        "--suites", default=None, help="all: only these suites, comma-separated (default: every one)."
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="all: write the figure/value/target table into this file (e.g. docs/benchmarks.md).",
    )
    parser.set_defaults(handler=_bench)
