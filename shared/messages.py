"""Typed message contracts: every JSON message Forewarn sends, defined once, validated when decoded.

Each message carries its kind and schema version in the `kind` tag (`"aggregate/1"`). Evolve a message by
adding fields with defaults at the end; a breaking change is a new tag, and the old one stays decodable for
one release. Raw sample batches have their own binary codec in `shared.raw_batch`.

Each topic family has one `decode_*` function; it raises `ContractError` naming the field and value, and
nothing else, whatever the bytes.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import numpy as np
from msgspec import Meta, Struct

from shared.errors import ContractError
from shared.timebase import MAX_FUTURE_SKEW_NS, MIN_TIMESTAMP_NS, check_time_ns, now_ns
from shared.topics import IDENT_PATTERN

__all__ = [
    "MAX_BLOCK_ROWS",
    "MAX_DIAGNOSIS_CONFIG_CHARS",
    "MAX_MESSAGE_BYTES",
    "Aggregate",
    "AggregateBlock",
    "Alert",
    "AlertDiagnosis",
    "AlertUpdate",
    "ConnectorStatus",
    "Contribution",
    "DeploymentAck",
    "DiagnosisEvidence",
    "FeatureStats",
    "GoldenPair",
    "MaintenanceEvent",
    "ModelDeployment",
    "ModelManifest",
    "ModelRef",
    "ScoreStats",
    "Snapshot",
    "Status",
    "Uplink",
    "UplinkBatch",
    "decode_connector_status",
    "decode_deployment",
    "decode_event",
    "decode_manifest",
    "decode_uplink",
    "decode_uplink_batch",
    "deflate_batch",
    "encode",
    "uplink_rows",
]

MAX_MESSAGE_BYTES = 1 << 20
MAX_SNAPSHOT_SAMPLES = 65_536
MAX_DIAGNOSIS_CONFIG_CHARS = (
    16_384  # an asset diagnosis configuration as JSON: a few bearings, well under this
)
MAX_BLOCK_ROWS = 10_000
MAX_FEATURE_VALUE = 1e15

# a range check also rejects NaN and inf
FiniteFloat = Annotated[float, Meta(ge=-MAX_FEATURE_VALUE, le=MAX_FEATURE_VALUE)]
Ident = Annotated[str, Meta(pattern=IDENT_PATTERN)]
FEATURE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,96}$"
FeatureName = Annotated[str, Meta(pattern=FEATURE_NAME_PATTERN)]
# Aggregate feature keys: a length check while decoding, the pattern once per distinct set of names after
# (a gateway repeats the same names in every aggregate; a regex per key per row was half the decode time).
_FeatureKey = Annotated[str, Meta(min_length=1, max_length=96)]
_FEATURE_NAME = re.compile(FEATURE_NAME_PATTERN)
Seq = Annotated[int, Meta(ge=0, le=2**63 - 1)]
TimestampNs = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Version = Annotated[int, Meta(ge=1, le=2**31 - 1)]
Sha256Hex = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, Meta(max_length=1000)]
ModelKind = Literal["baseline", "onnx"]


class FeatureStats(Struct, frozen=True, array_like=True):
    """Summary of one feature over an aggregation period, encoded as `[mean, min, max]`."""

    mean: FiniteFloat
    min: FiniteFloat
    max: FiniteFloat


class ScoreStats(Struct, frozen=True, kw_only=True):
    """Summary of the anomaly scores of the windows in a period."""

    mean: FiniteFloat
    max: FiniteFloat
    threshold: FiniteFloat
    n_windows: Annotated[int, Meta(ge=0)]
    n_above_threshold: Annotated[int, Meta(ge=0)]


class Aggregate(Struct, frozen=True, kw_only=True, tag_field="kind", tag="aggregate/1"):
    """One asset's features and anomaly scores summarised over one period (default 10 s)."""

    gateway_id: Ident
    asset_id: Ident
    seq: Seq
    period_start_ns: TimestampNs
    period_end_ns: TimestampNs
    feature_spec: ShortText
    features: Annotated[dict[_FeatureKey, FeatureStats], Meta(max_length=4096)]
    score: ScoreStats
    model_version: ShortText
    model_kind: ModelKind


class Contribution(Struct, frozen=True, kw_only=True):
    """How much one feature pushed a window's score up."""

    feature: FeatureName
    value: FiniteFloat
    contribution: FiniteFloat


class DiagnosisEvidence(Struct, frozen=True, kw_only=True):
    """One tested observation behind a diagnosis: a peak or a level, its noise floor and baseline."""

    name: Annotated[str, Meta(max_length=96)]
    value: FiniteFloat
    freq_hz: FiniteFloat | None = None
    floor: FiniteFloat | None = None
    baseline: FiniteFloat | None = None
    is_found: bool = False


class AlertDiagnosis(Struct, frozen=True, kw_only=True):
    """The probable failure mode of the window that raised an alert (`shared.diagnosis`), with its evidence,
    and the ISO 20816-3 severity zone shown beside the learned score."""

    mode: Annotated[str, Meta(pattern=r"^[a-z_]{1,32}(:[A-Za-z0-9_.-]{1,64})?$")]
    confidence: Annotated[float, Meta(ge=0.0, le=1.0)]
    evidence: Annotated[list[DiagnosisEvidence], Meta(max_length=32)] = []
    shaft_hz: FiniteFloat | None = None
    velocity_rms_mm_s: FiniteFloat | None = None
    iso_zone: Literal["A", "B", "C", "D"] | None = None


AlertId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]


class Alert(Struct, frozen=True, kw_only=True, tag_field="kind", tag="alert/1"):
    """An alert raised for, or cleared on, one asset.

    `diagnosis` was added to `alert/1` with a default (append-only evolution): older gateways omit it and
    older decoders ignore it.
    """

    gateway_id: Ident
    asset_id: Ident
    seq: Seq
    alert_id: AlertId
    state: Literal["raised", "cleared"]
    severity: Literal["info", "warning", "critical"]
    ts_ns: TimestampNs
    score: FiniteFloat
    threshold: FiniteFloat
    model_version: ShortText
    model_kind: ModelKind
    top_features: Annotated[list[Contribution], Meta(max_length=32)] = []
    message: ShortText = ""
    diagnosis: AlertDiagnosis | None = None


class AlertUpdate(Struct, frozen=True, kw_only=True, tag_field="kind", tag="alert-update/1"):
    """A new diagnosis of an alert that is still raised: the same `alert_id`, not a new alert.

    A kind of its own rather than a third `Alert.state`: `alert/1`'s `state` keeps its type, so every
    reader of raised and cleared alerts (annunciators, older clouds) is unchanged, and a reader that does
    not know this kind refuses it as an unknown kind instead of mistaking it for a raise or a clear.
    `reason` is `changed` (the mode changed, or the confidence moved by more than the asset's
    `rediagnose_confidence_change`) or `unchanged` (the periodic confirmation that the diagnosis holds).
    `ts_ns`, `score` and `severity` are those of the re-diagnosed window.
    """

    gateway_id: Ident
    asset_id: Ident
    seq: Seq
    alert_id: AlertId
    ts_ns: TimestampNs
    reason: Literal["changed", "unchanged"]
    severity: Literal["info", "warning", "critical"]
    score: FiniteFloat
    threshold: FiniteFloat
    model_version: ShortText
    model_kind: ModelKind
    diagnosis: AlertDiagnosis
    message: ShortText = ""


class Snapshot(Struct, frozen=True, kw_only=True, tag_field="kind", tag="snapshot/1"):
    """A short raw waveform around an alert, so an engineer can see what triggered it.

    `diagnosis_config` (appended to `snapshot/1` with a default) is the asset's diagnosis configuration as
    `shared.asset_config.encode_asset_config` writes it, so the cloud re-diagnoses the waveform with the
    bearings and speed the gateway knows; empty when the asset has no diagnosis section. It is read (and
    a bad one recorded) by the cloud's diagnosis job, not at decode, so a bad configuration never costs
    the waveform.
    """

    gateway_id: Ident
    asset_id: Ident
    sensor: Ident
    seq: Seq
    alert_id: ShortText
    start_ns: TimestampNs
    sample_rate_hz: Annotated[float, Meta(gt=0.0, le=1e7)]
    samples: Annotated[list[FiniteFloat], Meta(min_length=1, max_length=MAX_SNAPSHOT_SAMPLES)]
    diagnosis_config: Annotated[str, Meta(max_length=MAX_DIAGNOSIS_CONFIG_CHARS)] = ""


class Status(Struct, frozen=True, kw_only=True, tag_field="kind", tag="status/1"):
    """A gateway heartbeat (retained); with `state="offline"` it is also the gateway's MQTT last will."""

    gateway_id: Ident
    ts_ns: TimestampNs
    state: Literal["online", "offline"]
    seq: Seq | None = None
    uptime_s: Annotated[float, Meta(ge=0.0, le=1e10)] = 0.0
    metrics: Annotated[dict[FeatureName, FiniteFloat], Meta(max_length=1024)] = {}
    model_versions: Annotated[dict[Ident, ShortText], Meta(max_length=4096)] = {}
    cpu_percent: Annotated[float, Meta(ge=0.0, le=1e5)] = 0.0
    memory_bytes: Annotated[int, Meta(ge=0)] = 0


class DeploymentAck(Struct, frozen=True, kw_only=True, tag_field="kind", tag="deploy-ack/1"):
    """A gateway's answer to a model deployment: swapped in, or refused with the reason."""

    gateway_id: Ident
    seq: Seq
    target: Ident
    version: Version
    ok: bool
    reason: ShortText
    ts_ns: TimestampNs


class MaintenanceEvent(Struct, frozen=True, kw_only=True, tag_field="kind", tag="event/1"):
    """A maintenance action or a failure on an asset (from a CMMS, an operator or the simulator)."""

    asset_id: Ident
    ts_ns: TimestampNs
    event: Literal["failure", "maintenance"]
    mode: ShortText = ""
    source: ShortText = ""
    note: ShortText = ""


class GoldenPair(Struct, frozen=True, array_like=True):
    """A model input row and the score the model must produce for it."""

    features: list[FiniteFloat]
    score: FiniteFloat


class ModelManifest(Struct, frozen=True, kw_only=True, tag_field="kind", tag="manifest/1"):
    """What a model artifact is and what it expects: the edge agent scores only matching feature vectors."""

    target: Ident
    version: Version
    model_type: ShortText
    artifact_sha256: Sha256Hex
    feature_spec: ShortText
    feature_names: Annotated[list[FeatureName], Meta(min_length=1, max_length=4096)]
    threshold: FiniteFloat
    input_name: ShortText = "features"
    output_name: ShortText = "score"
    quantization: ShortText = "int8"
    created_ns: TimestampNs = 0
    golden: Annotated[list[GoldenPair], Meta(max_length=256)] = []


class ModelDeployment(Struct, frozen=True, kw_only=True, tag_field="kind", tag="deployment/1"):
    """A signed order to run a model: the manifest as signed text, its signature, and how it is chunked."""

    target: Ident
    version: Version
    manifest_json: Annotated[str, Meta(max_length=MAX_MESSAGE_BYTES)]
    signature_b64: Annotated[str, Meta(max_length=256)]
    chunk_count: Annotated[int, Meta(ge=1, le=100_000)]
    artifact_bytes: Annotated[int, Meta(ge=1)]
    is_rollback: bool = False


class ModelRef(Struct, frozen=True, array_like=True):
    """The model that scored an aggregate's windows, encoded as `[version, kind]`."""

    version: ShortText
    kind: ModelKind


RowIndex = Annotated[int, Meta(ge=0, lt=MAX_BLOCK_ROWS)]
NonNegative = Annotated[int, Meta(ge=0)]


class AggregateBlock(Struct, frozen=True, kw_only=True, tag_field="kind", tag="aggregates/1"):
    """Many of one gateway's aggregates with the same feature set, column by column.

    Row `i` is the aggregate of asset `assets[asset[i]]` with sequence number `seq[i]`, and so on for every
    per-row list; the feature statistics of all rows are one little-endian float32 array of shape
    (rows, 3, features) (mean, min, max), base64 in JSON. Feature names, asset ids and model names are
    sent once per block instead of once per row: this is what a gateway sends for a backlog or a fleet's
    period, at about a third of the bytes of the same rows as `Aggregate`s, and it decodes without a
    Python object per value. Build and unpack blocks with `shared.aggregate_block`.
    """

    gateway_id: Ident
    feature_spec: ShortText
    feature_names: Annotated[list[_FeatureKey], Meta(max_length=4096)]  # none: periods without windows
    assets: Annotated[list[Ident], Meta(min_length=1, max_length=MAX_BLOCK_ROWS)]
    models: Annotated[list[ModelRef], Meta(min_length=1, max_length=MAX_BLOCK_ROWS)]
    asset: Annotated[list[RowIndex], Meta(min_length=1, max_length=MAX_BLOCK_ROWS)]
    model: list[RowIndex]
    seq: list[Seq]
    period_start_ns: list[TimestampNs]
    period_end_ns: list[TimestampNs]
    score_mean: list[FiniteFloat]
    score_max: list[FiniteFloat]
    threshold: list[FiniteFloat]
    n_windows: list[NonNegative]
    n_above_threshold: list[NonNegative]
    stats: Annotated[bytes, Meta(max_length=MAX_MESSAGE_BYTES)]

    def __len__(self) -> int:
        """The number of rows (aggregates) in the block."""
        return len(self.asset)


Counter = Annotated[int, Meta(ge=0, le=2**63 - 1)]
ReasonCounts = Annotated[dict[FeatureName, Counter], Meta(max_length=256)]


class ConnectorStatus(Struct, frozen=True, kw_only=True, tag_field="kind", tag="connector-status/1"):
    """A plant connector's heartbeat (retained on the plant broker); with `state="offline"` also its last
    will. Counters are cumulative since the connector started.

    `values_read` counts values taken from the source, `values_published` samples handed to the broker in
    raw batches; `rejected` counts source values not used, by reason (`bad_quality`, `modbus_exception`,
    `timeout`, `unreadable_file`, ...), `dropped` samples lost on our side, by reason (`buffer_full`,
    `broker_offline`); `gaps` counts breaks in a polled or subscribed stream.
    """

    connector_id: Ident
    connector_kind: Ident
    ts_ns: TimestampNs
    state: Literal["online", "offline"]
    seq: Seq = 0
    uptime_s: Annotated[float, Meta(ge=0.0, le=1e10)] = 0.0
    source_connected: bool = False
    broker_connected: bool = False
    values_read: Counter = 0
    values_published: Counter = 0
    batches_published: Counter = 0
    rejected: ReasonCounts = {}
    dropped: ReasonCounts = {}
    reconnects: Counter = 0
    gaps: Counter = 0
    last_error: ShortText = ""
    last_error_ns: TimestampNs = 0


Uplink = Aggregate | AggregateBlock | Alert | AlertUpdate | Snapshot | Status | DeploymentAck
MAX_BATCH_MESSAGES = 10_000


class UplinkBatch(Struct, frozen=True, kw_only=True, tag_field="kind", tag="batch/1"):
    """Several of one gateway's uplink messages, in `seq` order, in one MQTT message.

    A gateway with a backlog, or many assets per period, sends fewer, larger messages: the cost of MQTT and
    of acknowledging is per message, so batching is what lets ingest keep up with a fleet. Each member keeps
    its own `seq`, so idempotent ingest works per member exactly as for single messages.
    """

    gateway_id: Ident
    messages: Annotated[list[Uplink], Meta(min_length=1, max_length=MAX_BATCH_MESSAGES)]


_ENCODER = msgspec.json.Encoder()
_UPLINK: msgspec.json.Decoder[Uplink] = msgspec.json.Decoder(Uplink)
_BATCH = msgspec.json.Decoder(UplinkBatch)
_EVENT = msgspec.json.Decoder(MaintenanceEvent)
_DEPLOYMENT = msgspec.json.Decoder(ModelDeployment)
_MANIFEST = msgspec.json.Decoder(ModelManifest)
_CONNECTOR_STATUS = msgspec.json.Decoder(ConnectorStatus)


def encode(message: Struct) -> bytes:
    """Encode any message of this module as JSON."""
    return _ENCODER.encode(message)


_T = TypeVar("_T")


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ContractError("payload", f"{len(payload)} bytes", f"at most {MAX_MESSAGE_BYTES} bytes")


def _decode(decoder: msgspec.json.Decoder[_T], payload: bytes) -> _T:
    _check_size(payload)
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:  # its text names the path, e.g. `$.seq`
        raise ContractError.from_validation(exc, payload) from exc
    except msgspec.DecodeError as exc:
        raise ContractError("payload", bytes(payload[:40]), "valid JSON") from exc


@functools.lru_cache(maxsize=1024)
def _bad_feature_name(names: tuple[str, ...]) -> str | None:
    """The first name of `names` that breaks the feature-name pattern, or None (cached per set of names)."""
    return next((name for name in names if not _FEATURE_NAME.match(name)), None)


def _check_feature_names(message: Any) -> None:
    if isinstance(message, Aggregate):
        bad = _bad_feature_name(tuple(message.features))
        if bad is not None:
            raise ContractError("features", bad, f"feature names matching {FEATURE_NAME_PATTERN}")
    elif isinstance(message, AggregateBlock):
        names = tuple(message.feature_names)
        bad = _bad_feature_name(names)
        if bad is not None:
            raise ContractError("feature_names", bad, f"feature names matching {FEATURE_NAME_PATTERN}")
        if _has_duplicates(names):
            raise ContractError("feature_names", names, "distinct feature names")


@functools.lru_cache(maxsize=1024)
def _has_duplicates(names: tuple[str, ...]) -> bool:
    return len(set(names)) != len(names)


_BLOCK_ROW_FIELDS = (
    "model",
    "seq",
    "period_start_ns",
    "period_end_ns",
    "score_mean",
    "score_max",
    "threshold",
    "n_windows",
    "n_above_threshold",
)


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _check_block(block: AggregateBlock, reference_ns: int | None) -> None:
    """The columns of `block` agree with each other; its times and statistics are plausible (vectorised)."""
    rows = len(block.asset)
    for name in _BLOCK_ROW_FIELDS:
        if len(getattr(block, name)) != rows:
            raise ContractError(name, f"{len(getattr(block, name))} values", f"one per row ({rows})")
    for name, table in (("asset", block.assets), ("model", block.models)):
        index = np.asarray(getattr(block, name), dtype=np.int64)
        if int(index.max()) >= len(table):
            at = _first(index >= len(table))
            raise ContractError(f"{name}[{at}]", int(index[at]), f"an index into {name}s (< {len(table)})")
    latest = (now_ns() if reference_ns is None else reference_ns) + MAX_FUTURE_SKEW_NS
    starts = np.asarray(block.period_start_ns, dtype=np.int64)
    ends = np.asarray(block.period_end_ns, dtype=np.int64)
    for name, times in (("period_start_ns", starts), ("period_end_ns", ends)):
        outside = (times < MIN_TIMESTAMP_NS) | (times > latest)
        if outside.any():
            at = _first(outside)
            check_time_ns(f"{name}[{at}]", int(times[at]), reference_ns=reference_ns)  # raises
    if (ends < starts).any():
        at = _first(ends < starts)
        raise ContractError(f"period_end_ns[{at}]", int(ends[at]), "period_end_ns >= period_start_ns")
    per_row = 3 * len(block.feature_names)
    if len(block.stats) != rows * per_row * 4:
        raise ContractError(
            "stats", f"{len(block.stats)} bytes", f"{rows} rows x 3 x {len(block.feature_names)} float32"
        )
    stats = np.frombuffer(block.stats, dtype="<f4")
    bad = ~(np.abs(stats) <= MAX_FEATURE_VALUE)  # NaN compares False: caught too
    if bad.any():
        at = _first(bad)
        raise ContractError(
            f"stats[{at // per_row}]", float(stats[at]), f"finite values within +-{MAX_FEATURE_VALUE:g}"
        )


def uplink_rows(message: object) -> int:
    """How many rows a message carries: a block's aggregates, else one."""
    return len(message) if isinstance(message, AggregateBlock) else 1


_TIME_FIELDS: dict[type, tuple[str, ...]] = {
    Aggregate: ("period_start_ns", "period_end_ns"),
    Alert: ("ts_ns",),
    AlertUpdate: ("ts_ns",),
    Snapshot: ("start_ns",),
    Status: ("ts_ns",),
    DeploymentAck: ("ts_ns",),
    MaintenanceEvent: ("ts_ns",),
    ConnectorStatus: ("ts_ns",),
}


def _check_times(message: Any, reference_ns: int | None) -> None:
    """Every timestamp of `message` is plausible (see `shared.timebase`); periods do not run backwards."""
    latest = (now_ns() if reference_ns is None else reference_ns) + MAX_FUTURE_SKEW_NS
    for field in _TIME_FIELDS.get(type(message), ()):
        value = getattr(message, field)
        if not MIN_TIMESTAMP_NS <= value <= latest:
            check_time_ns(field, value, reference_ns=reference_ns)  # raises, naming the field and the rule
    if isinstance(message, Aggregate) and message.period_end_ns < message.period_start_ns:
        raise ContractError("period_end_ns", message.period_end_ns, "period_end_ns >= period_start_ns")


def _check_uplink(message: Uplink, reference_ns: int | None) -> None:
    """What the types alone cannot say about an uplink message: times, a block's columns, feature names."""
    _check_times(message, reference_ns)
    if isinstance(message, AggregateBlock):
        _check_block(message, reference_ns)
    _check_feature_names(message)


def decode_uplink(payload: bytes, *, reference_ns: int | None = None) -> Uplink:
    """Decode anything a gateway sends upstream.

    Raises:
        ContractError: naming the first field that breaks the contract.
    """
    message = _decode(_UPLINK, payload)
    _check_uplink(message, reference_ns)
    return message


_ZLIB_FIRST_BYTE = 0x78  # deflate with a 32 KiB window: what `zlib.compress` writes; JSON starts with `{`


def deflate_batch(payload: bytes, *, level: int = 6) -> bytes:
    """An encoded uplink batch compressed with zlib, as `decode_uplink_batch` accepts it."""
    return zlib.compress(payload, level)


def _inflate(payload: bytes) -> bytes:
    """A zlib-compressed batch inflated, at most `MAX_MESSAGE_BYTES` of it (a bomb is refused, not
    inflated); anything else unchanged."""
    if not payload or payload[0] != _ZLIB_FIRST_BYTE:
        return payload
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(payload, MAX_MESSAGE_BYTES + 1)
    except zlib.error as exc:
        raise ContractError("payload", bytes(payload[:40]), f"valid zlib-compressed JSON ({exc})") from exc
    if len(inflated) > MAX_MESSAGE_BYTES or inflater.unconsumed_tail:
        raise ContractError("payload", f"{len(payload)} bytes", f"at most {MAX_MESSAGE_BYTES} bytes inflated")
    if not inflater.eof:
        raise ContractError("payload", f"{len(payload)} bytes", "a complete zlib stream")
    return inflated


def decode_uplink_batch(payload: bytes, *, reference_ns: int | None = None) -> UplinkBatch:
    """Decode a gateway's uplink batch (JSON, or JSON compressed with zlib: `deflate_batch`); every member
    must name the batch's gateway.

    Raises:
        ContractError: naming the first field that breaks the contract (`messages[3].seq`, ...).
    """
    _check_size(payload)
    batch = _decode(_BATCH, _inflate(payload))
    reference_ns = now_ns() if reference_ns is None else reference_ns
    for index, message in enumerate(batch.messages):
        if message.gateway_id != batch.gateway_id:
            raise ContractError(
                f"messages[{index}].gateway_id",
                message.gateway_id,
                f"the batch's gateway {batch.gateway_id!r}",
            )
        try:
            _check_uplink(message, reference_ns)
        except ContractError as exc:
            raise ContractError(f"messages[{index}].{exc.field}", exc.value, exc.expected) from exc
    return batch


def decode_event(payload: bytes, *, reference_ns: int | None = None) -> MaintenanceEvent:
    """Decode a maintenance or failure event.

    Raises:
        ContractError: naming the first field that breaks the contract.
    """
    message = _decode(_EVENT, payload)
    _check_times(message, reference_ns)
    return message


def decode_deployment(payload: bytes) -> ModelDeployment:
    """Decode a model deployment order (its signature is checked by the receiver, not here).

    Raises:
        ContractError: naming the first field that breaks the contract.
    """
    return _decode(_DEPLOYMENT, payload)


def decode_manifest(payload: bytes | str) -> ModelManifest:
    """Decode a model manifest.

    Raises:
        ContractError: naming the first field that breaks the contract.
    """
    return _decode(_MANIFEST, payload.encode() if isinstance(payload, str) else payload)


def decode_connector_status(payload: bytes, *, reference_ns: int | None = None) -> ConnectorStatus:
    """Decode a plant connector's heartbeat.

    Raises:
        ContractError: naming the first field that breaks the contract.
    """
    message = _decode(_CONNECTOR_STATUS, payload)
    _check_times(message, reference_ns)
    return message
