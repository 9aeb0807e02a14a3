"""Shared fixtures: real, throwaway Mosquitto and PostgreSQL servers, and per-test names."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_service.migrate import migrate
from forewarn.localservices import MosquittoServer, PostgresServer, running, temporary_directory
from tests.tls_support import TlsMosquittoServer

TEMPLATE_DB = "forewarn_template"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A Mosquitto broker for the whole session; tests may stop() and start() it."""
    with running(MosquittoServer(tmp_path_factory.mktemp("mosquitto"))) as server:
        yield server


@pytest.fixture
def broker(mosquitto: MosquittoServer) -> Iterator[MosquittoServer]:
    """The session broker, guaranteed running at the start and end of the test."""
    mosquitto.start()
    yield mosquitto
    mosquitto.start()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session; tests may stop() and start() it."""
    # pytest's temporary directories are private to root; the server runs as `postgres` and needs its own.
    del tmp_path_factory
    with temporary_directory("forewarn-pg-") as workdir, running(PostgresServer(workdir)) as server:
        yield server


def prepare_template(conninfo: str) -> None:
    """Load the schema every test database starts with: the cloud service's migrations."""
    migrate(conninfo)


@pytest.fixture(scope="session")
def pg_template(postgres: PostgresServer) -> str:
    """Name of a template database with the schema loaded once per session."""
    postgres.create_database(TEMPLATE_DB)
    prepare_template(postgres.conninfo(TEMPLATE_DB))
    postgres.seal_template(TEMPLATE_DB)
    return TEMPLATE_DB


@pytest.fixture
def db(postgres: PostgresServer, pg_template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """Connection string of a fresh database cloned from the template, dropped after the test."""
    postgres.start()
    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    conninfo = postgres.create_database(name, template=pg_template)
    yield conninfo
    postgres.start()
    postgres.drop_database(name)


@pytest.fixture
def unique_id(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Build identifiers (asset, gateway, topic parts) unique to this test: `unique_id("gw")`."""
    stem = re.sub(r"[^a-z0-9]", "", request.node.name.lower())[-24:] or "t"
    suffix = uuid.uuid4().hex[:6]

    def build(prefix: str) -> str:
        return f"{prefix}-{stem}-{suffix}"

    return build


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A temporary directory for the test's own files."""
    return tmp_path


@pytest.fixture(scope="session")
def tls_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMosquittoServer]:
    """A TLS-only Mosquitto from examples/mosquitto-tls.conf and its ACL, with a CA and client identities."""
    server = TlsMosquittoServer(tmp_path_factory.mktemp("mosquitto-tls"))
    with running(server):
        yield server


@pytest.fixture
def tls_broker(tls_mosquitto: TlsMosquittoServer) -> Iterator[TlsMosquittoServer]:
    """The session TLS broker, guaranteed running at the start and end of the test."""
    tls_mosquitto.start()
    yield tls_mosquitto
    tls_mosquitto.start()
