"""The real-service fixtures work: a publish/subscribe round trip and a database write/read."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from forewarn.localservices import MissingBinaryError, MosquittoServer, PostgresServer, _find, wait_until
from shared import topics


def _client(server: MosquittoServer, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(server.host, server.port)
    client.loop_start()
    return client


@pytest.mark.slow
def test_publish_subscribe_round_trip(broker: MosquittoServer, unique_id: Callable[[str], str]) -> None:
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed = threading.Event()
    topic = topics.raw(unique_id("pump"), "vibration")
    subscriber = _client(broker, unique_id("sub"))
    subscriber.on_message = lambda _c, _u, msg: received.put((msg.topic, bytes(msg.payload)))
    subscriber.on_subscribe = lambda *_args: subscribed.set()
    subscriber.subscribe(topic, qos=1)
    assert subscribed.wait(5)
    publisher = _client(broker, unique_id("pub"))
    publisher.publish(topic, b"hello", qos=1).wait_for_publish(5)
    assert received.get(timeout=5) == (topic, b"hello")
    for client in (subscriber, publisher):
        client.loop_stop()
        client.disconnect()


def test_broker_can_be_stopped_and_restarted(broker: MosquittoServer) -> None:
    broker.stop()
    assert not broker.is_running
    broker.start()
    assert broker.is_running


def test_database_write_and_read(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("CREATE TABLE readings (asset_id text, value double precision)")
        conn.execute("INSERT INTO readings VALUES (%s, %s)", ("pump-1", 1.5))
        conn.commit()
        assert conn.execute("SELECT asset_id, value FROM readings").fetchall() == [("pump-1", 1.5)]


def test_database_can_be_stopped_and_restarted(postgres: PostgresServer, db: str) -> None:
    postgres.stop()
    assert wait_until(lambda: not _can_connect(db), timeout_s=5)
    postgres.start()
    assert _can_connect(db)


def _can_connect(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
            return True
    except psycopg.OperationalError:
        return False


def test_missing_binary_says_how_to_install_it() -> None:
    with pytest.raises(MissingBinaryError, match="apt-get install no-such-package"):
        _find("no-such-binary-forewarn", [], "apt-get install no-such-package")


def test_free_ports_are_not_the_standard_ones(mosquitto: MosquittoServer, postgres: PostgresServer) -> None:
    assert mosquitto.port != 1883
    assert postgres.port != 5432
