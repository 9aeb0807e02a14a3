"""`forewarn keys` and `forewarn models` against a real database and broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.migrate import migrate
from forewarn.bench.retrain import seed_fleet
from forewarn.cli import main
from forewarn.localservices import MosquittoServer, wait_until
from shared import topics
from shared.messages import ModelDeployment, decode_deployment


def _retained_order(broker: MosquittoServer, target: str) -> ModelDeployment:
    got: list[ModelDeployment] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.append(decode_deployment(bytes(m.payload)))
    client.connect(broker.host, broker.port)
    client.subscribe(topics.model_deployment(target), qos=1)
    client.loop_start()
    try:
        return wait_until(lambda: got[-1] if got else None, timeout_s=5)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.slow
def test_keys_train_list_approve_deploy_show_and_rollback_from_the_command_line(
    broker: MosquittoServer,
    db: str,
    workdir: Path,
    unique_id: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrate(db)
    target = unique_id("fan")
    seed_fleet(db, asset_ids=[f"{target}-0"], asset_type=target, rows_per_asset=200)
    assert main(["keys", "init", "--out", str(workdir / "keys")]) == 0
    assert main(["keys", "init", "--out", str(workdir / "keys")]) == 2  # never overwrites
    params = psycopg.conninfo.conninfo_to_dict(db)
    config = workdir / "cloud.toml"
    config.write_text(
        f"""
[db]
host = "{params["host"]}"
port = {params["port"]}
dbname = "{params["dbname"]}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
receive_maximum = 64
[lifecycle]
signing_key = "{workdir / "keys" / "forewarn-signing.key"}"
min_training_rows = 100
model_types = ["pca"]
"""
    )
    base = ["models"]
    capsys.readouterr()
    for _ in range(2):  # two trainings: v1 and v2
        assert main([*base, "train", "--config", str(config), "--target", target, "--json"]) == 0
    trained = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["selected"] for line in trained] == [1, 2]

    assert main([*base, "list", "--config", str(config), "--target", target, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["version"], m["status"]) for m in listed] == [(2, "candidate"), (1, "candidate")]

    assert main([*base, "deploy", "--config", str(config), target, "1"]) == 2  # not approved yet
    assert "approve it first" in capsys.readouterr().err
    for version in ("1", "2"):
        assert main([*base, "approve", "--config", str(config), target, version]) == 0
        assert main([*base, "deploy", "--config", str(config), target, version]) == 0
    assert _retained_order(broker, target).version == 2

    assert main([*base, "rollback", "--config", str(config), target]) == 0
    order = _retained_order(broker, target)
    assert order.version == 1
    assert order.is_rollback
    capsys.readouterr()
    assert main([*base, "show", "--config", str(config), target, "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "deployed"
    assert shown["gateways"] == []  # no gateway has acknowledged in this test
    assert main([*base, "show", "--config", str(config), target, "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "retired"


@pytest.mark.slow
def test_bench_retrain_quick_reports_every_figure_within_its_target() -> None:
    from forewarn.bench.retrain import run  # noqa: PLC0415 - heavy imports only for this test

    figures = run(quick=True)
    for key in (
        "assets",
        "train_convert_quantize_validate_sign_s",
        "int8_float_decision_agreement",
        "model_bytes_float",
        "model_bytes_int8",
        "deploy_to_ack_s",
    ):
        assert key in figures
    assert _figure(figures, "int8_float_decision_agreement") >= 0.995
    assert _figure(figures, "deploy_to_ack_s") < 2.0
    assert _figure(figures, "train_convert_quantize_validate_sign_s") < 60.0


def _figure(figures: dict[str, object], key: str) -> float:
    value = figures[key]
    assert isinstance(value, int | float), f"{key}={value!r}: expected a number"
    return float(value)
