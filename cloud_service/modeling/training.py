"""Train an anomaly model on healthy feature vectors and package it for the edge: ONNX, int8, manifest.

`build_anomaly_model` builds the PCA detector's package (what tests, benchmarks and the training run use):

1. split the healthy rows (seeded) into a fitting set and a held-out set;
2. fit `PcaReconstructionDetector` on the fitting set;
3. convert to one float ONNX graph whose output is the score (`to_onnx`), then quantize to int8;
4. threshold = `threshold_margin` x the `threshold_quantile` of the int8 scores of the held-out rows;
5. measure float vs int8 decision agreement on the held-out rows plus any `validation_features`;
6. golden input/output pairs (held-out rows and a few perturbed ones, scored by the int8 model);
7. the `ModelManifest`, with the int8 artifact's sha256.

`build_autoencoder_model` builds the MLP autoencoder's package the same way (dynamic int8, golden pairs,
manifest), with a placeholder threshold: the training run sets it from its false-alarm budget.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from cloud_service.modeling.autoencoder import MlpAutoencoderDetector, mlp_to_onnx
from cloud_service.modeling.detector import PcaReconstructionDetector, to_onnx
from cloud_service.modeling.quantize import Quantization, quantize_int8
from shared.messages import GoldenPair, ModelManifest, encode
from shared.timebase import now_ns

__all__ = [
    "AUTOENCODER_MAX_FIT_ROWS",
    "AUTOENCODER_MODEL_TYPE",
    "MODEL_TYPE",
    "ModelArtifact",
    "build_anomaly_model",
    "build_autoencoder_model",
    "decision_agreement",
    "onnx_scores",
    "save_artifact",
]

logger = logging.getLogger(__name__)

MODEL_TYPE = "pca-spe-t2"
AUTOENCODER_MODEL_TYPE = "mlp-autoencoder"
AUTOENCODER_MAX_FIT_ROWS = 10_000
"""The autoencoder is fitted on at most this many rows (evenly spaced): 25 features need no more, and
its training time grows linearly with rows (36,000 rows took 33 s here, 8,000 rows 3 s)."""
_N_GOLDEN_HEALTHY = 6
_N_GOLDEN_PERTURBED = 2
_MAX_CALIBRATION_ROWS = 1024


@dataclass(frozen=True)
class ModelArtifact:
    """A trained model in every form the lifecycle needs.

    Attributes:
        manifest: what the edge verifies and scores with (sha256 of `onnx_int8`).
        onnx_int8: the artifact deployed to gateways.
        onnx_float: the float graph it was quantized from (for parity checks and benchmarks).
        sklearn_model: the fitted scikit-learn estimator (`score_samples` gives the float scores).
        metrics: threshold, agreement, held-out alarm rate, sizes, component count, row counts (PCA
            only: the training run measures its candidates itself).
    """

    manifest: ModelManifest
    onnx_int8: bytes
    onnx_float: bytes
    sklearn_model: PcaReconstructionDetector | MlpAutoencoderDetector
    metrics: dict[str, float] = field(default_factory=dict)


def onnx_scores(
    model: bytes, features: npt.NDArray[np.float32], *, output_name: str = "score"
) -> npt.NDArray[np.float32]:
    """Scores of `features` by an ONNX model in onnxruntime (one thread), shape (n,)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    (raw,) = session.run(
        [output_name], {session.get_inputs()[0].name: np.ascontiguousarray(features, np.float32)}
    )
    return np.asarray(raw, dtype=np.float32).reshape(len(features))


def decision_agreement(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], threshold: float) -> float:
    """Fraction of rows where two score vectors take the same side of `threshold`."""
    if len(a) == 0:
        return 1.0
    return float(np.mean((a > threshold) == (b > threshold)))


def _split(
    n_rows: int, holdout_fraction: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    order = rng.permutation(n_rows)
    n_holdout = max(1, round(n_rows * holdout_fraction))
    return order[n_holdout:], order[:n_holdout]


def _golden(onnx_int8: bytes, holdout: npt.NDArray[np.float32], rng: np.random.Generator) -> list[GoldenPair]:
    """Held-out rows, plus copies with one feature pushed up tenfold, each with its int8 score."""
    picks = holdout[np.linspace(0, len(holdout) - 1, min(_N_GOLDEN_HEALTHY, len(holdout))).astype(int)]
    perturbed = np.repeat(picks[:1], _N_GOLDEN_PERTURBED, axis=0)
    columns = rng.choice(holdout.shape[1], size=_N_GOLDEN_PERTURBED, replace=False)
    for row, column in enumerate(columns):
        perturbed[row, column] = perturbed[row, column] * 10.0 + 1.0
    inputs = np.vstack([picks, perturbed]).astype(np.float32)
    scores = onnx_scores(onnx_int8, inputs)
    return [
        GoldenPair(features=[float(v) for v in row], score=float(score))
        for row, score in zip(inputs, scores, strict=True)
    ]


def build_anomaly_model(
    features: npt.NDArray[np.float32],
    feature_names: Sequence[str],
    *,
    feature_spec: str,
    target: str,
    version: int,
    seed: int = 0,
    quantization: Quantization = "int8-static-qdq",
    explained_variance: float = 0.5,
    holdout_fraction: float = 0.25,
    threshold_quantile: float = 0.999,
    threshold_margin: float = 1.5,
    validation_features: npt.NDArray[np.float32] | None = None,
) -> ModelArtifact:
    """Train, convert, quantize and package an anomaly model from healthy feature rows.

    Args:
        features: (n, F) float32 rows from healthy operation (n >= 40).
        feature_names: the F column names, in order (the edge checks them against its pipeline).
        feature_spec: the `FeatureSpec.spec_id` the rows were computed with.
        target: the model target (an asset or asset type id).
        version: the model version for this target (>= 1).
        seed: seeds the split and the golden-pair perturbations.
        quantization: `int8-static-qdq` (calibrated on the fitting rows; the default, because a row's
            score then does not depend on the other rows of its batch) or `int8-dynamic` (activation
            scales computed per call over the whole batch: one anomalous window coarsens its neighbours'
            scores; measured 95 % float agreement on a batch of the smoke pump's windows, vs 99.9 %).
        explained_variance: healthy variance the PCA subspace keeps.
        holdout_fraction: share of rows held out for the threshold and the agreement check.
        threshold_quantile: quantile of held-out int8 scores the threshold starts from.
        threshold_margin: factor above that quantile.
        validation_features: extra rows (e.g. known faults) for the float/int8 agreement check.

    Returns:
        The manifest, the int8 and float ONNX models, the fitted estimator and metrics.

    Raises:
        ValueError: if the rows are not a finite (n >= 40, len(feature_names)) array.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != len(feature_names) or x.shape[0] < 40 or not np.isfinite(x).all():
        raise ValueError(f"features must be a finite (n >= 40, {len(feature_names)}) array, got {x.shape}")
    rng = np.random.default_rng(seed)
    fit_rows, holdout_rows = _split(len(x), holdout_fraction, rng)
    fitting, holdout = x[fit_rows], x[holdout_rows]
    detector = PcaReconstructionDetector(explained_variance=explained_variance, seed=seed).fit(fitting)
    onnx_float = to_onnx(detector)
    calibration = fitting[:_MAX_CALIBRATION_ROWS]
    onnx_int8 = quantize_int8(onnx_float, calibration, method=quantization)
    holdout_int8 = onnx_scores(onnx_int8, holdout)
    threshold = float(threshold_margin * np.quantile(holdout_int8, threshold_quantile))
    validation = holdout if validation_features is None else np.vstack([holdout, validation_features])
    validation = np.ascontiguousarray(validation, dtype=np.float32)
    agreement = decision_agreement(
        onnx_scores(onnx_float, validation), onnx_scores(onnx_int8, validation), threshold
    )
    manifest = ModelManifest(
        target=target,
        version=version,
        model_type=MODEL_TYPE,
        artifact_sha256=hashlib.sha256(onnx_int8).hexdigest(),
        feature_spec=feature_spec,
        feature_names=list(feature_names),
        threshold=threshold,
        quantization=quantization,
        created_ns=now_ns(),
        golden=_golden(onnx_int8, holdout, rng),
    )
    metrics = {
        "threshold": threshold,
        "int8_float_decision_agreement": agreement,
        "holdout_alarm_rate": float(np.mean(holdout_int8 > threshold)),
        "n_fit_rows": float(len(fitting)),
        "n_holdout_rows": float(len(holdout)),
        "n_validation_rows": float(len(validation)),
        "n_components": float(detector.pca_.n_components_),
        "model_bytes_float": float(len(onnx_float)),
        "model_bytes_int8": float(len(onnx_int8)),
    }
    logger.info(
        "trained %s v%d (%s, %d components): threshold %.4g, int8/float agreement %.4f",
        target,
        version,
        MODEL_TYPE,
        detector.pca_.n_components_,
        threshold,
        agreement,
    )
    return ModelArtifact(manifest, onnx_int8, onnx_float, detector, metrics)


def build_autoencoder_model(
    features: npt.NDArray[np.float32],
    holdout: npt.NDArray[np.float32],
    feature_names: Sequence[str],
    *,
    feature_spec: str,
    target: str,
    version: int,
    seed: int = 0,
) -> ModelArtifact:
    """Train, convert and quantize (dynamic int8) an MLP autoencoder on healthy rows.

    Args:
        features: (n, F) float32 rows from healthy operation (n >= 16); at most
            `AUTOENCODER_MAX_FIT_ROWS` of them, evenly spaced, are fitted.
        holdout: held-out healthy rows the golden pairs are taken from.
        feature_names: the F column names, in order.
        feature_spec: the `FeatureSpec.spec_id` the rows were computed with.
        target: the model target (an asset or asset type id).
        version: the model version for this target (>= 1).
        seed: seeds the network and the golden-pair perturbations.

    Returns:
        The manifest (threshold 1.0 until the caller sets one), the int8 and float ONNX models and the
        fitted estimator; no metrics.

    Raises:
        ValueError: the rows are not a finite (n >= 16, F) array.
    """
    step = max(1, -(-len(features) // AUTOENCODER_MAX_FIT_ROWS))
    detector = MlpAutoencoderDetector(seed=seed).fit(features[::step])
    onnx_float = mlp_to_onnx(detector)
    onnx_int8 = quantize_int8(onnx_float, features[:_MAX_CALIBRATION_ROWS], method="int8-dynamic")
    manifest = ModelManifest(
        target=target,
        version=version,
        model_type=AUTOENCODER_MODEL_TYPE,
        artifact_sha256=hashlib.sha256(onnx_int8).hexdigest(),
        feature_spec=feature_spec,
        feature_names=list(feature_names),
        threshold=1.0,
        quantization="int8-dynamic",
        created_ns=now_ns(),
        golden=_golden(onnx_int8, holdout, np.random.default_rng(seed)),
    )
    return ModelArtifact(manifest, onnx_int8, onnx_float, detector)


def save_artifact(artifact: ModelArtifact, directory: Path) -> Path:
    """Write `model.onnx` (int8) and `manifest.json` into `directory`: the layout the edge loads."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(artifact.onnx_int8)
    (directory / "manifest.json").write_bytes(encode(artifact.manifest))
    return directory
