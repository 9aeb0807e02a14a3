"""`forewarn keys init --out DIR`: create the Ed25519 key pair that signs model deployments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cloud_service.lifecycle.signing import init_keys

__all__ = ["register"]


def _init(args: argparse.Namespace) -> int:
    pair = init_keys(args.out)
    print(f"private key (keep on the cloud host, mode 0600): {pair.private_key}")
    print(f"public key (install on every gateway as deployment.public_key): {pair.public_key}")
    return 0


def register(subparsers: Any) -> None:
    """Add `keys` to the command line."""
    parser = subparsers.add_parser("keys", help="Manage the model signing keys.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="Create a new Ed25519 key pair (never overwrites one).")
    init.add_argument("--out", type=Path, required=True, help="Directory to write the two PEM files into.")
    init.set_defaults(handler=_init)
