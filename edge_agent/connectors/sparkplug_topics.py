"""The Sparkplug B topic namespace: `spBv1.0/{group}/{message type}/{edge node}[/{device}]`, built and
parsed only here.

Node messages (`NBIRTH`, `NDEATH`, `NDATA`, `NCMD`) have no device part; device messages (`DBIRTH`,
`DDEATH`, `DDATA`, `DCMD`) do. A primary host application announces itself on `spBv1.0/STATE/{host id}`.
Identifiers are UTF-8 text without `/`, `+` or `#`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from shared.errors import ContractError

__all__ = ["NAMESPACE", "MessageType", "SparkplugTopic", "node_filter", "parse_topic", "state_topic"]

NAMESPACE: Final = "spBv1.0"
_FORBIDDEN: Final = frozenset("/+#")
_MAX_ID_CHARS = 256


class MessageType(enum.StrEnum):
    """The Sparkplug B message types."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"

    @property
    def is_device_message(self) -> bool:
        """Whether the topic of this type names a device."""
        return self.value.startswith("D")


def _check_id(field: str, value: str) -> str:
    if not value or len(value) > _MAX_ID_CHARS or _FORBIDDEN.intersection(value):
        raise ContractError(field, value, f"1 to {_MAX_ID_CHARS} characters without '/', '+' or '#'")
    return value


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A concrete Sparkplug B topic."""

    group_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str | None = None

    def __post_init__(self) -> None:
        _check_id("group_id", self.group_id)
        _check_id("edge_node_id", self.edge_node_id)
        if self.message_type.is_device_message != (self.device_id is not None):
            raise ContractError(
                "device_id",
                self.device_id,
                f"a device id exactly on device messages, not on {self.message_type}",
            )
        if self.device_id is not None:
            _check_id("device_id", self.device_id)

    def __str__(self) -> str:
        parts = [NAMESPACE, self.group_id, self.message_type.value, self.edge_node_id]
        if self.device_id is not None:
            parts.append(self.device_id)
        return "/".join(parts)


def parse_topic(topic: str) -> SparkplugTopic:
    """Parse a Sparkplug B topic (not `STATE`).

    Raises:
        ContractError: naming the part that is wrong.
    """
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise ContractError("topic", topic, f"a topic in the {NAMESPACE} namespace")
    if len(parts) not in {4, 5}:
        raise ContractError("topic", topic, f"{NAMESPACE}/group/TYPE/edge_node[/device]")
    try:
        message_type = MessageType(parts[2])
    except ValueError as exc:
        raise ContractError("message_type", parts[2], "a Sparkplug B message type") from exc
    return SparkplugTopic(parts[1], message_type, parts[3], parts[4] if len(parts) == 5 else None)


def node_filter(group_id: str, edge_node_id: str | None = None) -> str:
    """A subscription filter for every message of one edge node (or all nodes of a group if None)."""
    _check_id("group_id", group_id)
    if edge_node_id is None:
        return f"{NAMESPACE}/{group_id}/#"
    _check_id("edge_node_id", edge_node_id)
    return f"{NAMESPACE}/{group_id}/+/{edge_node_id}/#"


def state_topic(host_id: str) -> str:
    """The topic of a primary host application's `STATE` message (Sparkplug 3.0)."""
    return f"{NAMESPACE}/STATE/{_check_id('host_id', host_id)}"
