"""Sparkplug B, the format: its payload (the protobuf schema, built in code, and typed `Payload` and `Metric`
records) and its topic namespace `spBv1.0/{group}/{message type}/{edge node}[/{device}]`.

Sparkplug B (Eclipse Sparkplug 3.0) carries every message body as a protobuf `Payload` of the schema
`org.eclipse.tahu.protobuf` (Eclipse Tahu's `sparkplug_b.proto`, proto2). The schema is declared here as a
`FileDescriptorProto` with the same package, message names and field numbers, and compiled by the
`protobuf` runtime into message classes at import, so no generated code or `protoc` step is needed. The
runtime's C (upb) parser does the decoding; this module turns its messages into frozen records, so code
past `decode_payload` never sees a protobuf object.

Metric values follow the Sparkplug data types: signed integers travel as two's complement of their width
in the unsigned `int_value` (8, 16, 32 bits) or `long_value` (64 bits) fields and are sign-extended here;
`DateTime` is epoch milliseconds in `long_value`. Data sets, templates and extension values are recognised
but not unpacked (`Metric.value` is None).

Topics: node messages (`NBIRTH`, `NDEATH`, `NDATA`, `NCMD`) have no device part; device messages
(`DBIRTH`, `DDEATH`, `DDATA`, `DCMD`) do. A primary host application announces itself on
`spBv1.0/STATE/{host id}`. Identifiers are UTF-8 text without `/`, `+` or `#`.

Two parts read and write this format: the edge agent's Sparkplug B connector and the simulated edge node.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from shared.errors import ContractError

__all__ = [
    "BD_SEQ_METRIC",
    "MAX_PAYLOAD_BYTES",
    "NAMESPACE",
    "NUMERIC_TYPES",
    "REBIRTH_METRIC",
    "DataType",
    "MessageType",
    "Metric",
    "MetricValue",
    "Payload",
    "PayloadMessage",
    "SparkplugTopic",
    "decode_payload",
    "encode_payload",
    "node_filter",
    "parse_topic",
    "state_topic",
]

MAX_PAYLOAD_BYTES: Final = 16 * 1024 * 1024
REBIRTH_METRIC: Final = "Node Control/Rebirth"
"""The node control metric a host sets (in an `NCMD`) to ask an edge node for its births again."""
BD_SEQ_METRIC: Final = "bdSeq"
"""The birth/death sequence metric: an `NDEATH` belongs to the `NBIRTH` with the same value."""
PACKAGE: Final = "org.eclipse.tahu.protobuf"
_MAX_FIELD_NUMBER = 536_870_912  # protobuf's exclusive upper bound for field numbers (extension ranges)

MetricValue = int | float | bool | str | bytes | None


class DataType(enum.IntEnum):
    """Sparkplug B metric data types (the `datatype` field)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19


NUMERIC_TYPES: Final = frozenset(
    {
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.UINT8,
        DataType.UINT16,
        DataType.UINT32,
        DataType.UINT64,
        DataType.FLOAT,
        DataType.DOUBLE,
        DataType.BOOLEAN,
    }
)
_SIGNED_BITS: Final = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UNSIGNED_BITS: Final = {DataType.UINT8: 8, DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}
_INT_FIELD_TYPES: Final = frozenset(
    {DataType.INT8, DataType.INT16, DataType.INT32, DataType.UINT8, DataType.UINT16, DataType.UINT32}
)
_LONG_FIELD_TYPES: Final = frozenset({DataType.INT64, DataType.UINT64, DataType.DATETIME})
_STRING_TYPES: Final = frozenset({DataType.STRING, DataType.TEXT, DataType.UUID})
_BYTES_TYPES: Final = frozenset({DataType.BYTES, DataType.FILE})


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a Sparkplug B payload.

    Attributes:
        name: the metric's name (in births; data messages may carry only the alias).
        alias: the number standing for the name after the birth certificate, if the node uses aliases.
        timestamp_ms: when the value was taken (UTC epoch ms), if the metric says.
        datatype: the declared data type (in births; often omitted in data messages).
        value: the value: int, float, bool, str or bytes; None when null or not a scalar.
        is_null: the value is explicitly null.
        is_historical: historical data, not a live value.
        is_transient: not to be stored as a tag.
    """

    name: str | None = None
    alias: int | None = None
    timestamp_ms: int | None = None
    datatype: DataType = DataType.UNKNOWN
    value: MetricValue = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False

    @property
    def has_value(self) -> bool:
        """Whether the metric carries a scalar value."""
        return self.value is not None


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded Sparkplug B payload.

    Attributes:
        timestamp_ms: when the message was sent (UTC epoch ms), if given.
        seq: the edge node's message sequence number (0-255), absent in NDEATH.
        metrics: the metrics, in message order.
        uuid: the schema UUID, if given.
        body: the opaque body, if given.
    """

    timestamp_ms: int | None = None
    seq: int | None = None
    metrics: tuple[Metric, ...] = ()
    uuid: str | None = None
    body: bytes | None = None


# --- the schema --------------------------------------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_SCALAR = {
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
_VALUE_FIELDS: tuple[tuple[str, str], ...] = (
    ("uint32", "int_value"),
    ("uint64", "long_value"),
    ("float", "float_value"),
    ("double", "double_value"),
    ("bool", "boolean_value"),
    ("string", "string_value"),
)

# (name, fields, nested messages, oneof name, extensions from): each field is
# (label, type, name, number, in_oneof); a type not in _SCALAR names a message, relative to `Payload`.
_Field = tuple[int, str, str, int, bool]
_MessageSpec = tuple[str, tuple[_Field, ...], tuple[Any, ...], str | None, int | None]


def _value_oneof(first_number: int, extension_type: str) -> tuple[_Field, ...]:
    fields = tuple(
        (_OPTIONAL, kind, name, first_number + i, True) for i, (kind, name) in enumerate(_VALUE_FIELDS)
    )
    return (*fields, (_OPTIONAL, extension_type, "extension_value", first_number + len(fields), True))


def _extension_holder(name: str) -> _MessageSpec:
    return (name, (), (), None, 1)


_PARAMETER: _MessageSpec = (
    "Parameter",
    (
        (_OPTIONAL, "string", "name", 1, False),
        (_OPTIONAL, "uint32", "type", 2, False),
        *_value_oneof(3, "Template.Parameter.ParameterValueExtension"),
    ),
    (_extension_holder("ParameterValueExtension"),),
    "value",
    None,
)
_TEMPLATE: _MessageSpec = (
    "Template",
    (
        (_OPTIONAL, "string", "version", 1, False),
        (_REPEATED, "Metric", "metrics", 2, False),
        (_REPEATED, "Template.Parameter", "parameters", 3, False),
        (_OPTIONAL, "string", "template_ref", 4, False),
        (_OPTIONAL, "bool", "is_definition", 5, False),
    ),
    (_PARAMETER,),
    None,
    6,
)
_DATASET: _MessageSpec = (
    "DataSet",
    (
        (_OPTIONAL, "uint64", "num_of_columns", 1, False),
        (_REPEATED, "string", "columns", 2, False),
        (_REPEATED, "uint32", "types", 3, False),
        (_REPEATED, "DataSet.Row", "rows", 4, False),
    ),
    (
        (
            "DataSetValue",
            _value_oneof(1, "DataSet.DataSetValue.DataSetValueExtension"),
            (_extension_holder("DataSetValueExtension"),),
            "value",
            None,
        ),
        ("Row", ((_REPEATED, "DataSet.DataSetValue", "elements", 1, False),), (), None, 2),
    ),
    None,
    5,
)
_PROPERTY_VALUE: _MessageSpec = (
    "PropertyValue",
    (
        (_OPTIONAL, "uint32", "type", 1, False),
        (_OPTIONAL, "bool", "is_null", 2, False),
        *_value_oneof(3, "PropertyValue.PropertyValueExtension")[:-1],
        (_OPTIONAL, "PropertySet", "propertyset_value", 9, True),
        (_OPTIONAL, "PropertySetList", "propertysets_value", 10, True),
        (_OPTIONAL, "PropertyValue.PropertyValueExtension", "extension_value", 11, True),
    ),
    (_extension_holder("PropertyValueExtension"),),
    "value",
    None,
)
_PROPERTY_SET: _MessageSpec = (
    "PropertySet",
    ((_REPEATED, "string", "keys", 1, False), (_REPEATED, "PropertyValue", "values", 2, False)),
    (),
    None,
    3,
)
_PROPERTY_SET_LIST: _MessageSpec = (
    "PropertySetList",
    ((_REPEATED, "PropertySet", "propertyset", 1, False),),
    (),
    None,
    2,
)
_METADATA: _MessageSpec = (
    "MetaData",
    (
        (_OPTIONAL, "bool", "is_multi_part", 1, False),
        (_OPTIONAL, "string", "content_type", 2, False),
        (_OPTIONAL, "uint64", "size", 3, False),
        (_OPTIONAL, "uint64", "seq", 4, False),
        (_OPTIONAL, "string", "file_name", 5, False),
        (_OPTIONAL, "string", "file_type", 6, False),
        (_OPTIONAL, "string", "md5", 7, False),
        (_OPTIONAL, "string", "description", 8, False),
    ),
    (),
    None,
    9,
)
_METRIC: _MessageSpec = (
    "Metric",
    (
        (_OPTIONAL, "string", "name", 1, False),
        (_OPTIONAL, "uint64", "alias", 2, False),
        (_OPTIONAL, "uint64", "timestamp", 3, False),
        (_OPTIONAL, "uint32", "datatype", 4, False),
        (_OPTIONAL, "bool", "is_historical", 5, False),
        (_OPTIONAL, "bool", "is_transient", 6, False),
        (_OPTIONAL, "bool", "is_null", 7, False),
        (_OPTIONAL, "MetaData", "metadata", 8, False),
        (_OPTIONAL, "PropertySet", "properties", 9, False),
        *_value_oneof(10, "Metric.MetricValueExtension")[:-1],
        (_OPTIONAL, "bytes", "bytes_value", 16, True),
        (_OPTIONAL, "DataSet", "dataset_value", 17, True),
        (_OPTIONAL, "Template", "template_value", 18, True),
        (_OPTIONAL, "Metric.MetricValueExtension", "extension_value", 19, True),
    ),
    (_extension_holder("MetricValueExtension"),),
    "value",
    None,
)
_PAYLOAD: _MessageSpec = (
    "Payload",
    (
        (_OPTIONAL, "uint64", "timestamp", 1, False),
        (_REPEATED, "Metric", "metrics", 2, False),
        (_OPTIONAL, "uint64", "seq", 3, False),
        (_OPTIONAL, "string", "uuid", 4, False),
        (_OPTIONAL, "bytes", "body", 5, False),
    ),
    (_TEMPLATE, _DATASET, _PROPERTY_VALUE, _PROPERTY_SET, _PROPERTY_SET_LIST, _METADATA, _METRIC),
    None,
    6,
)


def _fill_message(target: descriptor_pb2.DescriptorProto, spec: _MessageSpec) -> None:
    name, fields, nested, oneof, extensions_from = spec
    target.name = name
    if oneof is not None:
        target.oneof_decl.add(name=oneof)
    for label, kind, field_name, number, in_oneof in fields:
        field = target.field.add(name=field_name, number=number, label=label)
        if kind in _SCALAR:
            field.type = _SCALAR[kind]
        else:
            field.type = _F.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}.Payload.{kind}"
        if in_oneof:
            field.oneof_index = 0
    for nested_spec in nested:
        _fill_message(target.nested_type.add(), nested_spec)
    if extensions_from is not None:
        target.extension_range.add(start=extensions_from, end=_MAX_FIELD_NUMBER)


def _build_payload_class() -> Any:
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="sparkplug_b.proto", package=PACKAGE, syntax="proto2"
    )
    _fill_message(file_proto.message_type.add(), _PAYLOAD)
    pool = descriptor_pool.DescriptorPool()  # private pool: no clash with another copy of the schema
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Payload"))


PayloadMessage: Final = _build_payload_class()
"""The protobuf class of `org.eclipse.tahu.protobuf.Payload` (for tools that need the raw message)."""


# --- values ------------------------------------------------------------------------------------------------


def _signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def _typed_value(datatype: DataType, which: str | None, metric: Any) -> MetricValue:
    if which is None or which in {"dataset_value", "template_value", "extension_value"}:
        return None
    raw = getattr(metric, which)
    if which in {"int_value", "long_value"}:
        if datatype in _SIGNED_BITS:
            return _signed(raw, _SIGNED_BITS[datatype])
        if datatype in _UNSIGNED_BITS:
            return int(raw) & ((1 << _UNSIGNED_BITS[datatype]) - 1)
    return raw  # type: ignore[no-any-return]  # protobuf's field values are untyped scalars


def _optional(source: Any, field: str) -> Any:
    """A protobuf message's optional field: its value if set, else None."""
    return getattr(source, field) if source.HasField(field) else None


def _set_present(target: Any, **fields: object) -> None:
    """Set a protobuf message's optional fields to the values that are not None (the others stay unset)."""
    for field, value in fields.items():
        if value is not None:
            setattr(target, field, value)


def _metric_from_message(metric: Any) -> Metric:
    datatype_number = metric.datatype
    datatype = DataType(datatype_number) if datatype_number in _DATA_TYPE_NUMBERS else DataType.UNKNOWN
    return Metric(
        name=_optional(metric, "name"),
        alias=_optional(metric, "alias"),
        timestamp_ms=_optional(metric, "timestamp"),
        datatype=datatype,
        value=None if metric.is_null else _typed_value(datatype, metric.WhichOneof("value"), metric),
        is_null=metric.is_null,
        is_historical=metric.is_historical,
        is_transient=metric.is_transient,
    )


_DATA_TYPE_NUMBERS: Final = frozenset(int(member) for member in DataType)


def decode_payload(data: bytes) -> Payload:
    """Decode a Sparkplug B payload.

    Raises:
        ContractError: on oversized or malformed protobuf, naming `payload`.
    """
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError("payload", f"{len(data)} bytes", f"at most {MAX_PAYLOAD_BYTES} bytes")
    parsed = PayloadMessage()
    try:
        parsed.ParseFromString(data)
    except message.DecodeError as exc:
        raise ContractError("payload", bytes(data[:40]), "a Sparkplug B protobuf payload") from exc
    return Payload(
        timestamp_ms=_optional(parsed, "timestamp"),
        seq=_optional(parsed, "seq"),
        metrics=tuple(_metric_from_message(metric) for metric in parsed.metrics),
        uuid=_optional(parsed, "uuid"),
        body=_optional(parsed, "body"),
    )


def _width_mask(datatype: DataType) -> int:
    bits = _SIGNED_BITS.get(datatype) or _UNSIGNED_BITS.get(datatype) or 64
    return (1 << bits) - 1


def _set_value(target: Any, datatype: DataType, value: MetricValue) -> None:
    if isinstance(value, bool) or datatype is DataType.BOOLEAN:
        target.boolean_value = bool(value)
    elif datatype in _INT_FIELD_TYPES:  # two's complement of the declared width, as Tahu encodes it
        target.int_value = int(value) & _width_mask(datatype)  # type: ignore[arg-type]  # by the datatype
    elif datatype in _LONG_FIELD_TYPES:
        target.long_value = int(value) & _width_mask(datatype)  # type: ignore[arg-type]
    elif datatype is DataType.FLOAT:
        target.float_value = float(value)  # type: ignore[arg-type]
    elif datatype is DataType.DOUBLE:
        target.double_value = float(value)  # type: ignore[arg-type]
    elif datatype in _STRING_TYPES:
        target.string_value = str(value)
    elif datatype in _BYTES_TYPES and isinstance(value, bytes):
        target.bytes_value = value
    else:
        raise ContractError("datatype", datatype.name, f"a scalar type able to hold {value!r}")


def encode_payload(payload: Payload) -> bytes:
    """Encode a payload (an edge node publishing, or Forewarn publishing its alerts back).

    Raises:
        ContractError: a metric whose value does not fit its data type.
    """
    out = PayloadMessage()
    _set_present(out, timestamp=payload.timestamp_ms, seq=payload.seq, uuid=payload.uuid, body=payload.body)
    for metric in payload.metrics:
        _fill_metric(out.metrics.add(), metric)
    return bytes(out.SerializeToString())


def _fill_metric(target: Any, metric: Metric) -> None:
    _set_present(target, name=metric.name, alias=metric.alias, timestamp=metric.timestamp_ms)
    if metric.datatype is not DataType.UNKNOWN:
        target.datatype = int(metric.datatype)
    if metric.is_historical:
        target.is_historical = True
    if metric.is_transient:
        target.is_transient = True
    if metric.is_null or metric.value is None:
        target.is_null = True
    else:
        _set_value(target, metric.datatype, metric.value)


# --- topics ------------------------------------------------------------------------------------------------

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
