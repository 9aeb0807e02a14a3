"""Settings of the plant connectors (`forewarn connect KIND --config FILE`), one component per connector.

Every connector's settings derive from `ConnectorSettings`: its id (in the heartbeat topic and the MQTT
client id), the plant broker (`mqtt`), how samples are batched and published (`publishing`) and the
heartbeat (`health`). Each connector adds its source and the mapping of its channels to Forewarn's asset
and sensor names, with a linear calibration (`value = raw * scale + offset`).

Layered as every component's: defaults < TOML file < `FOREWARN_CONNECT_<KIND>_*` environment (nested with
`__`) < command-line overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.config import ComponentSettings, MqttSettings
from shared.raw_batch import MAX_SAMPLE_RATE_HZ, MAX_SAMPLES_PER_BATCH
from shared.topics import IDENT_PATTERN

__all__ = [
    "MODBUS_WORDS",
    "ChannelTarget",
    "ConnectorSettings",
    "FileChannel",
    "FilesConnectorSettings",
    "HealthSettings",
    "ModbusConnectorSettings",
    "ModbusRegister",
    "OpcUaConnectorSettings",
    "OpcUaNode",
    "OpcUaSecuritySettings",
    "PublishingSettings",
    "SparkplugConnectorSettings",
    "SparkplugMetricMap",
    "SparkplugPublishBackSettings",
]


class PublishingSettings(BaseModel, frozen=True, extra="forbid"):
    """How values become raw batches on the plant broker (`edge_agent.connectors.publishing`)."""

    max_batch_samples: int = Field(
        4096, ge=1, le=MAX_SAMPLES_PER_BATCH, description="Most samples in one raw batch."
    )
    max_delay_s: float = Field(
        1.0, gt=0.0, le=3600.0, description="Longest a polled value waits in an open batch before it is sent."
    )
    gap_tolerance: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description=(
            "How far (in sample periods) a polled value may be off its nominal time and still extend the open"
            " batch; farther closes the batch (later: counted as a gap)."
        ),
    )
    max_buffered_samples: int = Field(
        4_000_000,
        ge=1,
        description="Samples held waiting to be published; beyond it new values are dropped and counted.",
    )
    max_unpublished_messages: int = Field(
        64, ge=1, le=65535, description="Raw batches handed to the MQTT client and not yet written."
    )
    connect_timeout_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="How long to wait for the broker at start-up."
    )


class HealthSettings(BaseModel, frozen=True, extra="forbid"):
    """The connector's heartbeat (`shared.messages.ConnectorStatus`, retained)."""

    interval_s: float = Field(10.0, gt=0.0, le=3600.0, description="Seconds between heartbeats.")


class ChannelTarget(BaseModel, frozen=True, extra="forbid"):
    """Where a source channel's values go, and their calibration: `value = raw * scale + offset`."""

    asset_id: str = Field(pattern=IDENT_PATTERN, description="Asset id the values are published under.")
    sensor: str = Field(pattern=IDENT_PATTERN, description="Sensor name on that asset.")
    scale: float = Field(1.0, allow_inf_nan=False, description="Multiplies the raw value (units conversion).")
    offset: float = Field(0.0, allow_inf_nan=False, description="Added after scaling.")


class ConnectorSettings(ComponentSettings):
    """What every connector has: its id, the plant broker, publishing and the heartbeat."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_CONNECT_")
    component: ClassVar[str] = "connect"
    kind: ClassVar[str] = "connector"

    connector_id: str = Field(
        "connector", pattern=IDENT_PATTERN, description="This connector's id (heartbeat topic, client id)."
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="The plant broker.")
    publishing: PublishingSettings = Field(default_factory=PublishingSettings, description="Raw batches.")
    health: HealthSettings = Field(default_factory=HealthSettings, description="The heartbeat.")


# --- recorded files ----------------------------------------------------------------------------------------


class FileChannel(ChannelTarget, frozen=True, extra="forbid"):
    """One channel of recorded files and where it goes.

    `channel` names the channel inside a file: a WAV channel's index (`"0"`), a TDMS `group/channel`, or a
    CSV `asset_id/sensor` column pair (CSV channels without a mapping keep their own names, see
    `csv_passthrough`).
    """

    match: str = Field("*", min_length=1, description="Glob on the file name this mapping applies to.")
    channel: str = Field(min_length=1, description="WAV index, TDMS `group/channel`, or CSV `asset/sensor`.")
    sample_rate_hz: float | None = Field(
        None,
        gt=0.0,
        le=MAX_SAMPLE_RATE_HZ,
        description="Rate when the file does not say (a TDMS channel without `wf_increment`).",
    )


class FilesConnectorSettings(ConnectorSettings):
    """`forewarn connect files`: recordings dropped in a folder (WAV, CSV, TDMS)."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_CONNECT_FILES_")
    component: ClassVar[str] = "connect-files"
    kind: ClassVar[str] = "files"

    connector_id: str = Field("files", pattern=IDENT_PATTERN, description="This connector's id.")
    watch_dir: Path = Field(Path("/var/lib/forewarn/recordings/inbox"), description="Folder watched.")
    done_dir: Path = Field(
        Path("/var/lib/forewarn/recordings/done"), description="Where a file goes once fully published."
    )
    quarantine_dir: Path = Field(
        Path("/var/lib/forewarn/recordings/quarantine"),
        description="Where an unreadable file goes, with `<name>.reason.txt` next to it.",
    )
    state_file: Path = Field(
        Path("/var/lib/forewarn/recordings/progress.json"),
        description="Durable progress record: what is done and how far the current file got.",
    )
    patterns: tuple[str, ...] = Field(
        ("*.wav", "*.csv", "*.tdms"), min_length=1, description="File name globs picked up."
    )
    poll_interval_s: float = Field(1.0, gt=0.0, le=3600.0, description="Seconds between folder scans.")
    settle_s: float = Field(
        2.0, ge=0.0, le=3600.0, description="Seconds a file must stay unchanged before it is read."
    )
    speed: float = Field(
        1.0,
        ge=0.0,
        le=1e6,
        description="Recorded seconds published per wall second; 0: as fast as the broker takes them.",
    )
    checkpoint_s: float = Field(
        1.0, gt=0.0, le=3600.0, description="Seconds between progress records within one file."
    )
    start_time: Literal["file_mtime", "now"] = Field(
        "file_mtime",
        description=(
            "Time of the first sample of a file that carries none (WAV, TDMS without `wf_start_time`):"
            " `file_mtime` (the recording ended when the file was last written) or `now`."
        ),
    )
    csv_passthrough: bool = Field(
        True, description="Publish CSV columns without a mapping under their own asset and sensor names."
    )
    channels: tuple[FileChannel, ...] = Field((), description="Channel mappings ([[channels]] tables).")

    @model_validator(mode="after")
    def _folders_differ(self) -> Self:
        folders = {self.watch_dir.resolve(), self.done_dir.resolve(), self.quarantine_dir.resolve()}
        if len(folders) < 3:
            raise ValueError("watch_dir, done_dir and quarantine_dir must be three different folders")
        return self


# --- Modbus TCP --------------------------------------------------------------------------------------------

ModbusDataType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
MODBUS_WORDS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}


class ModbusRegister(ChannelTarget, frozen=True, extra="forbid"):
    """One value read from a Modbus server: where, how it is encoded, and where it goes."""

    address: int = Field(ge=0, le=65535, description="First register (0-based protocol address).")
    table: Literal["holding", "input"] = Field("holding", description="Holding or input registers.")
    data_type: ModbusDataType = Field("uint16", description="How the registers encode the value.")
    byte_order: Literal["big", "little"] = Field("big", description="Byte order inside each register.")
    word_order: Literal["big", "little"] = Field(
        "big", description="Register order of multi-register values (big: most significant first)."
    )
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id.")

    @model_validator(mode="after")
    def _fits_the_address_space(self) -> Self:
        last = self.address + MODBUS_WORDS[self.data_type] - 1
        if last > 65535:
            raise ValueError(f"a {self.data_type} at address {self.address} runs past register 65535")
        return self


class ModbusConnectorSettings(ConnectorSettings):
    """`forewarn connect modbus`: registers of a Modbus TCP server polled at a fixed rate."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_CONNECT_MODBUS_")
    component: ClassVar[str] = "connect-modbus"
    kind: ClassVar[str] = "modbus"

    connector_id: str = Field("modbus", pattern=IDENT_PATTERN, description="This connector's id.")
    host: str = Field("127.0.0.1", description="Modbus TCP server host.")
    port: int = Field(502, ge=1, le=65535, description="Modbus TCP server port.")
    poll_rate_hz: float = Field(
        10.0, gt=0.0, le=1000.0, description="Polls per second; also each value's nominal sample rate."
    )
    timeout_s: float = Field(1.0, gt=0.0, le=60.0, description="Timeout of one request.")
    reconnect_min_s: float = Field(0.5, gt=0.0, le=60.0, description="First reconnect delay; doubles.")
    reconnect_max_s: float = Field(10.0, gt=0.0, le=3600.0, description="Longest reconnect delay.")
    max_registers_per_read: int = Field(
        125, ge=1, le=125, description="Most registers in one read request (125 is the protocol's limit)."
    )
    registers: tuple[ModbusRegister, ...] = Field((), description="Values to poll ([[registers]] tables).")


# --- OPC UA ------------------------------------------------------------------------------------------------

OpcUaSecurityPolicy = Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"]
OpcUaSecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


class OpcUaNode(ChannelTarget, frozen=True, extra="forbid"):
    """One OPC UA variable, how the server samples it, and where its values go."""

    node_id: str = Field(min_length=1, description="Node id, e.g. `ns=2;s=Pump7.Vibration` or `i=2258`.")
    sampling_interval_ms: float = Field(
        100.0, ge=0.0, le=3_600_000.0, description="Server-side sampling interval (0: the server's fastest)."
    )
    queue_size: int = Field(
        10,
        ge=0,
        le=65535,
        description="Samples the server keeps between two publishes (so none is lost to a slow publish).",
    )
    deadband: Literal["none", "absolute", "percent"] = Field(
        "none", description="Report a change only beyond the deadband (`percent` of the EU range)."
    )
    deadband_value: float = Field(0.0, ge=0.0, allow_inf_nan=False, description="The deadband's width.")
    sample_rate_hz: float | None = Field(
        None,
        gt=0.0,
        le=MAX_SAMPLE_RATE_HZ,
        description="Nominal rate of the published stream; empty: from the sampling interval or poll rate.",
    )


class OpcUaSecuritySettings(BaseModel, frozen=True, extra="forbid"):
    """Message security of the OPC UA secure channel (certificates)."""

    policy: OpcUaSecurityPolicy = Field("None", description="Security policy; `None`: no certificates.")
    mode: OpcUaSecurityMode = Field("None", description="`Sign` or `SignAndEncrypt` (with a policy).")
    certificate: Path | None = Field(None, description="This client's application certificate (DER/PEM).")
    private_key: Path | None = Field(None, description="Its private key (PEM/DER).")
    private_key_password: SecretStr = Field(SecretStr(""), description="Password of the private key.")
    server_certificate: Path | None = Field(
        None, description="The server's certificate; empty: the one its endpoint offers (trust on first use)."
    )
    generate_certificate: bool = Field(
        True, description="Create a self-signed certificate and key at those paths if they do not exist."
    )
    application_uri: str = Field(
        "urn:forewarn:connector:opcua",
        min_length=1,
        description="This client's application URI (in its certificate; servers check they match).",
    )

    @model_validator(mode="after")
    def _policy_and_mode_agree(self) -> Self:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(f"security policy {self.policy} and mode {self.mode}: both None or neither")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError("a security policy needs certificate and private_key paths")
        return self


class OpcUaConnectorSettings(ConnectorSettings):
    """`forewarn connect opcua`: variables of an OPC UA server, by subscription or polling."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_CONNECT_OPCUA_")
    component: ClassVar[str] = "connect-opcua"
    kind: ClassVar[str] = "opcua"

    connector_id: str = Field("opcua", pattern=IDENT_PATTERN, description="This connector's id.")
    endpoint: str = Field(
        "opc.tcp://127.0.0.1:4840/", pattern=r"^opc\.tcp://", description="The server's endpoint URL."
    )
    acquisition: Literal["auto", "subscription", "polling"] = Field(
        "auto", description="`auto`: subscribe, and poll if the server refuses subscriptions."
    )
    publishing_interval_ms: float = Field(
        100.0, gt=0.0, le=3_600_000.0, description="How often the server sends a subscription's changes."
    )
    poll_rate_hz: float = Field(10.0, gt=0.0, le=1000.0, description="Reads per second when polling.")
    timestamps: Literal["source", "server", "received"] = Field(
        "source",
        description="A value's time: `source` (else the server's, else ours), `server`, `received` (ours).",
    )
    username: str = Field("", description="User name; empty: anonymous.")
    password: SecretStr = Field(SecretStr(""), description="Password (never printed or logged).")
    security: OpcUaSecuritySettings = Field(
        default_factory=OpcUaSecuritySettings, description="Secure channel (certificates)."
    )
    timeout_s: float = Field(4.0, gt=0.0, le=300.0, description="Timeout of one request.")
    watchdog_interval_s: float = Field(
        5.0,
        gt=0.0,
        le=300.0,
        description=(
            "How often a quiet connection is probed, and how long the probe may take (a closed connection"
            " is noticed at once); too short, and a busy server's slow answer ends the session."
        ),
    )
    reconnect_min_s: float = Field(0.5, gt=0.0, le=60.0, description="First reconnect delay; doubles.")
    reconnect_max_s: float = Field(10.0, gt=0.0, le=3600.0, description="Longest reconnect delay.")
    max_queued_notifications: int = Field(
        100_000,
        ge=1,
        description="Changes received and not yet handled; beyond it the newest are dropped (seen as gaps).",
    )
    nodes: tuple[OpcUaNode, ...] = Field((), description="Variables read ([[nodes]] tables).")


# --- Sparkplug B -------------------------------------------------------------------------------------------


class SparkplugMetricMap(ChannelTarget, frozen=True, extra="forbid"):
    """One Sparkplug B metric and where its values go."""

    group_id: str = Field(min_length=1, description="Sparkplug group id.")
    edge_node_id: str = Field(min_length=1, description="Edge node id.")
    device_id: str = Field("", description="Device id; empty: a metric of the edge node itself.")
    metric: str = Field(min_length=1, description="Metric name, as in the birth certificate.")
    sample_rate_hz: float = Field(
        1.0, gt=0.0, le=MAX_SAMPLE_RATE_HZ, description="Nominal rate at which the node reports the metric."
    )


class SparkplugPublishBackSettings(BaseModel, frozen=True, extra="forbid"):
    """Forewarn's alerts and asset health, published back as metrics of a Sparkplug B edge node of its own."""

    enabled: bool = Field(False, description="Publish alerts and asset health back to the Sparkplug broker.")
    group_id: str = Field("Forewarn", min_length=1, description="Group of Forewarn's edge node.")
    edge_node_id: str = Field("forewarn", min_length=1, description="Forewarn's edge node id.")
    asset_ids: tuple[str, ...] = Field(
        (), description="Assets announced in the birth certificate; empty: every mapped asset."
    )


class SparkplugConnectorSettings(ConnectorSettings):
    """`forewarn connect sparkplug`: metrics of Sparkplug B edge nodes (a SCADA's MQTT broker)."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_CONNECT_SPARKPLUG_")
    component: ClassVar[str] = "connect-sparkplug"
    kind: ClassVar[str] = "sparkplug"

    connector_id: str = Field("sparkplug", pattern=IDENT_PATTERN, description="This connector's id.")
    sparkplug_mqtt: MqttSettings = Field(
        default_factory=MqttSettings, description="The broker the Sparkplug B edge nodes publish on."
    )
    host_id: str = Field(
        "",
        description="Primary host id: publish the Sparkplug 3.0 `STATE` message under it; empty: do not.",
    )
    rebirth_interval_s: float = Field(
        5.0, ge=0.0, le=3600.0, description="Least time between two rebirth requests to one edge node."
    )
    queue_size: int = Field(
        10_000, ge=1, le=1_000_000, description="Messages received and not yet decoded; beyond, dropped."
    )
    metrics: tuple[SparkplugMetricMap, ...] = Field((), description="Metric mappings ([[metrics]] tables).")
    publish_back: SparkplugPublishBackSettings = Field(
        default_factory=SparkplugPublishBackSettings, description="Alerts back to SCADA."
    )
