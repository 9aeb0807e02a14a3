"""The Models page's actions over HTTP: only admins approve, deploy and roll back; a forged request from an
engineer or a viewer is refused by the server and changes nothing."""

from __future__ import annotations

import base64
import json
import os
import queue
from pathlib import Path

import psycopg
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cloud_service.lifecycle.records import ModelStatus
from cloud_service.lifecycle.registry import get_model, insert_model
from cloud_service.lifecycle.signing import init_keys
from cloud_service.users import add_user
from forewarn.localservices import MosquittoServer
from shared import topics
from shared.config import MqttSettings
from shared.messages import ModelDeployment, decode_deployment
from shared.model_transfer import signed_text
from shared.mqtt import connect, make_client
from tests.dashboard_support import PASSWORD, dash_callback, dashboard_settings, login, seed_plant, serving
from tests.test_dashboard_browser import _log_in, _screenshot, _wait
from tests.test_dashboard_browser import browser as browser  # noqa: PLC0414 - the fixture, re-exported

pytestmark = pytest.mark.slow


def _action_outputs(session: requests.Session, url: str) -> list[tuple[str, str]]:
    """The action callback's outputs as the renderer names them (a shared output carries a hash)."""
    for callback in session.get(f"{url}/_dash-dependencies", timeout=10).json():
        if callback["output"].startswith("..model-action-result.children..."):
            parts = callback["output"].strip(".").split("...")
            return [(part.split(".", 1)[0], part.split(".", 1)[1]) for part in parts]
    raise AssertionError("no model action callback")


def _act(session: requests.Session, url: str, action: str, choice: str) -> requests.Response:
    return dash_callback(
        session,
        url,
        outputs=_action_outputs(session, url),
        inputs=[("model-action-button", "n_clicks", 1)],
        state=[
            ("model-action", "value", action),
            ("model-action-choice", "value", choice),
            ("model-action-reason", "value", "forged"),
        ],
    )


def _copy_model(
    conninfo: str, version: int, *, status: ModelStatus, manifest_json: str | None = None
) -> None:
    """Register the seeded pump v2 again as `version`, with `status` (and another manifest, if given)."""
    with psycopg.connect(conninfo) as conn:
        deployed = get_model(conn, "pump", 2, with_artifact=True)
        assert deployed is not None
        insert_model(
            conn,
            target="pump",
            version=version,
            model_type=deployed.model_type,
            sha256=deployed.sha256,
            artifact=deployed.artifact,
            manifest_json=deployed.manifest_json if manifest_json is None else manifest_json,
            signature_b64=deployed.signature_b64,
            feature_spec=deployed.feature_spec,
            feature_names=deployed.feature_names,
            threshold=deployed.threshold,
            assets=deployed.assets,
            train_start=deployed.train_start,
            train_end=deployed.train_end,
            n_train_rows=deployed.n_train_rows,
            metrics=deployed.metrics,
            gates=deployed.gates,
            reference=None,
            status=status,
        )
        conn.commit()


def _candidate(conninfo: str) -> None:
    """Version 3 of the seeded target, a candidate, and an admin to act on it."""
    _copy_model(conninfo, 3, status="candidate")
    with psycopg.connect(conninfo) as conn:
        add_user(conn, "ada", role="admin", password=PASSWORD)
        conn.commit()


def _status(conninfo: str, version: int) -> tuple[str, str]:
    with psycopg.connect(conninfo) as conn:
        model = get_model(conn, "pump", version)
    assert model is not None
    return model.status, model.reason


def test_only_admins_approve_deploy_and_roll_back(db: str, tmp_path: Path, broker: MosquittoServer) -> None:
    seed_plant(db)
    _candidate(db)
    settings = dashboard_settings(
        db,
        tmp_path,
        models={
            "mqtt": {"port": broker.port},
            "signing_key": str(tmp_path / "missing.key"),
            "push_timeout_s": 5,
        },
    )
    with serving(settings) as served:
        for name in ("vic", "erin"):  # viewer, engineer: the form is not shown, and a forged request fails
            session = login(served.url, name)
            page = dash_callback(
                session, served.url, outputs=[("page", "children")], inputs=[("url", "pathname", "/models")]
            )
            assert page.status_code == 200
            assert "model-action-button" not in page.text
            for action in ("approve", "deploy", "rollback"):
                assert _act(session, served.url, action, "pump/3").status_code == 403
        assert _status(db, 3)[0] == "candidate"
        assert _status(db, 2)[0] == "deployed"

        admin = login(served.url, "ada")
        page = dash_callback(
            admin, served.url, outputs=[("page", "children")], inputs=[("url", "pathname", "/models")]
        )
        assert "model-action-button" in page.text
        early = _act(admin, served.url, "deploy", "pump/3")
        assert "approve it first" in json.dumps(early.json())
        approved = _act(admin, served.url, "approve", "pump/3")
        assert approved.status_code == 200
        assert "Approved pump v3" in json.dumps(approved.json())
        assert _status(db, 3) == ("approved", "approve by ada: forged")

        deployed = _act(admin, served.url, "deploy", "pump/3")
        assert "Deployed pump v3" in json.dumps(deployed.json())
        assert _status(db, 3)[0] == "deployed"
        assert _status(db, 2)[0] == "retired"

        # a rollback needs the signing key: without it, nothing changes and the page says why
        refused = _act(admin, served.url, "rollback", "pump/2")
        assert "Not done" in json.dumps(refused.json())
        assert "signing_key" in json.dumps(refused.json())
        assert _status(db, 3)[0] == "deployed"


def _retained_order(broker: MosquittoServer, target: str) -> ModelDeployment:
    """The deployment order the broker keeps for `target`, as a gateway that connects now receives it."""
    received: queue.Queue[bytes] = queue.Queue()
    client = make_client(MqttSettings(port=broker.port), client_id="test-gateway")
    client.on_message = lambda _client, _userdata, message: received.put(bytes(message.payload))

    def subscribe(*_args: object) -> None:
        client.subscribe(topics.model_deployment(target), qos=1)

    client.on_connect = subscribe
    connect(client, MqttSettings(port=broker.port), clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        return decode_deployment(received.get(timeout=10))
    finally:
        client.loop_stop()
        client.disconnect()


def test_an_admins_rollback_sends_gateways_a_signed_order_for_the_older_model(
    db: str, tmp_path: Path, broker: MosquittoServer
) -> None:
    seed_plant(db)
    _candidate(db)
    _copy_model(db, 1, status="retired", manifest_json="{}")  # a stored manifest that no longer decodes
    keys = init_keys(tmp_path / "keys")
    settings = dashboard_settings(
        db,
        tmp_path,
        models={"mqtt": {"port": broker.port}, "signing_key": str(keys.private_key), "push_timeout_s": 5},
    )
    with serving(settings) as served:
        admin = login(served.url, "ada")
        for action in ("approve", "deploy"):
            assert _act(admin, served.url, action, "pump/3").status_code == 200
        assert _status(db, 3)[0] == "deployed"

        broken = _act(admin, served.url, "rollback", "pump/1")
        assert broken.status_code == 200
        assert "Not done" in json.dumps(broken.json())
        assert _status(db, 3)[0] == "deployed"

        rolled = _act(admin, served.url, "rollback", "pump/2")
        assert rolled.status_code == 200
        assert "Rolled pump back to v2" in json.dumps(rolled.json())

    assert _status(db, 2)[0] == "deployed"
    assert _status(db, 3) == ("retired", "rolled back to v2")
    order = _retained_order(broker, "pump")
    assert (order.version, order.is_rollback) == (2, True)
    public = load_pem_public_key(keys.public_key.read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    # raises InvalidSignature unless signed by the configured key as a rollback of exactly this manifest
    public.verify(base64.b64decode(order.signature_b64), signed_text(order.manifest_json, is_rollback=True))


def test_the_admins_models_page_in_a_real_browser(db: str, tmp_path: Path, browser: WebDriver) -> None:
    shots = Path(os.environ.get("FOREWARN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    seed_plant(db)
    _candidate(db)
    with serving(dashboard_settings(db, tmp_path)) as served:
        browser.get(f"{served.url}/models")
        _wait(browser, "#username")
        _log_in(browser, served.url, "ada")
        _wait(browser, "#models tbody tr")
        _wait(browser, "#model-action-button")
        browser.find_element(By.ID, "model-action-choice").click()
        option = "//*[normalize-space(text())='pump v3 (candidate)']"
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.XPATH, option))
        browser.find_element(By.XPATH, option).click()
        browser.find_element(By.ID, "model-action-reason").send_keys("passes every gate")
        browser.find_element(By.ID, "model-action-button").click()
        WebDriverWait(browser, 20).until(
            lambda d: "Approved pump v3" in d.find_element(By.ID, "model-action-result").text
        )
        assert "approved" in browser.find_element(By.ID, "models").text
        _screenshot(browser, shots, "models")
