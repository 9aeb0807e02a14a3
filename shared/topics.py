"""The MQTT topic tree, built and parsed only here.

All topics live under ``forewarn/v1``::

    forewarn/v1/raw/{asset_id}/{sensor}          raw sensor batches (plant broker, QoS 0, binary)
    forewarn/v1/events/{asset_id}                maintenance and failure events (QoS 1, JSON)
    forewarn/v1/plant/alert/{asset_id}           alerts for local annunciators (plant broker, QoS 1)
    forewarn/v1/gw/{gateway_id}/aggregate        per-period feature and score summaries (upstream, QoS 1)
    forewarn/v1/gw/{gateway_id}/alert            alerts raised and cleared (upstream, QoS 1)
    forewarn/v1/gw/{gateway_id}/snapshot         raw waveform around an alert (upstream, QoS 1)
    forewarn/v1/gw/{gateway_id}/status           heartbeat, retained; also the MQTT last will
    forewarn/v1/gw/{gateway_id}/deploy-ack       model deployment acknowledgements (upstream, QoS 1)
    forewarn/v1/gw/{gateway_id}/batch            several of the above in one message (upstream, QoS 1)
    forewarn/v1/models/{target}/deployment       signed model deployment order (retained per target)
    forewarn/v1/models/{target}/chunk/{index}    artifact chunks of a deployment (retained)
    forewarn/v1/connectors/{connector_id}/status plant connector heartbeat (plant broker, retained, JSON)

Identifiers must match `IDENT_PATTERN`, which keeps them free of MQTT wildcards and separators.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from shared.errors import ContractError

__all__ = [
    "IDENT_PATTERN",
    "PREFIX",
    "ParsedTopic",
    "TopicKind",
    "aggregate",
    "alert",
    "batch",
    "check_ident",
    "connector_status",
    "deploy_ack",
    "event",
    "model_chunk",
    "model_deployment",
    "parse",
    "plant_alert",
    "raw",
    "shared_subscription",
    "snapshot",
    "status",
    "subscription",
]

PREFIX = "forewarn/v1"
IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_IDENT = re.compile(IDENT_PATTERN)
WILDCARD = "+"


class TopicKind(enum.StrEnum):
    """Every kind of message that has a topic."""

    RAW = "raw"
    EVENT = "event"
    PLANT_ALERT = "plant_alert"
    AGGREGATE = "aggregate"
    ALERT = "alert"
    SNAPSHOT = "snapshot"
    STATUS = "status"
    DEPLOY_ACK = "deploy-ack"
    BATCH = "batch"
    DEPLOYMENT = "deployment"
    MODEL_CHUNK = "chunk"
    CONNECTOR_STATUS = "connector_status"


_GATEWAY_KINDS = (
    TopicKind.AGGREGATE,
    TopicKind.ALERT,
    TopicKind.SNAPSHOT,
    TopicKind.STATUS,
    TopicKind.DEPLOY_ACK,
    TopicKind.BATCH,
)


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """What a topic names: its kind and the identifiers in it (empty strings where not applicable)."""

    kind: TopicKind
    asset_id: str = ""
    sensor: str = ""
    gateway_id: str = ""
    target: str = ""
    chunk_index: int = -1
    connector_id: str = ""


def check_ident(field: str, value: str, *, allow_wildcard: bool = False) -> str:
    """Return `value` if it is a valid identifier (or `+` when allowed), else raise `ContractError`."""
    if allow_wildcard and value == WILDCARD:
        return value
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ContractError(field, value, f"an identifier matching {IDENT_PATTERN}")
    return value


def raw(asset_id: str, sensor: str) -> str:
    """Topic of raw sample batches of one sensor of one asset; `+` allowed for subscriptions."""
    check_ident("asset_id", asset_id, allow_wildcard=True)
    check_ident("sensor", sensor, allow_wildcard=True)
    return f"{PREFIX}/raw/{asset_id}/{sensor}"


def event(asset_id: str) -> str:
    """Topic of maintenance and failure events of one asset."""
    check_ident("asset_id", asset_id, allow_wildcard=True)
    return f"{PREFIX}/events/{asset_id}"


def plant_alert(asset_id: str) -> str:
    """Topic of alerts for local annunciators on the plant broker."""
    check_ident("asset_id", asset_id, allow_wildcard=True)
    return f"{PREFIX}/plant/alert/{asset_id}"


def _gateway(gateway_id: str, kind: TopicKind) -> str:
    check_ident("gateway_id", gateway_id, allow_wildcard=True)
    return f"{PREFIX}/gw/{gateway_id}/{kind.value}"


def aggregate(gateway_id: str) -> str:
    """Topic of a gateway's aggregates."""
    return _gateway(gateway_id, TopicKind.AGGREGATE)


def alert(gateway_id: str) -> str:
    """Topic of a gateway's alerts (upstream)."""
    return _gateway(gateway_id, TopicKind.ALERT)


def snapshot(gateway_id: str) -> str:
    """Topic of a gateway's raw snapshots around alerts."""
    return _gateway(gateway_id, TopicKind.SNAPSHOT)


def status(gateway_id: str) -> str:
    """Topic of a gateway's retained heartbeat and last will."""
    return _gateway(gateway_id, TopicKind.STATUS)


def deploy_ack(gateway_id: str) -> str:
    """Topic of a gateway's model deployment acknowledgements."""
    return _gateway(gateway_id, TopicKind.DEPLOY_ACK)


def batch(gateway_id: str) -> str:
    """Topic of a gateway's uplink batches (several queued messages in one MQTT message)."""
    return _gateway(gateway_id, TopicKind.BATCH)


def model_deployment(target: str) -> str:
    """Topic of the retained deployment order for one model target."""
    check_ident("target", target, allow_wildcard=True)
    return f"{PREFIX}/models/{target}/deployment"


def model_chunk(target: str, index: int | str) -> str:
    """Topic of one artifact chunk of a target's deployment; `index` may be `+` for subscriptions."""
    check_ident("target", target, allow_wildcard=True)
    if index != WILDCARD and (not isinstance(index, int) or index < 0):
        raise ContractError("chunk_index", index, "an integer >= 0")
    return f"{PREFIX}/models/{target}/chunk/{index}"


def connector_status(connector_id: str) -> str:
    """Topic of a plant connector's retained heartbeat (also its MQTT last will); `+` for subscriptions."""
    check_ident("connector_id", connector_id, allow_wildcard=True)
    return f"{PREFIX}/connectors/{connector_id}/status"


def subscription(kind: TopicKind) -> str:
    """A filter matching every topic of `kind` (for example all gateways' aggregates)."""
    builders = {
        TopicKind.RAW: lambda: raw(WILDCARD, WILDCARD),
        TopicKind.EVENT: lambda: event(WILDCARD),
        TopicKind.PLANT_ALERT: lambda: plant_alert(WILDCARD),
        TopicKind.DEPLOYMENT: lambda: model_deployment(WILDCARD),
        TopicKind.MODEL_CHUNK: lambda: model_chunk(WILDCARD, WILDCARD),
        TopicKind.CONNECTOR_STATUS: lambda: connector_status(WILDCARD),
    }
    if kind in builders:
        return builders[kind]()
    return _gateway(WILDCARD, kind)


def shared_subscription(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription (`$share/group/filter`) so several consumers split the load."""
    check_ident("group", group)
    return f"$share/{group}/{topic_filter}"


def _parse_parts(topic: str, parts: list[str]) -> ParsedTopic:
    n = len(parts)
    head = parts[0] if parts else ""
    if head == "raw" and n == 3:
        return ParsedTopic(TopicKind.RAW, asset_id=parts[1], sensor=parts[2])
    if head == "events" and n == 2:
        return ParsedTopic(TopicKind.EVENT, asset_id=parts[1])
    if head == "plant" and n == 3 and parts[1] == "alert":
        return ParsedTopic(TopicKind.PLANT_ALERT, asset_id=parts[2])
    if head == "gw" and n == 3:
        kinds = {k.value: k for k in _GATEWAY_KINDS}
        if parts[2] in kinds:
            return ParsedTopic(kinds[parts[2]], gateway_id=parts[1])
    if head == "models" and n == 3 and parts[2] == "deployment":
        return ParsedTopic(TopicKind.DEPLOYMENT, target=parts[1])
    if head == "models" and n == 4 and parts[2] == "chunk" and parts[3].isdigit():
        return ParsedTopic(TopicKind.MODEL_CHUNK, target=parts[1], chunk_index=int(parts[3]))
    raise ContractError("topic", topic, f"a topic of the {PREFIX} tree")


def _parse_connector_parts(parts: list[str]) -> ParsedTopic | None:
    if len(parts) == 3 and parts[0] == "connectors" and parts[2] == "status":
        return ParsedTopic(TopicKind.CONNECTOR_STATUS, connector_id=parts[1])
    return None


def parse(topic: str) -> ParsedTopic:
    """Parse a concrete topic into its kind and identifiers.

    Raises:
        ContractError: the topic is not in the tree, or an identifier in it is invalid.
    """
    prefix = PREFIX + "/"
    if not topic.startswith(prefix):
        raise ContractError("topic", topic, f"a topic starting with {prefix}")
    parts = topic[len(prefix) :].split("/")
    parsed = _parse_connector_parts(parts) or _parse_parts(topic, parts)
    for field in ("asset_id", "sensor", "gateway_id", "target", "connector_id"):
        value = getattr(parsed, field)
        if value:
            check_ident(field, value)
    return parsed
