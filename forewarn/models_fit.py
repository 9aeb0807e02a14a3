"""Train, convert, quantize and gate an edge model offline from healthy recordings (`forewarn models fit`).

The recording is replayed through the edge pipeline (`edge_agent.offline.recorded_features`), so the rows
are the features the edge computes for the sensors the recording holds (a vibration-only asset gets a
vibration-only feature vector), minus the windows the edge would not score (stopped, transient,
incomplete, sensor spikes). The model is the lifecycle's PCA detector (`cloud_service.modeling`: fit,
skl2onnx conversion, int8 static quantization, threshold from held-out rows), held to the training run's
own gates (`cloud_service.lifecycle.gates`: int8/float agreement, one-window latency, artifact size).

Output per asset: `model.onnx` (int8) and `manifest.json`, the layout `forewarn edge score --model DIR`
and the edge model store load, plus `fit_report.json` (rows, exclusions, metrics, gates). With one asset
they go in `DIR`, with several in `DIR/<asset_id>/`. A model that fails a gate is not written.

`register_fitted` (`forewarn models register DIR`) adds such a directory to the cloud registry as a
`candidate` under the target's next version, signed, so `forewarn models approve` and `deploy` push it to
gateways like a model trained in the cloud.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_service.lifecycle import registry
from cloud_service.lifecycle.gates import candidate_gates, failed_reason, int8_latency_us
from cloud_service.lifecycle.records import Gates
from cloud_service.lifecycle.settings import LifecycleSettings
from cloud_service.lifecycle.signing import sign_manifest
from cloud_service.modeling import build_anomaly_model, save_artifact
from edge_agent.offline import RecordedFeatures, recorded_features
from edge_agent.settings import PipelineSettings
from shared.errors import ModelVerificationError
from shared.messages import decode_manifest, encode

__all__ = ["MIN_FIT_ROWS", "REPORT_FILE", "FitResult", "fit_recording", "register_fitted"]

MIN_FIT_ROWS = 40
"""The fewest healthy windows a model is fitted on (the PCA detector's minimum)."""
REPORT_FILE = "fit_report.json"


@dataclass(frozen=True)
class FitResult:
    """One asset's offline fit.

    Attributes:
        asset_id: the asset (and the model's target, unless one was given).
        directory: where the model was written, or None if it failed a gate or had too few rows.
        n_rows: healthy windows the model was trained and held out on.
        excluded: windows left out, per reason.
        feature_names: the model's features.
        threshold: the model's threshold.
        gates: its gates (None: too few rows to fit).
        reason: why it was not written; empty if it was.
    """

    asset_id: str
    directory: Path | None
    n_rows: int
    excluded: dict[str, int]
    feature_names: tuple[str, ...]
    threshold: float
    gates: Gates | None
    reason: str


def _fit_one(
    found: RecordedFeatures,
    directory: Path,
    *,
    target: str | None,
    version: int,
    seed: int,
    lifecycle: LifecycleSettings,
) -> FitResult:
    result = FitResult(
        asset_id=found.asset_id,
        directory=None,
        n_rows=len(found.rows),
        excluded=found.excluded,
        feature_names=found.feature_names,
        threshold=0.0,
        gates=None,
        reason="",
    )
    if len(found.rows) < MIN_FIT_ROWS:
        reason = (
            f"{len(found.rows)} healthy running windows, at least {MIN_FIT_ROWS} are needed "
            f"(excluded: {found.excluded or 'none'}); record longer"
        )
        return replace(result, reason=reason)
    artifact = build_anomaly_model(
        found.rows,
        found.feature_names,
        feature_spec=found.spec_id,
        target=target or found.asset_id,
        version=version,
        seed=seed,
    )
    gates = candidate_gates(
        agreement=artifact.metrics["int8_float_decision_agreement"],
        latency_us=int8_latency_us(artifact.onnx_int8, found.rows),
        size_bytes=len(artifact.onnx_int8),
        settings=lifecycle,
    )
    reason = failed_reason(gates)
    threshold = artifact.manifest.threshold
    if reason:
        return replace(result, threshold=threshold, gates=gates, reason=reason)
    save_artifact(artifact, directory)
    report = {
        "asset_id": found.asset_id,
        "target": artifact.manifest.target,
        "version": version,
        "feature_spec": found.spec_id,
        "feature_names": list(found.feature_names),
        "n_rows": len(found.rows),
        "windows": found.windows,
        "excluded": found.excluded,
        "metrics": artifact.metrics,
        "gates": msgspec.to_builtins(gates),
        "feature_median": np.median(found.rows, axis=0).tolist(),
    }
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return replace(result, directory=directory, threshold=threshold, gates=gates)


def fit_recording(
    *,
    csv_path: Path,
    out_dir: Path,
    settings: PipelineSettings,
    sample_rate_hz: float | None = None,
    target: str | None = None,
    version: int = 1,
    seed: int = 0,
    lifecycle: LifecycleSettings | None = None,
) -> list[FitResult]:
    """Fit one edge model per asset of a healthy recording and write those that pass their gates.

    Args:
        csv_path: a samples CSV, or a directory of `raw_*.csv` (what `forewarn edge score` reads).
        out_dir: the model directory (with several assets, one subdirectory per asset).
        settings: the edge pipeline settings (windows, bands, feature spec name; assets are discovered
            if none are configured).
        sample_rate_hz: the rate of vibration sensors not configured (default: inferred).
        target: the model target (default: the asset id).
        version: the model version written in the manifest.
        seed: seeds the split into fitting and held-out rows.
        lifecycle: the gate limits (default: the cloud's defaults).

    Returns:
        One result per asset.

    Raises:
        FileNotFoundError: if there is no CSV at `csv_path`.
        ContractError: if a CSV's header is not `asset_id,time,<sensor...>`.
    """
    found = recorded_features(csv_path=csv_path, settings=settings, sample_rate_hz=sample_rate_hz)
    limits = lifecycle or LifecycleSettings()
    return [
        _fit_one(
            asset,
            out_dir if len(found) == 1 else out_dir / asset.asset_id,
            target=target,
            version=version,
            seed=seed,
            lifecycle=limits,
        )
        for asset in found
    ]


def register_fitted(
    conn: psycopg.Connection[Any],
    directory: Path,
    *,
    private_key: Ed25519PrivateKey,
    target: str | None = None,
) -> tuple[str, int]:
    """Add a `models fit` directory to the registry as a signed candidate; (target, version) (no commit).

    Raises:
        ModelVerificationError: if the files are missing or the artifact does not match its manifest.
    """
    try:
        manifest = decode_manifest((directory / "manifest.json").read_bytes())
        artifact = (directory / "model.onnx").read_bytes()
        report = json.loads((directory / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelVerificationError(
            "files", f"{directory} is not a `forewarn models fit` directory: {exc}"
        ) from exc
    if hashlib.sha256(artifact).hexdigest() != manifest.artifact_sha256:
        raise ModelVerificationError("digest", f"{directory / 'model.onnx'} does not match its manifest")
    target = target or manifest.target
    version = registry.allocate_version(conn, target)
    manifest = msgspec.structs.replace(manifest, target=target, version=version)
    manifest_json = encode(manifest).decode()
    registry.insert_model(
        conn,
        target=target,
        version=version,
        model_type=manifest.model_type,
        sha256=manifest.artifact_sha256,
        artifact=artifact,
        manifest_json=manifest_json,
        signature_b64=sign_manifest(private_key, manifest_json),
        feature_spec=manifest.feature_spec,
        feature_names=manifest.feature_names,
        threshold=manifest.threshold,
        assets=[str(report.get("asset_id", target))],
        train_start=None,
        train_end=None,
        n_train_rows=int(report.get("n_rows", 0)),
        metrics=None,
        gates=msgspec.convert(report["gates"], Gates) if "gates" in report else None,
        reference=None,
        status="candidate",
        reason=f"fitted offline from recordings (forewarn models fit), registered from {directory}",
    )
    return target, version
