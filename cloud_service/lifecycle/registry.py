"""The model registry in PostgreSQL (tables of migration `0100_model_registry.sql`): all SQL of the lifecycle.

A model row is created when a candidate is trained (status `candidate`, or `rejected` with the reason when a
gate fails), becomes `approved` (automatically or by `forewarn models approve`), then `deployed` when it is
pushed (the previously deployed version of the target becomes `retired`). Versions come from
`model_versions` and only grow per target. Per-gateway state is the `model_gateway_state` view over the
acknowledgements the ingest service stores.

The model, status and drift functions here work inside the caller's transaction and commit nothing: the
job, operation or command that calls them commits where its unit of work ends.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from cloud_service.lifecycle.records import (
    CandidateMetrics,
    DriftReference,
    Gates,
    ModelStatus,
    decode_stored,
    encode_stored,
)
from shared.errors import StorageError

__all__ = [
    "DriftCheck",
    "GatewayState",
    "ModelRecord",
    "ModelStatus",
    "allocate_version",
    "assets_of_target",
    "deployed_model",
    "drift_history",
    "gateway_states",
    "get_model",
    "insert_model",
    "list_models",
    "mark_deployed",
    "pending_pushes",
    "record_drift",
    "set_status",
]

Conn = psycopg.Connection[Any]

_COLUMNS = (
    "target, version, model_type, sha256, manifest_json, signature_b64, feature_spec, feature_names, "
    "threshold, assets, train_start, train_end, n_train_rows, metrics::text, gates::text, reference::text, "
    "status, reason, "
    "created_at, updated_at, deployed_at"
)


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One registered model (its artifact only when asked for).

    `metrics`, `gates` and `reference` are None for a model registered without a training run.
    """

    target: str
    version: int
    model_type: str
    sha256: str
    manifest_json: str
    signature_b64: str
    feature_spec: str
    feature_names: list[str]
    threshold: float
    assets: list[str]
    train_start: datetime | None
    train_end: datetime | None
    n_train_rows: int
    metrics: CandidateMetrics | None
    gates: Gates | None
    reference: DriftReference | None
    status: ModelStatus
    reason: str
    created_at: datetime
    updated_at: datetime
    deployed_at: datetime | None
    artifact: bytes = b""

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly view for `forewarn models list|show` (no artifact, no reference histograms)."""
        return {
            "target": self.target,
            "version": self.version,
            "model_type": self.model_type,
            "status": self.status,
            "reason": self.reason,
            "sha256": self.sha256,
            "feature_spec": self.feature_spec,
            "n_features": len(self.feature_names),
            "threshold": self.threshold,
            "assets": len(self.assets),
            "train_start": self.train_start.isoformat() if self.train_start else None,
            "train_end": self.train_end.isoformat() if self.train_end else None,
            "n_train_rows": self.n_train_rows,
            "metrics": msgspec.to_builtins(self.metrics) if self.metrics else {},
            "gates": msgspec.to_builtins(self.gates) if self.gates else {},
            "created_at": self.created_at.isoformat(),
            "deployed_at": self.deployed_at.isoformat() if self.deployed_at else None,
        }


_FIELDS = tuple(field.name for field in dataclasses.fields(ModelRecord) if field.name != "artifact")


def _record(row: Sequence[Any], artifact: bytes = b"") -> ModelRecord:
    """A `_COLUMNS` row as a record, its stored JSON decoded into the lifecycle's structs."""
    values = dict(zip(_FIELDS, row, strict=True))
    values.update(
        metrics=decode_stored(CandidateMetrics, values["metrics"], column="metrics"),
        gates=decode_stored(Gates, values["gates"], column="gates"),
        reference=decode_stored(DriftReference, values["reference"], column="reference"),
    )
    return ModelRecord(**values, artifact=artifact)


def allocate_version(conn: Conn, target: str) -> int:
    """The next version of `target` (1, 2, ...), never handed out twice, even by concurrent trainings.

    The target's counter row stays locked until the caller's transaction ends: concurrent trainings of
    one target take turns, and a run that rolls back hands its versions out again.
    """
    row = conn.execute(
        """
        INSERT INTO model_versions (target, last_version)
        VALUES (%s, 1 + coalesce((SELECT max(version) FROM models WHERE target = %s), 0))
        ON CONFLICT (target) DO UPDATE SET last_version = model_versions.last_version + 1
        RETURNING last_version
        """,
        (target, target),
    ).fetchone()
    if row is None:
        raise StorageError("models", f"no version allocated for {target}")
    return int(row[0])


def insert_model(
    conn: Conn,
    *,
    target: str,
    version: int,
    model_type: str,
    sha256: str,
    artifact: bytes,
    manifest_json: str,
    signature_b64: str,
    feature_spec: str,
    feature_names: Sequence[str],
    threshold: float,
    assets: Sequence[str],
    train_start: datetime | None,
    train_end: datetime | None,
    n_train_rows: int,
    metrics: CandidateMetrics | None,
    gates: Gates | None,
    reference: DriftReference | None,
    status: ModelStatus,
    reason: str = "",
) -> None:
    """Add a model to the registry (metrics, gates and reference None for a model not trained here)."""
    conn.execute(
        """
        INSERT INTO models (target, version, model_type, sha256, artifact, manifest_json, signature_b64,
                            feature_spec, feature_names, threshold, assets, train_start, train_end,
                            n_train_rows, metrics, gates, reference, status, reason)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                %s::jsonb, %s::jsonb, %s::jsonb, %s, %s)
        """,
        (
            target,
            version,
            model_type,
            sha256,
            artifact,
            manifest_json,
            signature_b64,
            feature_spec,
            list(feature_names),
            threshold,
            list(assets),
            train_start,
            train_end,
            n_train_rows,
            encode_stored(metrics),
            encode_stored(gates),
            encode_stored(reference),
            status,
            reason,
        ),
    )


def get_model(conn: Conn, target: str, version: int, *, with_artifact: bool = False) -> ModelRecord | None:
    """One model, or None."""
    extra = ", artifact" if with_artifact else ""
    row = conn.execute(
        f"SELECT {_COLUMNS}{extra} FROM models WHERE target = %s AND version = %s",
        (target, version),
    ).fetchone()
    if row is None:
        return None
    return _record(row[:21], bytes(row[21]) if with_artifact else b"")


def list_models(conn: Conn, *, target: str | None = None) -> list[ModelRecord]:
    """Models, newest first per target (all targets unless `target` is given)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM models WHERE %(target)s::text IS NULL OR target = %(target)s "
        "ORDER BY target, version DESC",
        {"target": target},
    ).fetchall()
    return [_record(row) for row in rows]


def deployed_model(conn: Conn, target: str, *, with_artifact: bool = False) -> ModelRecord | None:
    """The model deployed for `target` now (the champion), or None."""
    row = conn.execute(
        "SELECT version FROM models WHERE target = %s AND status = 'deployed'", (target,)
    ).fetchone()
    return None if row is None else get_model(conn, target, int(row[0]), with_artifact=with_artifact)


def pending_pushes(conn: Conn) -> list[ModelRecord]:
    """Per target, the newest approved model if it is newer than the deployed one (or nothing is deployed):
    what an approval decided but no push has delivered yet."""
    rows = conn.execute(
        f"""
        SELECT DISTINCT ON (target) {_COLUMNS}
        FROM models m
        WHERE m.status = 'approved'
          AND m.version > COALESCE(
              (SELECT max(d.version) FROM models d WHERE d.target = m.target AND d.status = 'deployed'), 0)
        ORDER BY m.target, m.version DESC
        """
    ).fetchall()
    return [_record(row) for row in rows]


def set_status(conn: Conn, target: str, version: int, status: ModelStatus, reason: str = "") -> None:
    """Change a model's status and reason.

    Raises:
        StorageError: no such model.
    """
    cur = conn.execute(
        "UPDATE models SET status = %s, reason = %s, updated_at = now() WHERE target = %s AND version = %s",
        (status, reason, target, version),
    )
    if cur.rowcount != 1:
        raise StorageError("models", f"no model {target} v{version}")


def mark_deployed(conn: Conn, target: str, version: int, *, reason: str = "") -> int | None:
    """Make `version` the deployed model of `target`; the one deployed before becomes `retired`.

    The target stays locked against other deployments until the caller's transaction ends.

    Returns:
        The version deployed before, if any.

    Raises:
        StorageError: no such model (nothing was changed).
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('forewarn-models:' || %s))", (target,))
    exists = conn.execute(
        "SELECT 1 FROM models WHERE target = %s AND version = %s FOR UPDATE", (target, version)
    ).fetchone()
    if exists is None:
        raise StorageError("models", f"no model {target} v{version}")
    previous = conn.execute(
        "UPDATE models SET status = 'retired', updated_at = now() "
        "WHERE target = %s AND status = 'deployed' AND version <> %s RETURNING version",
        (target, version),
    ).fetchone()
    conn.execute(
        "UPDATE models SET status = 'deployed', reason = %s, deployed_at = now(), updated_at = now() "
        "WHERE target = %s AND version = %s",
        (reason, target, version),
    )
    return int(previous[0]) if previous else None


@dataclass(frozen=True, slots=True)
class GatewayState:
    """What one gateway said about one model version (its latest acknowledgement)."""

    target: str
    version: int
    gateway_id: str
    state: Literal["active", "refused", "rolled_back"]
    reason: str
    updated_at: datetime


def gateway_states(conn: Conn, target: str, *, version: int | None = None) -> list[GatewayState]:
    """Per gateway and version, the latest acknowledgement for `target` (newest version first)."""
    rows = conn.execute(
        "SELECT target, version, gateway_id, state, reason, updated_at FROM model_gateway_state "
        "WHERE target = %(target)s AND (%(version)s::int IS NULL OR version = %(version)s) "
        "ORDER BY version DESC, gateway_id",
        {"target": target, "version": version},
    ).fetchall()
    return [GatewayState(*row) for row in rows]


def record_drift(
    conn: Conn,
    *,
    asset_id: str,
    checked_at: datetime,
    target: str,
    version: int,
    n_recent: int,
    feature_psi: dict[str, float],
    score_psi: float | None,
    is_drifted: bool,
) -> None:
    """Store one asset's drift check."""
    worst = max(feature_psi, key=lambda name: feature_psi[name]) if feature_psi else ""
    conn.execute(
        """
        INSERT INTO drift (asset_id, checked_at, target, version, n_recent, max_psi, worst_feature, score_psi,
                           feature_psi, is_drifted)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (asset_id, checked_at) DO NOTHING
        """,
        (
            asset_id,
            checked_at,
            target,
            version,
            n_recent,
            feature_psi.get(worst, 0.0),
            worst,
            score_psi,
            Jsonb(json.loads(json.dumps(feature_psi))),
            is_drifted,
        ),
    )


def assets_of_target(conn: Conn, target: str) -> list[str]:
    """Assets a model target covers: the asset named `target`, or every asset whose type is `target`."""
    rows = conn.execute(
        "SELECT asset_id FROM assets WHERE asset_id = %(t)s OR asset_type = %(t)s ORDER BY asset_id",
        {"t": target},
    ).fetchall()
    return [str(row[0]) for row in rows]


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """One stored drift check of one asset (a row of `drift`, without the per-feature PSI)."""

    asset_id: str
    checked_at: datetime
    target: str
    version: int
    n_recent: int
    max_psi: float
    worst_feature: str
    score_psi: float | None
    is_drifted: bool


def drift_history(conn: Conn, *, target: str | None = None, limit: int = 100) -> list[DriftCheck]:
    """The latest drift checks (newest first), for `forewarn models show` and the dashboard."""
    rows = conn.execute(
        "SELECT asset_id, checked_at, target, version, n_recent, max_psi, worst_feature, score_psi, "
        "is_drifted FROM drift WHERE %(target)s::text IS NULL OR target = %(target)s "
        "ORDER BY checked_at DESC LIMIT %(n)s",
        {"target": target, "n": limit},
    ).fetchall()
    return [DriftCheck(*row) for row in rows]
