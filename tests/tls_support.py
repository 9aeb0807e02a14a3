"""A Mosquitto broker configured from examples/mosquitto-tls.conf and examples/mosquitto.acl.

The example files are what `forewarn pki mosquitto-config` writes for the example fleet (`EXAMPLE_FLEET_ARGS`;
`test_security_tls` checks they have not drifted). The broker here keeps every directive of the example
listener and the example ACL as they are, and replaces only the file paths and the port with its own.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service import pki
from forewarn.localservices import MosquittoServer
from shared.config import MqttSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_CA_DIR = "/etc/mosquitto/forewarn"
EXAMPLE_SERVER = "broker.plant.example"
EXAMPLE_FLEET_ARGS = [
    "--server",
    EXAMPLE_SERVER,
    "--gateway",
    "gw-01=pump-01",
    "--gateway",
    "gw-02=pump-02",
    "--cloud",
    "forewarn-cloud",
    "--publisher",
    "forewarn-sim",
    "--acl-path",
    f"{EXAMPLE_CA_DIR}/mosquitto.acl",
]
IDENTITIES = ("gw-01", "gw-02", "forewarn-cloud", "forewarn-sim", "gw-revoked")
HOST = "127.0.0.1"


class TlsMosquittoServer(MosquittoServer):
    """Mosquitto with the example TLS listener and ACL, a fresh CA and a certificate per identity."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.host = HOST
        self.ca_dir = workdir / "pki"
        pki.init_ca(self.ca_dir)
        self.server_identity = pki.issue_server(self.ca_dir, HOST)
        self.identities = {name: pki.issue_client(self.ca_dir, name) for name in IDENTITIES}
        self.acl_path = workdir / "mosquitto.acl"
        self.acl_path.write_text((EXAMPLES / "mosquitto.acl").read_text())
        base = self.config_path.read_text().splitlines()
        kept = [line for line in base if not line.startswith(("listener", "allow_anonymous"))]
        self.config_path.write_text("\n".join([*kept, *self._listener_lines(), ""]))

    def _listener_lines(self) -> list[str]:
        paths = {
            "cafile": self.ca_dir / pki.CA_CERT_FILE,
            "certfile": self.server_identity.cert_file,
            "keyfile": self.server_identity.key_file,
            "crlfile": self.ca_dir / pki.CRL_FILE,
            "acl_file": self.acl_path,
        }
        replaced = {key: f"{key} {path}" for key, path in paths.items()}
        replaced["listener"] = f"listener {self.port} {HOST}"
        example = (EXAMPLES / "mosquitto-tls.conf").read_text().splitlines()
        return [replaced.get(line.split(" ", 1)[0], line) for line in example]

    @property
    def url(self) -> str:
        """`mqtts://127.0.0.1:PORT`."""
        return f"mqtts://{self.host}:{self.port}"

    def settings(self, identity: str | None, **overrides: object) -> MqttSettings:
        """Client settings for `identity` (None: TLS with no client certificate)."""
        files: dict[str, object] = {"tls": True, "ca_file": self.ca_dir / pki.CA_CERT_FILE}
        if identity is not None:
            files |= {
                "cert_file": self.identities[identity].cert_file,
                "key_file": self.identities[identity].key_file,
            }
        fields = {
            "host": self.host,
            "port": self.port,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            **files,
            **overrides,
        }
        return MqttSettings.model_validate(fields)

    def raw_client(self, identity: str | None, client_id: str) -> mqtt.Client:
        """A bare paho client with `identity`'s certificate (not connected)."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        context = ssl.create_default_context(cafile=str(self.ca_dir / pki.CA_CERT_FILE))
        if identity is not None:
            context.load_cert_chain(
                str(self.identities[identity].cert_file), str(self.identities[identity].key_file)
            )
        client.tls_set_context(context)
        return client
