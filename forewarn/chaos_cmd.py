"""`forewarn chaos --scenario NAME | --all [--quick] [--json]`: fault campaigns (see `forewarn.chaos`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from forewarn.chaos import SCENARIOS, run_scenario
from forewarn.localservices import unwind_on_sigterm
from shared.errors import ConfigError

__all__ = ["register"]


def _chaos(args: argparse.Namespace) -> int:
    if not args.all and not args.scenario:
        raise ConfigError("chaos", "", "--scenario NAME or --all")
    names = sorted(SCENARIOS) if args.all else [args.scenario]
    unwind_on_sigterm()  # SIGTERM stops every service started, as Ctrl-C does
    results = {name: run_scenario(name, quick=args.quick, workdir=args.workdir) for name in names}
    document = {"scenarios": results}
    print(json.dumps(document) if args.json else json.dumps(document, indent=2))
    failed = [n for n, r in results.items() if r.get("lost") or r.get("duplicated")]
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    """Add `chaos` to the command line."""
    parser = subparsers.add_parser(
        "chaos",
        help="Fault campaigns: cause outages and kills for real, then check nothing was lost.",
        description=(
            "Start throwaway brokers, PostgreSQL, a cloud ingest process and two edge agents under live "
            "simulated load, cause a fault, and compare every gateway's sequence numbers with the database. "
            f"Scenarios: {', '.join(sorted(SCENARIOS))}. Exit 1 if anything was lost or duplicated."
        ),
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default=None, help="One scenario.")
    parser.add_argument("--all", action="store_true", help="Every scenario, one after the other.")
    parser.add_argument("--quick", action="store_true", help="Short faults (for tests).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep configs, queues and logs here.")
    parser.set_defaults(handler=_chaos)
