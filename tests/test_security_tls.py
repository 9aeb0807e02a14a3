"""The CA, and the TLS broker with a certificate per identity and an ACL per gateway, against real Mosquitto.

The broker (`tls_broker`) runs examples/mosquitto-tls.conf and examples/mosquitto.acl: gw-01 serves
pump-01, gw-02 serves pump-02, forewarn-cloud is the cloud service, forewarn-sim a plant publisher.
"""

from __future__ import annotations

import argparse
import datetime
import ssl
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cloud_service import pki
from cloud_service.broker_config import Fleet, GatewayRights, acl_text
from cloud_service.lifecycle.key_rotation import publish_rotation, rotate_keys
from cloud_service.lifecycle.publisher import build_order, publish_order
from cloud_service.lifecycle.signing import init_keys, load_private_key, sign_manifest
from cloud_service.service import IngestWorker
from edge_agent.agent import EdgeAgent
from edge_agent.deployment import DeploymentClient, DeploymentReceiver, DeploymentSettings
from edge_agent.model_store import ModelStore
from edge_agent.settings import ModelSettings, PipelineSettings
from forewarn.localservices import MosquittoServer, wait_until
from forewarn.pki_cmd import parse_gateway, register
from shared import topics
from shared.config import MqttSettings
from shared.errors import ConfigError, ContractError
from shared.messages import DeploymentAck, encode
from shared.mqtt import make_client, tls_context
from shared.raw_batch import encode_raw_batch
from tests.test_cloud_ingest import cloud_settings
from tests.test_edge_agent_helpers import aggregate, edge_settings, vibration_asset, vibration_batches
from tests.test_lifecycle_deployment import NAMES, make_model
from tests.tls_support import EXAMPLE_CA_DIR, EXAMPLE_FLEET_ARGS, EXAMPLES, TlsMosquittoServer

NOT_AUTHORIZED = 135


# --- the CA ---------------------------------------------------------------------------------------------


def test_ca_writes_private_keys_0600_and_certificates_that_chain_to_it(workdir: Path) -> None:
    ca = workdir / "ca"
    ca_cert = x509.load_pem_x509_certificate(pki.init_ca(ca).read_bytes())
    gateway = pki.issue_client(ca, "gw-07")
    server = pki.issue_server(ca, "127.0.0.1")
    for key in (ca / pki.CA_KEY_FILE, gateway.key_file, server.key_file):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(gateway.cert_file.read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "gw-07"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    alt = x509.load_pem_x509_certificate(server.cert_file.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(ip) for ip in alt.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.not_valid_after_utc <= ca_cert.not_valid_after_utc
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        pki.issue_client(ca, "gw-07")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        pki.init_ca(ca)
    with pytest.raises(ConfigError, match="identifier"):
        pki.issue_client(ca, "gw/+/#")  # would be an ACL wildcard as a user name
    with pytest.raises(ConfigError, match="holds no CA"):
        pki.issue_client(workdir / "empty", "gw-08")


def test_revoking_adds_the_serial_to_a_crl_signed_by_the_ca(workdir: Path) -> None:
    ca = workdir / "ca"
    ca_cert = x509.load_pem_x509_certificate(pki.init_ca(ca).read_bytes())
    assert pki.revoked_serials(ca) == []
    kept, revoked = pki.issue_client(ca, "gw-keep"), pki.issue_client(ca, "gw-gone")
    serial = pki.revoke(ca, "gw-gone")
    assert serial == x509.load_pem_x509_certificate(revoked.cert_file.read_bytes()).serial_number
    crl = x509.load_pem_x509_crl((ca / pki.CRL_FILE).read_bytes())
    public = ca_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(public)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    kept_serial = x509.load_pem_x509_certificate(kept.cert_file.read_bytes()).serial_number
    assert crl.get_revoked_certificate_by_serial_number(kept_serial) is None
    pki.refresh_crl(ca)
    assert pki.revoked_serials(ca) == [serial]  # re-signing keeps the entries
    refreshed = x509.load_pem_x509_crl((ca / pki.CRL_FILE).read_bytes())
    assert refreshed.next_update_utc is not None
    assert refreshed.next_update_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=29)
    with pytest.raises(ConfigError, match="no certificate"):
        pki.revoke(ca, "gw-never")


def run_pki(argv: list[str]) -> int:
    """Run `forewarn pki ARGV` through its own parser (the full CLI imports every component)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pki", *argv])
    return int(args.handler(args))


def test_pki_command_line_issues_and_revokes(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = str(workdir / "ca")
    assert run_pki(["init", "--dir", ca]) == 0
    assert run_pki(["issue", "gw-cli", "--dir", ca]) == 0
    assert run_pki(["issue-server", "broker.local", "--dir", ca]) == 0
    assert run_pki(["revoke", "gw-cli", "--dir", ca]) == 0
    assert "mode 0600" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        run_pki(["issue", "gw-cli", "--dir", ca])
    assert len(pki.revoked_serials(Path(ca))) == 1
    assert run_pki(["crl", "--dir", ca]) == 0
    assert len(pki.revoked_serials(Path(ca))) == 1


def test_example_broker_files_are_what_the_generator_writes(workdir: Path) -> None:
    assert (
        run_pki(["mosquitto-config", "--dir", EXAMPLE_CA_DIR, *EXAMPLE_FLEET_ARGS, "--out", str(workdir)])
        == 0
    )
    for name in ("mosquitto-tls.conf", "mosquitto.acl"):
        assert (workdir / name).read_text() == (EXAMPLES / name).read_text(), f"regenerate examples/{name}"
    conf = (EXAMPLES / "mosquitto-tls.conf").read_text().splitlines()
    for directive in ("require_certificate true", "use_identity_as_username true", "allow_anonymous false"):
        assert directive in conf
    assert any(line.startswith("crlfile ") for line in conf)


def test_mqtt_settings_refuse_a_client_key_without_tls_or_readable_by_others(workdir: Path) -> None:
    with pytest.raises(ValueError, match="need tls"):
        MqttSettings(cert_file=workdir / "c.crt", key_file=workdir / "c.key")
    with pytest.raises(ValueError, match="together"):
        MqttSettings(tls=True, cert_file=workdir / "c.crt")
    ca = workdir / "ca"
    pki.init_ca(ca)
    identity = pki.issue_client(ca, "gw-perm")
    identity.key_file.chmod(0o644)
    settings = MqttSettings(tls=True, cert_file=identity.cert_file, key_file=identity.key_file)
    with pytest.raises(ConfigError, match="0600"):
        tls_context(settings)
    assert MqttSettings().tls is False  # plaintext stays the local-development default


# --- the broker -----------------------------------------------------------------------------------------


def _connects(client: mqtt.Client, broker: MosquittoServer, timeout_s: float = 3.0) -> bool:
    """Whether the broker accepts `client` (a CONNACK with success) within `timeout_s`."""
    accepted, answered = threading.Event(), threading.Event()

    def on_connect(c: mqtt.Client, u: object, flags: object, reason: ReasonCode, p: object) -> None:
        if not reason.is_failure:
            accepted.set()
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *args: answered.set()  # the broker closed the connection
    try:
        client.connect(broker.host, broker.port, keepalive=5)
    except (OSError, ssl.SSLError):
        return False
    client.loop_start()
    try:
        answered.wait(timeout_s)
        return accepted.is_set()
    finally:
        client.disconnect()
        client.loop_stop()


class Listener:
    """A connected client that records the topics it receives and the subscription results."""

    def __init__(self, client: mqtt.Client, broker: MosquittoServer, filters: list[str]) -> None:
        self.client = client
        self.topics: list[str] = []
        self.granted: list[int] = []
        self._subscribed = threading.Event()
        client.on_message = lambda c, u, m: self.topics.append(m.topic)
        client.on_subscribe = self._on_subscribe
        client.connect(broker.host, broker.port, keepalive=5)
        client.loop_start()
        client.subscribe([(f, 1) for f in filters])
        assert self._subscribed.wait(5)

    def _on_subscribe(self, c: mqtt.Client, u: object, mid: int, codes: list[ReasonCode], p: object) -> None:
        self.granted = [code.value for code in codes]
        self._subscribed.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(client: mqtt.Client, broker: MosquittoServer, items: list[tuple[str, bytes]]) -> list[int]:
    """Publish at QoS 1 and return each PUBACK's reason code."""
    codes: dict[int, int] = {}
    client.on_publish = lambda c, u, mid, reason, p: codes.__setitem__(mid, reason.value)
    client.connect(broker.host, broker.port, keepalive=5)
    client.loop_start()
    try:
        mids = [client.publish(topic, payload, qos=1).mid for topic, payload in items]
        wait_until(lambda: all(mid in codes for mid in mids), timeout_s=5)
        return [codes[mid] for mid in mids]
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.slow
def test_a_gateway_cannot_publish_as_another(
    tls_broker: TlsMosquittoServer, unique_id: Callable[[str], str]
) -> None:
    cloud = Listener(
        tls_broker.raw_client("forewarn-cloud", unique_id("cloud")),
        tls_broker,
        [topics.subscription(topics.TopicKind.AGGREGATE)],
    )
    try:
        own, spoofed = encode(aggregate("gw-01")), encode(aggregate("gw-02"))
        codes = _publish(
            tls_broker.raw_client("gw-01", unique_id("gw")),
            tls_broker,
            [
                (topics.aggregate("gw-02"), spoofed),
                (topics.model_deployment("pump-01"), b"{}"),
                (topics.aggregate("gw-01"), own),
            ],
        )
        assert codes == [NOT_AUTHORIZED, NOT_AUTHORIZED, 0]
        wait_until(lambda: topics.aggregate("gw-01") in cloud.topics, timeout_s=5)
        assert cloud.topics == [topics.aggregate("gw-01")]  # the spoofed one never arrived
    finally:
        cloud.close()


@pytest.mark.slow
def test_a_gateway_cannot_read_another_gateways_models(
    tls_broker: TlsMosquittoServer, unique_id: Callable[[str], str]
) -> None:
    own_filter, other_filter = topics.model_tree("pump-01"), topics.model_tree("pump-02")
    snoop = Listener(
        tls_broker.raw_client("gw-01", unique_id("snoop")),
        tls_broker,
        [own_filter, other_filter, "forewarn/v1/#"],
    )
    rightful = Listener(tls_broker.raw_client("gw-02", unique_id("gw2")), tls_broker, [other_filter])
    try:
        # Mosquitto 2.0 grants the subscriptions and checks read access on every delivery instead
        codes = _publish(
            tls_broker.raw_client("forewarn-cloud", unique_id("cloud")),
            tls_broker,
            [(topics.model_deployment("pump-02"), b"order"), (topics.model_chunk("pump-01", 0), b"chunk")],
        )
        assert codes == [0, 0]
        wait_until(lambda: rightful.topics and topics.model_chunk("pump-01", 0) in snoop.topics, timeout_s=5)
        assert rightful.topics == [topics.model_deployment("pump-02")]
        assert topics.model_deployment("pump-02") not in snoop.topics  # not even through `forewarn/v1/#`
    finally:
        snoop.close()
        rightful.close()


@pytest.mark.slow
def test_clients_without_a_valid_certificate_and_plaintext_clients_are_refused(
    tls_broker: TlsMosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    assert _connects(tls_broker.raw_client("gw-01", unique_id("ok")), tls_broker)
    assert not _connects(tls_broker.raw_client(None, unique_id("anon")), tls_broker)  # TLS, no certificate
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_id("plain"), protocol=mqtt.MQTTv5)
    plain.username_pw_set("gw-01")
    assert not _connects(plain, tls_broker)  # plaintext on the TLS listener
    rogue_ca = workdir / "rogue"
    pki.init_ca(rogue_ca)
    rogue = pki.issue_client(rogue_ca, "gw-01")  # the right name, signed by another CA
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_id("rogue"), protocol=mqtt.MQTTv5)
    context = ssl.create_default_context(cafile=str(tls_broker.ca_dir / pki.CA_CERT_FILE))
    context.load_cert_chain(str(rogue.cert_file), str(rogue.key_file))
    client.tls_set_context(context)
    assert not _connects(client, tls_broker)


@pytest.mark.slow
def test_a_client_refuses_a_broker_it_cannot_verify(
    tls_broker: TlsMosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    other_ca = workdir / "other"
    pki.init_ca(other_ca)
    settings = tls_broker.settings("gw-01", ca_file=other_ca / pki.CA_CERT_FILE)
    assert not _connects(make_client(settings, client_id=unique_id("c")), tls_broker)
    assert _connects(make_client(tls_broker.settings("gw-01"), client_id=unique_id("c")), tls_broker)


@pytest.mark.slow
def test_a_revoked_certificate_is_refused_once_the_broker_reloads_the_crl(
    tls_broker: TlsMosquittoServer, unique_id: Callable[[str], str]
) -> None:
    assert _connects(tls_broker.raw_client("gw-revoked", unique_id("before")), tls_broker)
    pki.revoke(tls_broker.ca_dir, "gw-revoked")
    tls_broker.stop()
    tls_broker.start()
    assert not _connects(tls_broker.raw_client("gw-revoked", unique_id("after")), tls_broker)
    assert _connects(tls_broker.raw_client("gw-02", unique_id("others")), tls_broker)  # only that one


@pytest.mark.slow
def test_edge_agent_and_cloud_service_work_end_to_end_over_tls(
    tls_broker: TlsMosquittoServer,
    db: str,
    workdir: Path,
    unique_id: Callable[[str], str],
) -> None:
    """Raw batches from the plant publisher reach gw-01's agent, whose aggregates the cloud stores."""
    pipeline = PipelineSettings(assets=(vibration_asset("pump-01"),), aggregation={"period_s": 2.0})
    settings = edge_settings(
        workdir,
        gateway_id="gw-01",
        plant=tls_broker,
        upstream=tls_broker,
        pipeline=pipeline,
        plant_mqtt=tls_broker.settings("gw-01").model_dump(
            include={"tls", "ca_file", "cert_file", "key_file"}
        ),
        upstream_mqtt=tls_broker.settings("gw-01").model_dump(
            include={"tls", "ca_file", "cert_file", "key_file"}
        ),
    )
    cloud = cloud_settings(tls_broker, db, "tls" + unique_id("g")[-6:])
    cloud_mqtt = cloud.mqtt.model_copy(
        update=tls_broker.settings("forewarn-cloud").model_dump(
            include={"tls", "ca_file", "cert_file", "key_file"}
        )
    )
    worker = IngestWorker(cloud.model_copy(update={"mqtt": cloud_mqtt}), client_id=unique_id("ingest"))
    worker.start()
    agent = EdgeAgent(settings)
    publisher = make_client(tls_broker.settings("forewarn-sim"), client_id=unique_id("sim"))
    try:
        assert worker.wait_connected(10)
        agent.start()
        wait_until(lambda: agent.intake.is_subscribed, timeout_s=10)
        publisher.connect(tls_broker.host, tls_broker.port)
        publisher.loop_start()
        for batch in vibration_batches("pump-01", n_batches=40, start_ns=1_790_000_000 * 10**9):
            publisher.publish(topics.raw(batch.asset_id, batch.sensor), encode_raw_batch(batch), qos=0)

        def stored() -> int:
            with psycopg.connect(db) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM aggregates WHERE gateway_id = %s AND asset_id = %s",
                    ("gw-01", "pump-01"),
                ).fetchone()
            return int(row[0]) if row else 0

        wait_until(lambda: stored() >= 3, timeout_s=30)
        assert agent.forwarder.metrics.acked >= 3
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        agent.stop()
        worker.stop()


@pytest.mark.slow
def test_models_and_key_rotations_reach_only_the_gateway_that_serves_the_target(
    tls_broker: TlsMosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    """gw-02 configured (wrongly or maliciously) for gw-01's target receives none of its model topics."""
    keys = init_keys(workdir / "keys")
    receivers: dict[str, tuple[DeploymentReceiver, DeploymentClient]] = {}
    acks: list[DeploymentAck] = []
    for gateway_id in ("gw-01", "gw-02"):
        receiver = DeploymentReceiver(
            settings=DeploymentSettings(
                public_key=keys.public_key, state_file=workdir / gateway_id / "d.json"
            ),
            store=ModelStore(ModelSettings(store_dir=workdir / gateway_id / "models")),
            gateway_id=gateway_id,
            targets=["pump-01"],
            expected_features={"pump-01": NAMES},
        )
        receiver.add_ack_listener(acks.append)
        client = DeploymentClient(
            settings=tls_broker.settings(gateway_id), receiver=receiver, client_id=unique_id(gateway_id)
        )
        client.start()
        receivers[gateway_id] = (receiver, client)
    cloud = tls_broker.settings("forewarn-cloud")
    try:
        wait_until(lambda: all(client.is_connected for _, client in receivers.values()), timeout_s=10)
        key = load_private_key(keys.private_key)
        model = make_model("pump-01", 1)
        text = encode(model.manifest).decode()
        order = build_order(
            manifest_json=text,
            signature_b64=sign_manifest(key, text),
            artifact=model.onnx_int8,
            target="pump-01",
            version=1,
            chunk_bytes=4096,
        )
        publish_order(order, cloud, timeout_s=10)
        ack = wait_until(lambda: acks, timeout_s=10)[0]
        assert (ack.gateway_id, ack.ok) == ("gw-01", True), ack.reason
        publish_rotation(rotate_keys(keys.private_key.parent), cloud)
        owner, intruder = receivers["gw-01"][0], receivers["gw-02"][0]
        # the announcement is for the whole fleet; each gateway's copy arrives on its own
        wait_until(
            lambda: owner.metrics.key_rotations == 1 and intruder.metrics.key_rotations == 1,
            timeout_s=10,
        )
        assert (intruder.metrics.deployments_received, intruder.metrics.chunks_received) == (0, 0)
        assert [a.gateway_id for a in acks] == ["gw-01"]
    finally:
        for _, client in receivers.values():
            client.stop()
        clear = make_client(cloud, client_id=unique_id("clear"))
        clear.connect(tls_broker.host, tls_broker.port)
        clear.loop_start()
        for topic in (
            topics.model_deployment("pump-01"),
            topics.model_chunk("pump-01", 0),
            topics.signing_key(),
        ):
            clear.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        clear.disconnect()
        clear.loop_stop()


def test_gateway_rights_parse_and_the_acl_refuses_wildcards_in_names() -> None:
    assert parse_gateway("gw-9=pump-1,fan-2") == GatewayRights(
        "gw-9", ("pump-1", "fan-2"), ("pump-1", "fan-2")
    )
    assert parse_gateway("gw-9=pump-1:pump-1,pump-2").assets == ("pump-1", "pump-2")
    for bad in ("gw-9", "gw-9=", "=pump-1"):
        with pytest.raises(ConfigError, match="GW=TARGET"):
            parse_gateway(bad)
    with pytest.raises(ContractError, match=r"^target="):
        acl_text(Fleet(gateways=(GatewayRights("gw-9", ("#",)),)))
    text = acl_text(Fleet(gateways=(parse_gateway("gw-9=pump-1"),)))
    assert "user gw-9\ntopic write forewarn/v1/gw/gw-9/#\ntopic read forewarn/v1/models/pump-1/#\n" in text
