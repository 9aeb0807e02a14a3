"""Mosquitto configuration for the TLS-only broker: the listener and an ACL per identity.

Every client presents a certificate from `cloud_service.pki`; with `use_identity_as_username` its common
name is its MQTT user name, and the ACL written here gives each name only what its job needs:

- a gateway publishes only under `forewarn/v1/gw/<its id>/`, reads only the model topics of the targets it
  serves and the fleet's signing-key announcement, and (for its plant side) reads raw batches and events
  of its assets and publishes their plant alerts;
- the cloud service reads every gateway's uplink, publishes model deployments and chunks and the
  signing-key announcement;
- a plant publisher (the simulator, a sensor bridge) publishes raw batches and events of its assets.

Mosquitto denies whatever the ACL does not grant: a publish is dropped silently (MQTT 5 answers a QoS 1
publish with "not authorized"), a subscription is refused in the SUBACK.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shared import topics

__all__ = ["CLOUD_IDENTITY", "BrokerFiles", "Fleet", "GatewayRights", "acl_text", "listener_text"]

CLOUD_IDENTITY = "forewarn-cloud"

ALL = "#"


@dataclass(frozen=True, slots=True)
class GatewayRights:
    """What one gateway serves: the model targets it reads, the assets whose plant data it handles."""

    gateway_id: str
    targets: tuple[str, ...]
    assets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Fleet:
    """Every identity the broker admits, by role."""

    gateways: tuple[GatewayRights, ...]
    cloud: tuple[str, ...] = (CLOUD_IDENTITY,)
    publishers: tuple[str, ...] = ()
    publisher_assets: tuple[str, ...] = field(default=(ALL,))


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The files the listener needs: the CA, the broker's certificate and key, the CRL and the ACL."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path
    acl_file: Path


def _asset_raw(asset: str) -> str:
    return (
        topics.raw(asset, topics.WILDCARD) if asset != ALL else topics.raw(topics.WILDCARD, topics.WILDCARD)
    )


def _asset_event(asset: str) -> str:
    return topics.event(asset if asset != ALL else topics.WILDCARD)


def _asset_alert(asset: str) -> str:
    return topics.plant_alert(asset if asset != ALL else topics.WILDCARD)


def _block(user: str, rules: Iterable[tuple[str, str]]) -> list[str]:
    return [f"user {user}", *(f"topic {access} {topic}" for access, topic in rules), ""]


def _gateway_rules(rights: GatewayRights) -> list[tuple[str, str]]:
    rules = [("write", topics.gateway_tree(rights.gateway_id))]
    rules += [("read", topics.model_tree(target)) for target in rights.targets]
    rules.append(("read", topics.signing_key()))
    for asset in rights.assets:
        rules += [("read", _asset_raw(asset)), ("read", _asset_event(asset)), ("write", _asset_alert(asset))]
    return rules


def _cloud_rules() -> list[tuple[str, str]]:
    return [
        ("read", topics.gateway_tree(topics.WILDCARD)),
        ("read", topics.event(topics.WILDCARD)),
        ("write", topics.model_tree(topics.WILDCARD)),
        ("write", topics.signing_key()),
    ]


def acl_text(fleet: Fleet) -> str:
    """The Mosquitto ACL file (`acl_file`) for `fleet`.

    Raises:
        ContractError: a name is not an identifier (a wildcard or `/` in it would widen a rule).
    """
    lines = [
        "# Forewarn broker ACL: written by `forewarn pki mosquitto-config`; anything not granted is denied.",
        "",
    ]
    for rights in fleet.gateways:
        topics.check_ident("gateway_id", rights.gateway_id)
        for target in rights.targets:
            topics.check_ident("target", target)
        for asset in (a for a in rights.assets if a != ALL):
            topics.check_ident("asset_id", asset)
        lines += _block(rights.gateway_id, _gateway_rules(rights))
    for name in fleet.cloud:
        lines += _block(topics.check_ident("cloud", name), _cloud_rules())
    for name in fleet.publishers:
        rules = [("write", _asset_raw(a)) for a in fleet.publisher_assets]
        rules += [("write", _asset_event(a)) for a in fleet.publisher_assets]
        lines += _block(topics.check_ident("publisher", name), rules)
    return "\n".join(lines)


def listener_text(files: BrokerFiles, *, port: int = 8883, bind: str = "") -> str:
    """The TLS listener section: certificates required, the certificate's name as the user, the CRL."""
    address = f" {bind}" if bind else ""
    return "\n".join(
        [
            "# Forewarn TLS listener: written by `forewarn pki mosquitto-config`.",
            "per_listener_settings false",
            "allow_anonymous false",
            f"acl_file {files.acl_file}",
            f"listener {port}{address}",
            "protocol mqtt",
            f"cafile {files.ca_file}",
            f"certfile {files.cert_file}",
            f"keyfile {files.key_file}",
            f"crlfile {files.crl_file}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
            "",
        ]
    )
