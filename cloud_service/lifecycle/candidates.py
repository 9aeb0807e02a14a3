"""Candidate anomaly models of a training run, in one shape: float and int8 ONNX, manifest, metrics.

Two model types, both built in `cloud_service.modeling`:

* `pca`: the PCA reconstruction detector (squared prediction error and Hotelling's T²),
  `build_anomaly_model`;
* `mlp_autoencoder`: the MLP autoencoder scored by reconstruction error, `build_autoencoder_model`.

Both are quantized to int8 and carry golden input/output pairs of the int8 graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud_service.modeling import ModelArtifact, build_anomaly_model, build_autoencoder_model
from shared.messages import ModelManifest

__all__ = ["BUILDERS", "Candidate", "build_candidate"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Candidate:
    """One trained candidate: what the registry keeps and the gates look at."""

    model_type: str
    manifest: ModelManifest
    onnx_float: bytes
    onnx_int8: bytes
    metrics: dict[str, float] = field(default_factory=dict)


def _build_mlp(
    fit: F32, holdout: F32, names: Sequence[str], *, feature_spec: str, target: str, version: int, seed: int
) -> ModelArtifact:
    return build_autoencoder_model(
        fit, holdout, names, feature_spec=feature_spec, target=target, version=version, seed=seed
    )


def _build_pca(
    fit: F32, holdout: F32, names: Sequence[str], *, feature_spec: str, target: str, version: int, seed: int
) -> ModelArtifact:
    rows = np.vstack([fit, holdout])
    return build_anomaly_model(
        rows,
        list(names),
        feature_spec=feature_spec,
        target=target,
        version=version,
        seed=seed,
        holdout_fraction=max(len(holdout) / len(rows), 0.05),
    )


Builder = Callable[..., ModelArtifact]
BUILDERS: dict[str, Builder] = {"mlp_autoencoder": _build_mlp, "pca": _build_pca}


def build_candidate(
    model_type: str,
    fit: F32,
    holdout: F32,
    names: Sequence[str],
    *,
    feature_spec: str,
    target: str,
    version: int,
    seed: int = 0,
) -> Candidate:
    """Train, convert and quantize one candidate of `model_type` (a key of `BUILDERS`).

    Raises:
        KeyError: unknown model type.
        ValueError: the rows are unusable (too few, not finite).
    """
    artifact = BUILDERS[model_type](
        fit, holdout, names, feature_spec=feature_spec, target=target, version=version, seed=seed
    )
    return Candidate(model_type, artifact.manifest, artifact.onnx_float, artifact.onnx_int8)
