"""`forewarn keys init --out DIR`: create the Ed25519 key pair that signs model deployments.

`forewarn keys rotate --dir DIR [--publish] [--config FILE]`: replace it by a new pair announced to the
gateways under the old one (see `cloud_service.lifecycle.key_rotation`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cloud_service.lifecycle.key_rotation import CHAIN_FILE, publish_rotation, read_chain, rotate_keys
from cloud_service.lifecycle.signing import init_keys
from cloud_service.settings import CloudSettings
from shared.config import load_settings
from shared.key_rotation import KeyRotation

__all__ = ["register"]


def _init(args: argparse.Namespace) -> int:
    pair = init_keys(args.out)
    print(f"private key (keep on the cloud host, mode 0600): {pair.private_key}")
    print(f"public key (install on every gateway as deployment.public_key): {pair.public_key}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    rotation = rotate_keys(args.dir)
    print(f"new key pair in {args.dir}; the old one is in {args.dir / 'retired'}")
    print(f"chain of {len(rotation.links)} rotation(s): {args.dir / CHAIN_FILE}")
    if args.publish:
        publish_rotation(rotation, load_settings(CloudSettings, toml_path=args.config).mqtt)
        print("published the chain (retained); pushes from now on are signed with the new key")
    else:
        print("publish it with `forewarn keys publish` before pushing models signed with the new key")
    return 0


def _publish(args: argparse.Namespace) -> int:
    links = read_chain(args.dir)
    if not links:
        print(f"forewarn keys publish: no rotation in {args.dir}", file=sys.stderr)
        return 2
    publish_rotation(KeyRotation(links=links), load_settings(CloudSettings, toml_path=args.config).mqtt)
    print(f"published the chain of {len(links)} rotation(s) (retained)")
    return 0


def register(subparsers: Any) -> None:
    """Add `keys` to the command line."""
    parser = subparsers.add_parser("keys", help="Manage the model signing keys.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="Create a new Ed25519 key pair (never overwrites one).")
    init.add_argument("--out", type=Path, required=True, help="Directory to write the two PEM files into.")
    init.set_defaults(handler=_init)
    rotate = actions.add_parser("rotate", help="Replace the key pair by a new one announced under the old.")
    rotate.add_argument("--dir", type=Path, required=True, help="The directory `keys init` wrote.")
    rotate.add_argument("--publish", action="store_true", help="Publish the chain to the cloud broker.")
    rotate.add_argument("--config", type=Path, default=None, help="The cloud service's TOML file.")
    rotate.set_defaults(handler=_rotate)
    publish = actions.add_parser("publish", help="Publish the rotation chain (retained) to the cloud broker.")
    publish.add_argument("--dir", type=Path, required=True, help="The directory `keys init` wrote.")
    publish.add_argument("--config", type=Path, default=None, help="The cloud service's TOML file.")
    publish.set_defaults(handler=_publish)
