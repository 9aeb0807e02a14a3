"""`forewarn pki ...`: the MQTT certificate authority and the TLS broker's configuration.

forewarn pki init --dir D                       a new CA (key 0600, certificate, empty CRL)
forewarn pki issue NAME --dir D                 a client certificate for a gateway or a service
forewarn pki issue-server HOST --dir D          the broker's server certificate
forewarn pki revoke NAME --dir D                add NAME's certificate to the CRL
forewarn pki crl --dir D                        re-sign the CRL (before it expires)
forewarn pki mosquitto-config --dir D --server HOST --gateway GW=T1,T2 ... --out OUT
                                                the TLS listener and the ACL
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cloud_service import pki
from cloud_service.broker_config import (
    CLOUD_IDENTITY,
    BrokerFiles,
    Fleet,
    GatewayRights,
    acl_text,
    listener_text,
)
from shared.errors import ConfigError

__all__ = ["parse_gateway", "register"]


def parse_gateway(text: str) -> GatewayRights:
    """`GW=TARGET,...[:ASSET,...]` (assets default to the targets) into a gateway's rights.

    Raises:
        ConfigError: no `=` or no target.
    """
    gateway_id, sep, rest = text.partition("=")
    target_text, _, asset_text = rest.partition(":")
    targets = tuple(t for t in target_text.split(",") if t)
    if not sep or not gateway_id or not targets:
        raise ConfigError("pki mosquitto-config --gateway", text, "GW=TARGET[,TARGET...][:ASSET[,ASSET...]]")
    assets = tuple(a for a in asset_text.split(",") if a) or targets
    return GatewayRights(gateway_id, targets, assets)


def _init(args: argparse.Namespace) -> int:
    print(f"CA certificate (install on every client as mqtt.ca_file): {pki.init_ca(args.dir)}")
    print(f"CA key (keep offline, mode 0600): {args.dir / pki.CA_KEY_FILE}")
    return 0


def _print_identity(identity: pki.Identity) -> None:
    print(f"certificate: {identity.cert_file}")
    print(f"private key (mode 0600): {identity.key_file}")


def _issue(args: argparse.Namespace) -> int:
    _print_identity(pki.issue_client(args.dir, args.name, days=args.days))
    return 0


def _issue_server(args: argparse.Namespace) -> int:
    _print_identity(pki.issue_server(args.dir, args.host, days=args.days))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    serial = pki.revoke(args.dir, args.name)
    print(f"revoked {args.name} (serial {serial:x}); reload the broker to apply {args.dir / pki.CRL_FILE}")
    return 0


def _crl(args: argparse.Namespace) -> int:
    print(f"re-signed {pki.refresh_crl(args.dir)} (valid {pki.CRL_VALID_DAYS} days)")
    return 0


def _mosquitto_config(args: argparse.Namespace) -> int:
    ca_dir: Path = args.dir.resolve()
    fleet = Fleet(
        gateways=tuple(parse_gateway(text) for text in args.gateway),
        cloud=tuple(args.cloud) or (CLOUD_IDENTITY,),
        publishers=tuple(args.publisher),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    acl_path = args.out / "mosquitto.acl"
    files = BrokerFiles(
        ca_file=ca_dir / pki.CA_CERT_FILE,
        cert_file=ca_dir / "servers" / f"{args.server}.crt",
        key_file=ca_dir / "servers" / f"{args.server}.key",
        crl_file=ca_dir / pki.CRL_FILE,
        acl_file=args.acl_path or acl_path.resolve(),
    )
    acl_path.write_text(acl_text(fleet))
    conf_path = args.out / "mosquitto-tls.conf"
    conf_path.write_text(listener_text(files, port=args.port, bind=args.bind))
    print(f"wrote {conf_path} and {acl_path}")
    return 0


def _with_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, help="The CA directory.")


def register(subparsers: Any) -> None:
    """Add `pki` to the command line."""
    parser = subparsers.add_parser("pki", help="The MQTT certificate authority and TLS broker configuration.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="Create a CA (never overwrites one).")
    _with_dir(init)
    init.set_defaults(handler=_init)
    issue = actions.add_parser("issue", help="Issue a client certificate (a gateway id or a service name).")
    issue.add_argument("name", help="The identity: the MQTT user name the ACL grants rights to.")
    issue.add_argument("--days", type=int, default=pki.CERT_VALID_DAYS, help="Validity in days.")
    _with_dir(issue)
    issue.set_defaults(handler=_issue)
    server = actions.add_parser("issue-server", help="Issue the broker's server certificate.")
    server.add_argument("host", help="The broker's DNS name or IP address, as clients connect to it.")
    server.add_argument("--days", type=int, default=pki.CERT_VALID_DAYS, help="Validity in days.")
    _with_dir(server)
    server.set_defaults(handler=_issue_server)
    revoke = actions.add_parser("revoke", help="Revoke a certificate (adds it to the CRL).")
    revoke.add_argument("name", help="The name it was issued as.")
    _with_dir(revoke)
    revoke.set_defaults(handler=_revoke)
    crl = actions.add_parser("crl", help="Re-sign the CRL with a fresh validity period.")
    _with_dir(crl)
    crl.set_defaults(handler=_crl)
    conf = actions.add_parser("mosquitto-config", help="Write the TLS listener and ACL files for Mosquitto.")
    _with_dir(conf)
    conf.add_argument("--server", required=True, help="The host name its server certificate was issued for.")
    conf.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="GW=TARGETS[:ASSETS]",
        help="A gateway, the model targets it serves and the assets whose plant data it reads (repeat).",
    )
    conf.add_argument("--cloud", action="append", default=[], help="The cloud service's identity (repeat).")
    conf.add_argument("--publisher", action="append", default=[], help="A raw-data publisher's identity.")
    conf.add_argument("--port", type=int, default=8883, help="The TLS listener's port.")
    conf.add_argument("--bind", default="", help="The address to listen on (empty: every address).")
    conf.add_argument("--out", type=Path, required=True, help="Directory to write the two files into.")
    conf.add_argument(
        "--acl-path", type=Path, default=None, help="Where the broker will read the ACL (default: in --out)."
    )
    conf.set_defaults(handler=_mosquitto_config)
