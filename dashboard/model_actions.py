"""The Models page's actions for admins: approve a candidate, deploy a model to the gateways, roll back.

The form is shown to admins only, and the callback that runs an action checks the role again on the
server (`dashboard.security.require_role`). The actions are the lifecycle's own
(`cloud_service.lifecycle.operations`): they commit when they succeed; deploy and rollback publish a
signed order to the broker of `DashboardSettings.models`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
from dash import dcc, html

from cloud_service.lifecycle import operations
from cloud_service.lifecycle.registry import ModelRecord
from cloud_service.lifecycle.signing import load_private_key
from dashboard.settings import ModelActionSettings
from shared.errors import ConfigError, ContractError, StorageError

__all__ = ["ACTIONS", "Action", "action_form", "choices", "perform"]

logger = logging.getLogger(__name__)

Action = Literal["approve", "deploy", "rollback"]
ACTIONS: tuple[Action, ...] = ("approve", "deploy", "rollback")


def choices(models: Sequence[ModelRecord]) -> list[dict[str, str]]:
    """Dropdown options, one per registered model: `target/version` values."""
    return [
        {"label": f"{m.target} v{m.version} ({m.status})", "value": f"{m.target}/{m.version}"} for m in models
    ]


def action_form() -> html.Div:
    """The admin's form: which model, which action, a reason, and the result."""
    return html.Div(
        [
            html.H3("Actions"),
            html.Div(
                [
                    dcc.Dropdown(id="model-action-choice", placeholder="model"),
                    dcc.RadioItems(
                        id="model-action",
                        options=[
                            {"label": a.replace("rollback", "roll back to"), "value": a} for a in ACTIONS
                        ],
                        value="approve",
                        inline=True,
                    ),
                    dcc.Input(id="model-action-reason", placeholder="reason", maxLength=200),
                    html.Button("Apply", id="model-action-button"),
                    html.Span(id="model-action-result"),
                ],
                className="ack",
            ),
        ],
        id="model-actions",
    )


def _parse(choice: str | None) -> tuple[str, int] | None:
    target, _, version = (choice or "").rpartition("/")
    return (target, int(version)) if target and version.isdigit() else None


def perform(
    conn: psycopg.Connection[Any],
    settings: ModelActionSettings,
    *,
    action: str | None,
    choice: str | None,
    by: str,
    reason: str,
) -> str:
    """Run one action on the chosen model (`target/version`); what happened, as the page shows it.

    A refusal by the lifecycle (not a candidate, nothing older to roll back to, the broker unreachable,
    no signing key, a stored manifest that no longer decodes) is reported, not raised; the transaction is
    then rolled back.
    """
    parsed = _parse(choice)
    if parsed is None or action not in ACTIONS:
        return "Choose a model and an action first."
    target, version = parsed
    why = f"{action} by {by}" + (f": {reason}" if reason else "")
    try:
        if action == "approve":
            operations.approve(conn, target, version, reason=why)
            return f"Approved {target} v{version}."
        if action == "deploy":
            order = operations.deploy(
                conn,
                settings.mqtt,
                target,
                version,
                chunk_bytes=settings.chunk_bytes,
                timeout_s=settings.push_timeout_s,
            )
            return f"Deployed {target} v{version} ({len(order.chunks)} chunk(s)); gateways acknowledge below."
        key = load_private_key(settings.signing_key)
        order = operations.rollback(
            conn,
            settings.mqtt,
            key,
            target,
            to_version=version,
            chunk_bytes=settings.chunk_bytes,
            timeout_s=settings.push_timeout_s,
        )
        return f"Rolled {target} back to v{order.version}."
    except (StorageError, ConfigError, ContractError, OSError) as exc:
        conn.rollback()
        logger.warning("model action %s on %s v%d refused: %s", action, target, version, exc)
        return f"Not done: {exc}"
